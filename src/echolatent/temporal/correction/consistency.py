"""What a correction measures itself against: the latent constraint and the image-space check.

:class:`LatentConstraint`
    the constrained latent dimensions (the AR-VAE's attribute dimensions) with their
    normalisation bounds and thresholds: what the smoothing may not leave inconsistent;
:func:`image_check`
    the attribute curves of label-map sequences and their temporal consistency in image
    space (:func:`~echolatent.temporal.metric.temporal_consistency`), against the image-space
    thresholds ``(names, lo, hi, tau[, tau_end])`` (:func:`image_spec`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from echolatent.shape.attributes import shape_attributes
from echolatent.temporal.evaluation import end_thresholds
from echolatent.temporal.metric import temporal_consistency

__all__ = ["LatentConstraint", "image_spec", "image_check"]


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
        rows = table[table["space"] == "latent"].sort_values("dim")
        return cls(rows["dim"].to_numpy(int), rows["lo"].to_numpy(float), rows["hi"].to_numpy(float),
                   rows["tau"].to_numpy(float), end_thresholds(rows))


def image_spec(image) -> tuple | None:
    """``(names, lo, hi, tau, tau_end)`` of an ``image`` argument ``(names, lo, hi, tau[, tau_end])``."""
    if image is None:
        return None
    if len(image) not in (4, 5):
        raise ValueError("image thresholds must be (names, lo, hi, tau) or (names, lo, hi, tau, tau_end)")
    return tuple(image) if len(image) == 5 else (*image, None)


def image_check(masks_native: list[np.ndarray], spacings, image, cycle=None) -> tuple[list[np.ndarray], list[dict]]:
    """Attribute curves and image-space consistency of each sequence.

    Parameters
    ----------
    masks_native : list of (T_i, H_i, W_i) label maps
    spacings : list of (h, w)
        Pixel spacing of each sequence (mm), for the physical attribute columns.
    image : tuple ``(names, lo, hi, tau, tau_end, margin)``
        :func:`image_spec` and the margin of the thresholds.
    cycle : {"full", "half", None}
        End-frame rule of the metric.

    Returns
    -------
    curves : list of ndarray (T_i, A)
    checks : list of dict
        :func:`~echolatent.temporal.metric.temporal_consistency` of each sequence.
    """
    names, lo, hi, tau, tau_end, margin = image
    curves, results = [], []
    for masks, spacing in zip(masks_native, spacings):
        attributes = shape_attributes(masks, spacing)[list(names)].to_numpy(np.float64)
        curves.append(attributes)
        results.append(temporal_consistency(attributes, lo, hi, tau, margin=margin, cycle=cycle,
                                            end_thresholds=tau_end))
    return curves, results
