"""Temporal consistency of cardiac sequences (TMI 2022): metric, thresholds, smoothing, correction.

Modules
-------
:mod:`~.metric`      the temporal-consistency metric (TMI 2022 deviation) and the published thresholds
:mod:`~.detection`   which frames are inconsistent: the spike search (single and two-frame spikes) or the deviation
:mod:`~.thresholds`  threshold tables: published, re-derived from reference sequences
:mod:`~.smoothing`   the exact snake smoother (banded solves) and ``smooth_trajectories``
:mod:`~.preclean`    morphological pre-cleaning of label maps
:mod:`~.correction`  temporal correction with a trained VAE: the repair (default) and the smoothing
:mod:`~.evaluation`  detection rates against a synthetic cohort's injected defects
:mod:`~.export`      NIfTI export of corrected sequences
:mod:`~.workflow`    the temporal rules' paths (the functions they call: :mod:`echolatent.stages.temporal`)
"""

from echolatent.temporal.metric import (CAMUS_BOUNDS, TEMPORAL_THRESHOLDS, consistency_deviation, derive_thresholds,
                                        sequence_maxima, temporal_consistency)
from echolatent.temporal.preclean import preclean
from echolatent.temporal.smoothing import neighbour_average_matrix, smooth_trajectories, snake, solve_banded

__all__ = [
    "CAMUS_BOUNDS",
    "TEMPORAL_THRESHOLDS",
    "consistency_deviation",
    "derive_thresholds",
    "sequence_maxima",
    "temporal_consistency",
    "preclean",
    "neighbour_average_matrix",
    "smooth_trajectories",
    "snake",
    "solve_banded",
]
