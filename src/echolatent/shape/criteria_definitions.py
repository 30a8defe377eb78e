"""The 12 anatomical criteria of Painchaud et al. (TMI 2020): names, definitions, valid ranges.

The criteria are measured on label maps (:mod:`echolatent.labels`: 0 background, 1 LV
cavity, 2 myocardium, 3 left atrium) by :func:`echolatent.shape.criteria.anatomical_metrics`;
a map is anatomically plausible when every criterion is in its valid range.

Definitions (pixels of the grid; connectivities as in the reference implementation)
---------------------------------------------------------------------------------
``s = H * W / 2**14`` is the small-object size (4 px at 256 x 256) on the native grid;
1.44 mm^2 in pixels when the spacing is known (:mod:`echolatent.shape.grid`). EPI = LV ∪ MYO.

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
"""

from __future__ import annotations

import math
from types import MappingProxyType

from echolatent.labels import LA, LV, MYO

__all__ = [
    "CRITERIA",
    "CRITERION_STRUCTURES",
    "EROSION_RATIO_MYO_MIN",
    "FRONTIER_RATIO_LV_BG_MAX",
    "FRONTIER_RATIO_MYO_LA_MAX",
    "GRID_CRITERIA",
    "THRESHOLDS",
    "WIDTH_RATIO_LV_MYO_MAX",
]

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
