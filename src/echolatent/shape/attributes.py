"""Shape attributes of apical label maps (Painchaud et al., TMI 2022) and LA area.

:func:`shape_attributes` measures, for one label map or a batch (0 background, 1 LV,
2 MYO, 3 LA), the seven attributes tracked over time by the temporal method and the
AR-VAE (:data:`TEMPORAL_ATTRIBUTES`, in that order) plus the LA area, in pixels of the
grid, and their physical variants when a pixel spacing is given.

Definitions (pixel units; rows grow downwards, the apex is at the top)
-----------------------------------------------------------------------
``lv_area``, ``myo_area``, ``atrium_area``
    Number of pixels of the structure.
``lv_base_width``
    Euclidean distance between the two LV basal corners: the LV pixels whose 3 x 3
    neighbourhood holds both MYO and "other" (neither LV nor MYO: background or LA) are
    split at their mean column, and the lowest one (largest row; first in raster order on
    ties) of each side is a corner. If all candidates share one column, they are split at
    their mean row instead (reference edge case). Fewer than 2 candidates: NaN.
``lv_length``
    Distance from the midpoint of the basal corners to the apex. The apex is found on the
    0.9 iso-contour of the LV mask (``skimage.measure.find_contours(lv, 0.9)[0]``): contour
    points in polar coordinates about the LV centre of mass, sorted by angle, radius smoothed
    by a Gaussian of sigma = 0.05 x (number of contour points), highest peak
    (``scipy.signal.find_peaks``) with a negative angle, i.e. above the centre of mass.
``lv_orientation``
    Angle in degrees, in [-90, 90), between the LV principal axis (eigenvector of the
    largest eigenvalue of the covariance of the LV pixel coordinates, i.e. the long axis)
    and the vertical (row) axis; sign invariant by construction. 0 for an upright LV,
    positive when the long axis turns from the downward row axis towards increasing
    columns (apex leaning to the left of the base on the displayed image). Equivalent to
    the reference formula ``degrees(atan2(v[1], v[0])) - 90`` on the eigenvector v of the
    largest eigenvalue of ``skimage.measure.inertia_tensor``, folded into a 180-degree range.
``epi_center_x``, ``epi_center_y``
    Column and row of the centre of mass of LV ∪ MYO.

A missing structure gives area 0 and NaN for every geometric attribute that needs it
(``lv_base_width``, ``lv_length`` and ``lv_orientation`` need the LV, the first two also
the MYO; ``epi_center_*`` need LV ∪ MYO), so that no downstream code can mistake it for a
measurement. With ``spacing = (h, w)`` in mm the physical variants are added
(:data:`MM_ATTRIBUTES`): ``lv_area_mm2``, ``myo_area_mm2``, ``atrium_area_mm2`` (pixel area
h * w), ``lv_base_width_mm``, ``lv_length_mm`` (distances with rows scaled by h and columns
by w), ``epi_center_x_mm`` (= x * w), ``epi_center_y_mm`` (= y * h) and
``lv_orientation_deg`` (the orientation of the LV measured in physical coordinates: the
covariance of the LV pixel positions in mm, i.e. ``mu_rr h^2``, ``mu_cc w^2``, ``mu_rc h w``).
On an anisotropic grid (h != w) the apex of ``lv_length_mm`` is chosen by the same polar
rule applied to the contour in mm (radius and angle of the contour points in mm about the
LV centre of mass), so that it is the apex of the heart and not of its pixel-space image,
which anisotropy stretches: with rows coarser than columns the pixel-space LV can be wider
than long and its polar peak lands on a side wall. On an isotropic grid the two choices
coincide (the polar profile is only scaled) and ``lv_length_mm = lv_length * h``.
``lv_orientation`` (pixel space) is likewise ``lv_orientation_deg`` only on an isotropic
grid. The physical columns are what a measure independent of the acquisition grid must use
(:data:`PHYSICAL_ATTRIBUTES` for the temporal metric).

Speed: everything is vectorised across the batch on mosaics of foreground and LV crops
(sums of pixel coordinates by one small matrix product, basal corners from one pass of
dilations, iso-contour points of all maps at once); only the Gaussian smoothing of each
polar profile is a per-map call. The 0.9 iso-contour is not traced: its points are the
level crossings on the edges between the LV 4-component of the first LV pixel (raster
order) and the 8-connected background around it, which is exactly the point set of
``find_contours(lv, 0.9)[0]`` (with its repeated closing point); maps whose LV touches the
image border (open contours) call ``find_contours`` itself. The results equal those of the
scipy/scikit-image reference definitions (checked in the tests).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d
from skimage.measure import find_contours

from echolatent.labels import BACKGROUND, LA, LV, MYO
from echolatent.shape.components import label
from echolatent.shape.mosaic import dilate8, first_last, foreground_boxes, stack_tiles, tile_sum
from echolatent.shape.validation import as_label_batch, check_spacing

__all__ = ["TEMPORAL_ATTRIBUTES", "ATTRIBUTES", "MM_ATTRIBUTES", "PHYSICAL_ATTRIBUTES", "PHYSICAL_NAMES",
           "temporal_attribute", "shape_attributes", "lv_landmarks"]

#: The seven attributes of the TMI 2022 temporal method, in the AR-VAE order (latent dims 0-6).
TEMPORAL_ATTRIBUTES = ("lv_area", "lv_base_width", "lv_length", "lv_orientation", "myo_area", "epi_center_x",
                       "epi_center_y")
#: All pixel-unit columns of :func:`shape_attributes`, in order.
ATTRIBUTES = TEMPORAL_ATTRIBUTES + ("atrium_area",)
#: Columns added when a spacing is given.
MM_ATTRIBUTES = ("lv_area_mm2", "lv_base_width_mm", "lv_length_mm", "myo_area_mm2", "atrium_area_mm2",
                 "epi_center_x_mm", "epi_center_y_mm", "lv_orientation_deg")
#: The seven temporal attributes in physical units (mm^2, mm, degrees in mm coordinates), in the
#: order of :data:`TEMPORAL_ATTRIBUTES`: what the temporal metric measures by default, so that a
#: frame's flag does not depend on the pixel spacing of its sequence.
PHYSICAL_ATTRIBUTES = ("lv_area_mm2", "lv_base_width_mm", "lv_length_mm", "lv_orientation_deg", "myo_area_mm2",
                       "epi_center_x_mm", "epi_center_y_mm")
#: Temporal attribute (pixel name, the AR-VAE's) -> its physical column.
PHYSICAL_NAMES = dict(zip(TEMPORAL_ATTRIBUTES, PHYSICAL_ATTRIBUTES))
_TEMPORAL_OF = {**{name: name for name in TEMPORAL_ATTRIBUTES}, **{v: k for k, v in PHYSICAL_NAMES.items()}}


def temporal_attribute(column: str) -> str | None:
    """The temporal attribute a column measures (``"lv_area_mm2"`` -> ``"lv_area"``), None if it is none."""
    return _TEMPORAL_OF.get(column)

_ISO_LEVEL = 0.9
_APEX_SMOOTHING = 0.05
_FRAC_UP = (_ISO_LEVEL - 0.0) / (1.0 - 0.0)  # crossing from an outside pixel to an LV pixel
_FRAC_DOWN = (_ISO_LEVEL - 1.0) / (0.0 - 1.0)  # crossing from an LV pixel to an outside pixel


def shape_attributes(masks, spacing=None) -> pd.DataFrame:
    """Shape attributes of apical label maps.

    Parameters
    ----------
    masks : array_like of int, shape (H, W) or (N, H, W)
        Label maps: 0 background, 1 LV, 2 MYO, 3 LA.
    spacing : sequence of 2 float or array of shape (N, 2), optional
        Pixel size ``(h, w)`` in mm (rows, columns). When given, the ``*_mm`` / ``*_mm2``
        columns of :data:`MM_ATTRIBUTES` are added.

    Returns
    -------
    pandas.DataFrame
        One row per map, columns :data:`ATTRIBUTES` (pixel units, degrees for the
        orientation), then :data:`MM_ATTRIBUTES` if ``spacing`` is given. See the module
        docstring for the definitions and the NaN conventions.

    Raises
    ------
    TypeError
        If the maps are not of an integer dtype.
    ValueError
        If the maps are not 2-D/3-D or hold values other than 0-3, or ``spacing`` is malformed.
    """
    X, _ = as_label_batch(masks)
    N, H, W = X.shape
    sp = check_spacing(spacing, N)
    out = {name: np.full(N, np.nan) for name in ATTRIBUTES}
    landmarks = np.full((N, 3, 2), np.nan)  # left corner, right corner, apex (row, col)
    moments = np.full((N, 3), np.nan)  # central second moments of the LV pixels: rr, cc, rc
    scale = None if sp is None else np.broadcast_to(sp, (N, 2)).astype(np.float64)
    apex_mm = None
    if scale is not None and np.any(scale[:, 0] != scale[:, 1]):
        apex_mm = np.full((N, 2), np.nan)
    if N:
        _attributes_batch(X, out, landmarks, moments=moments, scale=scale, apex_mm=apex_mm)
    columns = {name: out[name] for name in ATTRIBUTES}
    if sp is not None:
        h, w = scale[:, 0], scale[:, 1]
        mid = (landmarks[:, 0] + landmarks[:, 1]) / 2
        apex = landmarks[:, 2] if apex_mm is None else apex_mm  # NaN where the maps lack LV or MYO
        columns.update({  # in MM_ATTRIBUTES order
            "lv_area_mm2": out["lv_area"] * (h * w),
            "lv_base_width_mm": _scaled_norm(landmarks[:, 0] - landmarks[:, 1], h, w),
            "lv_length_mm": _scaled_norm(apex - mid, h, w),
            "myo_area_mm2": out["myo_area"] * (h * w),
            "atrium_area_mm2": out["atrium_area"] * (h * w),
            "epi_center_x_mm": out["epi_center_x"] * w,
            "epi_center_y_mm": out["epi_center_y"] * h,
            "lv_orientation_deg": _orientation(moments[:, 0] * (h * h), moments[:, 1] * (w * w),
                                               moments[:, 2] * (h * w)),
        })
    # one frame built at once: adding columns one by one cost ~2 ms per call (pandas inserts)
    return pd.DataFrame(columns)


def lv_landmarks(mask) -> np.ndarray:
    """LV basal corners and apex of one (H, W) label map, as defined for :func:`shape_attributes`.

    Returns
    -------
    ndarray, shape (3, 2)
        (row, col) of the left corner, the right corner and the apex; NaN rows where a
        landmark cannot be determined.
    """
    X, _ = as_label_batch(mask)
    if X.shape[0] != 1:
        raise ValueError(f"lv_landmarks takes one (H, W) label map, got shape {np.shape(mask)}")
    out = {name: np.full(1, np.nan) for name in ATTRIBUTES}
    landmarks = np.full((1, 3, 2), np.nan)
    _attributes_batch(X, out, landmarks)
    return landmarks[0]


def _scaled_norm(d: np.ndarray, h, w) -> np.ndarray:
    return np.sqrt((d[:, 0] * h) ** 2 + (d[:, 1] * w) ** 2)


def _orientation(mu_rr, mu_cc, mu_rc) -> np.ndarray:
    """Angle (degrees, [-90, 90)) of the principal axis of central moments, from the row axis; NaN stays NaN."""
    angle = np.degrees(0.5 * np.arctan2(2 * mu_rc, mu_rr - mu_cc))
    return (angle + 90.0) % 180.0 - 90.0


def _attributes_batch(X: np.ndarray, out: dict, landmarks: np.ndarray, chunk_size: int = 256, *, moments=None,
                      scale=None, apex_mm=None) -> None:
    """Fill ``out`` and ``landmarks``; optionally the LV central moments (N, 3) and, with the
    spacings ``scale`` (N, 2), the apex chosen in mm coordinates (``apex_mm``, (N, 2))."""
    N, H, W = X.shape
    ra, rb, ca, cb, has_fg = foreground_boxes(X)
    for key in ("lv_area", "myo_area", "atrium_area"):
        out[key][~has_fg] = 0
    idx = np.flatnonzero(has_fg)
    order = idx[np.argsort((cb - ca)[idx], kind="stable")]
    for first in range(0, len(order), chunk_size):
        sel = order[first:first + chunk_size]
        _attributes_chunk(X, sel, ra[sel], rb[sel], ca[sel], cb[sel], (H, W), out, landmarks, moments=moments,
                          scale=None if apex_mm is None else scale[sel], apex_mm=apex_mm)


def _pixels(mask: np.ndarray):
    """Row and column indices of the set pixels of a 2-D bool array (raster order)."""
    idx = np.flatnonzero(mask)
    r = idx // mask.shape[1]
    return r, idx - r * mask.shape[1]


def _tile_first_last(has_row: np.ndarray, start: np.ndarray, local: np.ndarray):
    """Per tile first and last local row where ``has_row`` (-1 where none)."""
    big = len(has_row)
    first = np.minimum.reduceat(np.where(has_row, local, big), start)
    last = np.maximum.reduceat(np.where(has_row, local, -1), start)
    return np.where(last >= 0, first, -1), last


def _attributes_chunk(X, sel, ra, rb, ca, cb, shape, out, landmarks, *, moments=None, scale=None,
                      apex_mm=None) -> None:
    n = len(sel)
    F, fstart, fh, _ = stack_tiles([X[i, a:b, c:d] for i, a, b, c, d in zip(sel, ra, rb, ca, cb)], ring=1, multiple=8)
    R, Wf = F.shape
    row_tile = np.repeat(np.arange(n), fh)
    local = np.arange(R) - fstart[row_tile]  # row within the tile; image row = local + ra - 1
    lvb, myob = F == LV, F == MYO
    # per-row counts and column moments (float32 sums of integers < 2**24 are exact)
    col = np.arange(Wf, dtype=np.float32)
    C = np.stack([np.ones(Wf, np.float32), col, col * col], axis=1)
    buf = np.empty((R, Wf), np.float32)
    buf[...] = lvb
    lv_rows = (buf @ C).astype(np.int64)  # n_r, sum c, sum c**2
    buf[...] = myob
    myo_rows = (buf @ C[:, :2]).astype(np.int64)
    la_n = tile_sum(np.count_nonzero(F == LA, axis=1), fstart)
    lr = local.astype(np.int64)
    terms = np.stack([lv_rows[:, 0], lv_rows[:, 0] * lr, lv_rows[:, 0] * lr * lr, lv_rows[:, 1], lv_rows[:, 2],
                      lv_rows[:, 1] * lr, myo_rows[:, 0], myo_rows[:, 0] * lr, myo_rows[:, 1]], axis=1)
    n_lv, s_r, s_rr, s_c, s_cc, s_rc, n_myo, m_r, m_c = tile_sum(terms, fstart).T
    out["lv_area"][sel] = n_lv
    out["myo_area"][sel] = n_myo
    out["atrium_area"][sel] = la_n
    row0, col0 = ra - 1, ca - 1  # image coordinates of each tile's (0, 0)
    n_epi = n_lv + n_myo
    has_epi = n_epi > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out["epi_center_y"][sel] = np.where(has_epi, (s_r + m_r + row0 * n_epi) / n_epi, np.nan)
        out["epi_center_x"][sel] = np.where(has_epi, (s_c + m_c + col0 * n_epi) / n_epi, np.nan)
        nl = np.maximum(n_lv, 1)
        mu_rr = s_rr - s_r * s_r / nl
        mu_cc = s_cc - s_c * s_c / nl
        mu_rc = s_rc - s_r * s_c / nl
    out["lv_orientation"][sel] = np.where(n_lv > 0, _orientation(mu_rr, mu_cc, mu_rc), np.nan)
    if moments is not None:
        moments[sel] = np.where((n_lv > 0)[:, None], np.stack([mu_rr, mu_cc, mu_rc], axis=1), np.nan)

    # ---- LV crops (bounding box + 1 px) of the maps with LV and MYO: corners and apex
    todo = np.flatnonzero((n_lv > 0) & (n_myo > 0))
    if len(todo) == 0:
        return
    b0, b1 = _tile_first_last(lv_rows[:, 0] > 0, fstart, local)
    c0, c1, _ = first_last(np.logical_or.reduceat(lvb, fstart, axis=0))
    b0, b1, c0, c1 = b0[todo] - 1, b1[todo] + 2, c0[todo] - 1, c1[todo] + 2
    L, lstart, lh, lw = stack_tiles([F[fstart[t] + a:fstart[t] + b, c:d] for t, a, b, c, d in
                                     zip(todo.tolist(), b0, b1, c0, c1)], ring=0)
    lrow0 = row0[todo] + b0  # image row / column of each LV crop's (0, 0)
    lcol0 = col0[todo] + c0
    lv = L == LV
    corners = _corners_mosaic(lv, L == MYO, (L == BACKGROUND) | (L == LA), lstart, lh)
    centre_r = (s_r[todo] + row0[todo] * n_lv[todo]) / n_lv[todo]
    centre_c = (s_c[todo] + col0[todo] * n_lv[todo]) / n_lv[todo]
    apex, apex_phys = _apex_mosaic(lv, lstart, lh, lw, lrow0, lcol0, centre_r, centre_c, shape,
                                   scale=None if scale is None else scale[todo])
    left = corners[:, 0] + np.stack([lrow0, lcol0], axis=1)
    right = corners[:, 1] + np.stack([lrow0, lcol0], axis=1)
    i = sel[todo]
    landmarks[i, 0], landmarks[i, 1], landmarks[i, 2] = left, right, apex
    if apex_mm is not None:
        apex_mm[i] = apex_phys
    d = left - right
    out["lv_base_width"][i] = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])
    d = apex - (left + right) / 2
    out["lv_length"][i] = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])


def _corners_mosaic(lv, myo, other, start, hs) -> np.ndarray:
    """Basal corners (local row, col) of every tile of an LV-crop mosaic, NaN where < 2 candidates.

    The crops cover the LV bounding box + 1 px, so every neighbour of an LV pixel inside
    the image is in its tile (the sentinel, outside the image, is neither MYO nor other).
    """
    n = len(start)
    out = np.full((n, 2, 2), np.nan)
    cand = lv & dilate8(myo) & dilate8(other)
    y, x = _pixels(cand)  # raster order, hence grouped by tile
    if len(y) == 0:
        return out
    tile = np.repeat(np.arange(n), hs)[y]
    y = y - start[tile]
    cnt = np.bincount(tile, minlength=n)
    sx = np.bincount(tile, weights=x, minlength=n).astype(np.int64)
    sy = np.bincount(tile, weights=y, minlength=n).astype(np.int64)
    xmin = np.full(n, np.iinfo(np.int64).max)
    xmax = np.full(n, -1)
    np.minimum.at(xmin, tile, x)
    np.maximum.at(xmax, tile, x)
    vertical = (xmin == xmax)[tile]
    # side 0 = left: x below the mean column (or, for vertically aligned candidates, y below the mean row)
    side = np.where(vertical, ~(y * cnt[tile] > sy[tile]), ~(x * cnt[tile] < sx[tile])).astype(np.int64)
    # the corner of a side is its lowest candidate, except for the left group of an aligned set (the
    # candidates below the mean row), whose corner is its highest one (reference edge case)
    key_r = np.where(vertical & (side == 0), -y, y)
    group = tile * 2 + side
    order = np.lexsort((-np.arange(len(y)), key_r, group))  # last of each group: max key, first in raster order
    last = np.flatnonzero(np.r_[group[order][1:] != group[order][:-1], True])
    pick = order[last]
    g = group[pick]
    ok = cnt >= 2
    t, s = g // 2, g % 2
    keep = ok[t]
    out[t[keep], s[keep], 0] = y[pick][keep]
    out[t[keep], s[keep], 1] = x[pick][keep]
    return out


def _apex_mosaic(lv, start, hs, ws, row0, col0, centre_r, centre_c, shape, scale=None):
    """Apex (image row, col) of every tile of an LV-crop mosaic (see the module docstring).

    Returns ``(apex, apex_phys)``: ``apex_phys`` is the contour point chosen by the same polar
    rule in mm coordinates (``scale``: (h, w) of each tile), None without ``scale``.

    ``find_contours(lv, 0.9)[0]`` is the contour holding the first marching-square segment
    of the raster scan, i.e. (the LV not touching the image border) the outer boundary of
    the 4-connected LV component K0 of the first LV pixel in raster order, against the
    8-connected background region around it (marching squares join face-connected pixels
    above the level and vertex-connected ones below). Its points are the level crossings
    on the edges between K0 pixels and that background, each once, plus the first point
    repeated at the end: the contour closes on its last square of the raster scan, in
    K0's last row and last column there, whose segment ends on that square's left edge.
    Maps whose LV touches the image border (open contours) use ``find_contours`` itself.
    """
    n = len(start)
    H, W = shape
    rows = lv.shape[0]
    tile_of_row = np.repeat(np.arange(n), hs)
    local = np.arange(rows) - start[tile_of_row]
    # one closed contour around all the LV: one run per row, consecutive runs overlapping
    runs = np.count_nonzero(lv & ~np.pad(lv, ((0, 0), (1, 0)))[:, :-1], axis=1)
    linked = np.zeros(rows, bool)
    linked[:-1] = (lv[:-1] & lv[1:]).any(axis=1)
    has = runs > 0
    lastrow = np.zeros(rows, bool)
    lastrow[:-1] = has[:-1] & ~has[1:]
    bad = has & ((runs != 1) | (~linked & ~lastrow))
    first_r, last_r = _tile_first_last(has, start, local)
    simple = (tile_sum(bad.astype(np.int64), start) == 0) & (tile_sum(has.astype(np.int64), start)
                                                                == last_r - first_r + 1)
    touches = (row0 + 1 == 0) | (col0 + 1 == 0) | (row0 + hs - 1 == H) | (col0 + ws - 1 == W)
    simple &= ~touches
    apex = np.full((n, 2), np.nan)
    pieces = [_contour_points(lv, ~lv, start, hs, row0, col0, np.flatnonzero(simple))]
    other = np.flatnonzero(~simple & ~touches)
    if len(other):  # K0 and its outer background, by labelling
        sub, sstart, shs, _ = stack_tiles([lv[start[t]:start[t] + hs[t]].view(np.uint8) for t in other.tolist()],
                                          ring=0)
        sub = sub == 1
        lab, _ = label(sub, connectivity=4)
        flat_first = np.array([np.flatnonzero(sub[a:a + h])[0] for a, h in zip(sstart.tolist(), shs.tolist())])
        k0 = lab[sstart + flat_first // sub.shape[1], flat_first % sub.shape[1]]
        K = lab == np.repeat(k0, shs)[:, None]
        bg, _ = label(~sub, connectivity=8)
        U = bg == bg[0, 0]
        pt, pr, pc = _contour_points(K, U, sstart, shs, row0[other], col0[other], np.arange(len(other)))
        pieces.append((other[pt], pr, pc))
    pt = np.concatenate([p[0] for p in pieces])
    pr = np.concatenate([p[1] for p in pieces])
    pc = np.concatenate([p[2] for p in pieces])
    apex_phys = None if scale is None else np.full((n, 2), np.nan)
    if len(pt):
        _polar_peaks(pt, pr, pc, centre_r, centre_c, apex)
        if scale is not None:
            _polar_peaks(pt, pr, pc, centre_r, centre_c, apex_phys, scale[pt, 0], scale[pt, 1])
    for t in np.flatnonzero(touches):  # open contours: skimage's own, in image coordinates
        crop = lv[start[t]:start[t] + hs[t], :ws[t]]
        r_a, c_a = max(-row0[t], 0), max(-col0[t], 0)  # skip the sentinel rows/columns outside the image
        r_b, c_b = min(hs[t], H - row0[t]), min(ws[t], W - col0[t])
        full = np.zeros((row0[t] + r_b, col0[t] + c_b), bool)
        full[row0[t] + r_a:, col0[t] + c_a:] = crop[r_a:r_b, c_a:c_b]
        contours = find_contours(full, level=_ISO_LEVEL) if min(full.shape) >= 2 else []
        if contours:
            apex[t] = _polar_apex(contours[0], centre_r[t], centre_c[t])
            if scale is not None:
                apex_phys[t] = _polar_apex(contours[0], centre_r[t], centre_c[t], scale[t])
    return apex, apex_phys


def _polar_peaks(pt, pr, pc, centre_r, centre_c, apex, sy=1.0, sx=1.0) -> None:
    """Apex of every tile from its contour points (tile ``pt``, row ``pr``, col ``pc``), into ``apex``.

    Polar coordinates about the LV centre of mass, rows scaled by ``sy`` and columns by ``sx``
    (per point; 1 = pixel space, the spacing = mm space).
    """
    y = (pr - centre_r[pt]) * sy
    x = (pc - centre_c[pt]) * sx
    rho = np.sqrt(x**2 + y**2)
    theta = np.arctan2(y, x)
    order = np.argsort(theta + 8.0 * pt)  # by tile (theta spans < 8), then by angle
    pt, pr, pc, rho, theta = pt[order], pr[order], pc[order], rho[order], theta[order]
    bounds = np.flatnonzero(np.r_[True, pt[1:] != pt[:-1], True])
    smooth = np.empty_like(rho)
    for a0, a1 in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        smooth[a0:a1] = gaussian_filter1d(rho[a0:a1], (a1 - a0) * _APEX_SMOOTHING)
    best = _highest_upper_peak(smooth, theta, bounds)
    found = best >= 0
    apex[pt[bounds[:-1]][found]] = np.stack([pr[best[found]], pc[best[found]]], axis=1)


def _contour_points(K, U, start, hs, row0, col0, tiles):
    """Iso-contour points between foreground K and background U for the given tiles of a mosaic.

    Returns the tile, image row and image column of every point, in the float arithmetic
    of ``find_contours`` (coordinate + fraction), closing points included.
    """
    n = len(start)
    sel = np.zeros(n, bool)
    sel[tiles] = True
    tile_of_row = np.repeat(np.arange(n), hs)
    use = sel[tile_of_row][:, None]
    # horizontal neighbours (r, c) - (r, c + 1): point (r, c + fraction(left value, right value))
    a, b = K[:, :-1], K[:, 1:]
    hr, hc = _pixels(((a & U[:, 1:]) | (U[:, :-1] & b)) & use)
    hf = np.where(a[hr, hc], _FRAC_DOWN, _FRAC_UP)
    # vertical neighbours (r, c) - (r + 1, c): point (r + fraction(upper value, lower value), c)
    a, b = K[:-1], K[1:]
    vr, vc = _pixels(((a & U[1:]) | (U[:-1] & b)) & use[:-1])
    vf = np.where(a[vr, vc], _FRAC_DOWN, _FRAC_UP)
    ht, vt = tile_of_row[hr], tile_of_row[vr]
    # closing point: K's last row, its last pixel there, left edge of that marching square
    has = K.any(axis=1)
    _, last_r = _tile_first_last(has, start, np.arange(K.shape[0]) - start[tile_of_row])
    st = np.asarray(tiles, np.int64)
    st = st[last_r[st] >= 0]
    last_c = K.shape[1] - 1 - np.argmax(K[start[st] + last_r[st], ::-1], axis=1)
    pr = np.concatenate([(hr - start[ht] + row0[ht]).astype(float), (vr - start[vt] + row0[vt]) + vf,
                         (last_r[st] + row0[st]) + _FRAC_DOWN])
    pc = np.concatenate([(hc + col0[ht]) + hf, (vc + col0[vt]).astype(float), (last_c + col0[st]).astype(float)])
    return np.concatenate([ht, vt, st]), pr, pc


def _highest_upper_peak(x: np.ndarray, theta: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Per segment [bounds[k], bounds[k+1]) of x, index of the highest ``find_peaks`` peak with theta < 0.

    A peak is a maximal plateau [l, r] inside the segment (not touching its ends) higher than
    both neighbours, located at (l + r) // 2 (scipy's rule); ties go to the first peak. -1
    where there is none.
    """
    n = len(x)
    nseg = len(bounds) - 1
    seg = np.repeat(np.arange(nseg), np.diff(bounds))
    first = np.zeros(n, bool)
    first[bounds[:-1]] = True
    same_prev = np.zeros(n, bool)
    same_prev[1:] = (x[1:] == x[:-1]) & ~first[1:]
    run_start = np.flatnonzero(~same_prev)
    run_end = np.r_[run_start[1:], n] - 1
    s_lo, s_hi = bounds[:-1][seg[run_start]], bounds[1:][seg[run_start]] - 1
    inner = (run_start > s_lo) & (run_end < s_hi)
    ls, re = run_start[inner], run_end[inner]
    is_peak = (x[ls - 1] < x[ls]) & (x[re + 1] < x[re])
    mid = (ls[is_peak] + re[is_peak]) // 2
    mid = mid[theta[mid] < 0]
    best = np.full(nseg, -1)
    if len(mid):
        order = np.lexsort((mid, -x[mid], seg[mid]))
        firsts = np.flatnonzero(np.r_[True, seg[mid][order][1:] != seg[mid][order][:-1]])
        best[seg[mid][order][firsts]] = mid[order][firsts]
    return best


def _polar_apex(contour: np.ndarray, centre_r: float, centre_c: float, scale=(1.0, 1.0)) -> np.ndarray:
    """Apex of a (k, 2) contour by the polar-peak method (reference implementation).

    ``scale`` = (h, w) measures the polar coordinates in mm; the apex is returned in pixels.
    """
    y = (contour[:, 0] - centre_r) * scale[0]
    x = (contour[:, 1] - centre_c) * scale[1]
    rho = np.sqrt(x**2 + y**2)
    theta = np.arctan2(y, x)
    order = theta.argsort()
    theta, rho = theta[order], rho[order]
    rho = gaussian_filter1d(rho, len(contour) * _APEX_SMOOTHING)
    from scipy.signal import find_peaks  # here: importing scipy.signal costs every job a second

    peaks, props = find_peaks(rho, height=0)
    up = theta[peaks] < 0
    if not up.any():
        return np.full(2, np.nan)
    return contour[order[peaks[up][props["peak_heights"][up].argmax()]]].astype(float)
