"""How far can a detector see two-frame spikes? Candidate detectors on a finished run (issue 12).

    python benchmarks/bench_pair_detection.py --results RUN/results [--out table.md]

Reads a finished synthetic-cohort run (``results/attributes/input``, ``results/cohort``):
derives the image-space thresholds as the workflow does (``observed`` reference, train split,
physical units, full cycle) and measures, per split, the share of frames flagged by class
(:func:`echolatent.temporal.evaluation.frame_classes`) for:

``workflow``   the workflow's detector: the TMI 2022 three-point deviation with periodic end
               frames and end thresholds (:func:`echolatent.temporal.evaluation.detection_rates`).
``s3+p4``      greedy "clean" search over two stencils, a single frame ``s3`` (the TMI 2022
               deviation) and a pair ``p4 = (a_t + a_{t+1}) / 2 - (a_{t-1} + a_{t+2}) / 2``.
``s5+p6``      the same with stencils exact on quadratics, wider by one frame on each side:
               ``s5 = a_t - 2/3 (a_{t-1} + a_{t+1}) + 1/6 (a_{t-2} + a_{t+2})`` and
               ``p6 = (a_t + a_{t+1}) / 2 - 3/4 (a_{t-1} + a_{t+2}) + 1/4 (a_{t-2} + a_{t+3})``.

Each stencil answers a spike (or a pair of same-size spikes) of height ``h`` with ``h``; the
three-point deviation answers a pair with ``h / 2`` only. Each stencil's threshold is the
largest ``|stat|`` over the train split's windows that hold no injected defect (the workflow's
rule). The greedy search repeatedly takes the window whose largest ratio ``|stat| / tau`` over
the attributes is highest, flags its frames, removes its estimated defect (subtracts the
statistic from those frames) and stops when no ratio exceeds 1. Full cycles are closed: the
neighbours wrap with period ``T - 1`` (:mod:`echolatent.temporal.metric`).

These candidates are *not* the workflow's detector; the figures say what a pair-aware
detector would buy before it is wired into detection and repair.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from echolatent.stages.temporal import image_thresholds_stage
from echolatent.temporal.evaluation import detection_rates
from echolatent.temporal.thresholds import sequence_curves
from recorded_run import RecordedRun

#: stencil name -> (offsets, weights); a stencil of width w starts at frame t and covers t..t+w-1
STENCILS = {
    "s3": ((0, -1, 1), (1.0, -0.5, -0.5)),
    "p4": ((0, 1, -1, 2), (0.5, 0.5, -0.5, -0.5)),
    "s5": ((0, -1, 1, -2, 2), (1.0, -2 / 3, -2 / 3, 1 / 6, 1 / 6)),
    "p6": ((0, 1, -1, 2, -2, 3), (0.5, 0.5, -0.75, -0.75, 0.25, 0.25)),
}
WIDTH = {"s3": 1, "s5": 1, "p4": 2, "p6": 2}
DETECTORS = {"s3+p4": ("s3", "p4"), "s5+p6": ("s5", "p6")}
CLASSES = ("spike_single", "spike_pair", "spike_end", "spike_neighbour", "clean_window")


def closed_index(T: int, offsets, w: int) -> np.ndarray:
    """(T - w + 1, len(offsets)) frame index of each window start and offset, closed cycle."""
    index = np.arange(T - w + 1)[:, None] + np.asarray(offsets)[None, :]
    # frame T - 1 is frame 0 one beat later: neighbours past either end wrap by T - 1
    index = np.where(index > T - 1, index - (T - 1), index)
    return np.where(index < 0, index + (T - 1), index)


def statistic(a: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Stencil values (windows, K) of normalised curves ``a`` (T, K) and the windows' frames."""
    offsets, weights = STENCILS[name]
    index = closed_index(len(a), offsets, WIDTH[name])
    # the pair windows cover (t, t + 1) in acquisition order: never the wrap (T - 1, 0)
    return np.einsum("wo,wok->wk", np.broadcast_to(weights, index.shape), a[index]), index


def greedy_flags(a: np.ndarray, stencils, tau: dict) -> np.ndarray:
    a = a.copy()
    flagged = np.zeros(len(a), bool)
    for _ in range(len(a)):
        best = (1.0, None, None)
        for name in stencils:
            value, index = statistic(a, name)
            ratio = np.nan_to_num(np.abs(value) / tau[name]).max(axis=1)
            t = int(ratio.argmax())
            if ratio[t] > best[0]:
                best = (ratio[t], name, (t, value[t], index[t]))
        if best[1] is None:
            return flagged
        name, (t, value, index) = best[1], best[2]
        frames = index[:WIDTH[name]]        # offsets start with the window's own frames
        flagged[frames] = True
        a[frames] -= value
    return flagged


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    run = RecordedRun.read(args.results)
    names, attributes = run.names, run.attributes
    thresholds = image_thresholds_stage(run.tables, run.patients, reference="observed", splits=["train"],
                                        names=names, frames=run.frames, cycle="full")
    _, per_frame = detection_rates(attributes, run.defects, thresholds, cycle="full")
    per_frame = per_frame.merge(run.patients[["patient_id", "split"]], on="patient_id", validate="many_to_one")
    per_frame = per_frame.rename(columns={"flagged": "workflow"}).sort_values(["patient_id", "view", "frame"])

    lo, hi = thresholds["lo"].to_numpy(float), thresholds["hi"].to_numpy(float)
    keys, curves = sequence_curves(attributes, names)
    normalised = [(c - lo) / (hi - lo) for c in curves]
    grouped = {k: g for k, g in per_frame.groupby(["patient_id", "view"], sort=True)}
    tau = {}
    for name in STENCILS:   # largest |stat| over the train split's defect-free windows
        peaks = []
        for key, a in zip(keys, normalised):
            g = grouped[key]
            if g["split"].iloc[0] != "train":
                continue
            value, index = statistic(a, name)
            clean = ~g["defective"].to_numpy(bool)[index].any(axis=1)
            peaks.append(np.abs(value[clean]))
        tau[name] = np.nanmax(np.concatenate(peaks), axis=0)
    for detector, stencils in DETECTORS.items():
        per_frame[detector] = np.concatenate([greedy_flags(a, stencils, tau) for a in normalised])

    rows = []
    for split in ("train", "val", "test"):
        g = per_frame[per_frame["split"] == split]
        for cls in CLASSES:
            members = g[g[cls].astype(bool)]
            rows.append({"split": split, "frames": cls, "n": len(members),
                         **{d: members[d].mean() for d in ("workflow", *DETECTORS)}})
    table = pd.DataFrame(rows)
    text = table.to_markdown(index=False, floatfmt=".3f")
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
