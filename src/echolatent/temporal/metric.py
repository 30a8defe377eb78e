"""The temporal-consistency metric of TMI 2022 on attribute curves.

For a curve ``a_1..a_T`` min-max normalised with bounds ``(lo, hi)``, the deviation of
frame ``t`` is ``d_t = â_t - (â_{t-1} + â_{t+1}) / 2`` (``d = 0`` at the first and last
frames), i.e. how far the frame lies from the linear interpolation of its neighbours. A frame
is inconsistent for an attribute when ``|d_t| > τ``; a sequence is inconsistent when any
frame is, for any attribute.
"""

from __future__ import annotations

import numpy as np

#: Published thresholds (normalised units, CAMUS native grid and bounds). Re-derive them
#: for another grid, frame rate or cohort (:func:`derive_thresholds`).
TEMPORAL_THRESHOLDS = {
    "lv_area": 1.60e-2,
    "lv_base_width": 9.69e-2,
    "lv_length": 2.62e-2,
    "lv_orientation": 2.29e-2,
    "myo_area": 3.21e-2,
    "epi_center_x": 4.56e-3,
    "epi_center_y": 1.10e-2,
}

#: Normalisation bounds (min, max) of the published thresholds: CAMUS native pixels and degrees.
CAMUS_BOUNDS = {
    "lv_area": (19632.0, 112404.0),
    "lv_base_width": (53.76, 172.88),
    "lv_length": (301.42, 612.86),
    "lv_orientation": (-7.04, 15.26),
    "myo_area": (23228.0, 64134.0),
    "epi_center_x": (183.37, 479.37),
    "epi_center_y": (285.86, 609.21),
}


def consistency_deviation(curves: np.ndarray, lo, hi) -> np.ndarray:
    """Signed deviation ``d_t`` of every frame from the mean of its neighbours.

    Parameters
    ----------
    curves : ndarray, shape (T, K) or (N, T, K)
        Attribute (or latent) curves over time, one column per attribute.
    lo, hi : array_like, shape (K,)
        Normalisation bounds per attribute.

    Returns
    -------
    ndarray, same shape as ``curves``
        ``d_t`` in normalised units; 0 at the first and last frames.
    """
    curves = np.asarray(curves, dtype=np.float64)
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    if np.any(hi <= lo):
        raise ValueError("normalisation bounds need hi > lo for every attribute")
    normalised = (curves - lo) / (hi - lo)
    deviation = np.zeros_like(normalised)
    deviation[..., 1:-1, :] = normalised[..., 1:-1, :] - 0.5 * (normalised[..., :-2, :] + normalised[..., 2:, :])
    return deviation


def temporal_consistency(curves: np.ndarray, lo, hi, thresholds, *, margin: float = 0.0,
                         nan_inconsistent: bool = True) -> dict:
    """Frame- and sequence-level temporal consistency.

    Parameters
    ----------
    curves : ndarray, shape (T, K) or (N, T, K)
    lo, hi, thresholds : array_like, shape (K,)
    margin : float
        Thresholds are scaled by ``1 + margin``.
    nan_inconsistent : bool
        An interior frame whose deviation is NaN (the attribute could not be measured on it
        or on a neighbour, e.g. a structure is missing) counts as inconsistent; with False
        it counts as consistent.

    Returns
    -------
    dict
        ``deviation`` (|d_t|, same shape as curves), ``inconsistent`` (bool, same shape),
        ``frame_inconsistent`` (any attribute, shape (..., T)), ``attribute_ratio``
        (fraction of inconsistent frames per attribute, shape (..., K)), ``frame_ratio``
        (fraction of frames inconsistent for any attribute, shape (...)),
        ``error_to_threshold`` (|d_t| / τ) and ``sequence_inconsistent`` (bool, shape (...)).
    """
    tau = np.asarray(thresholds, dtype=np.float64) * (1.0 + margin)
    deviation = np.abs(consistency_deviation(curves, lo, hi))
    with np.errstate(invalid="ignore"):
        inconsistent = deviation > tau
    if nan_inconsistent:
        inconsistent |= np.isnan(deviation)
    frame_inconsistent = inconsistent.any(axis=-1)
    return {
        "deviation": deviation,
        "inconsistent": inconsistent,
        "frame_inconsistent": frame_inconsistent,
        "attribute_ratio": inconsistent.mean(axis=-2),
        "frame_ratio": frame_inconsistent.mean(axis=-1),
        "error_to_threshold": deviation / tau,
        "sequence_inconsistent": frame_inconsistent.any(axis=-1),
    }


def derive_thresholds(reference_curves, lo, hi) -> np.ndarray:
    """Thresholds from reference sequences: the largest ``|d_t|`` per attribute over all of them.

    ``reference_curves`` is an iterable of (T_i, K) arrays (sequences may differ in length).
    Every reference sequence is then consistent by construction.
    """
    maxima = sequence_maxima(reference_curves, lo, hi)
    if not len(maxima):
        raise ValueError("no reference sequences to derive thresholds from")
    return np.nanmax(maxima, axis=0)


def sequence_maxima(curves, lo, hi) -> np.ndarray:
    """``max_t |d_t|`` per sequence and attribute, shape (N, K) (NaN frames are ignored).

    The reference tool reports these maxima (max/min/mean/std over sequences) when run on
    reference data without thresholds.
    """
    rows = []
    for c in curves:
        d = np.abs(consistency_deviation(c, lo, hi))
        peak = np.where(np.isnan(d), -np.inf, d).max(axis=0)
        rows.append(np.where(np.isneginf(peak), np.nan, peak))
    return np.array(rows, dtype=np.float64).reshape(len(rows), -1)
