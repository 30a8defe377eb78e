"""Reconstruction quality of a trained model: hard Dice per frame, and per split.

:func:`dice_scores` is the one hard Dice of label maps (training's validation, the latent
tables of the encoding stage, the correction's Dice to a synthetic truth).
:func:`reconstruction_quality` is evaluation: training selects the checkpoint on the
validation split only, this table is read from the latent tables of the encoding stage (one
row per frame, with the Dice of each frame's reconstruction against the encoded mask), per
split (the held-out figures are the test rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLIT_ORDER = ("train", "val", "test", "all")


def dice_scores(pred, target, labels=(1, 2, 3)) -> np.ndarray:
    """Hard Dice per frame and label, (N, len(labels)) float64; NaN where a label is in neither map.

    Dice = 2 |P & T| / (|P| + |T|) (average with ``np.nanmean``). ``pred`` and ``target`` are
    label maps (N, H, W), or single (H, W) maps, as arrays or CPU tensors; a single frame on
    one side (1, H, W) is compared with every frame of the other.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.ndim == 2:
        pred = pred[None]
    if target.ndim == 2:
        target = target[None]
    if pred.shape[1:] != target.shape[1:]:
        raise ValueError(f"shape mismatch: pred {pred.shape} vs target {target.shape}")
    pred = pred.reshape(len(pred), -1)
    target = target.reshape(len(target), -1)
    out = np.empty((len(pred), len(labels)))
    for j, label in enumerate(labels):
        p, t = pred == label, target == label
        denominator = p.sum(1) + t.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where(denominator > 0, 2.0 * (p & t).sum(1) / denominator, np.nan)
    return out


def dice_per_class(pred, target, n_classes: int) -> np.ndarray:
    """:func:`dice_scores` of every class, background included: (N, n_classes), column = label."""
    return dice_scores(pred, target, range(n_classes))


def with_split(table: pd.DataFrame, patients: pd.DataFrame | str) -> pd.DataFrame:
    """``table`` with the ``split`` of each row's patient (from ``patients.tsv``) as a column.

    Raises
    ------
    ValueError
        If a patient of ``table`` has no split (the tables come from another cohort).
    """
    if not isinstance(patients, pd.DataFrame):
        patients = pd.read_csv(patients, sep="\t", dtype={"patient_id": str})
    split = patients.set_index("patient_id")["split"]
    out = table.drop(columns=["split"], errors="ignore").copy()
    out["split"] = out["patient_id"].astype(str).map(split)
    if out["split"].isna().any():
        missing = out.loc[out["split"].isna(), "patient_id"].iloc[0]
        raise ValueError(f"patient {missing!r} is not in the cohort's patients table")
    return out


def reconstruction_quality(latents: pd.DataFrame, patients: pd.DataFrame | str, *, model: str | None = None) -> pd.DataFrame:
    """Mean reconstruction Dice per split, by frame and by patient.

    Parameters
    ----------
    latents : DataFrame
        Latent tables (``results/latents/{model}/shard-*.parquet``): ``patient_id``, ``view``,
        ``frame`` and ``dice_*`` columns.
    patients : DataFrame or path
        ``results/cohort/patients.tsv``.
    model : str, optional
        The model's name, written in a leading ``model`` column (a study compares models).

    Returns
    -------
    DataFrame
        One row per split (``train``, ``val``, ``test``, then ``all``): ``n_patients``,
        ``n_sequences``, ``n_frames``, the frame-averaged ``dice_{class}`` and ``dice_mean``,
        and ``dice_mean_by_patient`` (the mean of per-patient means: the patient is the unit).
    """
    table = with_split(latents, patients)
    dice = [c for c in table.columns if c.startswith("dice_")]
    rows = []
    for split in SPLIT_ORDER:
        part = table if split == "all" else table[table["split"] == split]
        row = {"split": split, "n_patients": part["patient_id"].nunique(),
               "n_sequences": len(part[["patient_id", "view"]].drop_duplicates()), "n_frames": len(part)}
        row.update({c: float(part[c].mean()) if len(part) else np.nan for c in dice})
        row["dice_mean_by_patient"] = float(part.groupby("patient_id")["dice_mean"].mean().mean()) \
            if len(part) else np.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    if model is not None:
        out.insert(0, "model", model)
    return out


def study_quality(tables) -> pd.DataFrame:
    """The models of a study side by side: the per-model quality tables (with their ``model``
    column, :func:`reconstruction_quality`) stacked, one row per model and split."""
    frames = [pd.read_csv(t, sep="\t") if not isinstance(t, pd.DataFrame) else t for t in tables]
    if not frames:
        raise ValueError("no model quality tables to compare")
    missing = [str(t) for t, f in zip(tables, frames) if "model" not in f.columns]
    if missing:
        raise ValueError(f"quality table(s) without a model column: {missing}")
    return pd.concat(frames, ignore_index=True)
