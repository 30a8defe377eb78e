"""Repair of the flagged frames of a sequence through the latent space ("repair" method).

Why not smooth every frame (the TMI 2022 reference)? On cycles of about 20 frames the
snake flattens the true cardiac motion, and the decoder's own reconstruction error replaces
the input everywhere: on the synthetic cohort both cost more Dice to the clean truth than
removing a single-frame spike gains (benchmarks/README.md). The repair method intervenes
only where the consistency metric or the anatomical criteria point, and keeps the input
elsewhere:

1. **Pre-clean** the sequence (:func:`~echolatent.temporal.preclean.preclean`) and encode
   every frame (posterior mean ``mu``).
2. **Select the frames to repair.** Anatomically invalid frames, and the *culprits* of the
   temporal metric: a spike at frame ``t`` also makes its neighbours deviate (by about half,
   with the opposite sign), so only the flagged frames whose deviation-to-threshold ratio is
   a local maximum are taken; their neighbours are re-checked after the repair. Each frame
   records which nested regions it repairs (:data:`REGIONS`): the regions of the flagged
   attributes (:data:`ATTRIBUTE_REGIONS`) or of the failed criteria
   (:data:`CRITERION_REGIONS`); the others keep the input.
3. **Re-estimate their codes.** The code of a repaired frame is interpolated linearly in time
   between the codes of the nearest trusted frames (those repairing nothing) on each side:
   the minimiser of the snake's smoothness term with the trusted frames held fixed, i.e.
   the snake with data weight 0 on the repaired frames and its weight taken to 0 elsewhere.
4. **Decode, calibrated on the trusted neighbours.** Working on signed distance maps ``S``
   of the nested regions (LV ⊂ EPI = LV ∪ MYO ⊂ heart = EPI ∪ LA), a repaired region is::

       S_out(t) = S(dec z_t) + a·[S(in_p) − S(dec μ_p)] + (1 − a)·[S(in_n) − S(dec μ_n)]

   with ``p < t < n`` the trusted neighbours and ``a = (n − t)/(n − p)`` (before the first or
   after the last trusted frame, the two nearest trusted frames extrapolate linearly). The bracket is the
   decoder's reconstruction error at the neighbours, interpolated to ``t``: it cancels the
   decoder's bias (a 64 px decoder thins the myocardium, say), so the repaired frame joins
   its input neighbours without a seam, while the shape change between them is the one the
   decoder produces along the latent path (anatomically plausible by training).
5. **Check and repeat** (up to ``max_rounds``): frames still flagged whose neighbours are not
   repaired yet are new culprits; a flagged repaired frame extends the repair to its
   neighbour with the larger deviation.

A sequence still inconsistent after the rounds is left to the caller (the pipeline falls
back to the reference smoothing of the whole sequence, so no sequence stays inconsistent).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt

from echolatent.temporal.preclean import LA, LV, MYO, preclean

__all__ = [
    "REGIONS",
    "ATTRIBUTE_REGIONS",
    "CRITERION_REGIONS",
    "region_sdf",
    "compose_regions",
    "select_culprits",
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


def select_culprits(ratio: np.ndarray, repaired: np.ndarray, attribute_regions: np.ndarray) -> np.ndarray:
    """Regions to repair next, from the deviation-to-threshold ratios of the temporal metric.

    Parameters
    ----------
    ratio : ndarray (T, A)
        ``|d_t| / tau`` per frame and attribute (NaN where not measurable: counts as flagged).
    repaired : ndarray (T, R) bool
        Regions (:data:`REGIONS`) already repaired per frame.
    attribute_regions : ndarray (A, R) bool
        Regions each attribute depends on (:data:`ATTRIBUTE_REGIONS`).

    Returns
    -------
    ndarray (T, R) bool
        Regions to add. A flagged frame whose largest ratio is a local maximum (the spike, not
        its neighbours, which deviate by half of it) adds the regions of its flagged
        attributes; when it repairs all of them already, its neighbour with the larger ratio
        takes them (the deviation of a frame involves both neighbours). Flagged frames that
        are not a local maximum wait: repairing the maximum changes their deviation.
    """
    ratio = np.nan_to_num(np.asarray(ratio, float), nan=np.inf)  # unmeasurable counts as flagged
    repaired = np.asarray(repaired, bool)
    attribute_regions = np.asarray(attribute_regions, bool)
    T = len(ratio)
    flagged_attr = ratio > 1
    score = ratio.max(axis=1) if ratio.size else np.zeros(T)
    needed = (flagged_attr[:, :, None] & attribute_regions[None]).any(axis=1)   # (T, R)
    left = np.r_[-np.inf, score[:-1]]
    right = np.r_[score[1:], -np.inf]
    culprit = (score > 1) & (score >= left) & (score >= right)
    add = np.zeros_like(repaired)
    for t in np.flatnonzero(culprit):
        missing = needed[t] & ~repaired[t]
        if missing.any():
            add[t] |= missing
            continue
        neighbours = [u for u in (t - 1, t + 1) if 0 <= u < T and (needed[t] & ~repaired[u]).any()]
        if neighbours:
            u = max(neighbours, key=lambda v: score[v])
            add[u] |= needed[t] & ~repaired[u]
    return add


def trusted_neighbours(trusted: np.ndarray):
    """For every frame, the two trusted frames it is interpolated from, and the weight of the first.

    Returns ``(first, second, a)`` such that frame ``t`` is ``a * frame[first] + (1 - a) *
    frame[second]``: between two trusted frames, the nearest on each side with
    ``a = (second - t) / (second - first)``; before the first or after the last trusted
    frame, the two nearest trusted frames on the one side, extrapolated linearly (``a > 1``);
    trusted frames (and sequences with a single trusted frame) use that frame alone (``a = 1``).
    Raises ValueError when no frame is trusted.
    """
    trusted = np.asarray(trusted, bool)
    index = np.flatnonzero(trusted)
    if not len(index):
        raise ValueError("no trusted frame to interpolate from")
    t = np.arange(len(trusted))
    before = np.searchsorted(index, t, side="right") - 1      # position of the last trusted <= t
    after = np.searchsorted(index, t, side="left")            # position of the first trusted >= t
    first = index[np.clip(before, 0, None)]
    second = index[np.clip(after, None, len(index) - 1)]
    if len(index) >= 2:
        head, tail = before < 0, after >= len(index)           # no trusted frame before / after
        first = np.where(head, index[1], first)
        second = np.where(head, index[0], second)
        first = np.where(tail, index[-1], first)
        second = np.where(tail, index[-2], second)
    else:
        first = second = np.full(len(trusted), index[0])
    span = (second - first).astype(float)
    a = np.where(span != 0, (second - t) / np.where(span != 0, span, 1), 1.0)
    return first, second, a


def interpolate_codes(z: np.ndarray, trusted: np.ndarray) -> np.ndarray:
    """Codes (T, D) with the untrusted frames interpolated linearly between the trusted ones."""
    prev, nxt, a = trusted_neighbours(trusted)
    return a[:, None] * z[prev] + (1 - a[:, None]) * z[nxt]


def repair_frames(base: np.ndarray, decoded_mu: np.ndarray, decoded_z: dict, regions: np.ndarray,
                  *, keep_atrium: bool = True, decoder_weight: float = 1.0) -> np.ndarray:
    """Rebuild the repaired regions of the frames of a sequence (step 4 of the module docstring).

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

    Returns
    -------
    ndarray (T, H, W) uint8
        The sequence with the repaired frames rebuilt (and pre-cleaned), the others unchanged.
    """
    regions = np.asarray(regions, bool)
    if not keep_atrium:
        regions = regions.copy()
        regions[:, REGIONS.index("heart")] = False
    out = np.array(base, dtype=np.uint8, copy=True)
    trusted = ~regions.any(axis=1)
    if trusted.all():
        return out
    prev, nxt, a = trusted_neighbours(trusted)
    cache = {}

    def sdf(kind, t, region):
        key = (kind, t, region)
        if key not in cache:
            cache[key] = region_sdf((base if kind == "in" else decoded_mu)[t], region)
        return cache[key]

    for t in np.flatnonzero(~trusted):
        maps = {}
        for j, region in enumerate(REGIONS):
            if not regions[t, j]:
                maps[region] = region_sdf(base[t], region)
                continue
            p, n, w = prev[t], nxt[t], a[t]
            interp_in = w * sdf("in", p, region) + (1 - w) * sdf("in", n, region)
            if decoder_weight == 0:
                maps[region] = interp_in
                continue
            interp_dec = w * sdf("dec", p, region) + (1 - w) * sdf("dec", n, region)
            maps[region] = interp_in + decoder_weight * (region_sdf(decoded_z[t], region) - interp_dec)
        out[t] = compose_regions(maps)
    repaired = np.flatnonzero(~trusted)
    out[repaired] = preclean(out[repaired], keep_atrium=True)
    return out
