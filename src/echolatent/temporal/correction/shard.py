"""Correcting every sequence of a cohort shard: the before/after table and the corrected mask shard."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from echolatent.io.mask_shards import MaskShardWriter
from echolatent.io.shards import iter_shard, iter_shard_batches, shard_counts, shard_grid
from echolatent.io.tables import write_table
from echolatent.labels import BACKGROUND as BG
from echolatent.labels import LA
from echolatent.models.config import CLASS_NAMES
from echolatent.models.inference import knows_atrium
from echolatent.models.quality import dice_scores
from echolatent.progress import Progress
from echolatent.resample import resize_masks_nearest
from echolatent.shape.criteria import criteria_matrix, failed_criteria
from echolatent.shape.criteria_definitions import CRITERIA
from echolatent.temporal.config import CorrectionConfig
from echolatent.temporal.correction.consistency import LatentConstraint, image_spec
from echolatent.temporal.correction.sequences import correct_sequences
from echolatent.temporal.detection import Detector
from echolatent.temporal.metric import temporal_consistency

__all__ = ["correct_shard"]

logger = logging.getLogger(__name__)


def correct_shard(shard, model, *, image_thresholds: pd.DataFrame, constraint: LatentConstraint | None,
                  config: CorrectionConfig | None = None, truth_shard=None, out_table=None, out_h5=None,
                  model_name: str = "", device="cpu", chunk_sequences: int = 64,
                  cycle=None, input_criteria: pd.DataFrame | None = None) -> pd.DataFrame:
    """Correct every sequence of a cohort shard; before/after table and corrected mask shard.

    Parameters
    ----------
    shard : path
        Cohort shard (``mask_native`` and the group attributes are used).
    model : MaskVAE
    image_thresholds : DataFrame
        Image-space rows of a thresholds table (the seven attributes of
        :data:`~echolatent.shape.attributes.TEMPORAL_ATTRIBUTES`, bounds, ``tau`` and, for the
        spike detector, the stencils' thresholds); ``config.detector`` says which frames they
        flag (:mod:`echolatent.temporal.detection`).
    constraint : LatentConstraint or None
    config : CorrectionConfig
    truth_shard : path, optional
        Truth shard of a synthetic cohort: Dice to the clean masks before and after.
    out_table : path, optional
        The table (TSV or parquet), written atomically.
    out_h5 : path, optional
        Mask shard of the cohort layout: ``mask_native`` (corrected), ``mask`` (corrected,
        on the cohort's model grid), ``frame_pos``, ``mu`` and ``z`` (latent trajectories
        before/after correction, when corrected) and the cohort group attributes.
    chunk_sequences : int
        Sequences corrected together (one network call to encode them).
    cycle : {"full", "half", None}
        The cohort's cycle (``cohort.cycle``): end-frame rule of the temporal metric, as in
        :func:`~echolatent.temporal.correction.sequences.correct_sequences`; the thresholds must
        have been derived with the same rule.
    input_criteria : DataFrame, optional
        The anatomy stage's table of this shard's masks (``patient_id, view, frame`` and the 12
        criteria, measured on ``mask_native`` on the default grid): only the frames the
        correction changes are measured again. The results are the same without it.

    Returns
    -------
    DataFrame, one row per sequence
        ``patient_id, view, n_frames, method, corrected, replaced_frames, rounds``; per
        attribute ``inconsistent_{attr}_before/_after`` (frame counts); ``inconsistent_frames_*``,
        ``inconsistent_frame_ratio_*``, ``sequence_inconsistent_*`` (all by the configured
        detector); ``deviation_inconsistent_frames_*`` and ``deviation_sequence_inconsistent_*``
        (the TMI 2022 deviation, the paper's metric, whatever the detector);
        ``anatomical_errors_before/_after`` (frames failing the 12 criteria);
        ``latent_inconsistent_frames_before/_after`` (constrained dims, latent thresholds);
        ``mean_constrained_weight``; with a truth shard ``dice_{lv,myo,la}_before/_after``
        and ``dice_before/_after`` (mean over frames and structures).
    """
    config = config or CorrectionConfig()
    image = image_spec(image_thresholds, config.margin, config.detector, cycle)     # the correction's check
    names = image.names
    # the TMI 2022 deviation, reported beside the check as the paper's metric
    paper = Detector(names, image.lo, image.hi, image.tau, image.tau_end, kind="deviation", margin=config.margin)
    truth = None
    if truth_shard is not None:
        truth = {(s.patient_id, s.view): s.arrays["mask_native"] for s in iter_shard(truth_shard, ("mask_native",))}
    drop_la = not knows_atrium(model) and config.atrium == "drop"
    labels = (1, 2) if drop_la else (1, 2, 3)
    grid = shard_grid(shard)
    cohort_size = grid or int(model.config.input_size)
    rows = []
    progress = Progress(shard_counts(shard)[0], "sequences", f"correcting {shard}", logger=logger)
    measured = _criteria_by_sequence(input_criteria)

    def run(batch):
        inputs = [s.arrays["mask_native"] for s in batch]
        spacings = [s.spacing("mask_native") for s in batch]
        known = [measured.get((s.patient_id, s.view)) for s in batch]
        known = [k if k is not None and len(k) == len(x) else None for k, x in zip(known, inputs)]
        results = correct_sequences(model, inputs, constraint=constraint, config=config, spacings=spacings,
                                    image=image, grid=grid, device=device, cycle=cycle, input_criteria=known)
        for sequence, before, spacing, r, input_values in zip(batch, inputs, spacings, results, known):
            after = r.masks
            row = {"patient_id": sequence.patient_id, "view": sequence.view, "n_frames": len(after),
                   "method": r.method, "corrected": r.corrected, "replaced_frames": int(r.replaced.sum()),
                   "rounds": r.rounds}
            for when, check, curves in (("before", r.check_before, r.curves_before),
                                        ("after", r.check_after, r.curves_after)):
                row.update({f"{k}_{when}": v for k, v in _frame_counts(check, names).items()})
                if image.kind != "deviation":
                    check = paper.check(curves, cycle)
                row[f"deviation_inconsistent_frames_{when}"] = int(check["frame_inconsistent"].sum())
                row[f"deviation_sequence_inconsistent_{when}"] = bool(check["sequence_inconsistent"])
            # only frames measured nowhere else are measured here: the input's from the anatomy
            # stage, the repair's starting point and the rebuilt frames it checked by the repair
            start = None if r.start_criteria is None else (r.start, r.start_criteria)
            output = None if r.measured_criteria is None else (r.measured, r.measured_criteria)
            given = None if input_values is None or drop_la else (before, input_values)
            for when, masks, known_values in (
                    ("before", np.where(before == LA, BG, before) if drop_la else before, given or start),
                    ("after", after, output)):
                failed = failed_criteria(criteria_matrix(masks, spacing, labels=labels, known=known_values),
                                         labels=labels)
                row[f"anatomical_errors_{when}"] = int(failed.any(axis=1).sum())
            if constraint is not None and len(constraint.dims) and r.mu is not None:
                for when, z in (("before", r.mu), ("after", r.z)):
                    check = temporal_consistency(z[:, constraint.dims], constraint.lo, constraint.hi, constraint.tau,
                                                 end_thresholds=constraint.tau_end,
                                                 margin=config.margin, cycle=cycle)
                    row[f"latent_inconsistent_frames_{when}"] = int(check["frame_inconsistent"].sum())
                row["mean_constrained_weight"] = (float(np.mean(r.weights[constraint.dims]))
                                                  if r.weights is not None else np.nan)
            else:
                row.update(latent_inconsistent_frames_before=np.nan, latent_inconsistent_frames_after=np.nan,
                           mean_constrained_weight=np.nan)
            if truth is not None:
                clean = truth[(sequence.patient_id, sequence.view)]
                for when, masks in (("before", before), ("after", after)):
                    dice = _dice_after(dice, before, after, clean, labels) if when == "after" else \
                        dice_scores(masks, clean, labels)
                    with np.errstate(all="ignore"):
                        per_class = np.nanmean(dice, axis=0)
                    for label, value in zip(labels, per_class):
                        row[f"dice_{CLASS_NAMES[label]}_{when}"] = float(value)
                    row[f"dice_{when}"] = float(np.nanmean(dice))
            rows.append(row)
            if writer is not None:
                datasets = {"mask_native": after, "mask": resize_masks_nearest(after, (cohort_size, cohort_size)),
                            "frame_pos": sequence.arrays["frame_pos"]}
                if r.mu is not None:
                    datasets.update(mu=r.mu.astype(np.float32), z=r.z.astype(np.float32))
                writer.write(sequence, datasets)

    with MaskShardWriter.optional(out_h5, source="temporal", model=model_name, image_size=cohort_size) as writer:
        for batch in iter_shard_batches(shard, ("mask_native", "frame_pos"), chunk_sequences):
            run(batch)
            progress.update(len(batch))
        if not rows:
            raise ValueError(f"{shard}: the shard holds no sequences")
    table = pd.DataFrame(rows)
    before, after = (int(table[f"sequence_inconsistent_{w}"].sum()) for w in ("before", "after"))
    logger.info(f"{shard}: {len(table)} sequences, {int(table['n_frames'].sum())} frames; inconsistent sequences "
                f"{before} -> {after}")
    if out_table is not None:
        write_table(table, out_table)
    return table


def _criteria_by_sequence(table: pd.DataFrame | None) -> dict:
    """{(patient_id, view): (T, 12) criteria in frame order} of an anatomy-stage table."""
    if table is None:
        return {}
    missing = [c for c in ("patient_id", "view", "frame", *CRITERIA) if c not in table.columns]
    if missing:
        raise ValueError(f"the input's anatomical criteria table lacks the columns {missing}")
    table = table.sort_values(["patient_id", "view", "frame"], kind="stable")
    values = table[list(CRITERIA)].to_numpy(float)
    keys = list(zip(table["patient_id"].astype(str), table["view"].astype(str)))
    out, first = {}, 0
    for last in range(1, len(keys) + 1):
        if last == len(keys) or keys[last] != keys[first]:
            out[keys[first]] = values[first:last]
            first = last
    return out


def _dice_after(dice_before: np.ndarray, before: np.ndarray, after: np.ndarray, clean: np.ndarray,
                labels) -> np.ndarray:
    """:func:`~echolatent.models.quality.dice_scores` of ``after``, measuring only the frames that changed.

    A frame's Dice (NaN included) depends on that frame and its truth alone, so a frame
    equal to its ``before`` keeps the ``dice_before`` row.
    """
    if after.shape != before.shape or clean.shape != after.shape:
        return dice_scores(after, clean, labels)
    changed = (after != before).reshape(len(after), -1).any(axis=1)
    dice = np.array(dice_before, dtype=np.float64, copy=True)
    if changed.any():
        dice[changed] = dice_scores(after[changed], clean[changed], labels)
    return dice


def _frame_counts(check: dict, names) -> dict:
    """The columns of one image-space check (:meth:`~echolatent.temporal.detection.Detector.check`)."""
    row = {f"inconsistent_{name}": int(check["inconsistent"][:, k].sum()) for k, name in enumerate(names)}
    row["inconsistent_frames"] = int(check["frame_inconsistent"].sum())
    row["inconsistent_frame_ratio"] = float(check["frame_ratio"])
    row["sequence_inconsistent"] = bool(check["sequence_inconsistent"])
    return row
