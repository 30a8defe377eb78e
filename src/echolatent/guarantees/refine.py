"""Refinement in image space: from an invalid segmentation towards its valid correction, no farther than needed.

The latent correction (:mod:`echolatent.guarantees.correction`) returns a decoding of the
VAE: valid, but with the VAE's own reconstruction error everywhere on the frame, also where
the segmentation was right. The refinement walks back from that valid shape towards the
original one along a shape interpolation and stops at the last valid point, so that what the
correction changes is, as far as validity allows, only what had to change.

The interpolation is that of signed distance maps (a standard shape interpolation: each
structure's boundary moves continuously from one shape to the other). For structure ``k``
with signed distances ``d_a`` (original) and ``d_b`` (valid correction), negative inside,

    d_k(lam) = (1 - lam) d_a + lam d_b,

and a pixel takes the structure with the most negative ``d_k(lam)``, or the background where
none is negative. ``lam = 1`` is taken to be the valid map itself (exactly), ``lam = 0`` the
original. :func:`refine_toward` bisects ``lam`` for the smallest valid value, as the latent
bisection does on its segment.

:func:`revert_components` is local instead: the pixels where the correction and the original
differ form connected components (a filled hole, a removed island, a moved stretch of
boundary); every component whose change is not needed for validity is given back to the
original. What remains changed is the set of changes the criteria require, at the
granularity of these components.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

__all__ = ["signed_distances", "blend_label_maps", "refine_toward", "revert_components"]


def signed_distances(mask: np.ndarray, labels: Sequence[int], spacing=(1.0, 1.0)) -> np.ndarray:
    """Signed distance (mm) to the boundary of each label's region, negative inside: (len(labels), H, W).

    A label absent from ``mask`` gets a constant positive distance larger than the image
    (everything is far outside it).
    """
    mask = np.asarray(mask)
    spacing = tuple(float(s) for s in spacing)
    far = float(np.hypot(mask.shape[0] * spacing[0], mask.shape[1] * spacing[1]))
    out = np.empty((len(labels),) + mask.shape, np.float32)
    for j, label in enumerate(labels):
        region = mask == label
        if not region.any():
            out[j] = far
            continue
        if region.all():
            out[j] = -far
            continue
        # pixel-centre distances; half a pixel apart at the boundary on both sides, so the sign is exact
        outside = ndimage.distance_transform_edt(~region, sampling=spacing)
        inside = ndimage.distance_transform_edt(region, sampling=spacing)
        out[j] = np.where(region, -inside, outside)
    return out


def blend_label_maps(d_a: np.ndarray, d_b: np.ndarray, lam: np.ndarray, labels: Sequence[int],
                     background: int = 0) -> np.ndarray:
    """Label maps (N, H, W) at ``lam`` (N,) between signed distances ``d_a`` and ``d_b`` (N, K, H, W)."""
    lam = np.asarray(lam, np.float32).reshape(-1, 1, 1, 1)
    d = (1.0 - lam) * d_a + lam * d_b
    best = d.argmin(axis=1)
    inside = np.take_along_axis(d, best[:, None], axis=1)[:, 0] < 0
    out = np.asarray(labels, np.uint8)[best]
    out[~inside] = background
    return out


def refine_toward(original: np.ndarray, valid: np.ndarray, spacing, is_valid: Callable[[np.ndarray, np.ndarray],
                  np.ndarray], *, labels: Sequence[int] = (1, 2, 3), n_bisections: int = 8) -> tuple[np.ndarray,
                                                                                                      np.ndarray]:
    """The valid shapes nearest to ``original`` on the way to ``valid`` (image-space bisection).

    Parameters
    ----------
    original, valid : ndarray (N, H, W)
        Invalid frames and their valid corrections (same grid).
    spacing : ndarray (N, 2)
        Pixel size (mm) of each frame.
    is_valid : callable
        ``(maps (M, H, W), rows (M,)) -> bool (M,)``: the criteria of the frames ``rows``.
    labels : sequence of int
        The structures interpolated (the others become background).
    n_bisections : int
        Halvings of ``[0, 1]``; the answer is a map tested valid, ``2 ** -n_bisections`` after an
        invalid one on the path (or ``valid`` itself).

    Returns
    -------
    maps : ndarray (N, H, W) uint8
        The refined frames (``valid`` where no earlier point of the path is valid).
    lam : ndarray (N,)
        Their position on the path (1 = the correction unchanged).
    """
    original, valid = np.asarray(original), np.asarray(valid)
    n = len(original)
    spacing = np.broadcast_to(np.asarray(spacing, np.float64), (n, 2))
    d_a = np.stack([signed_distances(original[i], labels, spacing[i]) for i in range(n)]) if n else None
    d_b = np.stack([signed_distances(valid[i], labels, spacing[i]) for i in range(n)]) if n else None
    out = valid.astype(np.uint8, copy=True)
    lo, hi = np.zeros(n), np.ones(n)
    active = np.ones(n, bool)
    for _ in range(int(n_bisections)):
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        mid = 0.5 * (lo[rows] + hi[rows])
        maps = blend_label_maps(d_a[rows], d_b[rows], mid, labels)
        ok = is_valid(maps, rows)
        hi[rows[ok]], out[rows[ok]] = mid[ok], maps[ok]
        lo[rows[~ok]] = mid[~ok]
    return out, hi


def revert_components(original: np.ndarray, valid: np.ndarray, is_valid: Callable[[np.ndarray, np.ndarray],
                      np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Give back to ``original`` every connected change of ``valid`` that validity does not need.

    For each frame, the pixels where ``valid`` differs from ``original`` are split into
    8-connected components. All candidate maps "``valid`` with component ``j`` reverted" are
    checked in one batch; the components whose reversion alone keeps the map valid are then
    reverted together, and if that joint map is not valid, one at a time, largest first,
    each kept only if the map stays valid. Every map returned was tested valid (or is ``valid``).

    Parameters
    ----------
    original, valid : ndarray (N, H, W)
        Invalid frames and their valid corrections.
    is_valid : callable
        ``(maps (M, H, W), rows (M,)) -> bool (M,)``: the criteria of frames ``rows``.

    Returns
    -------
    maps : ndarray (N, H, W) uint8
    kept : ndarray (N,) float
        Share of the changed pixels still changed (1 = the correction unchanged).
    """
    original, valid = np.asarray(original), np.asarray(valid)
    out = valid.astype(np.uint8, copy=True)
    kept = np.ones(len(original))
    eight = np.ones((3, 3), bool)
    for i in range(len(original)):
        diff = original[i] != valid[i]
        n_changed = int(diff.sum())
        if n_changed == 0:
            continue
        components, n = ndimage.label(diff, structure=eight)
        candidates = np.repeat(out[i][None], n, axis=0)
        for j in range(n):
            where = components == j + 1
            candidates[j][where] = original[i][where]
        alone = np.flatnonzero(is_valid(candidates, np.full(n, i)))
        if not len(alone):
            continue
        joint = out[i].copy()
        where = np.isin(components, alone + 1)
        joint[where] = original[i][where]
        if is_valid(joint[None], np.array([i]))[0]:
            out[i] = joint
        else:
            sizes = ndimage.sum_labels(np.ones_like(diff), components, alone + 1)
            for j in alone[np.argsort(-sizes, kind="stable")]:
                trial = out[i].copy()
                where = components == j + 1
                trial[where] = original[i][where]
                if is_valid(trial[None], np.array([i]))[0]:
                    out[i] = trial
        kept[i] = float((out[i] != original[i]).sum()) / n_changed
    return out, kept
