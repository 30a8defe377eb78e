"""Correcting a list of label-map sequences with the configured method (:func:`correct_sequences`)."""

from __future__ import annotations

import numpy as np

from echolatent.temporal.config import CorrectionConfig
from echolatent.temporal.correction.consistency import LatentConstraint
from echolatent.temporal.correction.repair import repair_sequences
from echolatent.temporal.correction.result import CorrectedSequence
from echolatent.temporal.correction.smooth import smooth_sequences

__all__ = ["correct_sequences"]


def correct_sequences(model, masks_native: list[np.ndarray], *, constraint: LatentConstraint | None,
                      config: CorrectionConfig | None = None, spacings=None, image=None,
                      grid: int | None = None, device="cpu", cycle=None, input_criteria=None) -> list[CorrectedSequence]:
    """Temporally correct label-map sequences with a trained mask VAE.

    ``config.method`` picks the correction: ``"repair"`` (:mod:`~.repair`) or ``"smooth"``
    (:mod:`~.smooth`).

    Parameters
    ----------
    model : MaskVAE
    masks_native : list of (T_i, H_i, W_i) int arrays
        Label maps (0 BG, 1 LV, 2 MYO, 3 LA) on their native grids.
    constraint : LatentConstraint or None
        Constrained latent dimensions, bounds and thresholds (None: plain snake on all dims).
    config : CorrectionConfig
        Default: the workflow's defaults.
    spacings : list of (h, w), optional
        Pixel spacing of each sequence (needed with ``image``).
    image : Detector, DataFrame or tuple, optional
        The image-space check (:func:`~echolatent.temporal.correction.consistency.image_spec`): a
        :class:`~echolatent.temporal.detection.Detector`; the image-space rows of a thresholds
        table (checked with ``config.detector``); or ``(names, lo, hi, tau[, tau_end])``, the
        TMI 2022 deviation's thresholds (``tau_end``: of the first and last frames,
        :mod:`echolatent.temporal.metric`; default ``tau``). Needed for ``method="repair"``,
        ``scope="inconsistent"`` and ``max_rounds > 1``; the attribute curves before and after
        are then returned too.
    grid : int, optional
        The cohort's model grid the training frames went through
        (:func:`~echolatent.models.inference.model_input`).
    cycle : {"full", "half", None}
        The sequences' cycle: the end-frame rule of the temporal metric
        (:mod:`echolatent.temporal.metric`) in the image-space checks, the latent constraint and
        the repair (full: periodic neighbours; half: mirror; None: the reference's ``d = 0`` at
        the first and last frames, which are then never flagged nor repaired for consistency).
    input_criteria : list of (T_i, 12) arrays or None, optional
        The 12 anatomical criteria of each input sequence already measured (the anatomy
        stage's table, :func:`~echolatent.shape.criteria.criteria_matrix` with the labels
        0-3 and the default grid): the repair then measures only the frames its pre-cleaning
        changes. The results are the same with or without them.

    Returns
    -------
    list of CorrectedSequence, one per sequence
    """
    config = config or CorrectionConfig()
    if config.method == "repair":
        return repair_sequences(model, masks_native, constraint=constraint, config=config, spacings=spacings,
                                image=image, grid=grid, device=device, cycle=cycle, input_criteria=input_criteria)
    return smooth_sequences(model, masks_native, constraint=constraint, config=config, spacings=spacings, image=image,
                            grid=grid, device=device, cycle=cycle)
