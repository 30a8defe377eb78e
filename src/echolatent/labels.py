"""Label values of the masks EchoLatent handles (the CAMUS convention), stated once.

Every label map, mask shard and model output uses these values: 0 background, 1 LV cavity,
2 myocardium (MYO), 3 left atrium (LA). EPI, the epicardial region, is LV ∪ MYO.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["BACKGROUND", "LV", "MYO", "LA", "LABELS", "VALID_LABELS"]

#: Background (and every structure a map does not label).
BACKGROUND = 0
#: Left-ventricular cavity.
LV = 1
#: Myocardium (of the left ventricle).
MYO = 2
#: Left atrium.
LA = 3

#: Structure name -> label value.
LABELS = MappingProxyType({"background": BACKGROUND, "lv": LV, "myo": MYO, "la": LA})
#: Every label value a mask may hold, in increasing order.
VALID_LABELS = tuple(sorted(LABELS.values()))
