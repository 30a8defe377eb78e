"""Does the repair repair what the detector flags? The correction with each detector on a finished run (issue 12).

    python benchmarks/bench_pair_repair.py --results RUN/results [--split test|all] [--references observed input]
        [--model arvae] [--threads 1] [--out table.md]

Corrects the sequences of one split of a finished synthetic-cohort run with the default
correction (``method: repair``), once per image-space detector (``temporal.thresholds.detector``:
``deviation``, the TMI 2022 three-point deviation, and ``spikes``, the greedy spike search) and
per threshold reference (``observed``, max rule: the default on synthetic cohorts; ``input``,
robust rule: truth-free). Thresholds are derived on the train split as the workflow does; the
latent thresholds are the image ones on the latent dims (``latent: image``, the default).

Per configuration: the sequences inconsistent before -> after by the configured detector and
by the TMI 2022 deviation (the paper's metric), the frames with anatomical errors, the Dice to
the simulator's clean masks (mean over sequences) before -> after, and the share of the frames
of each class (:func:`echolatent.temporal.evaluation.frame_classes`) the correction rebuilt:
spiked frames (single, pair, end) should be, clean windows should not.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from echolatent.io.shards import iter_shard, shard_grid
from echolatent.models.quality import dice_scores
from echolatent.shape.criteria import anatomical_metrics
from echolatent.stages.encode import load_corrector
from echolatent.stages.temporal import image_thresholds_stage, latent_thresholds_stage
from echolatent.temporal.config import CorrectionConfig
from echolatent.temporal.correction.consistency import LatentConstraint, image_spec
from echolatent.temporal.correction.sequences import correct_sequences
from echolatent.temporal.detection import Detector
from echolatent.temporal.evaluation import frame_classes
from echolatent.temporal.thresholds import by_attribute
from recorded_run import RecordedRun

REFERENCES = {"observed": dict(reference="observed", rule="max"), "input": dict(reference="input", rule="robust")}
DETECTORS = ("deviation", "spikes")
CLASSES = ("spike_single", "spike_pair", "spike_end", "spike_neighbour", "clean_window")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, type=Path)
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    parser.add_argument("--references", nargs="+", default=list(REFERENCES), choices=list(REFERENCES))
    parser.add_argument("--model", default="arvae")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    run = RecordedRun.read(args.results)
    chosen = run.patients if args.split == "all" else run.patients[run.patients["split"] == args.split]
    members = set(chosen["patient_id"])
    model_dir = args.results / "models" / args.model
    model, _, device = load_corrector(model_dir / "checkpoint.pt", "cpu")
    shards = sorted((args.results / "cohort").glob("shard-*.h5"))
    sequences, truth = [], {}
    for shard in shards:
        grid = shard_grid(shard)
        for s in iter_shard(shard, ("mask_native",)):
            if s.patient_id in members:
                sequences.append((s, grid))
        for s in iter_shard(args.results / "cohort" / "truth" / shard.name, ("mask_native",)):
            if s.patient_id in members:
                truth[s.patient_id, s.view] = s.arrays["mask_native"]
    classes = frame_classes(run.defects, cycle="full").set_index(["patient_id", "view", "frame"])
    rows = []
    folder = tempfile.TemporaryDirectory()          # the derived thresholds tables
    scratch = Path(folder.name)
    for reference in args.references:
        options = REFERENCES[reference]
        table = image_thresholds_stage(run.tables, run.patients, splits=["train"], names=run.names, frames=run.frames,
                                       cycle="full", out=scratch / f"{reference}.tsv", **options)
        latent = latent_thresholds_stage(model_dir / "checkpoint.pt", model_dir / "latent_bounds.tsv",
                                         scratch / f"{reference}.tsv", mode="image", cycle="full", device="cpu")
        constraint = LatentConstraint.from_table(latent) if len(latent) else None
        image = by_attribute(table).reset_index(drop=True)
        for detector in DETECTORS:
            config = CorrectionConfig(detector=detector)
            check = image_spec(image, config.margin, detector, "full")
            paper = Detector(check.names, check.lo, check.hi, check.tau, check.tau_end, kind="deviation")
            start = time.perf_counter()
            stats = {"before": [0, 0, 0, []], "after": [0, 0, 0, []]}
            replaced = []
            for sequence, grid in sequences:
                spacing = sequence.spacing("mask_native")
                (r,) = correct_sequences(model, [sequence.arrays["mask_native"]], constraint=constraint, config=config,
                                         spacings=[spacing], image=check, grid=grid, device=device, cycle="full")
                clean = truth[sequence.patient_id, sequence.view]
                for when, masks, curves, result in (("before", r.input, r.curves_before, r.check_before),
                                                    ("after", r.masks, r.curves_after, r.check_after)):
                    stats[when][0] += bool(result["sequence_inconsistent"])
                    stats[when][1] += bool(paper.check(curves, "full")["sequence_inconsistent"])
                    stats[when][2] += int(anatomical_metrics(masks, spacing)["anatomical_errors"].sum())
                    stats[when][3].append(float(np.nanmean(dice_scores(masks, clean, (1, 2, 3)))))
                keys = [(sequence.patient_id, sequence.view, t) for t in range(len(r.replaced))]
                replaced.append(pd.Series(r.replaced, index=pd.MultiIndex.from_tuples(keys)))
            replaced = pd.concat(replaced)
            part = classes.loc[replaced.index]
            dice_before, dice_after = (np.array(stats[w][3]) for w in ("before", "after"))
            row = {"reference": reference, "detector": detector, "sequences": len(sequences),
                   "inconsistent (own)": f"{stats['before'][0]} -> {stats['after'][0]}",
                   "inconsistent (TMI 2022)": f"{stats['before'][1]} -> {stats['after'][1]}",
                   "anatomical errors": f"{stats['before'][2]} -> {stats['after'][2]}",
                   "Dice": f"{dice_before.mean():.5f} -> {dice_after.mean():.5f}",
                   "up / down": f"{int((dice_after > dice_before).sum())} / {int((dice_after < dice_before).sum())}"}
            row.update({f"rebuilt {c}": f"{replaced[part[c].to_numpy(bool)].mean():.3f} (n {int(part[c].sum())})"
                        for c in CLASSES})
            row["seconds"] = round(time.perf_counter() - start)
            rows.append(row)
            print(pd.DataFrame([row]).T.to_string(header=False), flush=True)
    text = pd.DataFrame(rows).T.to_markdown(floatfmt=".3f")
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
