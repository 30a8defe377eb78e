"""Planning the temporal repairs: the fewest frames whose re-estimation makes the curves consistent.

Step 3 of the repair (:mod:`echolatent.temporal.correction.repair`), on the flags of the
correction's image-space check (:mod:`echolatent.temporal.detection`), so that the frames
repaired are the frames the check flags:

* spike detector (:func:`plan_flagged_repairs`): the search has already put each deviation on
  the frames of its defect; they are the plan;
* TMI 2022 deviation (:func:`plan_repairs`): a spike also makes its two neighbours deviate,
  so a greedy search in attribute space, on the proxy of each candidate frame's
  re-estimation (:func:`.interpolate_codes` applied to the curves), without decoding
  anything, finds the fewest frames whose re-estimation clears the flags.

:func:`plan_for` picks the one of the detector's kind.
"""

from __future__ import annotations

import numpy as np

from echolatent.temporal.correction.interpolation import interpolate_codes
from echolatent.temporal.detection import Detector
from echolatent.temporal.metric import (consistency_deviation, deviation_stencil, end_rule, frame_thresholds,
                                        neighbour_frames, temporal_consistency)

__all__ = ["plan_repairs", "plan_flagged_repairs", "plan_for"]


def plan_repairs(curves: np.ndarray, lo, hi, tau, repaired: np.ndarray, attribute_regions: np.ndarray, *,
                 margin: float = 0.0, widen: bool = True, interpolation: str = "smooth",
                 cycle=None, tau_end=None) -> np.ndarray:
    """Fewest frames to repair so that the attribute curves become consistent (greedy, attribute space).

    The repair of a frame moves its attributes to about their re-estimation from the
    trusted frames (:func:`.interpolate_codes` applied to the curves). This plans on that
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
        Regions (:data:`.REGIONS`) already repaired per frame; frames repairing any region are
        no anchors of the interpolation, and keep their current values in the proxy.
    attribute_regions : ndarray (A, R) bool
        Regions each attribute depends on (:data:`.ATTRIBUTE_REGIONS`).
    margin : float
        Thresholds are scaled by ``1 + margin``.
    interpolation : {"smooth", "linear"}
        How a repaired frame's values are re-estimated (:func:`.interpolate_codes`).
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
        add = _widen(current_excess > 0, repaired, attribute_regions, near_of, inner)
    return add


def _widen(flags: np.ndarray, repaired: np.ndarray, attribute_regions: np.ndarray, near_of: np.ndarray,
           inner: np.ndarray) -> np.ndarray:
    """Regions to add when the flagged frames are all repaired already: widen their blocks.

    No frame left whose re-estimation helps: the decoded path between the trusted frames still
    bends. Each repaired block that is flagged or next to a flagged frame (``flags`` (T, A):
    flagged entries) is widened by its trusted neighbours (``inner``: not onto an end frame,
    unless the cycle is periodic), so the re-estimation spans more frames and its bend per
    frame shrinks. The widened block repairs the same regions on all its frames: a frame
    rebuilding the LV only next to one rebuilding LV and EPI makes a wall that jumps.
    """
    add = np.zeros_like(repaired)
    flagged = flags.any(axis=1)
    rebuilt = repaired.any(axis=1)
    seeds = rebuilt & (flagged | (near_of & flagged[None, :]).any(axis=1))
    done = np.zeros(len(flagged), bool)
    for t in np.flatnonzero(seeds):
        if done[t]:
            continue
        block = np.zeros(len(flagged), bool)               # the connected block of rebuilt frames
        block[t] = True
        while True:
            grown = block | ((near_of & block[None, :]).any(axis=1) & rebuilt)
            if (grown == block).all():
                break
            block = grown
        done |= block
        around = (near_of & block[None, :]).any(axis=1) & ~block
        window = block | around
        regions = repaired[block].any(axis=0) | attribute_regions[flags[window].any(axis=0)].any(axis=0)
        targets = block | (around & inner)
        add[targets] |= regions & ~repaired[targets]
    return add


def plan_flagged_repairs(curves: np.ndarray, detector: Detector, repaired: np.ndarray,
                         attribute_regions: np.ndarray, *, widen: bool = True, cycle=None) -> np.ndarray:
    """Frames to repair by the spike detector: the frames it flags, with the regions of their attributes.

    The spike search (:func:`~echolatent.temporal.detection.detect_spikes`) already attributes
    each deviation to the fewest windows that explain it (a spike, not its neighbours; both
    frames of a two-frame defect), which is what :func:`plan_repairs` searches for on the
    deviation's flags; so its flagged frames are the plan. A flagged frame takes the regions
    (:data:`.ATTRIBUTE_REGIONS`) of the attributes it is flagged for that it does not repair
    yet. When every flagged frame already repairs them (the decoded repair still bends),
    the repaired blocks are widened (``widen``, as :func:`plan_repairs` does).

    Parameters
    ----------
    curves : ndarray (T, A)
        Attribute curves of the current sequence (the input, or the output of the last repair).
    detector : Detector
        The image-space check (``kind="spikes"``), its columns in the order of ``curves``.
    repaired : ndarray (T, R) bool
        Regions already repaired per frame.
    attribute_regions : ndarray (A, R) bool
        Regions each attribute depends on.
    widen : bool
    cycle : {"full", "half", None}

    Returns
    -------
    ndarray (T, R) bool
        Regions to add.
    """
    curves = np.asarray(curves, np.float64)
    repaired = np.asarray(repaired, bool)
    attribute_regions = np.asarray(attribute_regions, bool)
    T = len(curves)
    add = np.zeros_like(repaired)
    if T < 3:
        return add
    flags = detector.check(curves, cycle)["inconsistent"]                     # (T, A)
    for t in np.flatnonzero(flags.any(axis=1)):
        add[t] = attribute_regions[flags[t]].any(axis=0) & ~repaired[t]
    if flags.any() and not add.any() and widen:
        inner = np.ones(T, bool)
        if end_rule(cycle) != "periodic":
            inner[[0, T - 1]] = False
        add = _widen(flags, repaired, attribute_regions, neighbour_frames(T, cycle), inner)
    return add


def plan_for(detector: Detector, curves: np.ndarray, repaired: np.ndarray, attribute_regions: np.ndarray, *,
             widen: bool = True, interpolation: str = "smooth", cycle=None) -> np.ndarray:
    """The plan of the detector's kind: :func:`plan_flagged_repairs` (spikes) or :func:`plan_repairs` (deviation)."""
    if detector.kind == "spikes":
        return plan_flagged_repairs(curves, detector, repaired, attribute_regions, widen=widen, cycle=cycle)
    return plan_repairs(curves, detector.lo, detector.hi, detector.tau, repaired, attribute_regions,
                        margin=detector.margin, widen=widen, interpolation=interpolation, cycle=cycle,
                        tau_end=detector.tau_end)
