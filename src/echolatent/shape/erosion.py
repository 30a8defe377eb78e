"""Criterion 12 of the anatomical criteria: the erosion ratio before the myocardium splits.

The number n of 3 x 3 erosions after which the MYO is no longer one 8-connected component
(4-connected components smaller than s dropped after each erosion), divided by the maximum
Euclidean distance of a MYO pixel to the nearest non-MYO pixel of the image
(:mod:`echolatent.shape.criteria_definitions`). Computed for a mosaic of MYO crops
(:mod:`echolatent.shape.mosaic`) with bit-packed chessboard erosions and per-level Euler
numbers (:mod:`echolatent.shape.bitmask`): without MYO holes a level with E4 = 1 is one
4-component; the other levels are settled by a bit-parallel removal of the 4-components
smaller than s (for s <= 4) and E8, or by labelling (MYO with holes, s > 4). The maximal
Euclidean distance is found by scanning offsets by increasing norm from the few pixels whose
chessboard and city-block distances allow the maximum.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from echolatent.labels import MYO
from echolatent.shape.bitmask import (LITTLE_U64, drop_small_packed, euler_packed_many, pack_rows, rows_from_above,
                                      rows_from_below, shift_from_left, shift_from_right, tile_popcounts, unpack_rows)
from echolatent.shape.mosaic import OUTSIDE, mosaic_labels

__all__ = ["erosion_ratio"]


def erosion_ratio(img, myo, start, hs, c8, h4, s, touch, full) -> np.ndarray:
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
    T0 = pack_rows(myo)
    if full.any():  # a MYO covering the whole image never erodes: ratio 0 (infinite distance), no levels
        T0[:, np.repeat(full, hs)] = 0
    OUTp = pack_rows(img == OUTSIDE) if has_out else None
    levels = [T0]
    V, E4 = [], []  # per level >= 1: area and Euler number (4-connectivity)
    cur = T0
    while True:
        Rt = shift_from_right(cur)
        if len(levels) > 1:
            TR = cur & Rt
            cnt = tile_popcounts([cur, TR, cur[:, :-1] & cur[:, 1:], TR[:, :-1] & TR[:, 1:]], start, rows)
            V.append(cnt[:, 0])
            E4.append(cnt[:, 0] - cnt[:, 1] - cnt[:, 2] + cnt[:, 3])
        if has_out:
            P = cur | OUTp
            Hh = P & shift_from_right(P) & shift_from_left(P)
        else:
            Hh = cur & Rt & shift_from_left(cur)
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
    _, _, e8, _ = euler_packed_many([drop_small_packed(tiles, s)], pstart)
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
        tiles = unpack_rows(packed, wm)
        lab, nlab, _, _ = mosaic_labels(tiles, pstart, conn8=False)
        small = np.bincount(lab.ravel(), minlength=nlab + 1) < s
        small[0] = False
        if small.any():
            tiles &= ~small[lab]
        _, _, _, count = mosaic_labels(tiles, pstart, conn8=True)
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
_IS_ZERO[MYO] = _IS_ZERO[OUTSIDE] = False


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
        nxt = P & rows_from_above(P) & rows_from_below(P) & shift_from_left(P) & shift_from_right(P)
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
        bits = np.unpackbits(flat_words[nzw].astype(LITTLE_U64).view(np.uint8).reshape(-1, 8), axis=1,
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
