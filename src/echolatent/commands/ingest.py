"""``echolatent ingest``: ingest a cohort folder or sheet into cohort shards, outside the workflow."""

from __future__ import annotations

from pathlib import Path

from echolatent.io.camus import LAYOUTS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ingest", help="ingest a cohort (simulator store, CAMUS/TED folder or sheet) into cohort shards",
        description="Read a cohort, check it, resample masks/images to the model grid and write "
                    "patients.tsv, sequences.tsv, shard-{k}.h5, qc.tsv and provenance.json.")
    parser.add_argument("source", choices=["store", "camus", "sheet"], help="kind of cohort")
    parser.add_argument("path", type=Path, help="store folder, CAMUS/TED root or sheet TSV")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--image-size", type=int, default=128, help="side of the model grid (default 128)")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cycle", choices=["full", "half"], default=None,
                        help="full or half cycles (default: half for camus, full otherwise)")
    parser.add_argument("--layout", default="auto", choices=("auto", *LAYOUTS), help="CAMUS layout (default auto)")
    parser.add_argument("--covariates", type=Path, help="per-patient covariate TSV to merge")
    parser.add_argument("--on-bad-sequence", choices=["error", "skip"], default="error")
    parser.set_defaults(func=run)


def run(args) -> int:
    """Ingest the cohort; bad input or settings raise an InputError naming the file or setting.

    Nothing is written to ``--out`` unless the whole cohort is ingested (see
    :func:`echolatent.ingest.cohort.ingest_cohort`).
    """
    from echolatent.ingest.cohort import ingest_cohort
    from echolatent.stages.ingest import open_source

    cycle = args.cycle or ("half" if args.source == "camus" else "full")
    source = open_source(args.source, args.path, cycle=cycle, layout=args.layout)
    truth = args.path / "truth" if args.source == "store" and (args.path / "truth" / "clean_masks.h5").is_file() else None
    table = ingest_cohort(source, args.out, image_size=args.image_size, n_shards=args.shards, seed=args.seed,
                          covariates=args.covariates, on_bad_sequence=args.on_bad_sequence, truth_dir=truth,
                          config=vars(args) | {"path": str(args.path), "out": str(args.out),
                                               "covariates": None if args.covariates is None else str(args.covariates),
                                               "func": None})
    print(f"ingested {table['patient_id'].nunique()} patients, {len(table)} sequences into {args.out}")
    return 0
