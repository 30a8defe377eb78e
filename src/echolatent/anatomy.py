"""Anatomical plausibility of apical label maps: the 12 criteria of Painchaud et al. (TMI 2020).

One function, :func:`anatomical_metrics`, measures the 12 criteria on one label map or a
batch of them (0 = background, 1 = LV cavity, 2 = myocardium, 3 = left atrium) and says
whether each map is anatomically plausible; :func:`criteria_validity` applies the
thresholds criterion by criterion.

Definitions (pixels of the grid; connectivities as in the reference implementation)
---------------------------------------------------------------------------------
``s = H * W / 2**14`` is the small-object size (4 px at 256 x 256) on the native grid;
1.44 mm^2 in pixels when the spacing is known (see "Grid"). EPI = LV ∪ MYO.

1-3. ``holes_in_lv``, ``holes_in_epi``, ``holes_in_atrium``: area of the components of
     the complement (8-connectivity) that do not touch the image border.
4-5. ``holes_between_lv_and_myo``, ``holes_between_lv_and_atrium``: area of the gap
     enclosed between A and B (complements in 4-connectivity): pixels in neither A nor B
     that are not 4-connected to the image border, holes of A that do not contain B
     counting as part of A (and vice versa); 0 if the gap is <= s pixels. Criterion 5 is
     measured on (LV, LA), *not* on (LV, MYO) as in the reference code (known defect).
6-8. ``disconnectivity_in_*``: area outside the largest 8-connected component.
9.   ``frontier_ratio_between_lv_and_bg``: number of LV pixels with a background pixel in
     their 3 x 3 neighbourhood (0 if <= 1), divided by the LV width in columns
     (max col - min col + 1). Valid iff <= 0.4.
10.  ``frontier_ratio_between_myo_and_atrium``: same for MYO against LA. Valid iff <= 0.11.
11.  ``width_ratio_between_lv_and_myo``: on the row ``int(row centroid of EPI)``, number of
     LV pixels divided by the number of MYO pixels (both walls). Valid iff <= 4.15.
12.  ``erosion_ratio_before_myo_split``: number n of 3 x 3 erosions (pixels outside the
     image do not erode) after which the MYO is no longer one 8-connected component,
     4-connected components smaller than s being dropped after each erosion, divided by
     the maximum Euclidean distance of a MYO pixel to the nearest non-MYO pixel of the
     image. Valid iff >= 0.12. (A MYO covering the whole image never erodes and has no
     finite distance: 0.)

Departures from the reference code, all deliberate: criterion 5 uses (LV, LA); the
"outside" of criteria 4-5 is everything 4-connected to the image border (the reference
takes the component of pixel (0, 0), which is not translation invariant and fails when
that pixel belongs to a structure); a criterion whose structure is missing from the map is
NaN (hence invalid), where the reference returns 0 for some of them.

Grid
----
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

Speed
-----
The batch is cropped to the foreground (results are crop invariant), sorted by crop width
and processed in chunks; crops are stacked vertically into "mosaics" so that one call of
``scipy.ndimage.label`` labels a whole chunk. Hole and gap criteria are certified zero
from Euler numbers of bit-packed planes (E8 = components - holes, the components being
known from labelling, from a one-run-per-row chain, or from which components touch the
other structure) and are only labelled where a real pocket exists. The erosion criterion
uses bit-packed chessboard erosions and per-level Euler numbers: without MYO holes a level
with E4 = 1 is one 4-component; the other levels are settled by a bit-parallel removal of
the 4-components smaller than s (for s <= 4) and E8, or by labelling (MYO with holes,
s > 4). The maximal Euclidean distance is found by scanning offsets by increasing norm from
the few pixels whose chessboard and city-block distances allow the maximum. The results
are identical to a direct implementation of the definitions (the benchmark checks it on
every map, the tests on hand-built, realistic and noise-like maps).
"""

from __future__ import annotations

import functools
import math
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

__all__ = [
    "CRITERIA",
    "CRITERION_STRUCTURES",
    "EROSION_RATIO_MYO_MIN",
    "GRID_CRITERIA",
    "FRONTIER_RATIO_LV_BG_MAX",
    "FRONTIER_RATIO_MYO_LA_MAX",
    "THRESHOLDS",
    "WIDTH_RATIO_LV_MYO_MAX",
    "CRITERIA_GRID_MM",
    "SMALL_OBJECT_MM2",
    "anatomical_metrics",
    "criteria_grid",
    "criteria_validity",
    "resample_to_grid",
    "small_object_size",
]

BG, LV, MYO, LA = 0, 1, 2, 3
_OUT = 4  # sentinel value of the working canvases: outside the image (or padding)

#: The 12 criteria, in the reference order of the TMI 2020 paper.
CRITERIA = (
    "holes_in_lv",
    "holes_in_epi",
    "holes_in_atrium",
    "holes_between_lv_and_myo",
    "holes_between_lv_and_atrium",
    "disconnectivity_in_lv",
    "disconnectivity_in_myo",
    "disconnectivity_in_atrium",
    "frontier_ratio_between_lv_and_bg",
    "frontier_ratio_between_myo_and_atrium",
    "width_ratio_between_lv_and_myo",
    "erosion_ratio_before_myo_split",
)

#: Upper bound of criterion 9 (LV-background frontier / LV width).
FRONTIER_RATIO_LV_BG_MAX = 0.4
#: Upper bound of criterion 10 (MYO-LA frontier / MYO width).
FRONTIER_RATIO_MYO_LA_MAX = 0.11
#: Upper bound of criterion 11 (LV width / MYO width on the centroid row).
WIDTH_RATIO_LV_MYO_MAX = 4.15
#: Lower bound of criterion 12 (erosions before the MYO splits / its maximum half-thickness).
EROSION_RATIO_MYO_MIN = 0.12

#: Valid range ``(min, max)`` of the thresholded criteria; every other criterion must be 0.
THRESHOLDS = MappingProxyType({
    "frontier_ratio_between_lv_and_bg": (0.0, FRONTIER_RATIO_LV_BG_MAX),
    "frontier_ratio_between_myo_and_atrium": (0.0, FRONTIER_RATIO_MYO_LA_MAX),
    "width_ratio_between_lv_and_myo": (0.0, WIDTH_RATIO_LV_MYO_MAX),
    "erosion_ratio_before_myo_split": (EROSION_RATIO_MYO_MIN, math.inf),
})

#: The criteria measured on the canonical isotropic grid (their values change under an
#: anisotropic resampling); the other eight count pixels of holes, gaps and fragments, are
#: valid iff 0 and are measured on the maps' own grid, where no defect is lost.
GRID_CRITERIA = tuple(THRESHOLDS)

#: Labels a criterion needs in the label set to apply. Criterion 9 needs the LA label too
#: (as in the reference): without it the LV's open base faces unlabelled atrium, i.e. background.
CRITERION_STRUCTURES = MappingProxyType({
    "holes_in_lv": (LV,),
    "holes_in_epi": (LV, MYO),
    "holes_in_atrium": (LA,),
    "holes_between_lv_and_myo": (LV, MYO),
    "holes_between_lv_and_atrium": (LV, LA),
    "disconnectivity_in_lv": (LV,),
    "disconnectivity_in_myo": (MYO,),
    "disconnectivity_in_atrium": (LA,),
    "frontier_ratio_between_lv_and_bg": (LV, LA),
    "frontier_ratio_between_myo_and_atrium": (MYO, LA),
    "width_ratio_between_lv_and_myo": (LV, MYO),
    "erosion_ratio_before_myo_split": (MYO,),
})

# Structures that must be present in the map for a criterion to be measured (else NaN).
_MEASURED_ON = {name: req for name, req in CRITERION_STRUCTURES.items()}
_MEASURED_ON["frontier_ratio_between_lv_and_bg"] = (LV,)

_RESAMPLED_PIXELS = 2**26  # pixels of resampled maps held at once by anatomical_metrics
_S8 = np.ones((3, 3), dtype=bool)
_LITTLE_U64 = np.dtype("<u8")


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
    """Resolve a ``grid`` argument of :func:`anatomical_metrics`: ``"native"`` or a pixel size in mm.

    ``"auto"`` is :data:`CRITERIA_GRID_MM` when ``spacing`` is given, else ``"native"``; a
    number is the pixel size of an isotropic grid (it needs the spacing, checked by the caller).
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


def _grid_indices(n: int, step: float, grid_mm: float) -> np.ndarray:
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
    rows = _grid_indices(arr.shape[-2], sh, grid_mm)
    cols = _grid_indices(arr.shape[-1], sw, grid_mm)
    return np.ascontiguousarray(arr[..., rows[:, None], cols[None, :]])


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------
def anatomical_metrics(masks, spacing=None, *, grid="auto", labels: Sequence[int] = (LV, MYO, LA),
                       thresholds: Mapping[str, tuple[float, float]] | None = None,
                       chunk_size: int = 128) -> pd.DataFrame:
    """Measure the 12 anatomical criteria of apical label maps.

    Parameters
    ----------
    masks : array_like of int, shape (H, W) or (N, H, W)
        Label maps: 0 background, 1 LV cavity, 2 myocardium, 3 left atrium. Any integer
        dtype; values outside ``{0} ∪ labels`` are an error.
    spacing : sequence of 2 float or array of shape (N, 2), optional
        Pixel size ``(h, w)`` in mm (one for all maps, or one per map). With the default
        ``grid`` it selects the grid the criteria are measured on.
    grid : "auto", "native" or float, default "auto"
        The grid the criteria are measured on. The criteria count pixels: the four
        thresholded ones (:data:`GRID_CRITERIA`: frontier ratios 9-10, width ratio 11,
        erosion ratio 12) change under anisotropic resampling, the eight others (holes, gaps,
        fragments; valid iff 0) only lose defects when the grid is coarsened:

        * a number ``g`` (mm): criteria 9-12 on the maps resampled to an isotropic grid of
          ``g`` mm (nearest neighbour, same field of view, :func:`resample_to_grid`),
          criteria 1-8 on the maps' own grid; the small-object size is
          :data:`SMALL_OBJECT_MM2` (1.44 mm^2, 16 px at 0.3 mm) on both. ``spacing`` is
          required. Maps already on that grid are measured once;
        * ``"native"``: all 12 on the maps' own pixels with ``s = H W / 2**14``, as the
          reference code does (for maps of unknown spacing, or to reproduce it);
        * ``"auto"``: :data:`CRITERIA_GRID_MM` (0.3 mm) when ``spacing`` is given, else
          ``"native"``.

        benchmarks/bench_criteria_grid.py measures the choices on CAMUS-like geometries.
    labels : sequence of int, default (1, 2, 3)
        The label set of the maps. Use ``labels=(1, 2)`` for maps without an atrium label:
        the criteria that need a missing label (``CRITERION_STRUCTURES``) are then NaN and do
        not count as errors; this includes criterion 9, since the LV's open base then faces
        background.
    thresholds : mapping, optional
        Overrides of :data:`THRESHOLDS` (criterion name to ``(min, max)``), e.g. thresholds
        re-derived for another resolution.
    chunk_size : int, default 128
        Number of maps processed together (memory/speed trade-off only). A call has a fixed
        cost of a few milliseconds, so pass many maps per call (e.g. whole sequences or
        shards) for throughput.

    Returns
    -------
    pandas.DataFrame
        One row per map (in input order, whatever the grid), the 12 columns of
        :data:`CRITERIA` (float; the areas of criteria 1-8 are pixels of the maps' own grid) and
        ``anatomical_errors`` (bool, True if any applicable criterion is invalid). A
        criterion is NaN when a structure it measures is absent from the map (the map is
        then invalid) or when its labels are not in ``labels`` (not an error).
        ``df.attrs["labels"]`` records the label set, ``df.attrs["grid"]`` the grid
        (``"native"`` or the pixel size in mm).

    Raises
    ------
    TypeError
        If the maps are not of an integer dtype.
    ValueError
        If the maps are not 2-D/3-D, contain unknown label values, or ``spacing`` /
        ``grid`` / ``labels`` / ``thresholds`` are malformed, or a grid in mm is asked
        without ``spacing``.

    Examples
    --------
    >>> df = anatomical_metrics(masks)            # (N, H, W) uint8
    >>> df.loc[df.anatomical_errors]              # the implausible maps
    """
    labels = _check_labels(labels)
    batch, _ = _as_label_batch(masks, labels)
    sp = _check_spacing(spacing, len(batch))
    grid_mm = criteria_grid(grid, sp)
    if grid_mm != "native" and sp is None:
        raise ValueError(f"grid={grid!r} (an isotropic grid in mm) needs the spacing (h, w) of the maps")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    bounds = _check_thresholds(thresholds)
    if grid_mm == "native":
        values = _criteria_batch(batch, labels, int(chunk_size))
    else:
        values = _criteria_on_grid(batch, sp, grid_mm, labels, int(chunk_size))
    matrix = np.stack([values[name] for name in CRITERIA], axis=1) if len(batch) else np.zeros((0, len(CRITERIA)))
    df = pd.DataFrame(matrix, columns=list(CRITERIA))
    df["anatomical_errors"] = ~_validity(matrix, labels, bounds).all(axis=1)
    df.attrs["labels"] = tuple(labels)
    df.attrs["grid"] = grid_mm
    return df


def _criteria_on_grid(batch: np.ndarray, spacing: np.ndarray, grid_mm: float, labels, chunk_size: int) -> dict:
    """Criteria 1-8 on the maps' own grid, 9-12 on the isotropic grid of ``grid_mm``; one group per spacing.

    The small-object size is :data:`SMALL_OBJECT_MM2` on both grids, converted to pixels.
    """
    n = len(batch)
    out = {name: np.full(n, np.nan) for name in CRITERIA}
    if n == 0:
        return out
    per_map = np.broadcast_to(spacing, (n, 2))
    distinct, group = np.unique(per_map, axis=0, return_inverse=True)
    group = np.asarray(group).reshape(-1)
    for g, (sh, sw) in enumerate(distinct):
        sel = np.flatnonzero(group == g)
        rows = _grid_indices(batch.shape[1], float(sh), grid_mm)
        cols = _grid_indices(batch.shape[2], float(sw), grid_mm)
        same = len(rows) == batch.shape[1] and len(cols) == batch.shape[2] and \
            np.array_equal(rows, np.arange(len(rows))) and np.array_equal(cols, np.arange(len(cols)))
        step = max(1, _RESAMPLED_PIXELS // (len(rows) * len(cols)))  # bounded memory for large batches
        for first in range(0, len(sel), step):
            part = sel[first:first + step]
            maps = batch if len(part) == n else batch[part]
            if same:  # the maps are on the canonical grid already: one pass
                both = _criteria_batch(maps, labels, chunk_size, s=SMALL_OBJECT_MM2 / grid_mm ** 2)
                for name in CRITERIA:
                    out[name][part] = both[name]
                continue
            native = _criteria_batch(maps, labels, chunk_size, s=SMALL_OBJECT_MM2 / (float(sh) * float(sw)),
                                     erosion=False)
            resampled = np.ascontiguousarray(maps[:, rows[:, None], cols[None, :]])
            iso = _criteria_batch(resampled, labels, chunk_size, s=SMALL_OBJECT_MM2 / grid_mm ** 2)
            for name in CRITERIA:
                out[name][part] = (iso if name in GRID_CRITERIA else native)[name]
    return out


def criteria_validity(df: pd.DataFrame, *, labels: Sequence[int] | None = None,
                      thresholds: Mapping[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """Per-criterion validity of measured criteria.

    Parameters
    ----------
    df : pandas.DataFrame
        Output of :func:`anatomical_metrics` (at least the :data:`CRITERIA` columns).
    labels : sequence of int, optional
        Label set; defaults to ``df.attrs["labels"]`` or ``(1, 2, 3)``.
    thresholds : mapping, optional
        Overrides of :data:`THRESHOLDS`.

    Returns
    -------
    pandas.DataFrame of bool
        Same index, one column per criterion. A criterion that does not apply to the label
        set is valid; otherwise NaN is invalid, thresholded criteria are valid iff
        ``min <= value <= max`` and the others iff ``value == 0``.
    """
    if labels is None:
        labels = df.attrs.get("labels", (LV, MYO, LA))
    labels = _check_labels(labels)
    bounds = _check_thresholds(thresholds)
    missing = [name for name in CRITERIA if name not in df.columns]
    if missing:
        raise ValueError(f"criteria_validity: missing criterion columns {missing}")
    valid = _validity(df[list(CRITERIA)].to_numpy(dtype=float), labels, bounds)
    return pd.DataFrame(valid, index=df.index, columns=list(CRITERIA))


def _validity(matrix: np.ndarray, labels, bounds) -> np.ndarray:
    """(n, 12) bool validity of a (n, 12) criteria matrix (columns in CRITERIA order)."""
    low = np.zeros(len(CRITERIA))
    high = np.zeros(len(CRITERIA))
    applies = np.ones(len(CRITERIA), bool)
    for j, name in enumerate(CRITERIA):
        low[j], high[j] = bounds.get(name, (0.0, 0.0))
        applies[j] = set(CRITERION_STRUCTURES[name]) <= set(labels)
    with np.errstate(invalid="ignore"):
        ok = (matrix >= low) & (matrix <= high)  # NaN compares False: invalid
    return ok | ~applies


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------
def _check_labels(labels) -> tuple[int, ...]:
    try:
        out = tuple(sorted({int(v) for v in labels}))
    except (TypeError, ValueError):
        raise ValueError(f"labels must be a sequence of label values among 1, 2, 3, got {labels!r}") from None
    if not out or not set(out) <= {LV, MYO, LA}:
        raise ValueError(f"labels must be a non-empty subset of (1, 2, 3) (LV, MYO, LA), got {labels!r}")
    return out


def _check_thresholds(thresholds) -> dict:
    bounds = dict(THRESHOLDS)
    if thresholds is None:
        return bounds
    for name, pair in dict(thresholds).items():
        if name not in CRITERIA:
            raise ValueError(f"unknown criterion {name!r} in thresholds; expected one of {CRITERIA}")
        try:
            low, high = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise ValueError(f"threshold of {name!r} must be a (min, max) pair, got {pair!r}") from None
        if not low <= high:
            raise ValueError(f"threshold of {name!r} must satisfy min <= max, got {pair!r}")
        bounds[name] = (low, high)
    return bounds


def _check_spacing(spacing, n: int, *, required: bool = False):
    """Validate a (h, w) spacing, or a (N, 2) array of them; return it as float array or None."""
    if spacing is None:
        if required:
            raise ValueError("spacing (h, w) in mm is required")
        return None
    try:
        sp = np.asarray(spacing, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be (h, w) in mm, got {spacing!r}") from None
    if not (sp.shape == (2,) or sp.shape == (n, 2)):
        raise ValueError(f"spacing must be (h, w) in mm or an array of shape ({n}, 2), got shape {sp.shape}")
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing must be positive and finite, got {spacing!r}")
    return sp


def _as_label_batch(masks, labels=(LV, MYO, LA)) -> tuple[np.ndarray, bool]:
    """Check label maps and return them as a C-contiguous (N, H, W) uint8 array."""
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
    allowed = {0, *labels}
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            bad = sorted(set(np.unique(arr).tolist()) - allowed)
            raise ValueError(f"unknown label values {bad[:10]} in label maps; allowed values are {sorted(allowed)}")
        arr = arr.astype(np.uint8)
    arr = np.ascontiguousarray(arr)
    if arr.size:
        col_or = np.bitwise_or.reduce(arr, axis=1)
        bad_present = bool(np.any(col_or & 0xFC))
        if not bad_present and allowed != {0, 1, 2, 3}:
            bad_present = any(np.any(arr == v) for v in {1, 2, 3} - allowed)
        if bad_present:
            bad = sorted(set(np.unique(arr).tolist()) - allowed)
            raise ValueError(f"unknown label values {bad[:10]} in label maps; allowed values are {sorted(allowed)}"
                             + ("" if allowed == {0, 1, 2, 3} else f" (labels={tuple(labels)})"))
    return arr, single


# --------------------------------------------------------------------------------------
# Mosaics: tiles (crops with an empty ring) stacked vertically in one 2-D image, so that
# one call of a labelling or morphology routine processes many maps. Each tile keeps its
# own height; the image is as wide as the widest tile (padding = the sentinel value).
# --------------------------------------------------------------------------------------
def _first_last(b: np.ndarray):
    """First and last True index along the last axis of a (n, L) bool array (-1 where none)."""
    has = b.any(axis=1)
    first = np.argmax(b, axis=1)
    last = b.shape[1] - 1 - np.argmax(b[:, ::-1], axis=1)
    return np.where(has, first, -1), np.where(has, last, -1), has


def _stack(pieces, ring: int, multiple: int = 1):
    """Stack 2-D uint8 pieces into a mosaic, each surrounded by ``ring`` sentinel pixels."""
    hs = np.fromiter((p.shape[0] for p in pieces), np.int64, len(pieces)) + 2 * ring
    ws = np.fromiter((p.shape[1] for p in pieces), np.int64, len(pieces)) + 2 * ring
    width = int(ws.max())
    width += (-width) % multiple
    start = np.zeros(len(pieces), np.int64)
    np.cumsum(hs[:-1], out=start[1:])
    img = np.full((int(hs.sum()), width), _OUT, np.uint8)
    for p, s0 in zip(pieces, start.tolist()):
        img[s0 + ring:s0 + ring + p.shape[0], ring:ring + p.shape[1]] = p
    return img, start, hs, ws


def _width_groups(widths: np.ndarray, ratio: float = 1.3) -> list[np.ndarray]:
    """Split tile indices, sorted by width, into groups whose widths differ by < ``ratio``."""
    order = np.argsort(widths, kind="stable")
    groups, first = [], 0
    w = widths[order]
    for q in range(1, len(order) + 1):
        if q == len(order) or w[q] > ratio * w[first] + 2:
            groups.append(order[first:q])
            first = q
    return groups


def _tile_sum(row_values: np.ndarray, start: np.ndarray) -> np.ndarray:
    return np.add.reduceat(row_values, start, axis=0) if len(start) else np.zeros(0, np.int64)


def _mosaic_labels(S: np.ndarray, start: np.ndarray, conn8: bool):
    """Label a mosaic; labels are consecutive in raster order, so tile q owns ``lo[q]+1 .. lo[q]+count[q]``."""
    lab, nlab = ndi.label(S, structure=_S8 if conn8 else None)
    hi = np.maximum.accumulate(np.maximum.reduceat(lab.max(axis=1), start)).astype(np.int64)
    lo = np.concatenate(([0], hi[:-1])).astype(np.int64)
    return lab, nlab, lo, hi - lo


def _largest(lab, nlab, lo, start, hs, q) -> np.ndarray:
    """Area of the largest component of tiles q (each with >= 1 component)."""
    rows = np.concatenate([lab[start[x]:start[x] + hs[x]].ravel() for x in q])
    sizes = np.bincount(rows, minlength=nlab + 1)[1:]
    return np.maximum.reduceat(sizes, lo[q])


def _bounded_complement_area(S: np.ndarray, start: np.ndarray, conn8: bool) -> np.ndarray:
    """Per tile, area of the complement components not connected to the tile border.

    The rings and the padding of all tiles form one connected "outside" in the mosaic.
    """
    comp = ~S
    lab, _ = ndi.label(comp, structure=_S8 if conn8 else None)
    inner = (lab != lab[0, 0]) & comp
    return _tile_sum(np.count_nonzero(inner, axis=1), start).astype(np.int64)


def _pockets(T: np.ndarray, start: np.ndarray, members: tuple[int, ...]):
    """4-connected components of the complement of a union of labels that do not touch the border."""
    U = T == members[0]
    for v in members[1:]:
        U |= T == v
    notU = ~U
    lab, _ = ndi.label(notU)
    pocket = (lab != lab[0, 0]) & notU
    return pocket, _tile_sum(np.count_nonzero(pocket, axis=1), start).astype(np.int64)


def _gap_area(T, start, a: int, b: int, s: float, pocket, a_holes, b_holes) -> np.ndarray:
    """Per tile, area enclosed between structures a and b (criteria 4-5), 0 if <= s.

    A pocket (4-connected component of the complement of a ∪ b not touching the border)
    lies in one 4-connected component of the complement of a; if that component is a hole
    of a that does not contain b, the pocket belongs to (filled) a and is no gap; same for
    b. ``a_holes`` / ``b_holes``: whether some tile's a / b has a 4-connected hole at all.
    """
    gap = pocket.copy()
    A, B = T == a, T == b
    for S, other, flag in ((A, B, a_holes), (B, A, b_holes)):
        if not flag or not gap.any():
            continue
        notS = ~S
        labS, nS = ndi.label(notS)
        filled_label = np.ones(nS + 1, dtype=bool)
        filled_label[0] = False
        filled_label[labS[0, 0]] = False
        filled_label &= np.bincount(labS[other], minlength=nS + 1) == 0
        gap &= ~filled_label[labS]
    area = _tile_sum(np.count_nonzero(gap, axis=1), start).astype(np.int64)
    return np.where(area > s, area, 0)


def _dilate8(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by the 3 x 3 square (8-neighbourhood), as two separable shifts; pixels
    outside the array count as unset."""
    rows = mask.copy()
    rows[:, 1:] |= mask[:, :-1]
    rows[:, :-1] |= mask[:, 1:]
    out = rows.copy()
    out[1:] |= rows[:-1]
    out[:-1] |= rows[1:]
    return out


def _frontier_count(C: np.ndarray, S: np.ndarray, other_value: int, start: np.ndarray) -> np.ndarray:
    """Per tile, pixels of S with a pixel of value ``other_value`` in their 3 x 3 neighbourhood (0 if <= 1)."""
    e = _dilate8(C == other_value) & S
    f = _tile_sum(np.count_nonzero(e, axis=1), start)
    return np.where(f <= 1, 0, f)


# ---- packed rows: word planes of shape (n_words, rows); bit j % 64 of word j // 64 of a row
# holds column j. Word-major storage keeps every operation on contiguous vectors.
def _pack_rows(B: np.ndarray) -> np.ndarray:
    """Pack the rows of a (rows, w) bool array into (n_words, rows) uint64 word planes."""
    rows, w = B.shape
    nbytes = (w + 7) // 8
    nwords = (nbytes + 7) // 8
    buf = np.zeros((rows, nwords * 8), np.uint8)
    buf[:, :nbytes] = np.packbits(B, axis=1, bitorder="little")
    return np.ascontiguousarray(buf.view(_LITTLE_U64).T, dtype=np.uint64)


def _unpack_rows(P: np.ndarray, w: int) -> np.ndarray:
    """Inverse of :func:`_pack_rows`: (rows, w) bool."""
    bytes_ = np.ascontiguousarray(P.T, dtype=_LITTLE_U64).view(np.uint8)
    return np.unpackbits(bytes_, axis=1, count=w, bitorder="little").view(bool)


def _shift_from_right(x: np.ndarray) -> np.ndarray:
    """out[j] = x[j + 1] along the columns (0 past the end)."""
    out = x >> 1
    if x.shape[0] > 1:
        out[:-1] |= x[1:] << 63
    return out


def _shift_from_left(x: np.ndarray) -> np.ndarray:
    """out[j] = x[j - 1] along the columns (0 before the start)."""
    out = x << 1
    if x.shape[0] > 1:
        out[1:] |= x[:-1] >> 63
    return out


def _rows_from_above(x: np.ndarray) -> np.ndarray:
    """out[i] = x[i - 1] (0 for the first row)."""
    out = np.zeros_like(x)
    out[:, 1:] = x[:, :-1]
    return out


def _rows_from_below(x: np.ndarray) -> np.ndarray:
    """out[i] = x[i + 1] (0 for the last row)."""
    out = np.zeros_like(x)
    out[:, :-1] = x[:, 1:]
    return out


def _row_bits(x: np.ndarray) -> np.ndarray:
    """Number of set bits of every row of word planes, (rows,) int64."""
    c = np.bitwise_count(x)
    out = c[0].astype(np.int64)
    for row in c[1:]:
        out += row
    return out


def _row_any(x: np.ndarray) -> np.ndarray:
    """Whether every row of word planes has a set bit, (rows,) bool."""
    out = x[0].copy()
    for row in x[1:]:
        out |= row
    return out != 0


def _tile_popcounts(arrays, start: np.ndarray, rows: int) -> np.ndarray:
    """Per tile number of set bits of several word planes of <= ``rows`` rows, (n_tiles, len(arrays))."""
    counts = np.zeros((len(arrays), rows), np.int64)
    for k, a in enumerate(arrays):
        counts[k, :a.shape[1]] = _row_bits(a)
    return np.add.reduceat(counts, start, axis=1).T


def _euler_terms(P: np.ndarray):
    """The word planes whose bit counts give area and Euler numbers of P (see _euler_packed_many)."""
    R = _shift_from_right(P)
    PR = P & R
    a, b, c, d = P[:, :-1], R[:, :-1], P[:, 1:], R[:, 1:]
    return [P, PR, a & c, PR[:, :-1] & PR[:, 1:], ~((a ^ d) | (b ^ c)) & (a ^ b)]


def _euler_packed_many(planes, start: np.ndarray, extra=()):
    """Per tile area V and Euler numbers E4, E8 of packed mosaics with an empty ring.

    E4 = V - E_h - E_v + F (pixels, horizontal and vertical pairs, full 2 x 2 blocks) and
    E8 = E4 - QD, QD being the number of 2 x 2 windows holding exactly one diagonal pair.
    Returns (V, E4, E8), each (n_tiles, len(planes)), and the bit counts of ``extra``.
    """
    rows = planes[0].shape[1]
    terms = [t for P in planes for t in _euler_terms(P)]
    counts = _tile_popcounts(terms + list(extra), start, rows)
    k = 5 * len(planes)
    c = counts[:, :k].reshape(len(start), len(planes), 5)
    V = c[:, :, 0]
    E4 = V - c[:, :, 1] - c[:, :, 2] + c[:, :, 3]
    return V, E4, E4 - c[:, :, 4], counts[:, k:]


def _drop_small_packed(P: np.ndarray, s: float) -> np.ndarray:
    """Remove the 4-connected components with fewer than s pixels (only for s <= 4).

    Components of 1, 2 and 3 pixels are recognised from the 4-neighbour degrees: an
    isolated pixel, two adjacent pixels of degree 1, and a degree-2 pixel whose two
    neighbours have degree 1 (with those two neighbours).
    """
    if s <= 1:
        return P
    N, S = _rows_from_above(P), _rows_from_below(P)
    Wl, Er = _shift_from_left(P), _shift_from_right(P)
    a1, c1, a2, c2 = N ^ S, N & S, Wl ^ Er, Wl & Er
    b0 = a1 ^ a2
    carry = a1 & a2
    b1 = c1 ^ c2 ^ carry
    b2 = (c1 & c2) | (carry & (c1 ^ c2))
    small = P & ~(b0 | b1 | b2)  # degree 0
    if s > 2:
        D1 = P & b0 & ~b1
        D1n, D1s = _rows_from_above(D1), _rows_from_below(D1)
        D1w, D1e = _shift_from_left(D1), _shift_from_right(D1)
        small |= D1 & ((N & D1n) | (S & D1s) | (Wl & D1w) | (Er & D1e))
        if s > 3:
            mid = P & ~b0 & b1 & (~N | D1n) & (~S | D1s) & (~Wl | D1w) & (~Er | D1e)
            grown = _rows_from_above(mid) | _rows_from_below(mid) | _shift_from_left(mid) | _shift_from_right(mid)
            small |= mid | (P & grown)
    return P & ~small


# --------------------------------------------------------------------------------------
# The batch computation
# --------------------------------------------------------------------------------------
def _foreground_boxes(X: np.ndarray):
    """Per map, the crop ``[ra:rb, ca:cb]`` = foreground bounding box + 1 pixel (clamped), and presence."""
    N, H, W = X.shape
    if W % 8 == 0:
        words = X.reshape(N, H, W // 8, 8).view(np.uint64).reshape(N, H, W // 8)
        rows_any = np.bitwise_or.reduce(words, axis=2) != 0
        cols_any = (np.bitwise_or.reduce(words, axis=1).view(np.uint8).reshape(N, W)) != 0
    else:
        rows_any = np.bitwise_or.reduce(X, axis=2) != 0
        cols_any = np.bitwise_or.reduce(X, axis=1) != 0
    r0, r1, has_fg = _first_last(rows_any)
    c0, c1, _ = _first_last(cols_any)
    ra, rb = np.maximum(r0 - 1, 0), np.minimum(r1 + 2, H)
    ca, cb = np.maximum(c0 - 1, 0), np.minimum(c1 + 2, W)
    return ra, rb, ca, cb, has_fg


def _criteria_batch(X: np.ndarray, labels: tuple[int, ...], chunk_size: int, s: float | None = None,
                    erosion: bool = True) -> dict[str, np.ndarray]:
    """The 12 criteria of a (N, H, W) uint8 batch on its own grid (``s`` pixels; ``erosion=False``: 12 left NaN)."""
    N, H, W = X.shape
    out = {name: np.full(N, np.nan) for name in CRITERIA}
    if N == 0:
        return out
    if s is None:
        s = small_object_size((H, W))
    ra, rb, ca, cb, has_fg = _foreground_boxes(X)
    idx = np.flatnonzero(has_fg)
    order = idx[np.lexsort(((rb - ra)[idx], (cb - ca)[idx]))]
    chunk_size = min(chunk_size, 256)
    for first in range(0, len(order), chunk_size):
        sel = order[first:first + chunk_size]
        res = _criteria_chunk(X, sel, ra[sel], rb[sel], ca[sel], cb[sel], H, W, s, erosion)
        for name, value in res.items():
            out[name][sel] = value
    for name in CRITERIA:  # criteria whose labels are not in the label set
        if not set(CRITERION_STRUCTURES[name]) <= set(labels):
            out[name][:] = np.nan
    return out


def _one_run_chain(P, start, local, r0, r1) -> np.ndarray:
    """Per tile: does the packed structure have exactly one run on each of its rows, each
    run 8-adjacent to the next one? Then it is one 8-connected component without holes.
    """
    rows = P.shape[1]
    runs = _row_bits(P & ~_shift_from_left(P))
    dil = P | _shift_from_left(P) | _shift_from_right(P)
    linked = np.zeros(rows, bool)
    linked[:-1] = _row_any(dil[:, :-1] & P[:, 1:])
    tile = np.repeat(np.arange(len(start)), np.diff(np.append(start, rows)))
    inside = (local >= r0[tile]) & (local <= r1[tile])
    bad = inside & ((runs != 1) | (~linked & (local < r1[tile])))
    return ~(_tile_sum(bad.astype(np.int64), start) > 0)


def _components(img, S, start, hs, k, others):
    """8-connected components of structure k in a mosaic (all its tiles are labelled).

    Returns per tile the number of components, the area of the largest one, and for each
    label v in ``others`` the number of components 8-adjacent to a pixel of value v.
    """
    lab, nlab, lo, count = _mosaic_labels(S, start, conn8=True)
    largest = _tile_sum(np.count_nonzero(S, axis=1), start)
    multi = np.flatnonzero(count > 1)
    if len(multi):
        largest[multi] = _largest(lab, nlab, lo, start, hs, multi)
    touching = {v: np.zeros(len(start), np.int64) for v in others}
    if len(multi):  # only maps whose structure has several components need it
        lo_m, cnt_m = lo[multi], count[multi]
        if len(multi) < len(start):
            img, start, hs, _ = _stack([img[start[q]:start[q] + hs[q]] for q in multi], ring=0)
            S = img == k
            lab, nlab, lo_m, cnt_m = _mosaic_labels(S, start, conn8=True)
        for v in others:
            e = _dilate8(img == v) & S
            touched = np.zeros(nlab + 1, np.int64)
            touched[lab[e]] = 1
            touched[0] = 0
            cum = np.cumsum(touched)
            touching[v][multi] = cum[lo_m + cnt_m] - cum[lo_m]
    return count, largest, touching


def _plane_stats(F, fstart, local):
    """Packed planes of LV, MYO, LA in the foreground mosaic and what they give per tile:
    Euler numbers (8-connectivity) of LV, MYO, LA, LV ∪ MYO, LV ∪ LA, LV-MYO and LV-LA
    8-adjacency, areas, bounding boxes (rows and columns within the tile) and presence.
    """
    R, Wf = F.shape
    planes = {k: _pack_rows(F == k) for k in (LV, MYO, LA)}
    sets = [planes[LV], planes[MYO], planes[LA], planes[LV] | planes[MYO], planes[LV] | planes[LA]]
    h = _shift_from_right(planes[LV]) | _shift_from_left(planes[LV]) | planes[LV]
    dil_lv = h | _rows_from_above(h) | _rows_from_below(h)
    V, _, E8, extra = _euler_packed_many(sets, fstart, extra=[dil_lv & planes[MYO], dil_lv & planes[LA]])
    e8 = {LV: E8[:, 0], MYO: E8[:, 1], LA: E8[:, 2]}
    areas = {LV: V[:, 0], MYO: V[:, 1], LA: V[:, 2]}
    box, present = {}, {}
    for k in (LV, MYO, LA):
        has = _row_any(planes[k])
        br0 = np.minimum.reduceat(np.where(has, local, R), fstart)
        br1 = np.maximum.reduceat(np.where(has, local, -1), fstart)
        bc0, bc1, _ = _first_last(_unpack_rows(np.bitwise_or.reduceat(planes[k], fstart, axis=1), Wf))
        present[k] = br1 >= 0
        box[k] = (br0, br1, bc0, bc1)
    return planes, e8, E8[:, 3], E8[:, 4], extra[:, 0] > 0, extra[:, 1] > 0, areas, box, present


def _criteria_chunk(X, sel, ra, rb, ca, cb, H, W, s, erosion=True) -> dict[str, np.ndarray]:
    n = len(sel)
    res = {name: np.full(n, np.nan) for name in CRITERIA}
    # the foreground crops (+1 px of image, +1 px of sentinel = outside the image), stacked
    F, fstart, fh, fw = _stack([X[i, a:b, c:d] for i, a, b, c, d in zip(sel, ra, rb, ca, cb)], ring=1, multiple=8)
    R, Wf = F.shape
    row_tile = np.repeat(np.arange(n), fh)
    org_r, org_c = ra - 1, ca - 1  # image coordinates of each tile's (0, 0)

    # ---- bit-packed LV, MYO, LA planes: Euler numbers, adjacencies, areas, bounding boxes
    local = np.arange(R) - fstart[row_tile]
    planes, e8, e8_epi, e8_lvla, adj_lv_myo, adj_lv_la, areas, box, present = _plane_stats(F, fstart, local)

    def crops(k, tiles):
        br0, br1, bc0, bc1 = box[k]
        return [F[fstart[t] + br0[t] - 1:fstart[t] + br1[t] + 2, bc0[t] - 1:bc1[t] + 2] for t in tiles.tolist()]

    # ---- per structure: mosaics of its crops (grouped by width), 8-connected components;
    # LV and LA crops with one 8-adjacent run per row are one component without labelling
    single = {k: present[k] & _one_run_chain(planes[k], fstart, local, box[k][0], box[k][1]) for k in (LV, LA)}
    single[MYO] = np.zeros(n, bool)
    others = {LV: (MYO, LA), MYO: (LV,), LA: (LV,)}
    comps = {k: np.zeros(n, np.int64) for k in (LV, MYO, LA)}
    touching = {(k, v): np.zeros(n, np.int64) for k in others for v in others[k]}
    groups = {}
    for k, name in ((LV, "disconnectivity_in_lv"), (MYO, "disconnectivity_in_myo"),
                    (LA, "disconnectivity_in_atrium")):
        tiles_k = np.flatnonzero(present[k])
        groups[k] = []
        disc = np.zeros(n)
        if len(tiles_k):
            comps[k][tiles_k] = 1
            widths = box[k][3][tiles_k] - box[k][2][tiles_k] + 3
            for g in _width_groups(widths):
                tiles = tiles_k[np.sort(g)]
                img, start, hs, _ = _stack(crops(k, tiles), ring=0)
                S = img == k
                groups[k].append((tiles, img, S, start, hs))
                todo = np.flatnonzero(~single[k][tiles])
                if len(todo) == 0:
                    continue
                if len(todo) < len(tiles):
                    sub_img, sub_start, sub_hs, _ = _stack([img[start[q]:start[q] + hs[q]] for q in todo], ring=0)
                    sub_S = sub_img == k
                else:
                    sub_img, sub_S, sub_start, sub_hs = img, S, start, hs
                count, largest, touch = _components(sub_img, sub_S, sub_start, sub_hs, k, others[k])
                t = tiles[todo]
                comps[k][t] = count
                disc[t] = areas[k][t] - largest
                for v, cnt in touch.items():
                    touching[(k, v)][t] = cnt
        res[name] = np.where(present[k], disc, np.nan)
    h4 = {k: comps[k] - e8[k] for k in (LV, MYO, LA)}  # number of 4-connected holes

    # ---- 1, 3: holes inside LV / LA (certified 0 when there is no 4-connected hole)
    for k, name in ((LV, "holes_in_lv"), (LA, "holes_in_atrium")):
        val = np.where(present[k], 0.0, np.nan)
        todo = np.flatnonzero(present[k] & (h4[k] > 0))
        if len(todo):
            img, start, _, _ = _stack(crops(k, todo), ring=0)
            val[todo] = _bounded_complement_area(img == k, start, conn8=True)
        res[name] = val

    # ---- 2, 4, 5: holes in EPI, gaps between LV-MYO and LV-LA (certified 0 when the union has
    # no 4-connected hole: its 8-components follow from those of the parts and their adjacency)
    def union_h4(ka, kb, e8_union, adjacent):
        """4-connected holes of ka ∪ kb, -1 where its number of 8-components is unknown."""
        na, nb = comps[ka], comps[kb]
        # adjacent parts: with one component of a, the union has it plus b's components not touching it
        c8 = np.where(~adjacent, na + nb,
                      np.where((na == 1) & (nb == 1), 1,
                               np.where(na == 1, 1 + nb - touching[(kb, ka)],
                                        np.where(nb == 1, 1 + na - touching[(ka, kb)], -1))))
        return np.where(c8 >= 0, c8 - e8_union, -1)

    def full_tiles(tiles):
        return _stack([F[fstart[t]:fstart[t] + fh[t], :fw[t]] for t in tiles.tolist()], ring=0)

    both = present[LV] & present[MYO]
    holes_epi = np.where(both, 0.0, np.nan)
    gap_lm = holes_epi.copy()
    todo = np.flatnonzero(both & (union_h4(LV, MYO, e8_epi, adj_lv_myo) != 0))
    if len(todo):
        img, start, _, _ = full_tiles(todo)
        pocket, parea = _pockets(img, start, (LV, MYO))
        if parea.any():
            keep = parea > 0
            tsel = todo[keep]
            if not keep.all():
                img, start, _, _ = full_tiles(tsel)
                pocket, _ = _pockets(img, start, (LV, MYO))
            holes_epi[tsel] = _bounded_complement_area((img == LV) | (img == MYO), start, conn8=True)
            gap_lm[tsel] = _gap_area(img, start, LV, MYO, s, pocket, bool((h4[LV][tsel] > 0).any()),
                                     bool((h4[MYO][tsel] > 0).any()))
    res["holes_in_epi"], res["holes_between_lv_and_myo"] = holes_epi, gap_lm
    both_la = present[LV] & present[LA]
    gap_la = np.where(both_la, 0.0, np.nan)
    todo = np.flatnonzero(both_la & (union_h4(LV, LA, e8_lvla, adj_lv_la) != 0))
    if len(todo):
        img, start, _, _ = full_tiles(todo)
        pocket, parea = _pockets(img, start, (LV, LA))
        if (parea > s).any():
            tsel = todo[parea > s]
            if len(tsel) < len(todo):
                img, start, _, _ = full_tiles(tsel)
                pocket, _ = _pockets(img, start, (LV, LA))
            gap_la[tsel] = _gap_area(img, start, LV, LA, s, pocket, bool((h4[LV][tsel] > 0).any()),
                                     bool((h4[LA][tsel] > 0).any()))
    res["holes_between_lv_and_atrium"] = gap_la

    # ---- 9, 10: frontier ratios
    fr = np.full(n, np.nan)
    for tiles, img, S, start, hs in groups[LV]:
        fr[tiles] = _frontier_count(img, S, BG, start) / (box[LV][3][tiles] - box[LV][2][tiles] + 1)
    res["frontier_ratio_between_lv_and_bg"] = fr
    fr = np.full(n, np.nan)
    for tiles, img, S, start, hs in groups[LA]:  # every MYO pixel touching the LA lies in the LA crop
        f = _frontier_count(img, img == MYO, LA, start)
        fr[tiles] = np.where(present[MYO][tiles], f / (box[MYO][3][tiles] - box[MYO][2][tiles] + 1), np.nan)
    res["frontier_ratio_between_myo_and_atrium"] = fr

    # ---- 11: width ratio on the row int(row centroid of LV ∪ MYO)
    ok = present[LV] & present[MYO]
    if ok.any():
        row_sum = np.zeros(n, np.int64)
        counts = {LV: [], MYO: []}
        for k in (LV, MYO):
            for tiles, img, S, start, hs in groups[k]:
                rc = np.count_nonzero(S, axis=1)
                first_row = org_r[tiles] + box[k][0][tiles] - 1  # image row of each crop's first row
                local_r = np.arange(len(rc)) - np.repeat(start, hs)
                row_sum[tiles] += _tile_sum(rc * local_r, start) + areas[k][tiles] * first_row
                counts[k].append((tiles, rc, start, hs, first_row))
        row = (row_sum / np.maximum(areas[LV] + areas[MYO], 1)).astype(np.int64)
        on_row = {LV: np.zeros(n, np.int64), MYO: np.zeros(n, np.int64)}
        for k in (LV, MYO):
            for tiles, rc, start, hs, first_row in counts[k]:
                loc = row[tiles] - first_row
                inside = (loc >= 0) & (loc < hs)
                on_row[k][tiles] = np.where(inside, rc[start + np.clip(loc, 0, hs - 1)], 0)
        valid = ok & (on_row[LV] > 0) & (on_row[MYO] > 0)
        res["width_ratio_between_lv_and_myo"] = np.where(valid, on_row[LV] / np.maximum(on_row[MYO], 1), np.nan)

    # ---- 12: erosion ratio
    er = np.full(n, np.nan)
    for tiles, img, S, start, hs in groups[MYO] if erosion else ():
        br0, br1, bc0, bc1 = (b[tiles] for b in box[MYO])
        touches = (org_r[tiles] + br0 == 0) | (org_c[tiles] + bc0 == 0) | (org_r[tiles] + br1 == H - 1) \
            | (org_c[tiles] + bc1 == W - 1)
        er[tiles] = _erosion_ratio(img, S, start, hs, comps[MYO][tiles], h4[MYO][tiles], s, touches,
                                   areas[MYO][tiles] == H * W)
    res["erosion_ratio_before_myo_split"] = er
    return res


def _erosion_ratio(img, myo, start, hs, c8, h4, s, touch, full) -> np.ndarray:
    """Criterion 12 for a mosaic of MYO crops (sentinel 4 = outside the image or padding).

    X_n = R(T_n) where T_n = MYO eroded n times (chessboard distance > n) and R drops the
    4-components smaller than s: dropping a component commutes with later erosions and
    components are nested across levels, so the iterated erosion-and-cleaning of the
    definition equals cleaning each T_n once. If MYO has no 4-connected hole, no T_n has
    one either, so Euler numbers give the component counts: a level with E4 = 1 is one
    4-component (kept iff its area >= s); the other levels are resolved exactly, from the
    packed bits when s <= 4, else by labelling.
    """
    n = len(start)
    rows, wm = img.shape
    has_out = bool(touch.any())
    T0 = _pack_rows(myo)
    if full.any():  # a MYO covering the whole image never erodes: ratio 0 (infinite distance), no levels
        T0[:, np.repeat(full, hs)] = 0
    OUTp = _pack_rows(img == _OUT) if has_out else None
    levels = [T0]
    V, E4 = [], []  # per level >= 1: area and Euler number (4-connectivity)
    cur = T0
    while True:
        Rt = _shift_from_right(cur)
        if len(levels) > 1:
            TR = cur & Rt
            cnt = _tile_popcounts([cur, TR, cur[:, :-1] & cur[:, 1:], TR[:, :-1] & TR[:, 1:]], start, rows)
            V.append(cnt[:, 0])
            E4.append(cnt[:, 0] - cnt[:, 1] - cnt[:, 2] + cnt[:, 3])
        if has_out:
            P = cur | OUTp
            Hh = P & _shift_from_right(P) & _shift_from_left(P)
        else:
            Hh = cur & Rt & _shift_from_left(cur)
        nxt = np.zeros_like(cur)
        nxt[:, 1:-1] = Hh[:, :-2] & Hh[:, 1:-1] & Hh[:, 2:]
        if has_out:
            nxt &= cur
        if not nxt.any():
            break
        levels.append(nxt)
        cur = nxt
    L = len(levels)  # levels 0 .. L-1; level L is empty for every tile
    V.append(np.zeros(n, np.int64))
    E4.append(np.zeros(n, np.int64))
    V = np.array(V).reshape(L, n)  # row l-1 <-> level l
    E4 = np.array(E4).reshape(L, n)

    fallback = h4 != 0  # MYO with holes: Euler numbers do not certify connectivity
    stop_cheap = (V == 0) | ((E4 == 1) & (V < s) & ~fallback[None])
    first_cheap = np.argmax(stop_cheap, axis=0) + 1  # level index
    lvl = np.arange(1, L + 1)[:, None]
    need = (V > 0) & ((E4 != 1) | fallback[None]) & (lvl < first_cheap[None]) & (c8 == 1)[None]
    nstar = first_cheap.astype(np.int64)
    if need.any():
        bits_ok = need & ~fallback[None] & (s <= 4)
        if bits_ok.any():
            nstar = np.minimum(nstar, _split_level_bits(levels, start, hs, bits_ok, s))
        need &= ~bits_ok
        if need.any():
            nstar = np.minimum(nstar, _split_level_labels(levels, start, hs, need, s, wm))
    nstar = np.where(c8 == 1, nstar, 0)

    m = (V > 0).sum(axis=0) + 1  # max chessboard distance
    dmax = _max_edt(img, levels, m, start, hs, OUTp, touch)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(full, 0.0, nstar / dmax)


def _level_tiles(levels, start, hs, li, qi):
    """Mosaic of the packed rows of level li[k] + 1 of tile qi[k], for all k."""
    pieces = [levels[l + 1][:, start[q]:start[q] + hs[q]] for l, q in zip(li.tolist(), qi.tolist())]
    pstart = np.zeros(len(pieces), np.int64)
    np.cumsum(hs[qi][:-1], out=pstart[1:])
    return np.concatenate(pieces, axis=1), pstart


def _split_level_bits(levels, start, hs, need, s) -> np.ndarray:
    """First level (per tile) among ``need`` whose cleaned set is not one 8-component (s <= 4, no MYO hole).

    Without holes the number of 8-components is the Euler number (8-connectivity) of the
    level once its 4-components smaller than s are dropped.
    """
    li, qi = np.nonzero(need)
    tiles, pstart = _level_tiles(levels, start, hs, li, qi)
    _, _, e8, _ = _euler_packed_many([_drop_small_packed(tiles, s)], pstart)
    bad = e8[:, 0] != 1
    first_bad = np.full(need.shape[1], np.iinfo(np.int64).max)
    np.minimum.at(first_bad, qi[bad], li[bad] + 1)
    return first_bad


def _split_level_labels(levels, start, hs, need, s, wm) -> np.ndarray:
    """Same as :func:`_split_level_bits` by labelling, level by level (any s, holes allowed)."""
    need = need.copy()
    first_bad = np.full(need.shape[1], np.iinfo(np.int64).max)
    while need.any():
        qi = np.flatnonzero(need.any(axis=0))
        li = np.argmax(need[:, qi], axis=0)
        packed, pstart = _level_tiles(levels, start, hs, li, qi)
        tiles = _unpack_rows(packed, wm)
        lab, nlab, _, _ = _mosaic_labels(tiles, pstart, conn8=False)
        small = np.bincount(lab.ravel(), minlength=nlab + 1) < s
        small[0] = False
        if small.any():
            tiles &= ~small[lab]
        _, _, _, count = _mosaic_labels(tiles, pstart, conn8=True)
        need[li, qi] = False
        bad = count != 1
        first_bad[qi[bad]] = li[bad] + 1
        need[:, qi[bad]] = False
    return first_bad


@functools.lru_cache(maxsize=64)
def _offsets_by_norm(rmax2: int):
    """Integer offsets (dy, dx) grouped by squared norm, for norms 1 .. rmax2."""
    r = math.isqrt(rmax2)
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    d2 = dy * dy + dx * dx
    keep = (d2 > 0) & (d2 <= rmax2)
    dy, dx, d2 = dy[keep], dx[keep], d2[keep]
    order = np.argsort(d2, kind="stable")
    dy, dx, d2 = dy[order], dx[order], d2[order]
    values, firsts = np.unique(d2, return_index=True)
    bounds = list(firsts) + [len(d2)]
    return tuple((int(v), dy[a:b, None], dx[a:b, None]) for v, a, b in zip(values, bounds[:-1], bounds[1:]))


_IS_ZERO = np.ones(256, bool)  # pixel values that are "non-MYO pixels of the image"
_IS_ZERO[MYO] = _IS_ZERO[_OUT] = False


def _max_edt(img, levels, m, start, hs, OUTp, touch) -> np.ndarray:
    """Exact max of the Euclidean distance from MYO pixels to the nearest non-MYO pixel, per tile.

    With c the chessboard and t the city-block distance, c <= EDT <= min(sqrt(2) c, t), so
    the maximum D >= m = max c is reached at a pixel with c >= m / sqrt(2) and t >= m. For
    those candidates the offsets are scanned by increasing squared norm, from c**2 on
    (nearer offsets lie within the chessboard distance), and a candidate retires at the
    first norm where a non-MYO pixel of the image is found; the last norm at which a tile
    retires a candidate is its maximum squared distance.

    The nearest non-MYO pixel lies within the crop (bounding box + 1 px): an offset nearer
    than it that left the crop would project onto a nearer non-MYO pixel of the crop's ring,
    unless that ring is outside the image. So reads need no clipping unless a crop touches
    the image border (``OUTp`` given), where offsets are clipped to the tile (a clipped
    offset is nearer, hence already scanned).
    """
    n = len(start)
    rows, wm = img.shape
    L = len(levels)
    clip = OUTp is not None
    k0 = np.array([_ceil_div_sqrt2(int(v)) for v in m])
    row_tile = np.repeat(np.arange(n), hs)
    all_rows = np.arange(rows)
    # city-block levels U_k = {t > k} (4-neighbour erosions), U_{m-1} selected per tile
    cross = [levels[0]]
    for _ in range(1, int(m.max())):
        U = cross[-1]
        P = U | OUTp if clip else U
        nxt = P & _rows_from_above(P) & _rows_from_below(P) & _shift_from_left(P) & _shift_from_right(P)
        cross.append(nxt & U if clip else nxt)
    far = np.stack(cross)[(m - 1)[row_tile][None, :], np.arange(levels[0].shape[0])[:, None], all_rows[None, :]]
    first_level = (k0 - 1)[row_tile]
    # candidates, level by level: pixels of chessboard distance exactly l + 1 >= k0 and t >= m
    pos, cval = [], []
    for lvl in range(int(k0.min()) - 1, L):
        words = levels[lvl] & ~levels[lvl + 1] if lvl + 1 < L else levels[lvl].copy()
        words &= far
        words[:, first_level > lvl] = 0
        flat_words = words.ravel()
        nzw = np.flatnonzero(flat_words != 0)
        if len(nzw) == 0:
            continue
        bits = np.unpackbits(flat_words[nzw].astype(_LITTLE_U64).view(np.uint8).reshape(-1, 8), axis=1,
                             bitorder="little").view(bool)
        kk = np.flatnonzero(bits)
        w = nzw[kk >> 6]
        pos.append((w % rows) * wm + (w // rows) * 64 + (kk & 63))
        cval.append(np.full(len(kk), lvl + 1, np.int64))
    d2max = np.zeros(n, np.int64)
    if not pos:
        return np.sqrt(d2max.astype(float))
    p = np.concatenate(pos)
    c2 = np.concatenate(cval) ** 2
    q = row_tile[p // wm]
    mmax = int(m.max())
    if clip:  # only the tiles whose crop touches the image border need clipped reads
        edge = touch[q]
        _ring_scan(img, p[~edge], c2[~edge], q[~edge], mmax, d2max, None)
        pe, qe = p[edge], q[edge]
        _ring_scan(img, pe, c2[edge], qe, mmax, d2max, (start[qe], start[qe] + hs[qe] - 1))
    else:
        _ring_scan(img, p, c2, q, mmax, d2max, None)
    return np.sqrt(d2max.astype(float))


def _ring_scan(img, p, c2, q, mmax, d2max, row_bounds) -> None:
    """Scan offsets by increasing squared norm from candidate pixels p (flat indices of img).

    Records in ``d2max[q]`` the norm at which candidates retire (see :func:`_max_edt`);
    ``row_bounds`` = (first, last) row of each candidate's tile when reads must be clipped.
    """
    if len(p) == 0:
        return
    wm = img.shape[1]
    flat = img.ravel()
    if row_bounds is not None:
        col = p % wm
        r_lo, r_hi = row_bounds[0] * wm, row_bounds[1] * wm
    c2min, c2max = int(c2.min()), int(c2.max())
    for rho, dy, dx in _offsets_by_norm(2 * mmax * mmax):
        if rho < c2min:
            continue
        act = np.flatnonzero(c2 <= rho) if rho < c2max else None
        pa = p if act is None else p[act]
        if len(pa) == 0:
            continue
        if row_bounds is not None:
            ca = col if act is None else col[act]
            rr = pa - ca + dy * wm
            np.maximum(rr, r_lo if act is None else r_lo[act], out=rr)
            np.minimum(rr, r_hi if act is None else r_hi[act], out=rr)
            rr += np.clip(ca + dx, 0, wm - 1)
        else:
            rr = pa + (dy * wm + dx)
        hit = _IS_ZERO[np.take(flat, rr, mode="clip")].any(axis=0)
        if hit.any():
            done = np.flatnonzero(hit) if act is None else act[hit]
            d2max[q[done]] = rho
            keep = np.ones(len(p), bool)
            keep[done] = False
            p, q, c2 = p[keep], q[keep], c2[keep]
            if row_bounds is not None:
                r_lo, r_hi, col = r_lo[keep], r_hi[keep], col[keep]
            if len(p) == 0:
                return
            c2max = int(c2.max())


def _ceil_div_sqrt2(m: int) -> int:
    """Smallest integer k with 2 k**2 >= m**2."""
    k = math.isqrt((m * m + 1) // 2)
    while 2 * k * k < m * m:
        k += 1
    return k
