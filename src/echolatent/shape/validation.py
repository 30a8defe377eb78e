"""Checks of the inputs every shape measure takes: label maps and pixel spacings."""

from __future__ import annotations

import numpy as np

from echolatent.labels import BACKGROUND, LA, LV, MYO, VALID_LABELS

__all__ = ["as_label_batch", "check_spacing"]


def check_spacing(spacing, n: int | None = None, *, required: bool = False, name: str = "spacing"):
    """Validate a pixel spacing ``(h, w)`` in mm, or an ``(n, 2)`` array of per-map spacings.

    Parameters
    ----------
    spacing : sequence of 2 float, array of shape (n, 2), or None
        Pixel size (rows, columns) in mm.
    n : int, optional
        Number of maps; when given, an ``(n, 2)`` array (one spacing per map) is accepted too.
    required : bool, default False
        Whether a missing spacing (None) is an error.
    name : str, default "spacing"
        What the spacing is called in error messages.

    Returns
    -------
    ndarray of float, shape (2,) or (n, 2), or None
        The spacing; None when it is None and not required.

    Raises
    ------
    ValueError
        If the spacing is required and missing, malformed, or not positive and finite.
    """
    if spacing is None:
        if required:
            raise ValueError(f"{name} (h, w) in mm is required")
        return None
    try:
        sp = np.asarray(spacing, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (h, w) in mm, got {spacing!r}") from None
    if not (sp.shape == (2,) or (n is not None and sp.shape == (n, 2))):
        expected = "(h, w) in mm" if n is None else f"(h, w) in mm or an array of shape ({n}, 2)"
        raise ValueError(f"{name} must be {expected}, got shape {sp.shape}")
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"{name} must be positive and finite, got {spacing!r}")
    return sp


def as_label_batch(masks, labels=(LV, MYO, LA)) -> tuple[np.ndarray, bool]:
    """Check label maps and return them as a C-contiguous (N, H, W) uint8 array.

    Parameters
    ----------
    masks : array_like of int, shape (H, W) or (N, H, W)
        Label maps (:mod:`echolatent.labels`).
    labels : sequence of int, default (1, 2, 3)
        The structure labels the maps may hold besides the background.

    Returns
    -------
    batch : ndarray of uint8, shape (N, H, W)
        The maps.
    single : bool
        Whether ``masks`` was one (H, W) map.

    Raises
    ------
    TypeError
        If the maps are not of an integer dtype.
    ValueError
        If the maps are not 2-D/3-D, are empty, or hold values outside the label set.
    """
    arr = np.asarray(masks)
    if arr.dtype == bool or arr.dtype.kind not in "ui":
        raise TypeError(f"label maps must have an integer dtype (e.g. uint8), got {arr.dtype}")
    if arr.ndim == 2:
        arr, single = arr[None], True
    elif arr.ndim == 3:
        single = False
    else:
        raise ValueError(f"label maps must be (H, W) or (N, H, W), got an array of shape {arr.shape}")
    if arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"label maps must be non-empty, got shape {arr.shape}")
    allowed = {BACKGROUND, *labels}
    every_label = set(VALID_LABELS)
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            bad = sorted(set(np.unique(arr).tolist()) - allowed)
            raise ValueError(f"unknown label values {bad[:10]} in label maps; allowed values are {sorted(allowed)}")
        arr = arr.astype(np.uint8)
    arr = np.ascontiguousarray(arr)
    if arr.size:
        col_or = np.bitwise_or.reduce(arr, axis=1)
        bad_present = bool(np.any(col_or & 0xFC))  # a bit above 0b11: a value > LA
        if not bad_present and allowed != every_label:
            bad_present = any(np.any(arr == v) for v in every_label - allowed)
        if bad_present:
            bad = sorted(set(np.unique(arr).tolist()) - allowed)
            raise ValueError(f"unknown label values {bad[:10]} in label maps; allowed values are {sorted(allowed)}"
                             + ("" if allowed == every_label else f" (labels={tuple(labels)})"))
    return arr, single
