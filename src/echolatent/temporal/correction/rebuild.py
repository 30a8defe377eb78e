"""Rebuilding the repaired regions of a frame, calibrated on the decoder's error.

Step 5 of the repair (:mod:`echolatent.temporal.correction.repair`, which states the formula):
a repaired region is the decoding of the frame's re-estimated code, in signed distances
(:mod:`~echolatent.temporal.correction.regions`), plus the decoder's reconstruction error at
its trusted neighbours interpolated to the frame, so that it joins its input neighbours
without a seam.
"""

from __future__ import annotations

import numpy as np

from echolatent.labels import BACKGROUND as BG
from echolatent.labels import LA
from echolatent.temporal.correction.interpolation import trusted_neighbours
from echolatent.temporal.correction.regions import REGIONS, nest_regions, region_mask, region_sdf
from echolatent.temporal.preclean import preclean

__all__ = ["repair_frames"]


def repair_frames(base: np.ndarray, decoded_mu: np.ndarray, decoded_z: dict, regions: np.ndarray,
                  *, keep_atrium: bool = True, drop_atrium: bool = False, decoder_weight: float = 1.0, minimal=None,
                  valid=None, return_regions: bool = False, cycle=None, cache: dict | None = None,
                  built: dict | None = None):
    """Rebuild the repaired regions of the frames of a sequence (the module docstring).

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
        Regions (:data:`.REGIONS` order) each frame repairs; frames repairing none are trusted.
    keep_atrium : bool
        False for a model without the LA class: the heart outline keeps the input.
    drop_atrium : bool
        The output has no LA (``atrium="drop"`` with such a model; ``base`` has none): a rebuilt
        epicardium smaller than the input's heart outline leaves background, not atrium.
    decoder_weight : float
        Weight of the decoder's path (the bracket of the module docstring is always added in full):
        1 follows the decoder, 0 interpolates the neighbours' outlines alone.
    minimal : ndarray (T,) bool, optional
        Frames (repaired for an anatomical error only) that take the smallest edit: every
        non-empty subset of their regions is tried, and the valid result (``valid``) that
        changes the fewest pixels of the input is kept (all their regions if none is valid).
        A cut through the wall then rebuilds the epicardium alone, and a missing atrial band
        the heart outline alone, instead of the LV, the wall and the atrium together.
    valid : callable, optional
        ``valid(frames) -> ndarray (N,) bool``: whether each rebuilt (pre-cleaned) frame of an
        (N, H, W) stack passes the anatomical criteria; needed with ``minimal``. It is called
        once per call, with every candidate edit of every minimal frame (the criteria have a
        fixed cost per call).
    return_regions : bool
        Also return the regions actually rebuilt per frame (``minimal`` may use fewer).
    cycle : {"full", "half", None}
        Which trusted frames calibrate a repaired end frame (:func:`.trusted_neighbours`):
        the periodic neighbours on a full cycle, the nearest trusted frame on a half cycle.
    cache : dict, optional
        Signed distance maps already computed, keyed ``(source, t, region)`` with source
        ``"in"`` (``base``), ``"dec"`` (``decoded_mu``) or ``"z"`` (``decoded_z``); filled in
        place. Pass the same dict to calls on the same sequence to compute each map once (the
        repair's rounds and decoder weights); drop its ``"z"`` entries when ``decoded_z`` changes.
    built : dict, optional
        Rebuilt, pre-cleaned frames already made, filled in place, keyed by everything a
        rebuilt frame depends on besides the sequence (the frame, its regions, trusted
        neighbours and weight, the decoder weight and the bytes of its ``decoded_z`` frame).
        Pass the same dict to calls on the same sequence (same ``base``, ``decoded_mu`` and
        options) to rebuild each frame once: later rounds rebuild many frames as before.

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
    cache = {} if cache is None else cache

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

    def compose(t, chosen):
        """The rebuilt frame before its pre-cleaning (done for all frames at once below)."""
        # a region kept as it was is its input mask (the sign of its signed distance: no transform needed)
        frame = nest_regions({region: rebuilt(t, region) < 0 if chosen[j] else region_mask(base[t], region)
                              for j, region in enumerate(REGIONS)})
        if not chosen[REGIONS.index("heart")]:
            # The atrium is not repaired here: its input pixels that the trusted neighbours
            # agree on stay LA, so a rebuilt LV or wall does not take them.
            frame[(base[t] == LA) & (base[prev[t]] == LA) & (base[nxt[t]] == LA)] = LA
        if drop_atrium:
            # the heart outline minus the epicardium is composed as LA: with the atrium dropped
            # it is background (the validity check then sees only the labels it measures)
            frame[frame == LA] = BG
        return frame

    def key(t, chosen):
        """What the rebuilt frame depends on within the sequence (``built``)."""
        z = decoded_z[t].tobytes() if decoder_weight != 0 else b""   # weight 0 reads no decoding
        return t, chosen.tobytes(), int(prev[t]), int(nxt[t]), float(a[t]), float(decoder_weight), z

    def build(items):
        """Rebuilt, pre-cleaned frames of (t, regions) pairs: one pre-cleaning call for the new ones
        (a frame's pre-cleaning depends on that frame alone)."""
        if built is None:
            if not items:
                return np.zeros((0, *base.shape[1:]), np.uint8)
            return preclean(np.stack([compose(t, chosen) for t, chosen in items]), keep_atrium=not drop_atrium)
        keys = [key(t, chosen) for t, chosen in items]
        new = list({k: item for k, item in zip(keys, items) if k not in built}.items())
        if new:
            frames = preclean(np.stack([compose(t, chosen) for _, (t, chosen) in new]), keep_atrium=not drop_atrium)
            built.update((k, frame) for (k, _), frame in zip(new, frames))
        return np.array([built[k] for k in keys], np.uint8).reshape(len(keys), *base.shape[1:])

    repaired = np.flatnonzero(~trusted)
    whole = [t for t in repaired if minimal is None or not minimal[t]]
    out[whole] = build([(t, regions[t]) for t in whole])
    candidates = [(t, subset) for t in repaired if minimal is not None and minimal[t]
                  for subset in _subsets(regions[t])]  # the minimal frames' edits, checked together
    if candidates:
        frames = build(candidates)
        ok = np.asarray(valid(frames), bool)
        best = {}
        for (t, subset), frame, passed in zip(candidates, frames, ok):
            if passed:
                changed = int(np.count_nonzero(frame != base[t]))
                if t not in best or changed < best[t][0]:
                    best[t] = (changed, frame, subset)
        for t in dict.fromkeys(t for t, _ in candidates):
            if t in best:
                out[t], regions[t] = best[t][1], best[t][2]
            else:  # no valid edit: all its regions
                out[t] = build([(t, regions[t])])[0]
    return (out, regions) if return_regions else out


def _subsets(chosen: np.ndarray):
    """Non-empty subsets of the regions marked in ``chosen`` (R,), as (R,) bool arrays."""
    index = np.flatnonzero(chosen)
    for bits in range(1, 2 ** len(index)):
        subset = np.zeros_like(chosen)
        subset[index[[k for k in range(len(index)) if bits >> k & 1]]] = True
        yield subset
