"""Morphological pre-cleaning of label maps before they are encoded (TMI 2022 pipeline).

Steps, applied to every frame independently (vectorised over the frames of a sequence):

1. **Largest blob.** Keep the largest 8-connected component of each structure (LV, MYO,
   and LA when it is kept); the other components become background. 8-connectivity is the
   one of the anatomical criteria 6-8, so a cleaned map never fails them.
2. **Fill holes, MYO first, then LV (then LA).** A hole of a structure is a 4-connected
   component of its complement that does not touch the image border and holds no pixel
   of another structure; its (background) pixels take the structure's label. So a closed
   myocardium does not swallow the LV cavity it surrounds (the reason the reference fills
   the MYO first), and a hole in that cavity is given back to the LV.
3. **Fill gaps between LV and MYO.** Background pixels enclosed by LV ∪ MYO become MYO.
4. **Labels the model does not know.** With ``keep_atrium=False`` (a 3-class model,
   as in the reference) the LA becomes background; how the LA is put back after decoding
   is decided in :mod:`echolatent.temporal.correction.smooth`.

Connected components are labelled once per call for the whole (T, H, W) stack, frames
not connected (:func:`echolatent.shape.components.label_stack`).
"""

from __future__ import annotations

import numpy as np

from echolatent.labels import BACKGROUND, LA, LV, MYO
from echolatent.shape.components import label_stack

__all__ = ["largest_component", "fill_holes", "preclean"]


def _as_stack(masks) -> tuple[np.ndarray, bool]:
    masks = np.asarray(masks)
    if masks.ndim == 2:
        return masks[None], True
    if masks.ndim != 3:
        raise ValueError(f"expected label maps (H, W) or (T, H, W), got shape {masks.shape}")
    if not np.issubdtype(masks.dtype, np.integer):
        raise TypeError(f"label maps must have an integer dtype, got {masks.dtype}")
    return masks, False


def largest_component(binary: np.ndarray) -> np.ndarray:
    """Per frame of a (T, H, W) boolean stack, the largest 8-connected component.

    Ties: the component whose first pixel comes first in raster order (scipy's lowest label).
    """
    labels, n = label_stack(binary, connectivity=8)
    out = np.array(binary, dtype=bool)  # a frame with at most one component is its own answer
    if n == 0:
        return out
    # labels are consecutive per frame, frame by frame: frame t's labels end at hi[t]
    hi = np.maximum.accumulate(labels.reshape(len(labels), -1).max(axis=1))
    count = np.diff(hi, prepend=0)
    multi = np.flatnonzero(count > 1)
    if not len(multi):
        return out
    sub = labels[multi]
    sizes = np.bincount(sub.ravel(), minlength=n + 1)[1:]  # 0 for labels of the other frames
    frame_of = np.repeat(np.arange(len(hi)), count)
    order = np.lexsort((-sizes, frame_of))  # by frame, then largest first; stable, so ties keep the lowest label
    first = np.ones(n, bool)
    first[1:] = frame_of[order][1:] != frame_of[order][:-1]
    keep = np.zeros(n + 1, bool)
    keep[order[first] + 1] = True
    out[multi] = keep[sub]
    return out


def fill_holes(binary: np.ndarray, keep_out: np.ndarray | None = None) -> np.ndarray:
    """Per frame of a (T, H, W) boolean stack, the pixels of the holes (not the structure itself).

    A hole is a 4-connected component of the complement that does not touch the border of
    its frame. Holes holding any pixel of ``keep_out`` (another structure) are not returned.
    """
    labels, n = label_stack(~binary, connectivity=4)
    excluded = np.zeros(n + 1, bool)
    excluded[0] = True  # label 0 is the structure itself
    for edge in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        excluded[edge] = True
    if keep_out is not None and not excluded.all():
        excluded[labels[keep_out]] = True
    if excluded.all():  # the usual case: no hole, no pass over the pixels
        return np.zeros_like(binary, dtype=bool)
    return ~excluded[labels]


def preclean(masks, *, keep_atrium: bool = True) -> np.ndarray:
    """Pre-clean label maps (0 BG, 1 LV, 2 MYO, 3 LA) as in the TMI 2022 pipeline.

    Parameters
    ----------
    masks : array_like of int, shape (H, W) or (T, H, W)
    keep_atrium : bool
        Keep the LA (cleaned like the other structures: largest blob, holes filled); with
        False the LA becomes background (3-class models).

    Returns
    -------
    ndarray of uint8, same shape as ``masks``
    """
    stack, single = _as_stack(masks)
    if stack.size and (stack.min() < 0 or stack.max() > LA):
        raise ValueError("label maps must hold labels 0 (BG), 1 (LV), 2 (MYO), 3 (LA) only")
    out = stack.astype(np.uint8, copy=True)
    structures = (LV, MYO, LA) if keep_atrium else (LV, MYO)
    if not keep_atrium:
        out[out == LA] = BACKGROUND
    box = _foreground_box(out)
    if box is None:
        return out[0] if single else out
    _preclean_in_place(out[box], structures, keep_atrium)
    return out[0] if single else out


def _foreground_box(stack: np.ndarray):
    """Slices of the smallest box holding every labelled pixel of the stack, one background
    pixel wider on each side (within the frame); None for an all-background stack.

    Cleaning inside it is cleaning the whole frame: every component of a structure lies in
    it, and a component of a complement that reaches its edge (where the edge is not the
    frame's) continues through background to the frame's border, so is not a hole either way.
    """
    rows = np.flatnonzero(stack.any(axis=(0, 2)))
    if not len(rows):
        return None
    cols = np.flatnonzero(stack.any(axis=(0, 1)))
    _, height, width = stack.shape
    return (slice(None), slice(max(rows[0] - 1, 0), min(rows[-1] + 2, height)),
            slice(max(cols[0] - 1, 0), min(cols[-1] + 2, width)))


def _preclean_in_place(out: np.ndarray, structures, keep_atrium: bool) -> None:
    """Steps 1-3 of :func:`preclean` on a (T, H, W) uint8 stack (a view), in place."""
    # 1. largest blob per structure
    for label in structures:
        present = out == label
        if present.any():
            out[present & ~largest_component(present)] = BACKGROUND
    # 2. holes, MYO first; a hole holding another structure (the cavity of a closed
    #    myocardium) is not a hole to fill, and only background pixels are relabelled
    for label in (MYO, LV, LA) if keep_atrium else (MYO, LV):
        present = out == label
        if present.any():
            others = (out != BACKGROUND) & ~present
            out[fill_holes(present, keep_out=others) & (out == BACKGROUND)] = label
    # 3. background enclosed by LV ∪ MYO (gaps between them) becomes MYO
    epi = (out == LV) | (out == MYO)
    if epi.any():
        out[fill_holes(epi) & (out == BACKGROUND)] = MYO
