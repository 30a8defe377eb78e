"""Displacement transfer: the smoothing's boundary motion applied to the input (``output="displacement"``).

Instead of the decoded masks, a corrected frame is the pre-cleaned input whose boundaries
move by the displacement between the decoding of its encoded and of its smoothed latent code;
the decoder's reconstruction error, common to both decodings, cancels, so only what the
smoothing changes changes (as long as that error is the same in both: its frame-to-frame
part is not).
"""

from __future__ import annotations

import numpy as np

from echolatent.labels import LA
from echolatent.temporal.correction.regions import REGIONS, nest_regions, region_mask, signed_distance
from echolatent.temporal.preclean import preclean

__all__ = ["transfer_displacement"]


def transfer_displacement(base: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Move the boundaries of ``base`` as the boundaries of ``before`` move to ``after``.

    For the nested regions LV ⊂ EPI (LV ∪ MYO) ⊂ heart (LV ∪ MYO ∪ LA) the signed distance
    maps give ``sdf_out = sdf(base) + sdf(after) - sdf(before)``: every boundary of the base
    moves along its normal by the displacement the smoothing asked for, and the decoder's
    own reconstruction error (common to ``before`` and ``after``) cancels. Nesting the
    regions keeps the LV against the LA at the mitral plane (no gap can open between them).
    A region missing from one of the maps (or covering it), and the heart region for a model
    without the LA, keep the base. The result is pre-cleaned.

    Parameters
    ----------
    base, before, after : ndarray (T, H, W) or (H, W) of labels 0-3
        The (pre-cleaned) input, the decoding of the encoded input and the decoding of the
        smoothed trajectory, on the same grid.
    """
    base, before, after = (np.asarray(m) for m in (base, before, after))
    single = base.ndim == 2
    if single:
        base, before, after = base[None], before[None], after[None]
    out = np.empty_like(base, dtype=np.uint8)
    for t in range(len(base)):
        if np.array_equal(before[t], after[t]):
            out[t] = base[t]
            continue
        moved = {}
        for region in REGIONS:
            inside = [region_mask(m[t], region) for m in (base, before, after)]
            if region == "heart" and not (np.any(before[t] == LA) and np.any(after[t] == LA)):
                moved[region] = inside[0]  # a model without the LA: the atrium stays where it was
            elif all(m.any() and not m.all() for m in inside):
                moved[region] = signed_distance(inside[0]) + signed_distance(inside[2]) - signed_distance(inside[1]) < 0
            else:
                moved[region] = inside[0]
        out[t] = nest_regions(moved)
    out = preclean(out, keep_atrium=True)
    return out[0] if single else out
