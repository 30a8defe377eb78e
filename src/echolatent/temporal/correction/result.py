"""What a correction returns for each sequence (:class:`CorrectedSequence`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CorrectedSequence"]


@dataclass
class CorrectedSequence:
    """One label-map sequence through a correction (:func:`~.sequences.correct_sequences`).

    Attributes
    ----------
    input : ndarray (T, H, W) uint8
        The label maps as given, on their native grid.
    cleaned : ndarray (T, H, W) uint8
        The pre-cleaned input (:func:`~echolatent.temporal.preclean.preclean`, LA kept).
    masks : ndarray (T, H, W) uint8
        The output.
    method : {"none", "repair", "smooth"}
        What made the output: ``none`` when no frame was corrected, ``smooth`` also for a
        sequence the repair left to its fallback.
    corrected : bool
        Whether any frame took a corrected (decoded or rebuilt) mask.
    replaced : ndarray (T,) bool
        The frames that took one.
    rounds : int
        Rounds of correction run (repair rounds, or smoothing rounds).
    mu, z : ndarray (T, D) or None
        The latent trajectory of the pre-cleaned input and the corrected one (smoothed, or
        with the repaired frames re-estimated); None when nothing was encoded.
    weights : ndarray (D,) or None
        The smoothing weight of each latent dimension (smoothing only).
    curves_before, curves_after : ndarray (T, A) or None
        Attribute curves of the input and of the output (with image-space thresholds).
    check_before, check_after : dict or None
        Their image-space check (:meth:`~echolatent.temporal.detection.Detector.check`: the
        configured detector's flags, the keys of
        :func:`~echolatent.temporal.metric.temporal_consistency`).
    repaired_regions : ndarray (T, 3) bool or None
        The nested regions (:data:`~echolatent.temporal.correction.regions.REGIONS`) the
        repair rebuilt per frame (the repair, and its fallback, only).
    start, start_criteria : ndarray (T, H, W) uint8 and (T, 12) float, or None
        The repair's starting point (``cleaned``, without the LA when the atrium is dropped)
        and its 12 anatomical criteria (:func:`~echolatent.shape.criteria.criteria_matrix`),
        so that the frames a correction leaves as they were are not measured again (the
        repair only).
    measured, measured_criteria : ndarray (T, H, W) uint8 and (T, 12) float, or None
        Per frame, the output's frame where the repair measured its criteria (a rebuilt frame
        its validity check measured), else the starting point's, and their criteria: the
        output's criteria are measured only where it differs from ``measured`` (the repair
        only).
    """

    input: np.ndarray
    cleaned: np.ndarray
    masks: np.ndarray
    replaced: np.ndarray
    method: str = "none"
    corrected: bool = False
    rounds: int = 0
    mu: np.ndarray | None = None
    z: np.ndarray | None = None
    weights: np.ndarray | None = None
    curves_before: np.ndarray | None = None
    curves_after: np.ndarray | None = None
    check_before: dict | None = None
    check_after: dict | None = None
    repaired_regions: np.ndarray | None = None
    start: np.ndarray | None = None
    start_criteria: np.ndarray | None = None
    measured: np.ndarray | None = None
    measured_criteria: np.ndarray | None = None
