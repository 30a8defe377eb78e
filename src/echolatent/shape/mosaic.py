"""Mosaics: many label-map crops stacked in one 2-D image, so that one call processes them all.

A tile is a crop with a ring of sentinel pixels (:data:`OUTSIDE`); tiles are stacked
vertically, each keeping its own height, in an image as wide as the widest tile (padding =
the sentinel). One call of a labelling or morphology routine then processes a whole batch,
and per-tile results are sums over each tile's rows (:func:`tile_sum`): tile ``q`` holds
rows ``start[q] .. start[q] + hs[q] - 1``.
"""

from __future__ import annotations

import numpy as np

from echolatent.shape.components import label

__all__ = [
    "CONNECTIVITY_8",
    "OUTSIDE",
    "dilate8",
    "first_last",
    "foreground_boxes",
    "mosaic_labels",
    "stack_tiles",
    "tile_sum",
]

#: Sentinel value of the working canvases: outside the image (or padding).
OUTSIDE = 4
#: Structuring element of 8-connectivity (the 3 x 3 square).
CONNECTIVITY_8 = np.ones((3, 3), dtype=bool)


def first_last(b: np.ndarray):
    """First and last True index along the last axis of a (n, L) bool array (-1 where none)."""
    has = b.any(axis=1)
    first = np.argmax(b, axis=1)
    last = b.shape[1] - 1 - np.argmax(b[:, ::-1], axis=1)
    return np.where(has, first, -1), np.where(has, last, -1), has


def stack_tiles(pieces, ring: int, multiple: int = 1):
    """Stack 2-D uint8 pieces into a mosaic, each surrounded by ``ring`` sentinel pixels."""
    hs = np.fromiter((p.shape[0] for p in pieces), np.int64, len(pieces)) + 2 * ring
    ws = np.fromiter((p.shape[1] for p in pieces), np.int64, len(pieces)) + 2 * ring
    width = int(ws.max())
    width += (-width) % multiple
    start = np.zeros(len(pieces), np.int64)
    np.cumsum(hs[:-1], out=start[1:])
    img = np.full((int(hs.sum()), width), OUTSIDE, np.uint8)
    for p, s0 in zip(pieces, start.tolist()):
        img[s0 + ring:s0 + ring + p.shape[0], ring:ring + p.shape[1]] = p
    return img, start, hs, ws


def tile_sum(row_values: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per tile sum of per-row values (rows of tile q start at ``start[q]``), along axis 0."""
    return np.add.reduceat(row_values, start, axis=0) if len(start) else np.zeros(0, np.int64)


def mosaic_labels(S: np.ndarray, start: np.ndarray, conn8: bool):
    """Label a mosaic; labels are consecutive in raster order, so tile q owns ``lo[q]+1 .. lo[q]+count[q]``.

    The labels are those of ``scipy.ndimage.label`` (:func:`echolatent.shape.components.label`).
    """
    lab, nlab = label(S, connectivity=8 if conn8 else 4)
    hi = np.maximum.accumulate(np.maximum.reduceat(lab.max(axis=1), start)).astype(np.int64)
    lo = np.concatenate(([0], hi[:-1])).astype(np.int64)
    return lab, nlab, lo, hi - lo


def dilate8(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by the 3 x 3 square (8-neighbourhood), as two separable shifts; pixels
    outside the array count as unset."""
    rows = mask.copy()
    rows[:, 1:] |= mask[:, :-1]
    rows[:, :-1] |= mask[:, 1:]
    out = rows.copy()
    out[1:] |= rows[:-1]
    out[:-1] |= rows[1:]
    return out


def foreground_boxes(X: np.ndarray):
    """Per map, the crop ``[ra:rb, ca:cb]`` = foreground bounding box + 1 pixel (clamped), and presence."""
    N, H, W = X.shape
    if W % 8 == 0:
        words = X.reshape(N, H, W // 8, 8).view(np.uint64).reshape(N, H, W // 8)
        rows_any = np.bitwise_or.reduce(words, axis=2) != 0
        cols_any = (np.bitwise_or.reduce(words, axis=1).view(np.uint8).reshape(N, W)) != 0
    else:
        rows_any = np.bitwise_or.reduce(X, axis=2) != 0
        cols_any = np.bitwise_or.reduce(X, axis=1) != 0
    r0, r1, has_fg = first_last(rows_any)
    c0, c1, _ = first_last(cols_any)
    ra, rb = np.maximum(r0 - 1, 0), np.minimum(r1 + 2, H)
    ca, cb = np.maximum(c0 - 1, 0), np.minimum(c1 + 2, W)
    return ra, rb, ca, cb, has_fg

