"""Anatomical plausibility of apical label maps: the 12 criteria of Painchaud et al. (TMI 2020).

One function, :func:`anatomical_metrics`, measures the 12 criteria on one label map or a
batch of them (0 = background, 1 = LV cavity, 2 = myocardium, 3 = left atrium) and says
whether each map is anatomically plausible; :func:`criteria_validity` applies the
thresholds criterion by criterion.

Where things are: the definitions, names and valid ranges of the criteria in
:mod:`echolatent.shape.criteria_definitions`; the grid they are measured on in
:mod:`echolatent.shape.grid`; the vectorised measurement in
:mod:`echolatent.shape.criteria_batch` (criterion 12 in :mod:`echolatent.shape.erosion`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from echolatent.labels import LA, LV, MYO
from echolatent.shape.criteria_batch import criteria_batch
from echolatent.shape.criteria_definitions import CRITERIA, CRITERION_STRUCTURES, GRID_CRITERIA, THRESHOLDS
from echolatent.shape.grid import SMALL_OBJECT_MM2, criteria_grid, grid_indices
from echolatent.shape.validation import as_label_batch, check_spacing

__all__ = ["anatomical_metrics", "criteria_validity", "criteria_matrix", "failed_criteria"]

_RESAMPLED_PIXELS = 2**26  # pixels of resampled maps held at once by anatomical_metrics


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
          ``g`` mm (nearest neighbour, same field of view, :func:`~echolatent.shape.grid.resample_to_grid`),
          criteria 1-8 on the maps' own grid; the small-object size is
          :data:`SMALL_OBJECT_MM2` (1.44 mm^2, 16 px at 0.3 mm) on both. ``spacing`` is
          required. Maps already on that grid are measured once;
        * ``"native"``: all 12 on the maps' own pixels with ``s = H W / 2**14``, as the
          reference code does (for maps of unknown spacing, or to reproduce it);
        * ``"auto"``: :data:`~echolatent.shape.grid.CRITERIA_GRID_MM` (0.3 mm) when ``spacing`` is given, else
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
    bounds = _check_thresholds(thresholds)
    matrix, grid_mm = _criteria_values(masks, spacing, grid, labels, chunk_size)
    columns = dict(zip(CRITERIA, matrix.T))
    columns["anatomical_errors"] = ~_validity(matrix, labels, bounds).all(axis=1)
    df = pd.DataFrame(columns)  # built at once (adding a column costs pandas ~0.5 ms)
    df.attrs["labels"] = tuple(labels)
    df.attrs["grid"] = grid_mm
    return df


def _criteria_values(masks, spacing, grid, labels, chunk_size) -> tuple[np.ndarray, float | str]:
    """The (N, 12) criteria matrix (:data:`CRITERIA` order) of :func:`anatomical_metrics` and its grid."""
    batch, _ = as_label_batch(masks, labels)
    sp = check_spacing(spacing, len(batch))
    grid_mm = criteria_grid(grid, sp)
    if grid_mm != "native" and sp is None:
        raise ValueError(f"grid={grid!r} (an isotropic grid in mm) needs the spacing (h, w) of the maps")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if grid_mm == "native":
        values = criteria_batch(batch, labels, int(chunk_size))
    else:
        values = _criteria_on_grid(batch, sp, grid_mm, labels, int(chunk_size))
    matrix = np.stack([values[name] for name in CRITERIA], axis=1) if len(batch) else np.zeros((0, len(CRITERIA)))
    return matrix.astype(float, copy=False), grid_mm


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
        rows = grid_indices(batch.shape[1], float(sh), grid_mm)
        cols = grid_indices(batch.shape[2], float(sw), grid_mm)
        same = len(rows) == batch.shape[1] and len(cols) == batch.shape[2] and \
            np.array_equal(rows, np.arange(len(rows))) and np.array_equal(cols, np.arange(len(cols)))
        step = max(1, _RESAMPLED_PIXELS // (len(rows) * len(cols)))  # bounded memory for large batches
        for first in range(0, len(sel), step):
            part = sel[first:first + step]
            maps = batch if len(part) == n else batch[part]
            if same:  # the maps are on the canonical grid already: one pass
                both = criteria_batch(maps, labels, chunk_size, s=SMALL_OBJECT_MM2 / grid_mm ** 2)
                for name in CRITERIA:
                    out[name][part] = both[name]
                continue
            native = criteria_batch(maps, labels, chunk_size, s=SMALL_OBJECT_MM2 / (float(sh) * float(sw)),
                                    erosion=False)
            # columns first, then rows repeated (grid_indices are non-decreasing, so repeating
            # each source row by its count is taking them): 2.3x faster than two takes
            resampled = np.repeat(maps.take(cols, axis=2), np.bincount(rows, minlength=maps.shape[1]), axis=1)
            iso = criteria_batch(resampled, labels, chunk_size, s=SMALL_OBJECT_MM2 / grid_mm ** 2)
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


def criteria_matrix(masks, spacing=None, *, labels: Sequence[int] = (LV, MYO, LA), known=None) -> np.ndarray:
    """The 12 criteria of label maps as an (N, 12) matrix (:data:`CRITERIA` order), measuring only what is new.

    Parameters
    ----------
    masks : array_like of int, shape (N, H, W)
    spacing : sequence of 2 float, optional
        As in :func:`anatomical_metrics` (default grid).
    labels : sequence of int
    known : tuple (known_masks, known_values), optional
        Maps of the same shape already measured (with the same spacing and labels) and their
        (N, 12) criteria: a map equal to its known counterpart takes its values (a map's
        criteria depend on that map alone), the others are measured.

    Returns
    -------
    ndarray (N, 12) float
    """
    masks = np.asarray(masks)
    out = np.full((len(masks), len(CRITERIA)), np.nan)
    todo = np.ones(len(masks), bool)
    if known is not None:
        known_masks, known_values = known
        if np.shape(known_masks) != masks.shape or np.shape(known_values) != out.shape:
            raise ValueError(f"criteria_matrix: known maps {np.shape(known_masks)} and values {np.shape(known_values)} "
                             f"do not match the maps {masks.shape}")
        todo = (masks != known_masks).reshape(len(masks), -1).any(axis=1)
        out[~todo] = np.asarray(known_values, float)[~todo]
    if todo.any():
        out[todo] = _criteria_values(masks[todo], spacing, "auto", _check_labels(labels), 128)[0]
    return out


def failed_criteria(matrix: np.ndarray, *, labels: Sequence[int] = (LV, MYO, LA),
                    thresholds: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
    """(N, 12) bool: the criteria each map of a :func:`criteria_matrix` fails (:func:`criteria_validity`)."""
    return ~_validity(np.asarray(matrix, float), _check_labels(labels), _check_thresholds(thresholds))


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

