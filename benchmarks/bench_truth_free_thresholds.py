"""Truth-free thresholds: the max rule vs the robust rule on a finished run (issue 12, item 3).

    python benchmarks/bench_truth_free_thresholds.py --results RUN/results [--k 3 3.5 4 5]

Derives the image-space thresholds from the train split's ingested masks as they are
(``reference: input``: nothing from ``truth/`` is used) with the max rule and with the robust
rule for each ``k`` (:func:`echolatent.temporal.thresholds.derive_thresholds_table`), next to the
``observed`` reference (defect frames removed with the simulator's truth: a stand-in for
annotations). Detection is then measured per split on the simulator's injected defects
(:func:`echolatent.temporal.evaluation.detection_rates`): spikes by position and the share of
clean-window frames flagged (false alarms). ``k`` may be chosen on the val rows only; the test
rows are held out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from echolatent.stages.temporal import image_thresholds_stage
from echolatent.temporal.evaluation import detection_rates
from recorded_run import RecordedRun

CLASSES = ("spike_single", "spike_pair", "spike_end", "clean_window")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, type=Path)
    parser.add_argument("--k", type=float, nargs="+", default=[3.0, 3.5, 4.0, 5.0])
    args = parser.parse_args(argv)
    run = RecordedRun.read(args.results)
    variants = {"observed, max (uses the truth)": dict(reference="observed", frames=run.frames, rule="max"),
                "input, max": dict(reference="input", rule="max")}
    variants.update({f"input, robust k={k:g}": dict(reference="input", rule="robust", robust_k=k) for k in args.k})
    rows = []
    for label, options in variants.items():
        thresholds = image_thresholds_stage(run.tables, run.patients, splits=["train"], names=run.names, cycle="full",
                                            **options)
        _, per_frame = detection_rates(run.attributes, run.defects, thresholds, cycle="full")
        per_frame = per_frame.merge(run.patients[["patient_id", "split"]], on="patient_id", validate="many_to_one")
        for split in ("val", "test"):
            part = per_frame[per_frame["split"] == split]
            row = {"thresholds": label, "split": split}
            row.update({c: part.loc[part[c].astype(bool), "flagged"].mean() for c in CLASSES})
            row.update({f"n_{c}": int(part[c].sum()) for c in CLASSES})
            rows.append(row)
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
