"""The grid the anatomical criteria are measured on, and the small-object size on it.

The criteria count pixels. Criteria 9-12 (the thresholded ratios) change under an
anisotropic resampling: on CAMUS's native grid (about 0.154 x 0.308 mm) a wall's thickness
is counted in coarse columns and the apex's in fine rows, which halves the erosion ratio of
a lateral wall; criteria 1-8 (valid iff 0) only lose defects when the grid is coarsened.
So, when the spacing is known (``grid="auto"``, the default, or a pixel size ``g`` in mm),
criteria 9-12 are measured on the maps resampled (nearest neighbour, same field of view) to
the canonical isotropic grid of :data:`CRITERIA_GRID_MM` = 0.3 mm (about CAMUS's coarse,
lateral spacing of 0.308 mm: no lateral detail is invented and depth keeps every other
row), and criteria 1-8 on the maps' own grid, where no hole, gap or fragment is lost, with
``s`` = :data:`SMALL_OBJECT_MM2` = 1.44 mm^2 on both.
``grid="native"`` (and any call without spacing) measures all 12 on the maps' own pixels
with ``s = H W / 2**14``, as the reference does. benchmarks/bench_criteria_grid.py gives the
evidence (docs/methods.md).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["CRITERIA_GRID_MM", "SMALL_OBJECT_MM2", "criteria_grid", "grid_indices", "resample_to_grid",
           "small_object_size"]

#: Pixel size (mm) of the canonical isotropic grid of criteria 9-12 when the spacing of the
#: maps is known: about the coarse (lateral) CAMUS spacing, 0.308 mm. On it the erosion ratio
#: moves in steps of ~0.02 (one pixel over a ~6 mm half-thickness); on a 0.6 mm grid the
#: step, ~0.11, is as large as the threshold (benchmarks/bench_criteria_grid.py).
CRITERIA_GRID_MM = 0.3
#: Small-object size in mm^2 when the spacing is known: the reference's 4 pixels of a
#: 256 x 256 map of a ~154 mm CAMUS sector (0.6 mm pixels), i.e. ``1.44 / (h w)`` pixels of
#: a grid of ``h x w`` mm (16 px at 0.3 mm; the reference's ``H W / 2**14`` on a native
#: 1000 x 600 CAMUS map at 0.154 x 0.308 mm is 1.74 mm^2).
SMALL_OBJECT_MM2 = 1.44


def small_object_size(shape: Sequence[int]) -> float:
    """Small-object size ``s = H * W / 2**14`` (pixels) of a map of shape ``(H, W)`` on its own grid."""
    return shape[0] * shape[1] / 2**14


def criteria_grid(grid="auto", spacing=None):
    """Resolve the ``grid`` argument of the criteria: ``"native"`` or a pixel size in mm.

    ``grid`` is that of :func:`~echolatent.shape.criteria.anatomical_metrics`. ``"auto"`` is
    :data:`CRITERIA_GRID_MM` when ``spacing`` is given, else ``"native"``; a number is the
    pixel size of an isotropic grid (it needs the spacing, checked by the caller).
    """
    if isinstance(grid, str):
        key = grid.strip().lower()
        if key == "auto":
            return "native" if spacing is None else CRITERIA_GRID_MM
        if key == "native":
            return "native"
        try:
            grid = float(key)
        except ValueError:
            raise ValueError(f"grid must be 'auto', 'native' or a pixel size in mm, got {grid!r}") from None
    if grid is None:
        return criteria_grid("auto", spacing)
    if isinstance(grid, (bool, np.bool_)) or not isinstance(grid, (int, float, np.integer, np.floating)):
        raise ValueError(f"grid must be 'auto', 'native' or a pixel size in mm, got {grid!r}")
    grid = float(grid)
    if not math.isfinite(grid) or grid <= 0:
        raise ValueError(f"grid must be a positive pixel size in mm, got {grid!r}")
    return grid


def grid_indices(n: int, step: float, grid_mm: float) -> np.ndarray:
    """Source indices of the nearest-neighbour resampling of ``n`` pixels of ``step`` mm to ``grid_mm``.

    Output pixel ``k`` (centre ``(k + 1/2) grid_mm`` from the map's edge) takes the source
    pixel whose extent ``[i step, (i + 1) step)`` holds that centre; the output covers the
    same field of view, ``max(1, round(n step / grid_mm))`` pixels.
    """
    m = max(1, int(round(n * step / grid_mm)))
    idx = np.floor((np.arange(m) + 0.5) * (grid_mm / step) + 1e-9).astype(np.intp)
    return np.minimum(idx, n - 1)


def resample_to_grid(masks, spacing, grid_mm: float = CRITERIA_GRID_MM) -> np.ndarray:
    """Nearest-neighbour resampling of label maps of pixel size ``spacing`` (h, w) mm to an isotropic grid.

    Parameters
    ----------
    masks : array_like, shape (H, W) or (N, H, W)
        Label maps (any dtype; values are copied, never interpolated).
    spacing : sequence of 2 float
        Pixel size ``(h, w)`` in mm, shared by the maps.
    grid_mm : float
        Pixel size of the output grid in mm.

    Returns
    -------
    ndarray, shape (H', W') or (N, H', W')
        The maps on the grid, ``H' = max(1, round(H h / grid_mm))`` (same for W): the same field
        of view, each output pixel taking the label of the input pixel under its centre.
    """
    arr = np.asarray(masks)
    sh, sw = (float(v) for v in spacing)
    grid_mm = criteria_grid(grid_mm, spacing)
    if grid_mm == "native":
        return arr.copy()
    rows = grid_indices(arr.shape[-2], sh, grid_mm)
    cols = grid_indices(arr.shape[-1], sw, grid_mm)
    return arr.take(rows, axis=-2).take(cols, axis=-1)
