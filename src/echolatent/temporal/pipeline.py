"""Latent encoding of cohort shards and temporal correction of their sequences.

Encoding (:func:`encode_shard`)
-------------------------------
Every frame of a shard is resized (nearest) from its native grid to the model input, LA
dropped for a model without an LA class, and encoded: posterior mean ``mu``, log-variance
and the argmax decoding of ``mu`` with its hard Dice to the encoded input. Outputs: a
per-frame table (``patient_id, view, frame, frame_pos, mu_0.., logvar_0.., dice_*``) and a
mask shard of the cohort layout holding the reconstructions.

Correction (:func:`correct_sequences`, :func:`correct_shard`)
-------------------------------------------------------------
Two methods (``CorrectionConfig.method``):

``repair`` (default)
    only the frames that fail the anatomical criteria (with the smallest valid edit) or that
    the image-space metric needs re-estimated (the spike, not its neighbours; both frames of a
    two-frame defect; the first and last frames too when the cohort's ``cycle`` is given,
    periodic neighbours for full cycles, mirror for half cycles) are rebuilt,
    from the trusted frames through the latent space, calibrated on the decoder's error
    (:mod:`echolatent.temporal.frame_repair`); a sequence still inconsistent after
    ``repair_rounds`` goes to ``smooth`` (``fallback="smooth"``). On the synthetic cohort it
    makes every sequence consistent and raises the Dice to the clean truth on spiked and on
    other sequences (benchmarks/README.md), where smoothing every frame loses about 0.013.
``smooth``
    the TMI 2022 pipeline, below.

The ``smooth`` method:

1. pre-clean the native masks (:func:`echolatent.temporal.preclean.preclean`);
2. resize to the model input (nearest, through the cohort's grid as the training frames
   were) and encode ``mu``;
3. smooth the latent trajectories (:func:`~echolatent.temporal.smoothing.smooth_trajectories`):
   all dimensions with the snake weight, the attribute dimensions with the smallest weight
   that leaves no frame above its latent threshold;
4. decode and go back to the native grid: by default the logits are interpolated linearly
   to the native grid, each model pixel placed where its input was read from, and the
   argmax is taken there (``upsample="bilinear"``); the reference takes the argmax on the
   model grid and resizes it (``upsample="nearest"``), whose staircase makes the attribute
   curves of a 64 px model inconsistent (benchmarks/README.md);
5. **labels the model does not know.** With a 3-class model (BG/LV/MYO, as in the
   reference) the LA is not corrected. ``atrium="keep"`` (default) puts the pre-cleaned
   input LA back on the pixels the corrected LV/MYO leave as background, so the output
   keeps the 4-label convention of the cohort and the anatomical criteria that involve the
   LA stay measurable; ``atrium="drop"`` leaves the LA out, as the reference does. A 4-class
   model corrects the LA like the other structures.

Beyond the reference (all optional; the image-space thresholds are then needed):

``scope="inconsistent"``
    only the sequences the image-space metric flags are corrected; the others are written
    unchanged.
``scope="frames"``
    every sequence is pre-cleaned; only its frames that are inconsistent (image space) or
    anatomically invalid after pre-cleaning take the decoded smoothed masks, the others
    keep the pre-cleaned input. This keeps the input wherever nothing is wrong with it
    (smoothing every frame flattens the true motion too), but decoded and input frames may
    not join consistently.
``output="displacement"``
    instead of the decoded masks, a corrected frame is the pre-cleaned input whose
    boundaries move by the displacement between the decoding of its encoded and of its
    smoothed latent code (:func:`transfer_displacement`); the decoder's reconstruction
    error, common to both decodings, cancels, so only what the smoothing changes changes
    (as long as that error is the same in both: its frame-to-frame part is not).
``max_rounds > 1``
    the output is checked in image space after each round; a sequence still inconsistent
    has its offending frames corrected too (``frames``) or, when they all are already, is
    re-smoothed with latent thresholds scaled by ``tighten`` and the weight of the free
    dimensions divided by it (up to ``max_weight``). With a small first ``weight`` this
    searches the least smoothing that makes each sequence consistent in image space:
    smoothing flattens the cardiac motion (at 20 frames per cycle the reference weight 50
    costs about 0.04 Dice), so the least is the most faithful.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from echolatent.io.shards import iter_shard
from echolatent.labels import BACKGROUND as BG
from echolatent.labels import LA
from echolatent.resample import resize_masks_nearest
from echolatent.shape.attributes import shape_attributes
from echolatent.temporal.config import CorrectionConfig
from echolatent.temporal.metric import temporal_consistency
from echolatent.temporal.preclean import preclean
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
class LatentConstraint:
    """Constrained latent dimensions with their normalisation bounds and thresholds.

    ``tau_end``: thresholds of the first and last frames (:mod:`echolatent.temporal.metric`),
    None (or NaN) for ``tau``.
    """

    dims: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    tau: np.ndarray
    tau_end: np.ndarray | None = None

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> "LatentConstraint":
        """From the ``latent`` rows of a thresholds table (:mod:`echolatent.temporal.thresholds`)."""
        from echolatent.temporal.evaluation import end_thresholds

        rows = table[table["space"] == "latent"].sort_values("dim")
        return cls(rows["dim"].to_numpy(int), rows["lo"].to_numpy(float), rows["hi"].to_numpy(float),
                   rows["tau"].to_numpy(float), end_thresholds(rows))


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


def sampled_positions(native: int, size: int, grid: int | None = None) -> np.ndarray:
    """Native pixel index each model-grid pixel was read from (nearest, through ``grid`` if given)."""
    from echolatent.resample import _nearest_indices

    if grid is not None and grid != native:
        return _nearest_indices(native, grid)[_nearest_indices(grid, size)]
    return _nearest_indices(native, size)


def _linear_weights(positions: np.ndarray, n_out: int) -> torch.Tensor:
    """Linear interpolation matrix (n_out, S) from the model grid to native pixels 0..n_out-1.

    Row ``i`` holds the weights of the two model pixels around native pixel ``i``, given the
    native positions the model pixels were sampled from; a matrix, so that resizing a batch
    of logits is two matrix products.
    """
    u = np.interp(np.arange(n_out), positions, np.arange(len(positions)))
    low = np.minimum(np.floor(u).astype(np.int64), len(positions) - 1)
    high = np.minimum(low + 1, len(positions) - 1)
    frac = (u - low).astype(np.float32)
    weights = np.zeros((n_out, len(positions)), np.float32)
    np.add.at(weights, (np.arange(n_out), low), 1 - frac)
    np.add.at(weights, (np.arange(n_out), high), frac)
    return torch.from_numpy(weights)


def _argmax_channels(logits: torch.Tensor) -> torch.Tensor:
    """``logits.argmax(1)`` as uint8 (first maximum wins, as argmax): a running comparison over
    the few classes, about 8x faster on CPU than ``argmax`` over the strided class axis."""
    best, index = logits[:, 0], torch.zeros(logits.shape[:1] + logits.shape[2:], dtype=torch.uint8,
                                            device=logits.device)
    for c in range(1, logits.shape[1]):
        better = logits[:, c] > best
        best = torch.where(better, logits[:, c], best)
        index[better] = c
    return index


@torch.no_grad()
def decode_masks(model, z: np.ndarray, *, batch_size: int = 256, device="cpu", size=None,
                 grid: int | None = None) -> np.ndarray:
    """Argmax decoding (N, S, S) uint8 of latent codes (N, D).

    With ``size = (H, W)`` the logits are interpolated linearly to that (native) grid and
    the argmax is taken there: boundaries then fall between the model-grid pixels instead of
    following their staircase, as a nearest resize of the argmax would. Model pixel ``i`` is
    placed at the native pixel its input was read from (:func:`sampled_positions`, through
    the cohort ``grid`` as the training frames were), so the output is not shifted.
    """
    was_training = model.training
    model.eval()
    out = []
    if size is not None:
        size = (int(size[0]), int(size[1]))
        s = int(model.config.input_size)
        rows = _linear_weights(sampled_positions(size[0], s, grid), size[0])
        cols = _linear_weights(sampled_positions(size[1], s, grid), size[1])
        # keep the upsampled logits of a batch to about 64 MB
        batch_size = max(1, min(batch_size, (1 << 24) // (int(model.config.n_classes) * size[0] * size[1])))
    try:
        for start in range(0, len(z), batch_size):
            codes = torch.as_tensor(np.asarray(z[start:start + batch_size]), dtype=torch.float32, device=device)
            logits = model.decode(codes).float()
            if size is not None:
                logits = rows.to(logits.device) @ logits @ cols.to(logits.device).T
            out.append(_argmax_channels(logits).cpu().numpy())
    finally:
        model.train(was_training)
    shape = size or (int(model.config.input_size),) * 2
    return np.concatenate(out) if out else np.zeros((0, *shape), np.uint8)


def _signed_distance(binary: np.ndarray) -> np.ndarray:
    """Signed distance (pixels) to the boundary of a 2-D region: negative inside, positive outside."""
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~binary) - distance_transform_edt(binary)


def transfer_displacement(base: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Move the boundaries of ``base`` as the boundaries of ``before`` move to ``after``.

    For the nested regions LV ⊂ EPI (LV ∪ MYO) ⊂ heart (LV ∪ MYO ∪ LA) the signed distance
    maps give ``sdf_out = sdf(base) + sdf(after) - sdf(before)``: every boundary of the base
    moves along its normal by the displacement the smoothing asked for, and the decoder's
    own reconstruction error (common to ``before`` and ``after``) cancels. Nesting the
    regions keeps the LV against the LA at the mitral plane (no gap can open between them).
    A region missing from one of the maps, and the heart region for a model without the LA,
    keep the base. The result is pre-cleaned.

    Parameters
    ----------
    base, before, after : ndarray (T, H, W) or (H, W) of labels 0-3
        The (pre-cleaned) input, the decoding of the encoded input and the decoding of the
        smoothed trajectory, on the same grid.
    """
    base, before, after = (np.asarray(m) for m in (base, before, after))
    single = base.ndim == 2
    if single:
        base, before, after = base[None], before[None], after[None]
    out = np.empty_like(base, dtype=np.uint8)
    regions = {"heart": (1, 2, 3), "epi": (1, 2), "lv": (1,)}
    for t in range(len(base)):
        if np.array_equal(before[t], after[t]):
            out[t] = base[t]
            continue
        moved = {}
        for name, labels in regions.items():
            masks = [np.isin(m[t], labels) for m in (base, before, after)]
            if name == "heart" and not (np.any(before[t] == LA) and np.any(after[t] == LA)):
                moved[name] = masks[0]  # a model without the LA: the atrium stays where it was
            elif all(m.any() and not m.all() for m in masks):
                sdf = _signed_distance(masks[0]) + _signed_distance(masks[2]) - _signed_distance(masks[1])
                moved[name] = sdf < 0
            else:
                moved[name] = masks[0]
        frame = np.zeros(base.shape[1:], np.uint8)
        epi = moved["epi"] | moved["lv"]
        frame[moved["heart"] | epi] = LA  # nested: LV ⊂ EPI ⊂ heart
        frame[epi] = 2
        frame[moved["lv"]] = 1
        out[t] = frame
    out = preclean(out, keep_atrium=True)
    return out[0] if single else out


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

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        self.close(ok=exc_type is None)   # an error leaves no partial shard behind
        return False

    @classmethod
    def optional(cls, path, **kwargs):
        """The writer as a context manager, or ``None`` (through a null context) without a path."""
        return cls(path, **kwargs) if path else contextlib.nullcontext()


def _chunks(items, limit, *, size=lambda item: 1):
    """Lists of consecutive items whose total ``size`` reaches ``limit`` (the last one may be short)."""
    chunk, total = [], 0
    for item in items:
        chunk.append(item)
        total += size(item)
        if total >= limit:
            yield chunk
            chunk, total = [], 0
    if chunk:
        yield chunk


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
        Mask shard with the reconstructions: ``mask`` (model grid), ``mask_native`` (on the
        native grid: logits resized bilinearly, then argmax), ``frame_pos`` and the group
        attributes of the cohort.

    Returns
    -------
    DataFrame
        ``patient_id, view, frame, frame_pos, mu_0..mu_{D-1}, logvar_0..logvar_{D-1}``,
        ``dice_lv, dice_myo[, dice_la]`` (reconstruction vs encoded input) and ``dice_mean``.
    """
    from echolatent.shape_tables import write_table

    n_classes, latent_dim = int(model.config.n_classes), int(model.config.latent_dim)
    labels = tuple(range(1, n_classes))
    grid = _shard_grid(shard)
    tables, started, n_frames = [], time.perf_counter(), 0

    def encode_chunk(chunk):
        """Encode and decode the frames of several sequences in shared network calls."""
        inputs = [model_input(sequence.arrays["mask_native"], model, grid) for sequence in chunk]
        x = np.concatenate(inputs)
        mu, logvar = encode_mu(model, x, batch_size=batch_size, device=device, with_logvar=True)
        recon = decode_masks(model, mu, batch_size=batch_size, device=device)
        dice = dice_scores(recon, x, labels)
        offsets = np.cumsum([0] + [len(i) for i in inputs])
        shapes = {sequence.arrays["mask_native"].shape[-2:] for sequence in chunk}
        native_recon = None
        if writer is not None and len(shapes) == 1:
            native_recon = decode_masks(model, mu, batch_size=batch_size, device=device, size=shapes.pop(), grid=grid)
        for j, sequence in enumerate(chunk):
            part = slice(offsets[j], offsets[j + 1])
            table = pd.DataFrame({"patient_id": sequence.patient_id, "view": sequence.view,
                                  "frame": np.arange(offsets[j + 1] - offsets[j]),
                                  "frame_pos": sequence.arrays["frame_pos"]})
            table = pd.concat([
                table,
                pd.DataFrame(mu[part].astype(np.float32), columns=[f"mu_{k}" for k in range(latent_dim)]),
                pd.DataFrame(logvar[part].astype(np.float32), columns=[f"logvar_{k}" for k in range(latent_dim)]),
                pd.DataFrame(dice[part], columns=[f"dice_{CLASS_NAMES[c]}" for c in labels]),
            ], axis=1)
            with np.errstate(all="ignore"):
                table["dice_mean"] = np.nanmean(dice[part], axis=1) if dice.size else np.nan
            tables.append(table)
            if writer is not None:
                native = sequence.arrays["mask_native"]
                own = native_recon[part] if native_recon is not None else decode_masks(
                    model, mu[part], batch_size=batch_size, device=device, size=native.shape[-2:], grid=grid)
                writer.write(sequence, {"mask": recon[part], "mask_native": own,
                                        "frame_pos": sequence.arrays["frame_pos"]})
        return len(x)

    with _MaskShardWriter.optional(out_h5, source="reconstruction", model=model_name,
                                   image_size=model.config.input_size) as writer:
        # a network batch's worth of frames per call
        for chunk in _chunks(iter_shard(shard, ("mask_native", "frame_pos")), batch_size,
                             size=lambda sequence: len(sequence.arrays["mask_native"])):
            n_frames += encode_chunk(chunk)
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
def _image_spec(image) -> tuple:
    """``(names, lo, hi, tau, tau_end)`` of an ``image`` argument ``(names, lo, hi, tau[, tau_end])``."""
    if image is None:
        return None
    if len(image) not in (4, 5):
        raise ValueError("image thresholds must be (names, lo, hi, tau) or (names, lo, hi, tau, tau_end)")
    return tuple(image) if len(image) == 5 else (*image, None)


def _image_check(masks_native: list[np.ndarray], spacings, image, cycle=None) -> tuple[list[np.ndarray], list[dict]]:
    """Attribute curves and image-space consistency of each sequence (``image`` = (names, lo, hi, tau, tau_end,
    margin))."""
    names, lo, hi, tau, tau_end, margin = image
    curves, results = [], []
    for masks, spacing in zip(masks_native, spacings):
        attributes = shape_attributes(masks, spacing)[list(names)].to_numpy(np.float64)
        curves.append(attributes)
        results.append(temporal_consistency(attributes, lo, hi, tau, margin=margin, cycle=cycle,
                                            end_thresholds=tau_end))
    return curves, results


def _smooth_groups(mus: list[np.ndarray], constraint: LatentConstraint | None, config: CorrectionConfig,
                   scale, cycle=None) -> tuple[list[np.ndarray], list[np.ndarray]]:
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
                              lo=constraint.lo, hi=constraint.hi,
                              end_thresholds=None if constraint.tau_end is None else constraint.tau_end * factor)
            free_weight = min(config.weight / factor, max(config.max_weight, config.weight))
            out, w = smooth_trajectories(z, weight=free_weight, max_weight=config.max_weight,
                                         n_bisections=config.n_bisections, n_neighbours=config.n_neighbours,
                                         margin=config.margin, return_weights=True, cycle=cycle, **kwargs)
            for j, i in enumerate(chosen):
                smoothed[i], weights[i] = out[j], w[j]
    return smoothed, weights


def correct_sequences(model, masks_native: list[np.ndarray], *, constraint: LatentConstraint | None,
                      config: CorrectionConfig | None = None, spacings=None, image=None,
                      grid: int | None = None, device="cpu", cycle=None) -> list[dict]:
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
    image : tuple ``(names, lo, hi, tau[, tau_end])``, optional
        Image-space thresholds of the shape attributes (``tau_end``: of the first and last
        frames, :mod:`echolatent.temporal.metric`; default ``tau``): needed for
        ``scope="inconsistent"``, ``max_rounds > 1`` and ``method="repair"``; the attribute
        curves before and after are then returned too.
    grid : int, optional
        The cohort's model grid the training frames went through (see :func:`model_input`).
    cycle : {"full", "half", None}
        The sequences' cycle: the end-frame rule of the temporal metric
        (:mod:`echolatent.temporal.metric`) in the image-space checks, the latent constraint and
        the repair (full: periodic neighbours; half: mirror; None: the reference's ``d = 0`` at
        the first and last frames, which are then never flagged nor repaired for consistency).

    Returns
    -------
    list of dict, one per sequence
        ``masks`` (output, native grid, uint8), ``input``, ``cleaned`` (pre-cleaned
        input), ``mu`` and ``z`` (latent trajectories before/after smoothing; None when
        no frame was corrected), ``weights`` (per dim), ``corrected`` (bool), ``replaced``
        (bool per frame: took the decoded smoothed mask), ``rounds``; with ``image``:
        ``curves_before``, ``curves_after``, ``check_before``,
        ``check_after`` (outputs of :func:`temporal_consistency`).
    """
    config = config or CorrectionConfig()
    if config.method == "repair":
        return _repair_sequences(model, masks_native, constraint=constraint, config=config, spacings=spacings,
                                 image=image, grid=grid, device=device, cycle=cycle)
    keep_la = knows_atrium(model)
    drop_la = not keep_la and config.atrium == "drop"
    n = len(masks_native)
    if (config.scope != "all" or config.max_rounds > 1) and image is None:
        raise ValueError(f"scope={config.scope!r} and max_rounds > 1 need the image-space thresholds")
    image = _image_spec(image)
    image_check = None if image is None else (*image, config.margin)
    if image_check is not None and spacings is None:
        raise ValueError("the image-space check needs the spacing of each sequence")
    results = [{"input": np.asarray(m, dtype=np.uint8), "corrected": False, "rounds": 0, "mu": None, "z": None,
                "weights": None, "replaced": np.zeros(len(m), bool)} for m in masks_native]
    if image_check is not None:
        curves, checks = _image_check([r["input"] for r in results], spacings, image_check, cycle)
        for r, c, k in zip(results, curves, checks):
            r.update(curves_before=c, check_before=k, curves_after=c, check_after=k)
    for r in results:
        r["cleaned"] = preclean(r["input"], keep_atrium=True)
        r["base"] = np.where(r["cleaned"] == LA, BG, r["cleaned"]).astype(np.uint8) if drop_la else r["cleaned"]
        r["masks"] = r["input"]
    # Which sequences, and which of their frames, take the decoded smoothed masks.
    if config.scope == "all":
        todo = list(range(n))
    elif config.scope == "inconsistent":
        todo = [i for i in range(n) if results[i]["check_before"]["sequence_inconsistent"]]
    else:  # frames: inconsistent or anatomically invalid frames of the pre-cleaned input
        from echolatent.shape.criteria import anatomical_metrics

        labels = (1, 2) if drop_la else (1, 2, 3)
        base_curves, checks = _image_check([r["base"] for r in results], spacings, image_check, cycle)
        todo = []
        for i, (r, curve, check) in enumerate(zip(results, base_curves, checks)):
            invalid = anatomical_metrics(r["base"], spacings[i], labels=labels)["anatomical_errors"].to_numpy()
            r["masks"], r["replace"] = r["base"], check["frame_inconsistent"] | invalid
            r.update(curves_after=curve, check_after=check)
            if r["replace"].any():
                todo.append(i)
    for i in todo:
        results[i].setdefault("replace", np.ones(len(results[i]["input"]), bool))
    # Encode the pre-cleaned sequences to correct (one network call for all their frames).
    if todo:
        inputs = [model_input(preclean(results[i]["input"], keep_atrium=keep_la), model, grid) for i in todo]
        mu = encode_mu(model, np.concatenate(inputs), batch_size=config.batch_size, device=device)
        offsets = np.cumsum([0] + [len(x) for x in inputs])
        for j, i in enumerate(todo):
            results[i]["mu"] = mu[offsets[j]:offsets[j + 1]]
    scale = np.ones(n)
    stale = list(todo)  # sequences whose smoothed trajectory must be (re)computed and decoded
    for round_ in range(config.max_rounds):
        if not todo:
            break
        if stale:
            smoothed, weights = _smooth_groups([results[i]["mu"] for i in stale], constraint, config, scale[stale],
                                               cycle)
            for j, i in enumerate(stale):
                r = results[i]
                if config.output == "displacement":
                    if "decoded_mu" not in r:
                        r["decoded_mu"] = _decode_native(model, r["mu"], r["input"].shape[-2:], config, device, grid)
                    out = transfer_displacement(r["base"], r["decoded_mu"],
                                                _decode_native(model, smoothed[j], r["input"].shape[-2:], config,
                                                               device, grid))
                else:
                    out = _decode_native(model, smoothed[j], r["input"].shape[-2:], config, device, grid)
                    if not keep_la and config.atrium == "keep":
                        out[(out == BG) & (r["cleaned"] == LA)] = LA
                r.update(decoded=np.ascontiguousarray(out, dtype=np.uint8), z=smoothed[j], weights=weights[j])
        for i in todo:
            r = results[i]
            r["masks"] = r["decoded"] if r["replace"].all() else np.where(r["replace"][:, None, None], r["decoded"],
                                                                          r["base"])
            r.update(corrected=True, rounds=round_ + 1, replaced=r["replace"].copy())
        if image_check is None:
            break
        curves, checks = _image_check([results[i]["masks"] for i in todo], [spacings[i] for i in todo], image_check,
                                      cycle)
        still, stale = [], []
        for j, i in enumerate(todo):
            r = results[i]
            r.update(curves_after=curves[j], check_after=checks[j])
            if not checks[j]["sequence_inconsistent"]:
                continue
            still.append(i)
            grow = checks[j]["frame_inconsistent"] & ~r["replace"]
            if grow.any():
                r["replace"] |= grow  # frames scope: correct the offending frames too
            else:
                scale[i] *= config.tighten  # smooth more
                stale.append(i)
        todo = still
    for r in results:
        for key in ("decoded", "decoded_mu", "replace", "base"):
            r.pop(key, None)
        r.setdefault("method", "smooth" if r["corrected"] else "none")
    return results


def _repair_sequences(model, masks_native, *, constraint, config: CorrectionConfig, spacings, image, grid, device,
                      cycle=None):
    """``method="repair"`` of :func:`correct_sequences` (:mod:`echolatent.temporal.frame_repair`)."""
    from echolatent.shape.criteria import anatomical_metrics, criteria_validity
    from echolatent.shape.criteria_definitions import CRITERIA
    from echolatent.temporal import frame_repair

    if image is None or spacings is None:
        raise ValueError("method='repair' needs the image-space thresholds and the spacing of each sequence")
    image = _image_spec(image)
    names = list(image[0])
    known = {}
    for name in names:
        with contextlib.suppress(KeyError):
            known[name] = frame_repair.attribute_regions_of(name)   # pixel or physical (mm) columns
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"method='repair' does not know which regions move the attribute(s) {unknown}")
    image_check = (*image, config.margin)
    keep_la = knows_atrium(model)
    drop_la = not keep_la and config.atrium == "drop"
    labels = (1, 2) if drop_la else (1, 2, 3)
    attribute_regions = np.array([[r in known[a] for r in frame_repair.REGIONS] for a in names])
    criterion_regions = np.array([[r in frame_repair.CRITERION_REGIONS[c] for r in frame_repair.REGIONS]
                                  for c in CRITERIA])

    results = []
    for masks, spacing in zip(masks_native, spacings):
        def failed(frames, spacing=spacing):
            """(T, 12) bool: the anatomical criteria each frame fails."""
            metrics = anatomical_metrics(frames, spacing, labels=labels)
            return ~criteria_validity(metrics, labels=labels)[list(CRITERIA)].to_numpy(bool)

        x = np.asarray(masks, dtype=np.uint8)
        cleaned = preclean(x, keep_atrium=True)
        base = np.where(cleaned == LA, BG, cleaned).astype(np.uint8) if drop_la else cleaned
        (curve_before,), (check_before,) = _image_check([x], [spacing], image_check, cycle)
        r = {"input": x, "cleaned": cleaned, "curves_before": curve_before, "check_before": check_before,
             "mu": None, "z": None, "weights": None, "rounds": 0, "method": "none"}
        (curve,), (check,) = _image_check([base], [spacing], image_check, cycle)
        regions = (failed(base)[:, :, None] & criterion_regions[None]).any(axis=1)
        # Frames rebuilt for an anatomical error only take the smallest valid edit among the
        # regions of their failed criteria; `regions` holds what each frame actually rebuilds.
        criteria_regions, minimal = regions.copy(), regions.any(axis=1)
        out = base
        if regions.any() or check["sequence_inconsistent"]:
            size = x.shape[-2:]
            mu = encode_mu(model, model_input(preclean(x, keep_atrium=keep_la), model, grid),
                           batch_size=config.batch_size, device=device)
            decoded_mu = {}
            for round_ in range(config.repair_rounds):
                if round_ == 0 and minimal.any():
                    # First make every frame valid (their smallest edits), then plan the temporal
                    # repairs on the curves of the result: a minimal edit may leave attributes the
                    # plan would otherwise assume interpolated.
                    added = np.zeros_like(regions)
                else:
                    added = frame_repair.plan_repairs(curve, *image[1:4], regions, attribute_regions,
                                                      margin=config.margin, widen=round_ > 0,
                                                      interpolation=config.interpolation, cycle=cycle,
                                                      tau_end=image[4])
                if round_ and not added.any():
                    break
                minimal &= ~added.any(axis=1)
                regions = np.where(minimal[:, None], criteria_regions, regions | added | criteria_regions)
                trusted = ~regions.any(axis=1)
                if not trusted.any():
                    break  # nothing left to interpolate from: the fallback decides
                z = frame_repair.interpolate_codes(mu, trusted, method=config.interpolation, cycle=cycle)
                repaired = np.flatnonzero(~trusted)
                prev, nxt, _ = frame_repair.trusted_neighbours(trusted, cycle)
                needed = sorted((set(prev[repaired]) | set(nxt[repaired])) - set(decoded_mu))
                if needed:
                    decoded_mu.update(zip(needed, decode_masks(model, mu[needed], batch_size=config.batch_size,
                                                               device=device, size=size, grid=grid)))
                decoded_z = dict(zip(repaired, decode_masks(model, z[repaired], batch_size=config.batch_size,
                                                            device=device, size=size, grid=grid)))
                best = None
                for weight in config.decoder_weights:  # first best: the decoder's path unless it hurts
                    candidate, rebuilt = frame_repair.repair_frames(
                        base, decoded_mu, decoded_z, regions, keep_atrium=keep_la, decoder_weight=weight,
                        minimal=minimal, valid=lambda frame: not failed(frame[None]).any(), return_regions=True,
                        cycle=cycle)
                    (c_curve,), (c_check,) = _image_check([candidate], [spacing], image_check, cycle)
                    score = int(c_check["frame_inconsistent"].sum())
                    if best is None or score < best[0]:
                        best = (score, candidate, c_curve, c_check, rebuilt)
                    if score == 0:
                        break
                _, out, curve, check, regions = best
                r.update(mu=mu, z=z, rounds=round_ + 1, method="repair")
                if not check["sequence_inconsistent"]:
                    break
        r.update(masks=out, curves_after=curve, check_after=check, replaced=regions.any(axis=1),
                 repaired_regions=regions, corrected=bool(regions.any()))
        results.append(r)
    if config.fallback == "smooth":
        still = [i for i, r in enumerate(results) if r["check_after"]["sequence_inconsistent"]]
        if still:
            smooth = dataclasses.replace(config, method="smooth")
            redone = correct_sequences(model, [results[i]["input"] for i in still], constraint=constraint,
                                       config=smooth, spacings=[spacings[i] for i in still], image=image, grid=grid,
                                       device=device, cycle=cycle)
            for i, r in zip(still, redone):
                r.update(curves_before=results[i]["curves_before"], check_before=results[i]["check_before"],
                         method="smooth", repaired_regions=results[i]["repaired_regions"])
                results[i] = r
    return results


def _decode_native(model, z, size, config: CorrectionConfig, device, grid=None) -> np.ndarray:
    if config.upsample == "bilinear":
        return decode_masks(model, z, batch_size=config.batch_size, device=device, size=size, grid=grid)
    return resize_masks_nearest(decode_masks(model, z, batch_size=config.batch_size, device=device), size)


def _frame_counts(check: dict, names) -> dict:
    row = {f"inconsistent_{name}": int(check["inconsistent"][:, k].sum()) for k, name in enumerate(names)}
    row["inconsistent_frames"] = int(check["frame_inconsistent"].sum())
    row["inconsistent_frame_ratio"] = float(check["frame_ratio"])
    row["sequence_inconsistent"] = bool(check["sequence_inconsistent"])
    return row


def correct_shard(shard, model, *, image_thresholds: pd.DataFrame, constraint: LatentConstraint | None,
                  config: CorrectionConfig | None = None, truth_shard=None, out_table=None, out_h5=None,
                  model_name: str = "", device="cpu", chunk_sequences: int = 64, log=None,
                  cycle=None) -> pd.DataFrame:
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
    cycle : {"full", "half", None}
        The cohort's cycle (``cohort.cycle``): end-frame rule of the temporal metric, as in
        :func:`correct_sequences`; the thresholds must have been derived with the same rule.

    Returns
    -------
    DataFrame, one row per sequence
        ``patient_id, view, n_frames, corrected, replaced_frames, rounds``; per attribute
        ``inconsistent_{attr}_before/_after`` (frame counts); ``inconsistent_frames_*``,
        ``inconsistent_frame_ratio_*``, ``sequence_inconsistent_*``;
        ``anatomical_errors_before/_after`` (frames failing the 12 criteria);
        ``latent_inconsistent_frames_before/_after`` (constrained dims, latent thresholds);
        ``mean_constrained_weight``; with a truth shard ``dice_{lv,myo,la}_before/_after``
        and ``dice_before/_after`` (mean over frames and structures).
    """
    from echolatent.shape.criteria import anatomical_metrics
    from echolatent.shape_tables import write_table

    config = config or CorrectionConfig()
    from echolatent.temporal.evaluation import end_thresholds

    names, lo, hi, tau = (image_thresholds["name"].tolist(), image_thresholds["lo"].to_numpy(float),
                          image_thresholds["hi"].to_numpy(float), image_thresholds["tau"].to_numpy(float))
    image = (names, lo, hi, tau, end_thresholds(image_thresholds))
    truth = None
    if truth_shard is not None:
        truth = {(s.patient_id, s.view): s.arrays["mask_native"] for s in iter_shard(truth_shard, ("mask_native",))}
    drop_la = not knows_atrium(model) and config.atrium == "drop"
    out_labels = (1, 2) if drop_la else (1, 2, 3)
    grid = _shard_grid(shard)
    cohort_size = grid or int(model.config.input_size)
    rows, started, n_frames = [], time.perf_counter(), 0

    def run(batch):
        nonlocal n_frames
        inputs = [s.arrays["mask_native"] for s in batch]
        spacings = [s.spacing("mask_native") for s in batch]
        results = correct_sequences(model, inputs, constraint=constraint, config=config, spacings=spacings,
                                    image=image, grid=grid, device=device, cycle=cycle)
        for sequence, before, spacing, r in zip(batch, inputs, spacings, results):
            after = r["masks"]
            n_frames += len(after)
            row = {"patient_id": sequence.patient_id, "view": sequence.view, "n_frames": len(after),
                   "method": r["method"], "corrected": r["corrected"], "replaced_frames": int(r["replaced"].sum()),
                   "rounds": r["rounds"]}
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
                                                 end_thresholds=constraint.tau_end,
                                                 margin=config.margin, cycle=cycle)
                    row[f"latent_inconsistent_frames_{when}"] = int(check["frame_inconsistent"].sum())
                row["mean_constrained_weight"] = (float(np.mean(r["weights"][constraint.dims]))
                                                  if r["weights"] is not None else np.nan)
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

    with _MaskShardWriter.optional(out_h5, source="temporal", model=model_name, image_size=cohort_size) as writer:
        for batch in _chunks(iter_shard(shard, ("mask_native", "frame_pos")), chunk_sequences):
            run(batch)
        if not rows:
            raise ValueError(f"{shard}: the shard holds no sequences")
    table = pd.DataFrame(rows)
    if log is not None:
        seconds = time.perf_counter() - started
        before, after = (int(table[f"sequence_inconsistent_{w}"].sum()) for w in ("before", "after"))
        print(f"{shard}: {len(table)} sequences, {n_frames} frames in {seconds:.1f} s; inconsistent sequences "
              f"{before} -> {after}", file=log, flush=True)
    if out_table is not None:
        write_table(table, out_table)
    return table
