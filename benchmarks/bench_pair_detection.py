"""Detection of single, end-frame and two-frame spikes: the TMI 2022 deviation vs the spike search (issue 12).

    python benchmarks/bench_pair_detection.py --results RUN/results [--cycle full|half] [--splits train,val]
        [--out table.md]

Reads a finished synthetic-cohort run (``results/attributes/input``, ``results/cohort``;
:class:`recorded_run.RecordedRun`) and derives the image-space thresholds as the workflow does
(train split, physical units, :func:`echolatent.stages.temporal.image_thresholds_stage`) from
two references:

``observed``  the ingested masks without the simulator's injected-defect frames, max rule
              (``reference: auto`` on a synthetic cohort; it uses the truth);
``input``     the ingested masks as they are, robust rule (``reference: input``, ``rule: auto``:
              truth-free, what a user without annotations gets).

For each, the share of frames flagged per split and frame class
(:func:`echolatent.temporal.evaluation.frame_classes`) by the two detectors of
``temporal.thresholds.detector`` (:mod:`echolatent.temporal.detection`):

``deviation``  the TMI 2022 three-point deviation with periodic (full) or mirrored (half) end
               frames and end thresholds: the detector before issue 12's pair work;
``spikes``     the search (with look-ahead) over the single-frame stencil ``s5``, the pair
               stencil ``p6`` and, on full cycles, the three-frame stencil ``t7``, all exact on
               quadratics, the attributes' readings mixed with ``observed`` (max rule) on full
               cycles (the default for full cycles).

``--cycle half`` cuts the half cycles (ED -> ES, the frames the simulator marks ``in_half``)
out of the recorded full cycles, i.e. what ingesting the same cohort with ``cohort.cycle:
half`` gives, and measures both detectors with the half-cycle end rule.

Thresholds come from the train split only; the val rows may guide a choice, the test rows
are held out (``--splits train,val`` leaves them out of the table while choosing).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from echolatent.stages.temporal import image_thresholds_stage
from echolatent.temporal.evaluation import detection_rates, injected_defects
from recorded_run import RecordedRun

CLASSES = ("spike_single", "spike_pair", "spike_end", "spike_neighbour", "clean_window", "clean_end")
REFERENCES = {"observed": dict(reference="observed", rule="max"), "input": dict(reference="input", rule="robust")}
DETECTORS = ("deviation", "spikes")


def half_cycles(run: RecordedRun) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Attributes and injected defects of the half cycles of a full-cycle run, frames from ED = 0."""
    frames = pd.read_csv(run.frames, sep="\t", dtype={"patient_id": str, "view": str})
    ed = frames[frames["is_ed"] == 1].groupby(["patient_id", "view"])["frame"].min().rename("ed")
    kept = frames.loc[frames["in_half"] == 1, ["patient_id", "view", "frame"]]
    attributes = run.attributes.merge(kept, on=["patient_id", "view", "frame"]).join(ed, on=["patient_id", "view"])
    attributes["frame"] = attributes["frame"] - attributes.pop("ed")
    attributes = attributes[attributes["frame"] >= 0]
    whole = attributes.groupby(["patient_id", "view"])["frame"].transform(lambda f: f.max() + 1 == len(f))
    attributes = attributes[whole.astype(bool)].reset_index(drop=True)
    defects = injected_defects(run.frames, cycle="half").merge(attributes[["patient_id", "view", "frame"]],
                                                               on=["patient_id", "view", "frame"])
    return attributes, defects


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, type=Path)
    parser.add_argument("--cycle", choices=("full", "half"), default="full")
    parser.add_argument("--splits", default="train,val,test",
                        help="comma-separated splits to report (default: train,val,test)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    run = RecordedRun.read(args.results)
    attributes, defects, tables = run.attributes, run.defects, run.tables
    scratch = tempfile.TemporaryDirectory()
    if args.cycle == "half":
        attributes, defects = half_cycles(run)
        tables = [Path(scratch.name) / "half.parquet"]
        attributes.to_parquet(tables[0])
    flagged, seconds = {}, {}
    for reference, options in REFERENCES.items():
        thresholds = image_thresholds_stage(tables, run.patients, splits=["train"], names=run.names, frames=run.frames,
                                            cycle=args.cycle, **options)
        for detector in DETECTORS:
            start = time.perf_counter()
            _, per_frame = detection_rates(attributes, defects, thresholds, cycle=args.cycle, detector=detector)
            seconds[reference, detector] = time.perf_counter() - start
            flagged[reference, detector] = per_frame.set_index(["patient_id", "view", "frame"])["flagged"]
    per_frame = per_frame.merge(run.patients[["patient_id", "split"]], on="patient_id", validate="many_to_one")
    per_frame = per_frame.set_index(["patient_id", "view", "frame"])
    rows = []
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    unknown = sorted(set(splits) - {"train", "val", "test"})
    if unknown:
        parser.error(f"unknown split(s) {unknown}")
    for split in splits:
        part = per_frame[per_frame["split"] == split]
        for cls in CLASSES:
            members = part[part[cls].astype(bool)].index
            row = {"split": split, "frames": cls, "n": len(members)}
            row.update({f"{r}: {d}": flagged[r, d].loc[members].mean() for r in REFERENCES for d in DETECTORS})
            rows.append(row)
    text = pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f")
    text += "\n\nseconds per detection_rates call (all splits): " + ", ".join(
        f"{r}/{d} {s:.2f}" for (r, d), s in seconds.items())
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
