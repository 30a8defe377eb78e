"""Evaluation of the temporal metric against the defects injected in a synthetic cohort.

The simulator records, per frame, the defect it injected (``truth/frames.tsv``: ``defect``
kind or ``none``, ``defect_spike`` flag). A frame's deviation involves its two neighbours,
so frames are classed by their 3-frame window:

``spike``         frames carrying an injected single-frame spike (what must be flagged);
``spike_neighbour``  the frames next to a spike (the metric's definition flags them too when
                  the spike is large: they deviate by about half of it);
``clean_window``  frames whose window (itself and both neighbours) holds no injected defect:
                  nothing to detect there, every flag is a false positive;
``no_defect``     frames without a defect of their own (a neighbour may have one).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from echolatent.temporal.metric import temporal_consistency
from echolatent.temporal.thresholds import sequence_curves

__all__ = ["injected_defects", "frame_classes", "detection_rates"]

KEY = ["patient_id", "view", "frame"]


def injected_defects(frames: pd.DataFrame | str, *, cycle: str = "full") -> pd.DataFrame:
    """Per ingested frame, the injected defect: ``patient_id, view, frame, defect, spike, defective``.

    ``frames`` is the simulator's ``truth/frames.tsv`` (full-cycle frame indices). For a
    cohort ingested as half cycles (frames ED..ES), frame ``i`` is the full-cycle frame
    ``ED + i``.
    """
    if not isinstance(frames, pd.DataFrame):
        frames = pd.read_csv(frames, sep="\t", dtype={"patient_id": str, "view": str, "defect": str},
                             keep_default_na=False)
    table = frames[["patient_id", "view", "frame", "defect", "defect_spike"]].copy()
    if cycle == "half":
        ed = frames.loc[frames["is_ed"].astype(int) == 1].groupby(["patient_id", "view"])["frame"].min()
        table = table.join(ed.rename("ed"), on=["patient_id", "view"])
        table["frame"] = table["frame"] - table["ed"]
        table = table[table["frame"] >= 0].drop(columns="ed")
    table["defect"] = table["defect"].replace("", "none").fillna("none")
    table["spike"] = table.pop("defect_spike").astype(int) == 1
    table["defective"] = table["defect"] != "none"
    return table.reset_index(drop=True)


def frame_classes(defects: pd.DataFrame) -> pd.DataFrame:
    """Add ``spike_neighbour``, ``clean_window`` and ``no_defect`` (see the module docstring)."""
    defects = defects.sort_values(KEY).reset_index(drop=True)
    out = defects.copy()
    for column in ("spike_neighbour", "clean_window"):
        out[column] = False
    for _, index in defects.groupby(["patient_id", "view"], sort=False).groups.items():
        index = np.asarray(index)
        spike = defects.loc[index, "spike"].to_numpy()
        bad = defects.loc[index, "defective"].to_numpy()
        near_spike = np.zeros_like(spike)
        near_spike[1:] |= spike[:-1]
        near_spike[:-1] |= spike[1:]
        window = bad.copy()
        window[1:] |= bad[:-1]
        window[:-1] |= bad[1:]
        out.loc[index, "spike_neighbour"] = near_spike & ~spike
        out.loc[index, "clean_window"] = ~window
    out["no_defect"] = ~out["defective"]
    return out


def detection_rates(attributes: pd.DataFrame, defects: pd.DataFrame, thresholds: pd.DataFrame, *,
                    margin: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fraction of frames the metric flags, per frame class, overall and per attribute.

    Parameters
    ----------
    attributes : DataFrame
        Per-frame shape attributes of the evaluated masks (``patient_id, view, frame`` and
        the attribute columns of ``thresholds``).
    defects : DataFrame
        :func:`injected_defects` of the same cohort.
    thresholds : DataFrame
        Image-space rows of a thresholds table.

    Returns
    -------
    rates : DataFrame
        One row per frame class (``spike``, ``spike_neighbour``, ``clean_window``,
        ``no_defect``, ``all``): ``n_frames``, ``flagged`` (any attribute) and
        ``flagged_{attr}``.
    frames : DataFrame
        Per frame: the classes, ``flagged`` and the deviation-to-threshold ratio per attribute.
    """
    names = thresholds["name"].tolist()
    lo, hi, tau = (thresholds[c].to_numpy(float) for c in ("lo", "hi", "tau"))
    keys, curves = sequence_curves(attributes, names)
    ordered = attributes.sort_values(KEY, kind="stable")[KEY].reset_index(drop=True)
    ratio, flagged = [], []
    for curve in curves:
        check = temporal_consistency(curve, lo, hi, tau, margin=margin)
        ratio.append(check["error_to_threshold"])
        flagged.append(check["inconsistent"])
    frames = pd.concat([ordered, pd.DataFrame(np.concatenate(flagged), columns=[f"flagged_{n}" for n in names]),
                        pd.DataFrame(np.concatenate(ratio), columns=[f"ratio_{n}" for n in names])], axis=1)
    frames["flagged"] = frames[[f"flagged_{n}" for n in names]].any(axis=1)
    classes = frame_classes(defects)
    frames = frames.merge(classes, on=KEY, how="left", validate="one_to_one")
    if frames["defect"].isna().any():
        missing = frames.loc[frames["defect"].isna(), KEY].head(3).to_dict("records")
        raise ValueError(f"frames without a defect record, e.g. {missing}")
    rows = []
    for name in ("spike", "spike_neighbour", "clean_window", "no_defect", "all"):
        members = frames if name == "all" else frames[frames[name].astype(bool)]
        row = {"frames": name, "n_frames": len(members), "flagged": float(members["flagged"].mean())
               if len(members) else np.nan}
        row.update({f"flagged_{n}": float(members[f"flagged_{n}"].mean()) if len(members) else np.nan
                    for n in names})
        rows.append(row)
    return pd.DataFrame(rows), frames
