"""Anatomical correction of every sequence of a mask shard: the per-frame table and the corrected shard.

:func:`correct_shard` streams a shard in the cohort layout (the cohort's own, or the temporally
corrected masks of ``results/temporal/{model}``), measures the 12 criteria of every frame on
its native grid, sends the frames that fail one to :func:`~echolatent.guarantees.correction.correct_frames`
(all failing frames of a batch of sequences together, grouped by native size), and writes

* a mask shard of the cohort layout (:class:`~echolatent.io.mask_shards.MaskShardWriter`,
  ``source="guaranteed"``): ``mask_native`` (valid and uncorrectable frames byte for byte as
  given, corrected frames replaced), ``mask`` (the cohort's model grid), ``frame_pos`` and
  ``status`` (one code per frame, :data:`STATUS_CODES`);
* one table row per frame (:func:`correct_shard`'s return value).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from echolatent.guarantees.correction import correct_frames
from echolatent.guarantees.densify import model_labels
from echolatent.io.mask_shards import MaskShardWriter
from echolatent.io.shards import iter_shard, iter_shard_batches, shard_counts, shard_grid
from echolatent.models.quality import dice_scores
from echolatent.progress import Progress
from echolatent.resample import resize_masks_nearest
from echolatent.shape.criteria import CRITERIA, anatomical_metrics, criteria_validity

__all__ = ["STATUS_CODES", "correct_shard"]

logger = logging.getLogger(__name__)

#: The ``status`` dataset of a guaranteed shard: frame status -> stored code.
STATUS_CODES = {"valid": 0, "corrected": 1, "uncorrectable": 2}


def correct_shard(shard, model, valid_codes: np.ndarray, *, truth_shard=None, grid=0.3, n_bisections: int = 10,
                  max_distance: float | None = None, upsample: str = "bilinear", batch_size: int = 256,
                  device="cpu", search_device=None, chunk_frames: int = 2048, out_h5=None,
                  model_name: str = "", refine: str = "none", refine_bisections: int = 8) -> pd.DataFrame:
    """Replace every anatomically invalid frame of a shard by its nearest valid shape.

    Parameters
    ----------
    shard : path
        A shard in the cohort layout with ``mask_native``, ``mask`` and ``frame_pos`` per group
        (``results/cohort/shard-{k}.h5`` or ``results/temporal/{model}/shard-{k}.h5``).
    model : MaskVAE
        The model whose latent space was densified.
    valid_codes : ndarray (M, D)
        Its valid codes (:func:`~echolatent.guarantees.densify.densify`).
    truth_shard : path, optional
        Truth shard of a synthetic cohort: Dice to the clean masks before and after.
    grid : float or str
        Grid of the 12 criteria, as the anatomy stage measures them (``anatomy.grid``).
    n_bisections, max_distance, upsample, batch_size, device, search_device, refine, refine_bisections
        :func:`~echolatent.guarantees.correction.correct_frames`.
    chunk_frames : int
        Frames read and corrected together (bounds the memory).
    out_h5 : path, optional
        The corrected shard, written atomically.
    model_name : str
        Recorded in the shard's attributes.

    Returns
    -------
    DataFrame, one row per frame
        ``patient_id, view, frame, status`` (``valid``, ``corrected``, ``uncorrectable``),
        ``criteria_failed`` (number of the 12 criteria failed before), ``failed`` (their names,
        comma-separated), ``t`` (position on the segment to the nearest valid code),
        ``distance`` (latent distance moved), ``nearest_distance``, ``lam`` (position on the
        image-space path back to the original: 1 = the decoding itself), ``dice_to_input`` (mean
        over structures, corrected mask vs the one given), ``changed_pixels``, and with a
        truth shard ``dice_truth_before`` / ``dice_truth_after``.
    """
    labels = model_labels(model)
    cohort_grid = shard_grid(shard) or int(model.config.input_size)
    truth = None
    if truth_shard is not None:
        truth = {(s.patient_id, s.view): s.arrays["mask_native"] for s in iter_shard(truth_shard, ("mask_native",))}
    valid_codes = np.asarray(valid_codes)
    if valid_codes.ndim != 2 or valid_codes.shape[1] != int(model.config.latent_dim):
        raise ValueError(f"valid codes of shape {valid_codes.shape}, but the model has {model.config.latent_dim} "
                         f"latent dimensions")
    rows = []
    progress = Progress(shard_counts(shard)[1], "frames", f"anatomical correction of {shard}", logger=logger)

    def run(batch, writer):
        masks = [s.arrays["mask_native"] for s in batch]
        spacings = [np.broadcast_to(np.asarray(s.spacing("mask_native"), np.float64), (len(m), 2))
                    for s, m in zip(batch, masks)]
        # the criteria of every frame, as the anatomy stage measures them (all three structures)
        failed = []
        for m, sp in zip(masks, spacings):
            validity = criteria_validity(anatomical_metrics(m, sp, grid=grid))
            failed.append(~validity[list(CRITERIA)].to_numpy(bool))
        after = [m.copy() for m in masks]
        n_total = sum(len(m) for m in masks)
        status = [np.full(len(m), "valid", dtype=object) for m in masks]
        t, moved, reach, lam = ([np.full(len(m), v) for m in masks] for v in (np.nan, 0.0, np.nan, np.nan))
        # every failing frame of the batch, grouped by native size (one correct_frames call per size)
        where = [(i, f) for i, fl in enumerate(failed) for f in np.flatnonzero(fl.any(axis=1))]
        by_size: dict = {}
        for i, f in where:
            by_size.setdefault(masks[i].shape[1:], []).append((i, f))
        for items in by_size.values():
            if not len(valid_codes):  # nothing to correct towards: every failing frame is reported
                for i, f in items:
                    status[i][f] = "uncorrectable"
                continue
            frames = np.stack([masks[i][f] for i, f in items])
            sp = np.stack([spacings[i][f] for i, f in items])
            result = correct_frames(model, frames, sp, valid_codes, grid=grid, cohort_grid=cohort_grid,
                                    labels=labels, n_bisections=n_bisections, max_distance=max_distance,
                                    upsample=upsample, batch_size=batch_size, device=device,
                                    search_device=search_device, refine=refine,
                                    refine_bisections=refine_bisections)
            for k, (i, f) in enumerate(items):
                state = str(result.status[k])
                if state == "valid":
                    # the model's label set passes but the anatomy stage's does not (an atrium criterion
                    # of a model without an atrium class): nothing this model can correct
                    state = "uncorrectable"
                status[i][f] = state
                t[i][f], moved[i][f], reach[i][f] = result.t[k], result.distance[k], result.nearest_distance[k]
                lam[i][f] = result.lam[k]
                if state == "corrected":
                    after[i][f] = result.masks[k]
        for s, before, fixed, fl, st, tt, mv, rc, lm in zip(batch, masks, after, failed, status, t, moved, reach, lam):
            dice_input = _mean_dice(fixed, before, labels)
            table = {"patient_id": s.patient_id, "view": s.view, "frame": np.arange(len(before)),
                     "status": st.astype(str), "criteria_failed": fl.sum(axis=1),
                     "failed": [",".join(np.asarray(CRITERIA)[row]) for row in fl],
                     "t": tt, "distance": mv, "nearest_distance": rc, "lam": lm, "dice_to_input": dice_input,
                     "changed_pixels": (fixed != before).reshape(len(before), -1).sum(axis=1)}
            if truth is not None:
                clean = truth[(s.patient_id, s.view)]
                table["dice_truth_before"] = _mean_dice(before, clean, labels)
                table["dice_truth_after"] = _mean_dice(fixed, clean, labels)
            rows.append(pd.DataFrame(table))
            if writer is not None:
                mask = s.arrays["mask"].copy()
                changed = st == "corrected"
                if changed.any():
                    mask[changed] = resize_masks_nearest(fixed[changed], (cohort_grid, cohort_grid))
                codes = np.array([STATUS_CODES[x] for x in st], dtype=np.uint8)
                writer.write(s, {"mask_native": fixed, "mask": mask, "frame_pos": s.arrays["frame_pos"],
                                 "status": codes})

    with MaskShardWriter.optional(out_h5, source="guaranteed", model=model_name, image_size=cohort_grid) as writer:
        for batch in iter_shard_batches(shard, ("mask_native", "mask", "frame_pos"), chunk_frames,
                                        size=lambda s: len(s.arrays["mask_native"])):
            run(batch, writer)
            progress.update(sum(len(s.arrays["mask_native"]) for s in batch))
        if not rows:
            raise ValueError(f"{shard}: the shard holds no sequences")
    table = pd.concat(rows, ignore_index=True)
    counts = table["status"].value_counts().to_dict()
    logger.info(f"{shard}: {len(table)} frames, {int((table['criteria_failed'] > 0).sum())} failing a criterion; "
                f"corrected {counts.get('corrected', 0)}, uncorrectable {counts.get('uncorrectable', 0)}")
    return table


def _mean_dice(pred, target, labels) -> np.ndarray:
    """Mean Dice over the structures present in either map, per frame (NaN where none is)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a frame with none of the labels: NaN, said above
        return np.nanmean(dice_scores(pred, target, labels), axis=1)
