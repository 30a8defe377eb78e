"""The vectorised measurement of the 12 anatomical criteria on a batch of label maps, on their own grid.

The batch is cropped to the foreground (results are crop invariant), sorted by crop width
and processed in chunks; crops are stacked vertically into mosaics
(:mod:`echolatent.shape.mosaic`) so that one call of the labelling
(:func:`echolatent.shape.components.label`) labels a whole chunk. Hole and gap criteria are certified zero from Euler numbers of bit-packed planes
(:mod:`echolatent.shape.bitmask`; E8 = components - holes, the components being known from
labelling, from a one-run-per-row chain, or from which components touch the other
structure) and are only labelled where a real pocket exists. Criterion 12 is
:mod:`echolatent.shape.erosion`. The results are identical to a direct implementation of the
definitions (benchmarks/bench_anatomy.py checks it on every map, the tests on hand-built,
realistic and noise-like maps).
"""

from __future__ import annotations

import numpy as np

from echolatent.labels import BACKGROUND, LA, LV, MYO
from echolatent.shape.bitmask import (euler_packed_many, pack_rows, row_any, row_bits, rows_from_above,
                                      rows_from_below, shift_from_left, shift_from_right, unpack_rows)
from echolatent.shape.components import label
from echolatent.shape.criteria_definitions import CRITERIA, CRITERION_STRUCTURES
from echolatent.shape.erosion import erosion_ratio
from echolatent.shape.grid import small_object_size
from echolatent.shape.mosaic import dilate8, first_last, foreground_boxes, mosaic_labels, stack_tiles, tile_sum

__all__ = ["criteria_batch"]


def criteria_batch(X: np.ndarray, labels: tuple[int, ...], chunk_size: int, s: float | None = None,
                   erosion: bool = True) -> dict[str, np.ndarray]:
    """The 12 criteria of a batch of label maps, measured on the maps' own grid.

    Parameters
    ----------
    X : ndarray of uint8, shape (N, H, W)
        Checked label maps (:func:`~echolatent.shape.validation.as_label_batch`).
    labels : tuple of int
        The label set: the criteria needing a label outside it are NaN.
    chunk_size : int
        Number of maps processed together (at most 256).
    s : float, optional
        Small-object size in pixels; default ``H W / 2**14``
        (:func:`~echolatent.shape.grid.small_object_size`).
    erosion : bool, default True
        Whether to measure criterion 12 (else it is left NaN).

    Returns
    -------
    dict
        Criterion name (:data:`~echolatent.shape.criteria_definitions.CRITERIA`) -> (N,) float array.
    """
    N, H, W = X.shape
    out = {name: np.full(N, np.nan) for name in CRITERIA}
    if N == 0:
        return out
    if s is None:
        s = small_object_size((H, W))
    ra, rb, ca, cb, has_fg = foreground_boxes(X)
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
    runs = row_bits(P & ~shift_from_left(P))
    dil = P | shift_from_left(P) | shift_from_right(P)
    linked = np.zeros(rows, bool)
    linked[:-1] = row_any(dil[:, :-1] & P[:, 1:])
    tile = np.repeat(np.arange(len(start)), np.diff(np.append(start, rows)))
    inside = (local >= r0[tile]) & (local <= r1[tile])
    bad = inside & ((runs != 1) | (~linked & (local < r1[tile])))
    return ~(tile_sum(bad.astype(np.int64), start) > 0)


def _components(img, S, start, hs, k, others):
    """8-connected components of structure k in a mosaic (all its tiles are labelled).

    Returns per tile the number of components, the area of the largest one, and for each
    label v in ``others`` the number of components 8-adjacent to a pixel of value v.
    """
    lab, nlab, lo, count = mosaic_labels(S, start, conn8=True)
    largest = tile_sum(np.count_nonzero(S, axis=1), start)
    multi = np.flatnonzero(count > 1)
    if len(multi):
        largest[multi] = _largest(lab, nlab, lo, start, hs, multi)
    touching = {v: np.zeros(len(start), np.int64) for v in others}
    if len(multi):  # only maps whose structure has several components need it
        lo_m, cnt_m = lo[multi], count[multi]
        if len(multi) < len(start):
            img, start, hs, _ = stack_tiles([img[start[q]:start[q] + hs[q]] for q in multi], ring=0)
            S = img == k
            lab, nlab, lo_m, cnt_m = mosaic_labels(S, start, conn8=True)
        for v in others:
            e = dilate8(img == v) & S
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
    planes = {k: pack_rows(F == k) for k in (LV, MYO, LA)}
    sets = [planes[LV], planes[MYO], planes[LA], planes[LV] | planes[MYO], planes[LV] | planes[LA]]
    h = shift_from_right(planes[LV]) | shift_from_left(planes[LV]) | planes[LV]
    dil_lv = h | rows_from_above(h) | rows_from_below(h)
    V, _, E8, extra = euler_packed_many(sets, fstart, extra=[dil_lv & planes[MYO], dil_lv & planes[LA]])
    e8 = {LV: E8[:, 0], MYO: E8[:, 1], LA: E8[:, 2]}
    areas = {LV: V[:, 0], MYO: V[:, 1], LA: V[:, 2]}
    box, present = {}, {}
    for k in (LV, MYO, LA):
        has = row_any(planes[k])
        br0 = np.minimum.reduceat(np.where(has, local, R), fstart)
        br1 = np.maximum.reduceat(np.where(has, local, -1), fstart)
        bc0, bc1, _ = first_last(unpack_rows(np.bitwise_or.reduceat(planes[k], fstart, axis=1), Wf))
        present[k] = br1 >= 0
        box[k] = (br0, br1, bc0, bc1)
    return planes, e8, E8[:, 3], E8[:, 4], extra[:, 0] > 0, extra[:, 1] > 0, areas, box, present


def _criteria_chunk(X, sel, ra, rb, ca, cb, H, W, s, erosion=True) -> dict[str, np.ndarray]:
    n = len(sel)
    res = {name: np.full(n, np.nan) for name in CRITERIA}
    # the foreground crops (+1 px of image, +1 px of sentinel = outside the image), stacked
    F, fstart, fh, fw = stack_tiles([X[i, a:b, c:d] for i, a, b, c, d in zip(sel, ra, rb, ca, cb)], ring=1, multiple=8)
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
                img, start, hs, _ = stack_tiles(crops(k, tiles), ring=0)
                S = img == k
                groups[k].append((tiles, img, S, start, hs))
                todo = np.flatnonzero(~single[k][tiles])
                if len(todo) == 0:
                    continue
                if len(todo) < len(tiles):
                    sub_img, sub_start, sub_hs, _ = stack_tiles([img[start[q]:start[q] + hs[q]] for q in todo], ring=0)
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
            img, start, _, _ = stack_tiles(crops(k, todo), ring=0)
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
        return stack_tiles([F[fstart[t]:fstart[t] + fh[t], :fw[t]] for t in tiles.tolist()], ring=0)

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
        fr[tiles] = _frontier_count(img, S, BACKGROUND, start) / (box[LV][3][tiles] - box[LV][2][tiles] + 1)
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
                row_sum[tiles] += tile_sum(rc * local_r, start) + areas[k][tiles] * first_row
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
        er[tiles] = erosion_ratio(img, S, start, hs, comps[MYO][tiles], h4[MYO][tiles], s, touches,
                                  areas[MYO][tiles] == H * W)
    res["erosion_ratio_before_myo_split"] = er
    return res


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
    lab, _ = label(comp, connectivity=8 if conn8 else 4)
    inner = (lab != lab[0, 0]) & comp
    return tile_sum(np.count_nonzero(inner, axis=1), start).astype(np.int64)


def _pockets(T: np.ndarray, start: np.ndarray, members: tuple[int, ...]):
    """4-connected components of the complement of a union of labels that do not touch the border."""
    U = T == members[0]
    for v in members[1:]:
        U |= T == v
    notU = ~U
    lab, _ = label(notU, connectivity=4)
    pocket = (lab != lab[0, 0]) & notU
    return pocket, tile_sum(np.count_nonzero(pocket, axis=1), start).astype(np.int64)


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
        labS, nS = label(notS, connectivity=4)
        filled_label = np.ones(nS + 1, dtype=bool)
        filled_label[0] = False
        filled_label[labS[0, 0]] = False
        filled_label &= np.bincount(labS[other], minlength=nS + 1) == 0
        gap &= ~filled_label[labS]
    area = tile_sum(np.count_nonzero(gap, axis=1), start).astype(np.int64)
    return np.where(area > s, area, 0)


def _frontier_count(C: np.ndarray, S: np.ndarray, other_value: int, start: np.ndarray) -> np.ndarray:
    """Per tile, pixels of S with a pixel of value ``other_value`` in their 3 x 3 neighbourhood (0 if <= 1)."""
    e = dilate8(C == other_value) & S
    f = tile_sum(np.count_nonzero(e, axis=1), start)
    return np.where(f <= 1, 0, f)
