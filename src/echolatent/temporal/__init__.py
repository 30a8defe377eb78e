"""Temporal consistency of cardiac sequences: the metric and the latent-trajectory smoother."""

from echolatent.temporal.metric import TEMPORAL_THRESHOLDS, consistency_deviation, temporal_consistency
from echolatent.temporal.smoothing import neighbour_average_matrix, smooth_trajectories, snake

__all__ = [
    "TEMPORAL_THRESHOLDS",
    "consistency_deviation",
    "temporal_consistency",
    "neighbour_average_matrix",
    "smooth_trajectories",
    "snake",
]
