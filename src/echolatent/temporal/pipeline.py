"""Latent encoding of cohort shards and temporal correction of their sequences.

Encoding (:func:`encode_shard`)
-------------------------------
Every frame of a shard is resized (nearest) from its native grid to the model input, LA
dropped for a model without an LA class, and encoded: posterior mean ``mu``, log-variance
and the argmax decoding of ``mu`` with its hard Dice to the encoded input. Outputs: a
per-frame table (``patient_id, view, frame, frame_pos, mu_0.., logvar_0.., dice_*``) and a
mask shard of the cohort layout holding the reconstructions.

Correction (:func:`correct_sequences`, :func:`correct_shard`), TMI 2022
-----------------------------------------------------------------------
1. pre-clean the native masks (:func:`echolatent.temporal.preclean.preclean`);
2. resize to the model grid (nearest) and encode ``mu``;
3. smooth the latent trajectories (:func:`~echolatent.temporal.smoothing.smooth_trajectories`):
   all dimensions with the snake weight, the attribute dimensions with the smallest weight
   that leaves no frame above its latent threshold;
4. decode, argmax, resize back to the native grid (nearest);
5. **labels the model does not know.** With a 3-class model (BG/LV/MYO, as in the
   reference) the LA is not corrected. ``atrium="keep"`` (default) puts the pre-cleaned
   input LA back on the pixels the corrected LV/MYO leave as background, so the output
   keeps the 4-label convention of the cohort and the anatomical criteria that involve the
   LA stay measurable; ``atrium="drop"`` leaves the LA out, as the reference does. A 4-class
   model corrects the LA like the other structures.

Optional, beyond the reference: ``scope="inconsistent"`` corrects only the sequences the
image-space metric flags (the others are written unchanged), and ``max_rounds > 1``
re-smooths the sequences whose decoded masks are still inconsistent in image space with
latent thresholds scaled by ``tighten`` per round.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from echolatent.attributes import TEMPORAL_ATTRIBUTES, shape_attributes
from echolatent.io.shards import iter_shard
from echolatent.resample import resize_masks_nearest
from echolatent.temporal.metric import temporal_consistency
from echolatent.temporal.preclean import BG, LA, preclean
from echolatent.temporal.smoothing import smooth_trajectories

__all__ = [
    "MASK_SHARD_FORMAT",
    "CorrectionConfig",
    "LatentConstraint",
    "knows_atrium",
    "model_input",
    "encode_mu",
    "decode_masks",
    "encode_shard",
    "correct_sequences",
    "correct_shard",
    "dice_scores",
]

MASK_SHARD_FORMAT = "echolatent-mask-shard"
CLASS_NAMES = ("bg", "lv", "myo", "la")


# --------------------------------------------------------------------------- configuration
@dataclass
class CorrectionConfig:
    """Parameters of the temporal correction (reference defaults)."""

    weight: float = 50.0            #: snake weight of the unconstrained dimensions
    max_weight: float = 128.0       #: upper end of the weight search of the constrained dims
    n_bisections: int = 5
    n_neighbours: int = 1
    margin: float = 0.0             #: thresholds scaled by 1 + margin (image and latent)
    atrium: str = "keep"            #: keep | drop (models without an LA class)
    scope: str = "all"              #: all | inconsistent (image-space metric on the input)
    max_rounds: int = 1             #: 1 = reference; more: re-smooth what is still inconsistent
    tighten: float = 0.5            #: latent thresholds scale per extra round
    batch_size: int = 256           #: frames per network call

    def __post_init__(self):
        if self.atrium not in ("keep", "drop"):
            raise ValueError(f"temporal atrium must be 'keep' or 'drop', got {self.atrium!r}")
        if self.scope not in ("all", "inconsistent"):
            raise ValueError(f"temporal scope must be 'all' or 'inconsistent', got {self.scope!r}")
        if self.max_rounds < 1 or not 0 < self.tighten <= 1:
            raise ValueError("need max_rounds >= 1 and 0 < tighten <= 1")
        if self.weight < 0 or self.max_weight <= 0 or self.n_bisections < 0 or self.n_neighbours < 1:
            raise ValueError("need weight >= 0, max_weight > 0, n_bisections >= 0, n_neighbours >= 1")

    @classmethod
    def from_dict(cls, data) -> "CorrectionConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown temporal correction key(s) {unknown}; allowed: {sorted(known)}")
        return cls(**dict(data))


@dataclass
class LatentConstraint:
    """Constrained latent dimensions with their normalisation bounds and thresholds."""

    dims: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    tau: np.ndarray

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> "LatentConstraint":
        """From the ``latent`` rows of a thresholds table (:mod:`echolatent.temporal.thresholds`)."""
        rows = table[table["space"] == "latent"].sort_values("dim")
        return cls(rows["dim"].to_numpy(int), rows["lo"].to_numpy(float), rows["hi"].to_numpy(float),
                   rows["tau"].to_numpy(float))


# --------------------------------------------------------------------------- network helpers
def knows_atrium(model) -> bool:
    """Whether the model has an LA class (4 classes) or not (BG/LV/MYO)."""
    return int(model.config.n_classes) > LA


def model_input(masks: np.ndarray, model, grid: int | None = None) -> np.ndarray:
    """Native label maps (T, H, W) -> model input (T, S, S): unknown labels to BG, nearest resize.

    With ``grid`` (the cohort's model grid, ``image_size``), the maps go through that grid
    first, exactly as the training frames did (cohort ``mask`` resized to the input size).
    """
    size = int(model.config.input_size)
    masks = np.asarray(masks)
    if not knows_atrium(model):
        masks = np.where(masks >= model.config.n_classes, BG, masks).astype(np.uint8)
    if grid is not None and masks.shape[-2:] != (grid, grid):
        masks = resize_masks_nearest(masks, (grid, grid))
    if masks.shape[-2:] != (size, size):
        masks = resize_masks_nearest(masks, (size, size))
    return np.ascontiguousarray(masks, dtype=np.uint8)


def _one_hot(masks: np.ndarray, n_classes: int, device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(masks)).to(device).long()
    return torch.nn.functional.one_hot(t, n_classes).permute(0, 3, 1, 2).float()


@torch.no_grad()
def encode_mu(model, masks: np.ndarray, *, batch_size: int = 256, device="cpu",
              with_logvar: bool = False):
    """Posterior means (N, D) float64 of model-grid label maps (and log-variances)."""
    was_training = model.training
    model.eval()
    mus, logvars = [], []
    try:
        for start in range(0, len(masks), batch_size):
            mu, logvar = model.encode(_one_hot(masks[start:start + batch_size], model.config.n_classes, device))
            mus.append(mu.double().cpu().numpy())
            logvars.append(logvar.double().cpu().numpy())
    finally:
        model.train(was_training)
    d = int(model.config.latent_dim)
    mu = np.concatenate(mus) if mus else np.zeros((0, d))
    logvar = np.concatenate(logvars) if logvars else np.zeros((0, d))
    return (mu, logvar) if with_logvar else mu


@torch.no_grad()
def decode_masks(model, z: np.ndarray, *, batch_size: int = 256, device="cpu") -> np.ndarray:
    """Argmax decoding (N, S, S) uint8 of latent codes (N, D)."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(z), batch_size):
            codes = torch.as_tensor(np.asarray(z[start:start + batch_size]), dtype=torch.float32, device=device)
            out.append(model.decode(codes).argmax(1).to(torch.uint8).cpu().numpy())
    finally:
        model.train(was_training)
    s = int(model.config.input_size)
    return np.concatenate(out) if out else np.zeros((0, s, s), np.uint8)


def dice_scores(pred: np.ndarray, target: np.ndarray, labels=(1, 2, 3)) -> np.ndarray:
    """Hard Dice per frame and label, (N, len(labels)); NaN where a label is in neither map."""
    pred = np.asarray(pred).reshape(len(pred), -1)
    target = np.asarray(target).reshape(len(target), -1)
    out = np.empty((len(pred), len(labels)))
    for j, label in enumerate(labels):
        p, t = pred == label, target == label
        denominator = p.sum(1) + t.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where(denominator > 0, 2.0 * (p & t).sum(1) / denominator, np.nan)
    return out


# --------------------------------------------------------------------------- mask shards
class _MaskShardWriter:
    """Writes a shard of the cohort layout (``mask``, ``mask_native``, ``frame_pos`` + attrs), atomically."""

    def __init__(self, path, *, source: str, model: str, image_size: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".tmp-{os.getpid()}-{self.path.name}")
        self.h5 = h5py.File(self.tmp, "w")
        self.h5.attrs.update({"format": MASK_SHARD_FORMAT, "version": 1, "source": source, "model": model,
                              "image_size": int(image_size)})

    def write(self, sequence, datasets: dict) -> None:
        group = self.h5.require_group(sequence.patient_id).create_group(sequence.view)
        for name, data in datasets.items():
            data = np.asarray(data)
            chunks = (1,) + data.shape[1:] if data.ndim == 3 else None
            group.create_dataset(name, data=data, chunks=chunks, compression="gzip" if chunks else None,
                                 compression_opts=1 if chunks else None)
        for key, value in sequence.attrs.items():
            group.attrs[key] = value

    def close(self, ok: bool) -> None:
        self.h5.close()
        if ok:
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()


def _shard_grid(shard) -> int | None:
    """The cohort's model grid (root attribute ``image_size``) of a shard, if recorded."""
    with h5py.File(shard, "r") as h5:
        size = h5.attrs.get("image_size")
    return None if size is None else int(size)


# --------------------------------------------------------------------------- encoding
def encode_shard(shard, model, *, out_table=None, out_h5=None, batch_size: int = 256, device="cpu",
                 model_name: str = "", log=None) -> pd.DataFrame:
    """Encode every frame of a cohort shard (one row per frame).

    Parameters
    ----------
    shard : path
        A cohort shard (``mask_native`` is read and resized to the model input).
    model : MaskVAE
    out_table : path, optional
        Per-frame table (``.parquet`` or ``.tsv``), written atomically.
    out_h5 : path, optional
        Mask shard with the reconstructions: ``mask`` (model grid), ``mask_native`` (back
        on the native grid, nearest), ``frame_pos`` and the group attributes of the cohort.

    Returns
    -------
    DataFrame
        ``patient_id, view, frame, frame_pos, mu_0..mu_{D-1}, logvar_0..logvar_{D-1}``,
        ``dice_lv, dice_myo[, dice_la]`` (reconstruction vs encoded input) and ``dice_mean``.
    """
    from echolatent.shape_tables import write_table

    n_classes, latent_dim = int(model.config.n_classes), int(model.config.latent_dim)
    labels = tuple(range(1, n_classes))
    writer = _MaskShardWriter(out_h5, source="reconstruction", model=model_name,
                              image_size=model.config.input_size) if out_h5 else None
    grid = _shard_grid(shard)
    tables, ok, started, n_frames = [], False, time.perf_counter(), 0
    try:
        for sequence in iter_shard(shard, ("mask_native", "frame_pos")):
            native = sequence.arrays["mask_native"]
            x = model_input(native, model, grid)
            mu, logvar = encode_mu(model, x, batch_size=batch_size, device=device, with_logvar=True)
            recon = decode_masks(model, mu, batch_size=batch_size, device=device)
            dice = dice_scores(recon, x, labels)
            table = pd.DataFrame({"patient_id": sequence.patient_id, "view": sequence.view,
                                  "frame": np.arange(len(x)), "frame_pos": sequence.arrays["frame_pos"]})
            table = pd.concat([
                table,
                pd.DataFrame(mu.astype(np.float32), columns=[f"mu_{k}" for k in range(latent_dim)]),
                pd.DataFrame(logvar.astype(np.float32), columns=[f"logvar_{k}" for k in range(latent_dim)]),
                pd.DataFrame(dice, columns=[f"dice_{CLASS_NAMES[c]}" for c in labels]),
            ], axis=1)
            with np.errstate(all="ignore"):
                table["dice_mean"] = np.nanmean(dice, axis=1) if dice.size else np.nan
            tables.append(table)
            n_frames += len(x)
            if writer is not None:
                writer.write(sequence, {"mask": recon,
                                        "mask_native": resize_masks_nearest(recon, native.shape[-2:]),
                                        "frame_pos": sequence.arrays["frame_pos"]})
        ok = True
    finally:
        if writer is not None:
            writer.close(ok)
    if not tables:
        raise ValueError(f"{shard}: the shard holds no sequences")
    result = pd.concat(tables, ignore_index=True)
    if log is not None:
        seconds = time.perf_counter() - started
        print(f"{shard}: encoded {n_frames} frames in {seconds:.1f} s ({n_frames / max(seconds, 1e-9):.0f} frames/s); "
              f"mean reconstruction Dice {result['dice_mean'].mean():.4f}", file=log, flush=True)
    if out_table is not None:
        write_table(result, out_table)
    return result


# --------------------------------------------------------------------------- correction
def _image_check(masks_native: list[np.ndarray], spacings, image) -> tuple[list[np.ndarray], list[dict]]:
    """Attribute curves and image-space consistency of each sequence (``image`` = (names, lo, hi, tau, margin))."""
    names, lo, hi, tau, margin = image
    curves, results = [], []
    for masks, spacing in zip(masks_native, spacings):
        attributes = shape_attributes(masks, spacing)[list(names)].to_numpy(np.float64)
        curves.append(attributes)
        results.append(temporal_consistency(attributes, lo, hi, tau, margin=margin))
    return curves, results


def _smooth_groups(mus: list[np.ndarray], constraint: LatentConstraint | None, config: CorrectionConfig,
                   scale) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Smooth each (T_i, D) trajectory, batching the sequences of equal length; ``scale`` (N,) scales τ."""
    smoothed, weights = [None] * len(mus), [None] * len(mus)
    lengths = np.array([len(m) for m in mus])
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        for factor in np.unique(np.asarray(scale)[members]):
            chosen = members[np.asarray(scale)[members] == factor]
            z = np.stack([mus[i] for i in chosen])
            kwargs = {}
            if constraint is not None and len(constraint.dims):
                kwargs = dict(constrained_dims=constraint.dims, thresholds=constraint.tau * factor,
                              lo=constraint.lo, hi=constraint.hi)
            out, w = smooth_trajectories(z, weight=config.weight, max_weight=config.max_weight,
                                         n_bisections=config.n_bisections, n_neighbours=config.n_neighbours,
                                         margin=config.margin, return_weights=True, **kwargs)
            for j, i in enumerate(chosen):
                smoothed[i], weights[i] = out[j], w[j]
    return smoothed, weights


def correct_sequences(model, masks_native: list[np.ndarray], *, constraint: LatentConstraint | None,
                      config: CorrectionConfig | None = None, spacings=None, image=None,
                      grid: int | None = None, device="cpu") -> list[dict]:
    """Temporally correct label-map sequences with a trained mask VAE.

    Parameters
    ----------
    model : MaskVAE
    masks_native : list of (T_i, H_i, W_i) int arrays
        Label maps (0 BG, 1 LV, 2 MYO, 3 LA) on their native grids.
    constraint : LatentConstraint or None
        Constrained latent dimensions, bounds and thresholds (None: plain snake on all dims).
    config : CorrectionConfig
    spacings : list of (h, w), optional
        Pixel spacing of each sequence (needed with ``image``).
    image : tuple ``(names, lo, hi, tau)``, optional
        Image-space thresholds of the shape attributes: needed for ``scope="inconsistent"``
        and ``max_rounds > 1``; the attribute curves before and after are then returned too.
    grid : int, optional
        The cohort's model grid the training frames went through (see :func:`model_input`).

    Returns
    -------
    list of dict, one per sequence
        ``masks`` (corrected, native grid, uint8), ``cleaned`` (pre-cleaned input),
        ``mu`` and ``z`` (latent trajectories before/after smoothing; None when the
        sequence was left unchanged), ``weights`` (per dim), ``corrected`` (bool),
        ``rounds``; with ``image``: ``curves_before``, ``curves_after``, ``check_before``,
        ``check_after`` (outputs of :func:`temporal_consistency`).
    """
    config = config or CorrectionConfig()
    keep_la = knows_atrium(model)
    n = len(masks_native)
    if (config.scope == "inconsistent" or config.max_rounds > 1) and image is None:
        raise ValueError("scope='inconsistent' and max_rounds > 1 need the image-space thresholds")
    image_check = None if image is None else (*image, config.margin)
    if image_check is not None and spacings is None:
        raise ValueError("the image-space check needs the spacing of each sequence")
    results = [{"masks": np.asarray(m, dtype=np.uint8), "corrected": False, "rounds": 0, "mu": None, "z": None,
                "weights": None} for m in masks_native]
    if image_check is not None:
        curves, checks = _image_check([r["masks"] for r in results], spacings, image_check)
        for r, c, k in zip(results, curves, checks):
            r.update(curves_before=c, check_before=k, curves_after=c, check_after=k)
    todo = list(range(n))
    if config.scope == "inconsistent":
        todo = [i for i in todo if results[i]["check_before"]["sequence_inconsistent"]]
    # Pre-clean and encode the sequences to correct (one network call for all their frames).
    for i in todo:
        raw = results[i]["masks"]
        results[i]["cleaned"] = preclean(raw, keep_atrium=True)
        results[i]["model_input"] = model_input(preclean(raw, keep_atrium=keep_la), model, grid)
    if todo:
        frames = np.concatenate([results[i]["model_input"] for i in todo])
        mu = encode_mu(model, frames, batch_size=config.batch_size, device=device)
        offsets = np.cumsum([0] + [len(results[i]["model_input"]) for i in todo])
        for j, i in enumerate(todo):
            results[i]["mu"] = mu[offsets[j]:offsets[j + 1]]
    scale = np.ones(n)
    for round_ in range(config.max_rounds):
        if not todo:
            break
        smoothed, weights = _smooth_groups([results[i]["mu"] for i in todo], constraint, config, scale[todo])
        decoded = decode_masks(model, np.concatenate(smoothed), batch_size=config.batch_size, device=device)
        offsets = np.cumsum([0] + [len(z) for z in smoothed])
        for j, i in enumerate(todo):
            r = results[i]
            out = decoded[offsets[j]:offsets[j + 1]]
            out = resize_masks_nearest(out, r["masks"].shape[-2:])
            if not keep_la and config.atrium == "keep":
                out = out.copy()
                out[(out == BG) & (r["cleaned"] == LA)] = LA
            r.update(corrected_masks=np.ascontiguousarray(out, dtype=np.uint8), z=smoothed[j], weights=weights[j],
                     corrected=True, rounds=round_ + 1)
        if image_check is not None:
            curves, checks = _image_check([results[i]["corrected_masks"] for i in todo],
                                          [spacings[i] for i in todo], image_check)
            for j, i in enumerate(todo):
                results[i].update(curves_after=curves[j], check_after=checks[j])
            todo = [i for i in todo if results[i]["check_after"]["sequence_inconsistent"]]
            scale[todo] *= config.tighten
        else:
            todo = []
    for r in results:
        r["masks"] = r.pop("corrected_masks", r["masks"])
        r.pop("model_input", None)
        r.setdefault("cleaned", None)
    return results


def _frame_counts(check: dict, names) -> dict:
    row = {f"inconsistent_{name}": int(check["inconsistent"][:, k].sum()) for k, name in enumerate(names)}
    row["inconsistent_frames"] = int(check["frame_inconsistent"].sum())
    row["inconsistent_frame_ratio"] = float(check["frame_ratio"])
    row["sequence_inconsistent"] = bool(check["sequence_inconsistent"])
    return row


def correct_shard(shard, model, *, image_thresholds: pd.DataFrame, constraint: LatentConstraint | None,
                  config: CorrectionConfig | None = None, truth_shard=None, out_table=None, out_h5=None,
                  model_name: str = "", device="cpu", chunk_sequences: int = 64, log=None) -> pd.DataFrame:
    """Correct every sequence of a cohort shard; before/after table and corrected mask shard.

    Parameters
    ----------
    shard : path
        Cohort shard (``mask_native`` and the group attributes are used).
    model : MaskVAE
    image_thresholds : DataFrame
        Image-space rows of a thresholds table (the seven attributes of
        :data:`~echolatent.attributes.TEMPORAL_ATTRIBUTES`, bounds and ``tau``).
    constraint : LatentConstraint or None
    config : CorrectionConfig
    truth_shard : path, optional
        Truth shard of a synthetic cohort: Dice to the clean masks before and after.
    out_table : path, optional
        The table (TSV or parquet), written atomically.
    out_h5 : path, optional
        Mask shard of the cohort layout: ``mask_native`` (corrected), ``mask`` (corrected,
        on the cohort's model grid), ``frame_pos``, ``mu`` and ``z`` (latent trajectories
        before/after smoothing, when corrected) and the cohort group attributes.

    Returns
    -------
    DataFrame, one row per sequence
        ``patient_id, view, n_frames, corrected, rounds``; per attribute
        ``inconsistent_{attr}_before/_after`` (frame counts); ``inconsistent_frames_*``,
        ``inconsistent_frame_ratio_*``, ``sequence_inconsistent_*``;
        ``anatomical_errors_before/_after`` (frames failing the 12 criteria);
        ``latent_inconsistent_frames_before/_after`` (constrained dims, latent thresholds);
        ``mean_constrained_weight``; with a truth shard ``dice_{lv,myo,la}_before/_after``
        and ``dice_before/_after`` (mean over frames and structures).
    """
    from echolatent.anatomy import anatomical_metrics
    from echolatent.shape_tables import write_table

    config = config or CorrectionConfig()
    names, lo, hi, tau = (image_thresholds["name"].tolist(), image_thresholds["lo"].to_numpy(float),
                          image_thresholds["hi"].to_numpy(float), image_thresholds["tau"].to_numpy(float))
    image = (names, lo, hi, tau)
    truth = None
    if truth_shard is not None:
        truth = {(s.patient_id, s.view): s.arrays["mask_native"] for s in iter_shard(truth_shard, ("mask_native",))}
    drop_la = not knows_atrium(model) and config.atrium == "drop"
    out_labels = (1, 2) if drop_la else (1, 2, 3)
    grid = _shard_grid(shard)
    cohort_size = grid or int(model.config.input_size)
    writer = _MaskShardWriter(out_h5, source="temporal", model=model_name, image_size=cohort_size) if out_h5 else None
    rows, ok, started, n_frames = [], False, time.perf_counter(), 0

    def run(batch):
        nonlocal n_frames
        inputs = [s.arrays["mask_native"] for s in batch]
        spacings = [s.spacing("mask_native") for s in batch]
        results = correct_sequences(model, inputs, constraint=constraint, config=config, spacings=spacings,
                                    image=image, grid=grid, device=device)
        for sequence, before, spacing, r in zip(batch, inputs, spacings, results):
            after = r["masks"]
            n_frames += len(after)
            row = {"patient_id": sequence.patient_id, "view": sequence.view, "n_frames": len(after),
                   "corrected": r["corrected"], "rounds": r["rounds"]}
            for when, check in (("before", r["check_before"]), ("after", r["check_after"])):
                row.update({f"{k}_{when}": v for k, v in _frame_counts(check, names).items()})
            anatomy_before = anatomical_metrics(np.where(before == LA, BG, before) if drop_la else before, spacing,
                                                labels=out_labels)
            anatomy_after = anatomical_metrics(after, spacing, labels=out_labels)
            row["anatomical_errors_before"] = int(anatomy_before["anatomical_errors"].sum())
            row["anatomical_errors_after"] = int(anatomy_after["anatomical_errors"].sum())
            if constraint is not None and len(constraint.dims) and r["mu"] is not None:
                for when, z in (("before", r["mu"]), ("after", r["z"])):
                    check = temporal_consistency(z[:, constraint.dims], constraint.lo, constraint.hi, constraint.tau,
                                                 margin=config.margin)
                    row[f"latent_inconsistent_frames_{when}"] = int(check["frame_inconsistent"].sum())
                row["mean_constrained_weight"] = float(np.mean(r["weights"][constraint.dims]))
            else:
                row.update(latent_inconsistent_frames_before=np.nan, latent_inconsistent_frames_after=np.nan,
                           mean_constrained_weight=np.nan)
            if truth is not None:
                clean = truth[(sequence.patient_id, sequence.view)]
                labels = (1, 2) if drop_la else (1, 2, 3)
                for when, masks in (("before", before), ("after", after)):
                    dice = dice_scores(masks, clean, labels)
                    with np.errstate(all="ignore"):
                        per_class = np.nanmean(dice, axis=0)
                    for label, value in zip(labels, per_class):
                        row[f"dice_{CLASS_NAMES[label]}_{when}"] = float(value)
                    row[f"dice_{when}"] = float(np.nanmean(dice))
            rows.append(row)
            if writer is not None:
                datasets = {"mask_native": after, "mask": resize_masks_nearest(after, (cohort_size, cohort_size)),
                            "frame_pos": sequence.arrays["frame_pos"]}
                if r["mu"] is not None:
                    datasets.update(mu=r["mu"].astype(np.float32), z=r["z"].astype(np.float32))
                writer.write(sequence, datasets)

    try:
        batch = []
        for sequence in iter_shard(shard, ("mask_native", "frame_pos")):
            batch.append(sequence)
            if len(batch) >= chunk_sequences:
                run(batch)
                batch = []
        if batch:
            run(batch)
        ok = True
    finally:
        if writer is not None:
            writer.close(ok)
    if not rows:
        raise ValueError(f"{shard}: the shard holds no sequences")
    table = pd.DataFrame(rows)
    if log is not None:
        seconds = time.perf_counter() - started
        print(f"{shard}: {len(table)} sequences, {n_frames} frames in {seconds:.1f} s; inconsistent sequences "
              f"{int(table['sequence_inconsistent_before'].sum())} -> {int(table['sequence_inconsistent_after'].sum())}",
              file=log, flush=True)
    if out_table is not None:
        write_table(table, out_table)
    return table
