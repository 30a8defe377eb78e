"""Evaluation of the detectors against the defects injected in a synthetic cohort.

The simulator records, per frame, the defect it injected (``truth/frames.tsv``: ``defect``
kind or ``none``, ``defect_spike`` flag). :func:`detection_rates` measures how often a
detector (:mod:`echolatent.temporal.detection`: the TMI 2022 deviation or the spike search)
flags the frames of each class. The classes are the same for both detectors, so their rates
compare: a frame's TMI 2022 deviation involves its two neighbours (for the end frames, the
neighbours of the cycle's end rule: periodic on a full cycle, the inner frame on a half
cycle, see :mod:`echolatent.temporal.metric`), and frames are classed by that window:

``spike``            frames carrying an injected spike (what must be flagged), split by
                     position and by kind:
``spike_single``     ... with no spiked frame next to them (a single-frame spike);
``spike_pair``       ... with a spiked frame next to them (``t - 1`` or ``t + 1``): a defect of
                     two (or more) consecutive frames, each deviating by about half a spike;
``spike_interior``   ... not the first or last frame of the sequence;
``spike_end``        ... the first or last frame (the reference metric, ``cycle=None``,
                     never flags them: ``d = 0`` there);
``spike_neighbour``  the frames whose deviation involves a spike, without a spike of their own
                     (the metric's definition flags them too when the spike is large: they
                     deviate by about half of it);
``clean_window``     frames whose window (itself and the frames of its deviation) holds no
                     injected defect: nothing to detect there, every flag is a false positive;
``clean_end``        the clean-window frames that are a first or last frame (false positives
                     of the end rule);
``no_defect``        frames without a defect of their own (a neighbour may have one);
``all``              every frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from echolatent.temporal.metric import neighbour_frames
from echolatent.temporal.thresholds import sequence_curves

__all__ = ["FRAME_CLASSES", "FRAMES_COLUMNS", "end_thresholds", "injected_defects", "read_frames_table", "defects_of",
           "frame_classes", "detection_rates", "class_counts", "rates_from_counts"]

KEY = ["patient_id", "view", "frame"]

#: Rows of :func:`detection_rates` (the ``frames`` column of ``detection.tsv``), in order.
FRAME_CLASSES = ("spike", "spike_single", "spike_pair", "spike_interior", "spike_end", "spike_neighbour",
                 "clean_window", "clean_end", "no_defect", "all")


def end_thresholds(thresholds: pd.DataFrame):
    """The ``tau_end`` column of a thresholds table (NaN rows: ``tau``), or None without one."""
    if "tau_end" not in thresholds.columns:
        return None
    end = pd.to_numeric(thresholds["tau_end"], errors="coerce").to_numpy(float)
    return None if np.isnan(end).all() else np.where(np.isnan(end), thresholds["tau"].to_numpy(float), end)


#: The columns of the simulator's ``frames.tsv`` the defects are read from (``is_ed`` and
#: ``in_half`` for half cycles only; the table has ~45 per frame).
FRAMES_COLUMNS = ("patient_id", "view", "frame", "defect", "defect_spike", "is_ed", "in_half")
_REQUIRED_FRAMES_COLUMNS = ("patient_id", "view", "frame", "defect", "defect_spike")
#: Rows of ``frames.tsv`` parsed at a time by :func:`read_frames_table` (~6 MB as Python objects).
FRAMES_CHUNK_ROWS = 100_000


def injected_defects(frames: pd.DataFrame | str, *, cycle: str = "full") -> pd.DataFrame:
    """Per ingested frame, the injected defect: ``patient_id, view, frame, defect, spike, defective``.

    ``frames`` is the simulator's ``truth/frames.tsv`` (full-cycle frame indices). For a
    cohort ingested as half cycles (frames ED..ES), frame ``i`` is the full-cycle frame
    ``ED + i``, and the frames after ES are left out. A table from :func:`read_frames_table`
    keeps its compact dtypes (categorical ids; :func:`defects_of` gives plain ones).
    """
    if not isinstance(frames, pd.DataFrame):
        frames = read_frames_table(frames, compact=False)
    table = frames[["patient_id", "view", "frame", "defect", "defect_spike"]].copy()
    if cycle == "half":
        ed = frames.loc[frames["is_ed"].astype(int) == 1].groupby(["patient_id", "view"], observed=True)["frame"].min()
        table = table.join(ed.rename("ed"), on=["patient_id", "view"])
        table["frame"] = table["frame"] - table["ed"]
        keep = table["frame"] >= 0
        if "in_half" in frames.columns:
            keep &= frames["in_half"].astype(int).to_numpy() == 1
        table = table[keep].drop(columns="ed")
    if not isinstance(table["defect"].dtype, pd.CategoricalDtype):  # (compact tables: done while read)
        table["defect"] = table["defect"].replace("", "none").fillna("none")
    table["spike"] = table.pop("defect_spike").astype(int) == 1
    table["defective"] = (table["defect"] != "none").to_numpy()
    return table.reset_index(drop=True)


def read_frames_table(path, *, patients=None, compact: bool = True, chunksize: int | None = None) -> pd.DataFrame:
    """The columns of the simulator's ``frames.tsv`` the defects need (:data:`FRAMES_COLUMNS`).

    ``compact``: read in chunks into categorical ids and defects and small integers, about 12
    bytes per frame instead of ~150 as Python strings (400,000 frames at 10,000 patients), with
    empty defects read as ``none``; ``patients``: only these patients' frames; ``chunksize``:
    rows parsed at a time (default :data:`FRAMES_CHUNK_ROWS`).
    """
    reader = pd.read_csv(path, sep="\t", dtype={"patient_id": str, "view": str, "defect": str},
                         keep_default_na=False, usecols=lambda column: column in FRAMES_COLUMNS,
                         chunksize=(chunksize or FRAMES_CHUNK_ROWS) if compact else None)
    chunks = reader if compact else [reader]
    parts = []
    for chunk in chunks:
        missing = [c for c in _REQUIRED_FRAMES_COLUMNS if c not in chunk.columns]
        if missing:
            raise ValueError(f"{path}: the frames table lacks column(s) {missing}")
        if patients is not None:
            chunk = chunk[chunk["patient_id"].isin(patients)]
        if compact:
            chunk = chunk.assign(defect=chunk["defect"].replace("", "none"))
            chunk = chunk.astype({"patient_id": "category", "view": "category", "defect": "category",
                                  "frame": np.int32, "defect_spike": np.int8,
                                  **{c: np.int8 for c in ("is_ed", "in_half") if c in chunk.columns}})
        parts.append(chunk)
    if not parts:                                        # a header without rows
        return pd.read_csv(path, sep="\t", nrows=0, usecols=lambda column: column in FRAMES_COLUMNS)
    if not compact or len(parts) == 1:
        return parts[0].reset_index(drop=True)
    columns = {}
    for column in parts[0].columns:
        if isinstance(parts[0][column].dtype, pd.CategoricalDtype):
            columns[column] = pd.api.types.union_categoricals([part[column] for part in parts])
        else:
            columns[column] = np.concatenate([part[column].to_numpy() for part in parts])
    return pd.DataFrame(columns)


def defects_of(defects: pd.DataFrame, patients) -> pd.DataFrame:
    """The rows of :func:`injected_defects` for ``patients``, with plain dtypes (string ids, int64 frames)."""
    rows = defects[defects["patient_id"].isin(list(patients))]
    plain = {c: str for c in ("patient_id", "view", "defect") if isinstance(rows[c].dtype, pd.CategoricalDtype)}
    return rows.astype({**plain, "frame": np.int64}).reset_index(drop=True)


def frame_classes(defects: pd.DataFrame, *, cycle=None) -> pd.DataFrame:
    """Add the frame classes of the module docstring (boolean columns) and ``end``.

    ``cycle`` ({"full", "half", None}) sets which frames a frame's deviation involves (the
    end-frame rule of :func:`~echolatent.temporal.metric.consistency_deviation`): with
    ``"full"`` a defect on frame ``T - 2`` or 1 is in the window of frame 0, for instance.
    The frames of each sequence must be ``0 .. T - 1``.
    """
    defects = defects.sort_values(KEY).reset_index(drop=True)
    out = defects.copy()
    for column in ("end", "spike_single", "spike_pair", "spike_interior", "spike_end", "spike_neighbour",
                   "clean_window", "clean_end"):
        out[column] = False
    for _, index in defects.groupby(["patient_id", "view"], sort=False).groups.items():
        index = np.asarray(index)
        spike = defects.loc[index, "spike"].to_numpy(bool)
        bad = defects.loc[index, "defective"].to_numpy(bool)
        T = len(index)
        if not np.array_equal(defects.loc[index, "frame"].to_numpy(), np.arange(T)):
            raise ValueError("frame_classes needs the frames 0..T-1 of every sequence")
        near = neighbour_frames(T, cycle)                      # frames whose deviations involve each other
        near_spike = (near & spike[None, :]).any(axis=1)
        window = bad | (near & bad[None, :]).any(axis=1)
        end = np.zeros(T, bool)
        end[[0, T - 1]] = True
        paired = np.zeros(T, bool)                             # a spiked frame next to it, in time
        paired[1:] |= spike[:-1]
        paired[:-1] |= spike[1:]
        out.loc[index, "end"] = end
        out.loc[index, "spike_single"] = spike & ~paired
        out.loc[index, "spike_pair"] = spike & paired
        out.loc[index, "spike_interior"] = spike & ~end
        out.loc[index, "spike_end"] = spike & end
        out.loc[index, "spike_neighbour"] = near_spike & ~spike
        out.loc[index, "clean_window"] = ~window
        out.loc[index, "clean_end"] = ~window & end
    out["no_defect"] = ~out["defective"]
    return out


def detection_rates(attributes: pd.DataFrame, defects: pd.DataFrame, thresholds: pd.DataFrame, *,
                    margin: float = 0.0, cycle=None, detector: str = "deviation") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fraction of frames a detector flags, per frame class, overall and per attribute.

    Parameters
    ----------
    attributes : DataFrame
        Per-frame shape attributes of the evaluated masks (``patient_id, view, frame`` and
        the attribute columns of ``thresholds``).
    defects : DataFrame
        :func:`injected_defects` of the same cohort.
    thresholds : DataFrame
        Image-space rows of a thresholds table (derived with the same ``cycle``); its optional
        ``tau_end`` column holds the thresholds of the first and last frames (NaN: ``tau``).
    margin : float
        Thresholds are scaled by ``1 + margin``.
    cycle : {"full", "half", None}
        The cohort's cycle: end-frame rule of the metric (:mod:`echolatent.temporal.metric`);
        None is the reference (``d = 0`` at the first and last frames).
    detector : {"deviation", "spikes", "auto"}
        Which frames are inconsistent (:mod:`echolatent.temporal.detection`): the TMI 2022
        deviation (default here: the paper's metric), the spike search (needs the stencil
        thresholds of a derived table), or ``auto`` (spikes for full cycles).

    Returns
    -------
    rates : DataFrame
        One row per frame class (:data:`FRAME_CLASSES`: ``spike``, ``spike_single``,
        ``spike_pair``, ``spike_interior``, ``spike_end``, ``spike_neighbour``,
        ``clean_window``, ``clean_end``, ``no_defect``, ``all``): ``n_frames``, ``flagged``
        (any attribute) and ``flagged_{attr}``.
    frames : DataFrame
        Per frame: the classes, ``flagged`` and the deviation-to-threshold ratio per attribute.
    """
    from echolatent.temporal.detection import Detector, resolve_detector

    names = thresholds["name"].tolist()
    check = Detector.from_table(thresholds, resolve_detector(detector, cycle), margin).check
    keys, curves = sequence_curves(attributes, names)
    ordered = attributes.sort_values(KEY, kind="stable")[KEY].reset_index(drop=True)
    ratio, flagged = [None] * len(curves), [None] * len(curves)
    lengths = np.array([len(c) for c in curves])
    for length in np.unique(lengths):            # sequences of one length are checked together
        members = np.flatnonzero(lengths == length)
        result = check(np.stack([curves[i] for i in members]), cycle)
        for j, i in enumerate(members):
            ratio[i], flagged[i] = result["error_to_threshold"][j], result["inconsistent"][j]
    frames = pd.concat([ordered, pd.DataFrame(np.concatenate(flagged), columns=[f"flagged_{n}" for n in names]),
                        pd.DataFrame(np.concatenate(ratio), columns=[f"ratio_{n}" for n in names])], axis=1)
    frames["flagged"] = frames[[f"flagged_{n}" for n in names]].any(axis=1)
    classes = frame_classes(defects, cycle=cycle)
    frames = frames.merge(classes, on=KEY, how="left", validate="one_to_one")
    if frames["defect"].isna().any():
        missing = frames.loc[frames["defect"].isna(), KEY].head(3).to_dict("records")
        raise ValueError(f"frames without a defect record, e.g. {missing}")
    return rates_from_counts(class_counts(frames, names)), frames


def class_counts(frames: pd.DataFrame, names) -> pd.DataFrame:
    """Per frame class (:data:`FRAME_CLASSES`), the number of frames and of flagged ones.

    ``frames`` is the second table of :func:`detection_rates`. Counts of disjoint sets of
    sequences add up, so the rates of a cohort can be gathered shard by shard
    (:func:`rates_from_counts` of the summed counts).
    """
    flags = ["flagged", *(f"flagged_{n}" for n in names)]
    rows = []
    for name in FRAME_CLASSES:
        members = frames if name == "all" else frames[frames[name].astype(bool)]
        rows.append({"frames": name, "n_frames": len(members),
                     **{flag: int(np.count_nonzero(members[flag].to_numpy(bool))) for flag in flags}})
    return pd.DataFrame(rows)


def rates_from_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """The rates table of :func:`detection_rates` from (summed) :func:`class_counts`: flagged
    frames over frames per class, NaN for a class without frames (the mean of the flags)."""
    rates = counts.copy()
    n = counts["n_frames"].to_numpy()
    for flag in [column for column in counts.columns if column.startswith("flagged")]:
        with np.errstate(invalid="ignore", divide="ignore"):
            rates[flag] = np.where(n > 0, counts[flag].to_numpy(float) / np.maximum(n, 1), np.nan)
    return rates
