"""Step 3 of ingestion, and the three steps in one process.

:func:`merge_cohort` joins the per-shard tables into ``patients.tsv``, ``sequences.tsv``,
``qc.tsv`` and ``provenance.json`` (the contract is in :mod:`echolatent.ingest`);
:func:`ingest_cohort` plans, ingests every shard and merges in one call, all or nothing (the
CLI, tests and small cohorts).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
from importlib import metadata
from pathlib import Path

import pandas as pd

from echolatent.ingest.plan import plan_cohort
from echolatent.ingest.shard import check_shard_settings, ingest_shard
from echolatent.io.atomic import atomic_path, remove_stale_temporaries, temporary_path
from echolatent.io.sources import sha256_file

__all__ = ["ingest_cohort", "merge_cohort", "package_versions"]

_SHARD_NAME = re.compile(r"shard-(\d+)\.h5")


def _remove_stale_outputs(out_dir: Path, n_shards: int, *, truth: bool) -> None:
    """Delete what an earlier cohort left in ``out_dir`` that the current one does not overwrite.

    Shard files ``shard-{k}.h5`` (and ``truth/shard-{k}.h5``) with ``k >= n_shards`` would
    otherwise be read with the new ones and duplicate their patients; without truth, an
    earlier cohort's ``truth/`` folder would be evaluated against.
    """
    if not truth and (out_dir / "truth").is_dir():
        shutil.rmtree(out_dir / "truth")
    for folder in (out_dir, out_dir / "truth"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = _SHARD_NAME.fullmatch(path.name)
            if match and int(match.group(1)) >= n_shards and path.is_file():
                path.unlink()


def package_versions() -> dict:
    """Versions of Python and of the packages ingestion depends on."""
    versions = {"python": platform.python_version()}
    for name in ("echolatent", "numpy", "pandas", "h5py", "SimpleITK", "scipy", "snakemake"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def merge_cohort(plan: pd.DataFrame, sequence_tables, qc_tables, input_tables, *, out_dir, config: dict,
                 global_inputs=(), truth_dir=None) -> None:
    """Join per-shard tables into the cohort tables and provenance (see :mod:`echolatent.ingest`).

    ``global_inputs`` are files read by every shard (a sheet, a store), hashed here once.
    With ``truth_dir`` (a simulator store's ``truth/`` folder), its tables are copied into
    ``out_dir/truth/``; without it, a ``truth/`` folder left by an earlier cohort is removed.
    Shard files ``shard-{k}.h5`` (and ``truth/shard-{k}.h5``) with ``k`` at or above the
    number of shards (``len(sequence_tables)``) are left-overs of an earlier cohort with
    more shards, and are deleted.
    """
    out_dir = Path(out_dir)
    sequences = pd.concat([pd.read_csv(p, sep="\t") for p in sequence_tables], ignore_index=True)
    sequences = sequences.sort_values(["patient_id", "view"], kind="stable").reset_index(drop=True)
    qc = pd.concat([pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in qc_tables],
                   ignore_index=True)
    counts = sequences.groupby("patient_id").size()
    patients = plan[plan["patient_id"].isin(counts.index)].copy()
    patients["n_sequences"] = patients["patient_id"].map(counts).astype(int)
    inputs = {}
    for path in input_tables:
        table = pd.read_csv(path, sep="\t", dtype=str)
        inputs.update(zip(table["file"], table["sha256"]))
    for path in global_inputs:
        inputs[str(path)] = sha256_file(path)
    provenance = {
        "config": config,
        "versions": package_versions(),
        "n_patients": int(len(patients)),
        "n_sequences": int(len(sequences)),
        "n_skipped": int(len(qc)),
        "inputs": dict(sorted(inputs.items())),
    }
    outputs = {
        "patients.tsv": lambda p: patients.to_csv(p, sep="\t", index=False),
        "sequences.tsv": lambda p: sequences.to_csv(p, sep="\t", index=False),
        "qc.tsv": lambda p: qc.to_csv(p, sep="\t", index=False),
        "provenance.json": lambda p: Path(p).write_text(json.dumps(provenance, indent=2, default=str) + "\n"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, write in outputs.items():
        remove_stale_temporaries(out_dir / name)
        with atomic_path(out_dir / name) as tmp:
            write(tmp)
    _remove_stale_outputs(out_dir, len(sequence_tables), truth=truth_dir is not None)
    if truth_dir is not None:
        (out_dir / "truth").mkdir(exist_ok=True)
        for table in sorted(Path(truth_dir).glob("*.tsv")):
            remove_stale_temporaries(out_dir / "truth" / table.name)
            with atomic_path(out_dir / "truth" / table.name) as tmp:
                shutil.copyfile(table, tmp)


#: Name of ``ingest_cohort``'s build folder inside the output folder (``.tmp-<pid>-ingest``).
_BUILD = "ingest"


def ingest_cohort(source, out_dir, *, image_size: int, n_shards: int = 1, seed: int = 0,
                  fractions=None, split_source: str = "auto", covariates=None, on_bad_sequence: str = "error",
                  truth_dir=None, config=None) -> pd.DataFrame:
    """All three steps in one process (for the CLI, tests and small cohorts), all or nothing.

    The cohort is built in a temporary folder inside ``out_dir`` and its files are moved
    into ``out_dir`` only once every step has succeeded: a failed ingestion leaves
    ``out_dir`` as it was (an earlier cohort there stays intact; a folder created for
    the run is removed). A successful one replaces the earlier cohort's files, including
    its surplus shards, and removes the build folder of a killed earlier run.

    Returns the cohort's ``sequences.tsv`` table.
    """
    out_dir = Path(out_dir)
    check_shard_settings(image_size, on_bad_sequence)
    fractions = fractions or {"train": 0.7, "val": 0.15, "test": 0.15}
    plan = plan_cohort(source, n_shards=n_shards, seed=seed, fractions=fractions, split_source=split_source,
                       covariates=covariates)
    n_shards = int(n_shards)
    created = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]  # deepest first
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir / _BUILD)
    build = temporary_path(out_dir / _BUILD)
    try:
        parts = build / "parts"
        for shard in range(n_shards):
            ingest_shard(source, plan, shard, image_size=image_size, out_h5=build / f"shard-{shard}.h5",
                         out_sequences=parts / f"sequences-{shard}.tsv", out_qc=parts / f"qc-{shard}.tsv",
                         out_inputs=parts / f"inputs-{shard}.tsv", on_bad_sequence=on_bad_sequence,
                         truth_masks=None if truth_dir is None else Path(truth_dir) / "clean_masks.h5",
                         out_truth_h5=None if truth_dir is None else build / "truth" / f"shard-{shard}.h5")
        merge_cohort(plan, [parts / f"sequences-{k}.tsv" for k in range(n_shards)],
                     [parts / f"qc-{k}.tsv" for k in range(n_shards)],
                     [parts / f"inputs-{k}.tsv" for k in range(n_shards)],
                     out_dir=build, config=config or {}, global_inputs=source.input_files(), truth_dir=truth_dir)
        shutil.rmtree(parts)
        _install(build, out_dir, n_shards, truth=truth_dir is not None)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        for folder in created:  # only folders made for this run, and only when empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(build, ignore_errors=True)
    return pd.read_csv(out_dir / "sequences.tsv", sep="\t")


def _install(build: Path, out_dir: Path, n_shards: int, *, truth: bool) -> None:
    """Move a finished cohort from its build folder into ``out_dir``; provenance.json last."""
    names = sorted((p.relative_to(build) for p in build.rglob("*") if p.is_file()),
                   key=lambda name: (str(name) == "provenance.json", str(name)))
    for name in names:
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        os.replace(build / name, target)
    _remove_stale_outputs(out_dir, n_shards, truth=truth)
    if (out_dir / "parts").is_dir():
        shutil.rmtree(out_dir / "parts")  # per-shard tables an earlier, failed ingestion left
