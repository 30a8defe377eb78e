"""What a correction measures itself against: the latent constraint and the image-space check.

:class:`LatentConstraint`
    the constrained latent dimensions (the AR-VAE's attribute dimensions) with their
    normalisation bounds and thresholds: what the smoothing may not leave inconsistent;
:func:`image_check`
    the attribute curves of label-map sequences and their temporal consistency in image
    space, by the configured detector (:mod:`echolatent.temporal.detection`: the spike search
    or the TMI 2022 deviation) against the image-space thresholds (:func:`image_spec`); the
    repair plans on the same flags (:mod:`~.planning`), so what it repairs is what the check
    flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from echolatent.shape.attributes import shape_attributes
from echolatent.temporal.detection import Detector, resolve_detector
from echolatent.temporal.evaluation import end_thresholds

__all__ = ["LatentConstraint", "image_spec", "image_check", "recheck_changed"]


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


def image_spec(image, margin: float = 0.0, detector: str = "auto", cycle=None) -> Detector | None:
    """The image-space check of a correction: a :class:`~echolatent.temporal.detection.Detector`.

    ``image`` is a :class:`~echolatent.temporal.detection.Detector`; the image-space rows of a
    thresholds table (checked with ``detector``, :func:`~echolatent.temporal.detection.resolve_detector`
    with ``cycle``); or a tuple ``(names, lo, hi, tau[, tau_end])``, which holds the TMI 2022
    deviation's thresholds only and is checked with it. ``margin`` (the configuration's) scales
    the thresholds in every case. None gives None.
    """
    if image is None:
        return None
    if isinstance(image, Detector):
        return image.with_margin(margin)
    if isinstance(image, pd.DataFrame):
        return Detector.from_table(image, resolve_detector(detector, cycle), margin)
    if len(image) not in (4, 5):
        raise ValueError("image thresholds must be a Detector, a thresholds table, (names, lo, hi, tau) or "
                         "(names, lo, hi, tau, tau_end)")
    names, lo, hi, tau, *end = image
    return Detector(names, lo, hi, tau, end[0] if end else None, kind="deviation", margin=margin)


def image_check(masks_native: list[np.ndarray], spacings, detector: Detector, cycle=None
                ) -> tuple[list[np.ndarray], list[dict]]:
    """Attribute curves and image-space consistency of each sequence.

    Parameters
    ----------
    masks_native : list of (T_i, H_i, W_i) label maps
    spacings : list of (h, w)
        Pixel spacing of each sequence (mm), for the physical attribute columns.
    detector : Detector
        :func:`image_spec`: the attribute columns, their thresholds and which frames they flag.
    cycle : {"full", "half", None}
        End-frame rule.

    Returns
    -------
    curves : list of ndarray (T_i, A)
    checks : list of dict
        :meth:`~echolatent.temporal.detection.Detector.check` of each sequence.
    """
    curves, results = [], []
    for masks, spacing in zip(masks_native, spacings):
        attributes = shape_attributes(masks, spacing)[list(detector.names)].to_numpy(np.float64)
        curves.append(attributes)
        results.append(detector.check(attributes, cycle))
    return curves, results


def recheck_changed(curves: np.ndarray, before: np.ndarray, after: np.ndarray, spacing, detector: Detector,
                    cycle=None, cache: dict | None = None) -> tuple[np.ndarray, dict]:
    """:func:`image_check` of one sequence ``after`` that differs from ``before`` in a few frames.

    ``curves`` are the attribute curves of ``before``; only the frames that differ are
    measured again (the attributes of a frame depend on that frame alone), so a repair that
    rebuilds two frames of twenty measures two.

    ``cache`` (optional, filled in place): attribute rows already measured, keyed by the frame's
    bytes; pass the same dict to the calls on frames of one sequence (same shape, dtype and
    spacing, same detector) to measure each distinct frame once (the repair's rounds and
    decoder weights rebuild many frames alike).

    Returns
    -------
    curves : ndarray (T, A)
        The attribute curves of ``after``.
    check : dict
        Their :meth:`~echolatent.temporal.detection.Detector.check`.
    """
    changed = np.flatnonzero((np.asarray(before) != np.asarray(after)).reshape(len(after), -1).any(axis=1))
    curves = np.array(curves, dtype=np.float64, copy=True)
    cache = {} if cache is None else cache
    keys = {t: after[t].tobytes() for t in changed}
    new = [t for t in changed if keys[t] not in cache]
    if new:
        rows = shape_attributes(after[new], spacing)[list(detector.names)].to_numpy(np.float64)
        cache.update((keys[t], row) for t, row in zip(new, rows))
    for t in changed:
        curves[t] = cache[keys[t]]
    return curves, detector.check(curves, cycle)
