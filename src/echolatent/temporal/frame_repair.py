"""Repair of the flagged frames of a sequence through the latent space ("repair" method).

Why not smooth every frame (the TMI 2022 reference)? On cycles of about 20 frames the
snake flattens the true cardiac motion, and the decoder's own reconstruction error replaces
the input everywhere: on the synthetic cohort both cost more Dice to the clean truth than
removing a single-frame spike gains (benchmarks/README.md). The repair method intervenes
only where the anatomical criteria or the consistency metric point, and keeps the input
elsewhere:

1. **Pre-clean** the sequence (:func:`~echolatent.temporal.preclean.preclean`) and encode
   every frame (posterior mean ``mu``).
2. **Anatomically invalid frames first**, with the smallest edit: each such frame may
   rebuild the nested regions (:data:`REGIONS`) of its failed criteria
   (:data:`CRITERION_REGIONS`); every subset of them is tried and the valid frame that
   changes the fewest pixels is kept (a cut through the wall rebuilds the epicardium, a
   missing atrial band the heart outline, and the rest of the frame keeps the input).
3. **Plan the temporal repairs** (:func:`plan_repairs`) on the attribute curves of the
   result: greedily, the frame whose re-estimation removes the most excess deviation, until
   the curves are consistent. A spike at ``t`` also makes its neighbours deviate by about
   half, with the opposite sign; re-estimating ``t`` clears them too, so the spike is taken
   and its neighbours are not. A defect on two consecutive frames is taken as a pair (each of
   its frames deviates by about half a spike, and re-estimating one from the other, still
   defective, does not clear it). A frame repairs the regions of the attributes it helps
   (:data:`ATTRIBUTE_REGIONS`).
4. **Re-estimate the codes** of the repaired frames from the trusted frames (those repairing
   nothing) by :func:`interpolate_codes`: by default the values that minimise the sum of the
   squared deviations ``d_t`` of the metric over all frames, the trusted ones held fixed
   (the snake's smoothness term), which continues the curvature of the cycle instead of
   drawing a straight line with a kink at each trusted neighbour.
5. **Decode, calibrated on the trusted neighbours.** Working on signed distance maps ``S``
   of the nested regions (LV ⊂ EPI = LV ∪ MYO ⊂ heart = EPI ∪ LA), a repaired region is::

       S_out(t) = S(dec z_t) + a·[S(in_p) − S(dec μ_p)] + (1 − a)·[S(in_n) − S(dec μ_n)]

   with ``p < t < n`` the nearest trusted frames and ``a = (n − t)/(n − p)`` (before the first or
   after the last trusted frame: see *End frames* below). The bracket is the
   decoder's reconstruction error at the neighbours, interpolated to ``t``: it cancels the
   decoder's bias (a 64 px decoder thins the myocardium, say), so the repaired frame joins
   its input neighbours without a seam, while the shape change between them is the one the
   decoder produces along the latent path (anatomically plausible by training).
6. **Check and repeat** (up to ``repair_rounds`` in the pipeline): the plan runs again on the repaired curves.
   When no single frame helps any more (the decoded path still bends between its trusted
   frames), the flagged block is widened by its trusted neighbour on either side (on a half
   cycle or with the reference's ends never onto the first or last frame).

End frames
----------
With the cohort's ``cycle`` (:mod:`echolatent.temporal.metric`) the first and last frames have
a deviation of their own, so they are flagged and repaired like the others:

* **full cycles** (closed, frame ``T - 1`` is frame 0 one beat later): an end frame is
  re-estimated from both sides of the cycle, its neighbours being ``T - 2`` and 1, both in
  the codes (the smooth fill minimises the periodic deviations too) and in the calibration
  (the trusted frames ``p`` and ``n`` around it along the cycle): no extrapolation at all;
* **half cycles** (ED -> ES): ED and ES are extrema of the volume curve, about zero slope, and
  the metric mirrors the sequence there. The smooth fill of a lone end frame gives
  ``1.2 z_1 - 0.2 z_2`` (between holding the inner frame and the linear extrapolation
  ``2 z_1 - z_2``), and the calibration takes the nearest trusted frame alone (a linear
  extrapolation of the decoder's error from two frames doubles their frame-to-frame noise);
* ``cycle=None`` (the reference): the ends are never flagged; a frame beyond the trusted ones
  is extrapolated linearly, as before.

A sequence still inconsistent after the rounds is left to the caller (the pipeline falls
back to the reference smoothing of the whole sequence, so no sequence stays inconsistent).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt

from echolatent.labels import LA, LV, MYO
from echolatent.shape.attributes import temporal_attribute
from echolatent.temporal.metric import (consistency_deviation, deviation_matrix, deviation_stencil, end_rule,
                                        frame_thresholds, neighbour_frames, temporal_consistency)
from echolatent.temporal.preclean import preclean

__all__ = [
    "REGIONS",
    "ATTRIBUTE_REGIONS",
    "attribute_regions_of",
    "CRITERION_REGIONS",
    "region_sdf",
    "compose_regions",
    "plan_repairs",
    "interpolate_codes",
    "trusted_neighbours",
    "repair_frames",
]

#: Nested regions whose boundaries are repaired: LV, EPI = LV ∪ MYO, heart = EPI ∪ LA.
REGIONS = ("lv", "epi", "heart")
_REGION_LABELS = {"lv": (LV,), "epi": (LV, MYO), "heart": (LV, MYO, LA)}

#: Regions whose boundaries move a shape attribute (the seven of the temporal metric).
ATTRIBUTE_REGIONS = {
    "lv_area": ("lv",),
    "lv_base_width": ("lv",),
    "lv_length": ("lv",),
    "lv_orientation": ("lv",),
    "myo_area": ("lv", "epi"),
    "epi_center_x": ("epi",),
    "epi_center_y": ("epi",),
}

def attribute_regions_of(name: str) -> tuple:
    """Regions (:data:`ATTRIBUTE_REGIONS`) moved by an attribute column, pixel (``lv_area``) or physical
    (``lv_area_mm2``) name. Raises KeyError for a column that is no temporal attribute."""
    attribute = temporal_attribute(name)
    if attribute is None:
        raise KeyError(name)
    return ATTRIBUTE_REGIONS[attribute]


#: Regions to rebuild when an anatomical criterion fails. A criterion on the LV-background
#: frontier (the LV touching background where the atrium or the myocardium is missing)
#: rebuilds the outer outlines, the LV and MYO ones their own boundaries.
CRITERION_REGIONS = {
    "holes_in_lv": ("lv",),
    "holes_in_epi": ("lv", "epi"),
    "holes_in_atrium": ("heart",),
    "holes_between_lv_and_myo": ("lv", "epi"),
    "holes_between_lv_and_atrium": ("lv", "heart"),
    "disconnectivity_in_lv": ("lv",),
    "disconnectivity_in_myo": ("lv", "epi"),
    "disconnectivity_in_atrium": ("heart",),
    "frontier_ratio_between_lv_and_bg": ("epi", "heart"),
    "frontier_ratio_between_myo_and_atrium": ("epi", "heart"),
    "width_ratio_between_lv_and_myo": ("lv", "epi"),
    "erosion_ratio_before_myo_split": ("lv", "epi"),
}


def region_sdf(mask: np.ndarray, region: str) -> np.ndarray:
    """Signed distance (pixels) to the boundary of a nested region of a label map (< 0 inside).

    A region absent from the map is +inf-like (a large positive distance), one covering the
    whole map large negative, so that interpolating with it still behaves.
    """
    inside = np.isin(mask, _REGION_LABELS[region])
    if not inside.any():
        return np.full(mask.shape, float(sum(mask.shape)))
    if inside.all():
        return np.full(mask.shape, -float(sum(mask.shape)))
    return distance_transform_edt(~inside) - distance_transform_edt(inside)


def compose_regions(sdf: dict) -> np.ndarray:
    """Label map of nested regions given by signed distance maps (nesting enforced: LV ⊂ EPI ⊂ heart)."""
    lv = sdf["lv"] < 0
    epi = (sdf["epi"] < 0) | lv
    heart = (sdf["heart"] < 0) | epi
    out = np.zeros(lv.shape, np.uint8)
    out[heart] = LA
    out[epi] = MYO
    out[lv] = LV
    return out


def plan_repairs(curves: np.ndarray, lo, hi, tau, repaired: np.ndarray, attribute_regions: np.ndarray, *,
                 margin: float = 0.0, widen: bool = True, interpolation: str = "smooth",
                 cycle=None, tau_end=None) -> np.ndarray:
    """Fewest frames to repair so that the attribute curves become consistent (greedy, attribute space).

    The repair of a frame moves its attributes to about their re-estimation from the
    trusted frames (:func:`interpolate_codes` applied to the curves). This plans on that
    proxy, without decoding anything: it adds, one move at a time, the candidate whose
    re-estimation leaves the fewest flagged (frame, attribute) entries, then the least
    excess (the sum of ``|d_t|/tau - 1`` over them), then the smallest deviations left (the sum
    of ``|d_t|/tau`` over all entries), until no frame is flagged or no
    candidate lowers the excess. A single-frame spike is then taken as one frame (its
    re-estimation also clears the half-size deviations of its neighbours), and clean frames
    are not rebuilt in a cascade: a frame is a candidate only when flagged itself, when
    already repaired and next to a flagged frame, or when both frames of its deviation are
    flagged (a spike just under the threshold on a curved stretch of the cycle shows only on
    its flanks, where the curvature adds to the ``-h/2`` the spike gives them).

    A move is one frame, or two consecutive trusted frames (a pair) of which one is a candidate
    or which lies between two flagged frames (with ``cycle=None`` never an end frame). A
    two-frame defect (same sign on both) deviates by about half a spike on each of its frames
    and on the two frames around it: re-estimating one of its frames from the other, still
    defective, leaves it flagged, and the frame next to it may look as good a culprit. A pair
    is taken when it leaves strictly fewer flagged entries than the best single frame, or as
    few when the deviations have the signature of a two-frame defect on some attribute (its two
    frames deviate with one sign and add up to more than ``tau``, their outer neighbours with the
    other sign and less than that sum, on an attribute flagged there; a single spike gives its
    neighbours the opposite sign, and is itself the larger flank of the two frames after it). A
    single spike so still costs one frame, and a pair whose second frame falls just under the
    threshold once the first is re-estimated is not left half repaired.

    Parameters
    ----------
    curves : ndarray (T, A)
        Attribute curves of the current sequence (the input, or the output of the last repair).
    lo, hi, tau : array_like (A,)
        Normalisation bounds and thresholds of the temporal metric.
    repaired : ndarray (T, R) bool
        Regions (:data:`REGIONS`) already repaired per frame; frames repairing any region are
        no anchors of the interpolation, and keep their current values in the proxy.
    attribute_regions : ndarray (A, R) bool
        Regions each attribute depends on (:data:`ATTRIBUTE_REGIONS`).
    margin : float
        Thresholds are scaled by ``1 + margin``.
    interpolation : {"smooth", "linear"}
        How a repaired frame's values are re-estimated (:func:`interpolate_codes`).
    widen : bool
        When frames are still flagged but no candidate lowers the excess (the proxy says
        the repaired frames are fine, but the decoded repair still bends), extend each
        repaired block that is flagged or next to a flagged frame by its trusted neighbours,
        with the block's regions, so that the next round re-estimates over a wider window.
        With ``cycle=None`` or ``"half"`` a block is never widened onto the first or last
        frame (that would extrapolate); a full cycle has no such end (periodic neighbours).
    cycle : {"full", "half", None}
        End-frame rule of the metric (:mod:`echolatent.temporal.metric`): with ``"full"`` or
        ``"half"`` the first and last frames are measured, so they are flagged, and repaired,
        like the others.
    tau_end : array_like (A,), optional
        Thresholds of the first and last frames (:mod:`echolatent.temporal.metric`; default ``tau``).

    Returns
    -------
    ndarray (T, R) bool
        Regions to add. A frame takes the regions of the attributes whose excess its
        re-estimation lowers (on it and its neighbours) that it does not repair yet; an
        already repaired frame (rebuilt for an anatomical error, say) may so add a region it
        did not rebuild. Both frames of a pair take the regions of the pair.
    """
    curves = np.asarray(curves, np.float64)
    repaired = np.asarray(repaired, bool)
    attribute_regions = np.asarray(attribute_regions, bool)
    T = len(curves)
    add = np.zeros_like(repaired)
    if T < 3:
        return add
    rule = end_rule(cycle)
    near_of = neighbour_frames(T, cycle)                   # (T, T): deviations that involve each other
    stencil, _ = deviation_stencil(T, cycle)
    before, after = stencil[:, 1], stencil[:, 2]           # the two neighbours in each frame's deviation
    inner = np.ones(T, bool)                               # frames a block may be widened onto
    if rule != "periodic":
        inner[[0, T - 1]] = False
    measured = np.ones(T, bool)                            # frames with a deviation of their own
    if rule == "zero":
        measured[[0, T - 1]] = False

    def score(batch):
        ratio = temporal_consistency(batch, lo, hi, tau, margin=margin, cycle=cycle,
                                     end_thresholds=tau_end)["error_to_threshold"]
        ratio = np.where(np.isnan(ratio), 10.0, ratio)        # unmeasurable: strongly flagged
        excess = np.clip(ratio - 1.0, 0.0, None)
        return excess, (excess > 0).sum(axis=(-1, -2)), excess.sum(axis=(-1, -2)), ratio.sum(axis=(-1, -2))

    anchors = ~repaired.any(axis=1)
    complete = repaired.all(axis=1)
    new = np.zeros(T, bool)
    scale = frame_thresholds(T, tau, tau_end, margin=margin)                    # (T, A)
    current_excess, n_flagged, total, _ = score(curves)
    while n_flagged:
        flagged = (current_excess > 0).any(axis=1)
        # Candidates: the flagged frames, and the already repaired frames next to one (a frame
        # rebuilt for an anatomical error may still carry a deviation in another region, and
        # with cycle=None the first and last frames, where d = 0, show theirs on their
        # neighbour only). A clean frame next to a flagged one is no candidate on its own:
        # bending it would hide the flag, not remove its cause.
        near = (near_of & flagged[None, :]).any(axis=1)
        free = ~new & ~complete
        # ... unless it lies between two flagged frames: a spike below the threshold on a
        # curved stretch of the cycle may show only on its two flanks (-h/2 plus the curvature).
        between = flagged[before] & flagged[after] & (before != after) & measured
        candidate = (flagged | (near & ~anchors) | (between & anchors)) & free
        moves = [(t,) for t in np.flatnonzero(candidate)]
        # Pairs of trusted frames only: a frame already repaired keeps its repair in the proxy
        # (re-estimating it again is the widening's business, below). A pair is a move when one
        # of its frames is a candidate or when it lies between two flagged frames.
        pairable = free & anchors & measured
        moves += [(t, t + 1) for t in range(T - 1) if pairable[t] and pairable[t + 1] and (
            candidate[t] or candidate[t + 1] or (flagged[before[t]] and flagged[after[t + 1]]
                                                 and before[t] not in (t, t + 1) and after[t + 1] not in (t, t + 1)))]
        if not moves:
            break
        trials = np.repeat(curves[None], len(moves), axis=0)
        valid = np.ones(len(moves), bool)
        for i, move in enumerate(moves):
            untrusted = new.copy()
            untrusted[list(move)] = True
            known = anchors & ~untrusted
            if not known.any():
                valid[i] = False
                continue
            idx = np.flatnonzero(untrusted)
            trials[i, idx] = interpolate_codes(curves, known, method=interpolation, cycle=cycle)[idx]
        excess, counts, sums, residual = score(trials)
        # The signature of a two-frame defect on an attribute: its two frames deviate with one
        # sign, their outer neighbours with the other and by less than the pair's sum (about
        # half of it), and that sum exceeds tau. A smooth curvature bends the flanks the same way
        # as the pair; the two frames after a single spike have the spike itself as a flank.
        # Only on an attribute flagged there: the pair must explain a flag.
        with np.errstate(divide="ignore", invalid="ignore"):
            signed = consistency_deviation(curves, lo, hi, cycle=cycle) / scale         # (T, A)
        best = {1: None, 2: None, "signature": None}
        for i, move in enumerate(moves):
            if not valid[i]:
                continue
            window = np.zeros(T, bool)
            window[list(move)] = True
            window |= near_of[list(move)].any(axis=0)
            lowered = (current_excess[window] - excess[i][window]).max(axis=0) > 0      # (A,)
            regions = attribute_regions[lowered].any(axis=0)
            if (regions & ~repaired[list(move)]).any() and (counts[i], sums[i]) < (n_flagged, total):
                # ties (e.g. several moves clear everything): the smallest deviations left
                key = (counts[i], sums[i], residual[i], i)
                if best[len(move)] is None or key < best[len(move)][0]:
                    best[len(move)] = (key, move, regions)
                if len(move) == 2 and (best["signature"] is None or key < best["signature"][0]):
                    t, u = move
                    d_t, d_u, d_p, d_n = signed[t], signed[u], signed[before[t]], signed[after[u]]
                    with np.errstate(invalid="ignore"):
                        both = np.abs(d_t + d_u)
                        seen = (current_excess[[before[t], t, u, after[u]]] > 0).any(axis=0)   # (A,)
                        if np.any((d_t * d_u > 0) & (d_p * d_t < 0) & (d_n * d_u < 0) & (both > 1)
                                  & (np.abs(d_p) < both) & (np.abs(d_n) < both) & seen):
                            best["signature"] = (key, move, regions)
        single, pair, signature = best[1], best[2], best["signature"]
        if single is None and pair is None:
            break
        if single is None or (pair is not None and pair[0][0] < single[0][0]):
            chosen = pair                       # the pair leaves fewer flags than any single frame
        elif signature is not None and signature[0][0] <= single[0][0]:
            chosen = signature                  # as few flags, and the deviations of a two-frame defect
        else:
            chosen = single
        i, move, regions = chosen[0][-1], chosen[1], chosen[2]
        for t in move:
            add[t] |= regions & ~repaired[t]
            new[t] = True
        curves = trials[i]
        current_excess, n_flagged, total = excess[i], counts[i], sums[i]
    if n_flagged and not add.any() and widen:
        # No frame left whose re-estimation helps: the decoded path between the trusted frames
        # still bends. Widen each repaired block that is flagged or next to a flagged frame by
        # its trusted neighbours (not onto an end frame, unless the cycle is periodic), so the
        # re-estimation spans more frames and its bend per frame shrinks. The widened block
        # repairs the same regions on all its frames: a frame rebuilding the LV only next to one
        # rebuilding LV and EPI makes a wall that jumps.
        flagged = (current_excess > 0).any(axis=1)
        rebuilt = repaired.any(axis=1)
        seeds = rebuilt & (flagged | (near_of & flagged[None, :]).any(axis=1))
        done = np.zeros(T, bool)
        for t in np.flatnonzero(seeds):
            if done[t]:
                continue
            block = np.zeros(T, bool)                      # the connected block of rebuilt frames
            block[t] = True
            while True:
                grown = block | ((near_of & block[None, :]).any(axis=1) & rebuilt)
                if (grown == block).all():
                    break
                block = grown
            done |= block
            around = (near_of & block[None, :]).any(axis=1) & ~block
            window = block | around
            regions = repaired[block].any(axis=0) | attribute_regions[
                (current_excess[window] > 0).any(axis=0)].any(axis=0)
            targets = block | (around & inner)
            add[targets] |= regions & ~repaired[targets]
    return add


def trusted_neighbours(trusted: np.ndarray, cycle=None):
    """For every frame, the two trusted frames it is interpolated from, and the weight of the first.

    Returns ``(first, second, a)`` such that frame ``t`` is ``a * frame[first] + (1 - a) *
    frame[second]``: between two trusted frames, the nearest on each side with
    ``a = (second - t) / (second - first)``; trusted frames (and sequences with a single
    trusted frame) use that frame alone (``a = 1``). Before the first or after the last
    trusted frame it depends on ``cycle``:

    ``None`` (the reference's ends)
        the two nearest trusted frames on the one side, extrapolated linearly (``a > 1``);
    ``"half"``
        the nearest trusted frame alone: the mirror rule of the metric (the curves have about
        zero slope at ED and ES, :mod:`echolatent.temporal.metric`) reflects the sequence at its
        ends, and between a trusted frame and its mirror image the interpolation is that frame;
        a linear extrapolation would double the frame-to-frame noise of the two frames it uses;
    ``"full"``
        periodic neighbours: the cycle is closed (frame ``T - 1`` is frame 0 one beat later), so
        the frames before frame 0 are ``T - 2, T - 3, ...`` and those after frame ``T - 1`` are
        ``1, 2, ...``; the weight follows the distances along the cycle.

    Raises ValueError when no frame is trusted.
    """
    trusted = np.asarray(trusted, bool)
    rule = end_rule(cycle)
    index = np.flatnonzero(trusted)
    if not len(index):
        raise ValueError("no trusted frame to interpolate from")
    T = len(trusted)
    if rule == "periodic" and T >= 3:
        return _periodic_neighbours(trusted)
    t = np.arange(T)
    before = np.searchsorted(index, t, side="right") - 1      # position of the last trusted <= t
    after = np.searchsorted(index, t, side="left")            # position of the first trusted >= t
    first = index[np.clip(before, 0, None)]
    second = index[np.clip(after, None, len(index) - 1)]
    if len(index) >= 2 and rule == "zero":
        head, tail = before < 0, after >= len(index)           # no trusted frame before / after
        first = np.where(head, index[1], first)
        second = np.where(head, index[0], second)
        first = np.where(tail, index[-1], first)
        second = np.where(tail, index[-2], second)
    elif len(index) < 2:
        first = second = np.full(T, index[0])
    span = (second - first).astype(float)
    a = np.where(span != 0, (second - t) / np.where(span != 0, span, 1), 1.0)
    return first, second, a


def _periodic_neighbours(trusted: np.ndarray):
    """:func:`trusted_neighbours` on a closed cycle of ``T - 1`` phases (frames 0 and ``T - 1`` share one)."""
    T = len(trusted)
    P = T - 1
    phase = np.arange(T) % P
    first, second = np.arange(T), np.arange(T)
    a = np.ones(T)
    for t in np.flatnonzero(~trusted):
        found = []
        for step in (-1, 1):
            for k in range(1, P + 1):
                u = (phase[t] + step * k) % P
                # phase 0 holds frames 0 and T - 1: the one adjacent in time comes first
                frames = (u,) if u else ((0, T - 1) if step < 0 else (T - 1, 0))
                hit = [f for f in frames if trusted[f]]
                if hit:
                    found.append((hit[0], k))
                    break
        if len(found) < 2:                 # every trusted frame shares the phase of t
            only = np.flatnonzero(trusted)[0]
            first[t] = second[t] = only
            continue
        (p, dp), (n, dn) = found
        first[t], second[t], a[t] = p, n, dn / (dp + dn)
    return first, second, a


def interpolate_codes(z: np.ndarray, trusted: np.ndarray, *, method: str = "smooth",
                      regularisation: float = 1e-6, cycle=None) -> np.ndarray:
    """Codes (T, D) (or any curves) with the untrusted frames re-estimated from the trusted ones.

    Parameters
    ----------
    z : ndarray (T, D)
    trusted : ndarray (T,) bool
        Frames kept as they are.
    method : {"smooth", "linear"}
        ``"linear"``: straight lines between the nearest trusted frames (linear extrapolation
        beyond the first / last, :func:`trusted_neighbours`). ``"smooth"`` (default): the
        values minimising the sum of the squared deviations ``d_t`` of the temporal metric
        over all interior frames, trusted ones included, i.e. the snake's smoothness term with
        the trusted frames held fixed. A straight line zeroes ``d`` on the repaired frames but
        puts a kink at the trusted frames on either side, which then look like outliers
        themselves (a cardiac cycle is curved); the smooth fill continues the curvature of the
        trusted frames (a discrete cubic spline).
    regularisation : float
        Weight of a small pull towards the linear fill, which fixes the values the deviations
        do not determine.
    cycle : {"full", "half", None}
        End-frame rule of the metric: the deviations summed by ``"smooth"`` include those of the
        first and last frames (periodic neighbours for ``"full"``, mirror for ``"half"``), and
        the linear fill uses :func:`trusted_neighbours` with the same ``cycle``. An end frame is
        so re-estimated from both sides on a full cycle (frames 0 and ``T - 1`` being two
        observations of one phase, the deviations of frames 1 and ``T - 2`` are also taken with
        the other one, so an end frame enters three deviations as an interior frame does, and
        its fill is as good); on a half cycle the smooth fill of a
        lone end frame is ``1.2 z_1 - 0.2 z_2`` (between holding ``z_1``, the mirror's zero slope,
        and the linear extrapolation ``2 z_1 - z_2``).
    """
    z = np.asarray(z, np.float64)
    trusted = np.asarray(trusted, bool)
    prev, nxt, a = trusted_neighbours(trusted, cycle)
    shape = (-1,) + (1,) * (z.ndim - 1)
    linear = a.reshape(shape) * z[prev] + (1 - a.reshape(shape)) * z[nxt]
    if method == "linear":
        return linear
    if method != "smooth":
        raise ValueError(f"interpolation method must be 'smooth' or 'linear', got {method!r}")
    T = len(z)
    unknown = np.flatnonzero(~trusted)
    if not len(unknown) or T < 3 or trusted.sum() < 2:
        return linear
    # d = L z with L the operator of the metric (its rows of the measured frames):
    # d_t = z_t - (z_{t-1} + z_{t+1}) / 2 inside, the cycle's rule at the ends.
    L = deviation_matrix(T, cycle)
    L = L[np.abs(L).sum(axis=1) > 0]
    if end_rule(cycle) == "periodic" and T >= 4:
        # Frames 0 and T - 1 are two observations of one phase: add the deviations of frames 1
        # and T - 2 taken with the other one, so that each end frame enters three deviations, as
        # an interior frame does (otherwise the fill of frame 0 sees the cycle on one side only).
        extra = np.zeros((2, T))
        extra[0, [1, T - 1, 2]] = 1.0, -0.5, -0.5
        extra[1, [T - 2, T - 3, 0]] = 1.0, -0.5, -0.5
        L = np.vstack([L, extra])
    L_u, L_k = L[:, unknown], L[:, trusted]
    flat = z.reshape(T, -1)
    lhs = L_u.T @ L_u + regularisation * np.eye(len(unknown))
    rhs = -L_u.T @ (L_k @ flat[trusted]) + regularisation * linear.reshape(T, -1)[unknown]
    out = flat.copy()
    out[unknown] = np.linalg.solve(lhs, rhs)
    return out.reshape(z.shape)


def repair_frames(base: np.ndarray, decoded_mu: np.ndarray, decoded_z: dict, regions: np.ndarray,
                  *, keep_atrium: bool = True, decoder_weight: float = 1.0, minimal=None, valid=None,
                  return_regions: bool = False, cycle=None):
    """Rebuild the repaired regions of the frames of a sequence (step 5 of the module docstring).

    Parameters
    ----------
    base : ndarray (T, H, W)
        Pre-cleaned input.
    decoded_mu : ndarray (T, H, W) or dict {t: ndarray (H, W)}
        Decoding of the encoded input (on the native grid); only the trusted neighbours of
        the repaired frames are read, so a dict of those frames is enough.
    decoded_z : dict {t: ndarray (H, W)}
        Decoding of the re-estimated code of each repaired frame.
    regions : ndarray (T, 3) bool
        Regions (:data:`REGIONS` order) each frame repairs; frames repairing none are trusted.
    keep_atrium : bool
        False for a model without the LA class: the heart outline keeps the input.
    decoder_weight : float
        Weight of the decoder's path (the bracket of step 4 is always added in full):
        1 follows the decoder, 0 interpolates the neighbours' outlines alone.
    minimal : ndarray (T,) bool, optional
        Frames (repaired for an anatomical error only) that take the smallest edit: every
        non-empty subset of their regions is tried, and the valid result (``valid``) that
        changes the fewest pixels of the input is kept (all their regions if none is valid).
        A cut through the wall then rebuilds the epicardium alone, and a missing atrial band
        the heart outline alone, instead of the LV, the wall and the atrium together.
    valid : callable, optional
        ``valid(frame) -> bool``: whether a rebuilt (pre-cleaned) frame passes the anatomical
        criteria; needed with ``minimal``.
    return_regions : bool
        Also return the regions actually rebuilt per frame (``minimal`` may use fewer).
    cycle : {"full", "half", None}
        Which trusted frames calibrate a repaired end frame (:func:`trusted_neighbours`):
        the periodic neighbours on a full cycle, the nearest trusted frame on a half cycle.

    Returns
    -------
    ndarray (T, H, W) uint8
        The sequence with the repaired frames rebuilt (and pre-cleaned), the others unchanged.
        Where a frame keeps its heart outline, its input LA pixels that are LA in both trusted
        neighbours stay LA: a rebuilt LV or wall does not take the atrium (an endocardial spike
        leaves the atrium where it was).
    ndarray (T, 3) bool
        With ``return_regions``: the regions rebuilt per frame.
    """
    regions = np.array(regions, bool)
    if not keep_atrium:
        regions[:, REGIONS.index("heart")] = False
    if minimal is not None and valid is None:
        raise ValueError("minimal edits need the validity check `valid`")
    out = np.array(base, dtype=np.uint8, copy=True)
    trusted = ~regions.any(axis=1)
    if trusted.all():
        return (out, regions) if return_regions else out
    prev, nxt, a = trusted_neighbours(trusted, cycle)
    cache = {}

    def sdf(kind, t, region):
        key = (kind, t, region)
        if key not in cache:
            source = {"in": base, "dec": decoded_mu, "z": decoded_z}[kind]
            cache[key] = region_sdf(source[t], region)
        return cache[key]

    def rebuilt(t, region):
        p, n, w = prev[t], nxt[t], a[t]
        interp_in = w * sdf("in", p, region) + (1 - w) * sdf("in", n, region)
        if decoder_weight == 0:
            return interp_in
        interp_dec = w * sdf("dec", p, region) + (1 - w) * sdf("dec", n, region)
        return interp_in + decoder_weight * (sdf("z", t, region) - interp_dec)

    def build(t, chosen):
        frame = compose_regions({region: rebuilt(t, region) if chosen[j] else sdf("in", t, region)
                                 for j, region in enumerate(REGIONS)})
        if not chosen[REGIONS.index("heart")]:
            # The atrium is not repaired here: its input pixels that the trusted neighbours
            # agree on stay LA, so a rebuilt LV or wall does not take them.
            frame[(base[t] == LA) & (base[prev[t]] == LA) & (base[nxt[t]] == LA)] = LA
        return preclean(frame[None], keep_atrium=True)[0]

    for t in np.flatnonzero(~trusted):
        if minimal is None or not minimal[t]:
            out[t] = build(t, regions[t])
            continue
        best = None
        for subset in _subsets(regions[t]):
            frame = build(t, subset)
            if valid(frame):
                changed = int(np.count_nonzero(frame != base[t]))
                if best is None or changed < best[0]:
                    best = (changed, frame, subset)
        if best is None:
            out[t] = build(t, regions[t])
        else:
            out[t], regions[t] = best[1], best[2]
    return (out, regions) if return_regions else out


def _subsets(chosen: np.ndarray):
    """Non-empty subsets of the regions marked in ``chosen`` (R,), as (R,) bool arrays."""
    index = np.flatnonzero(chosen)
    for bits in range(1, 2 ** len(index)):
        subset = np.zeros_like(chosen)
        subset[index[[k for k in range(len(index)) if bits >> k & 1]]] = True
        yield subset
