"""Anatomical guarantees (Painchaud et al., IEEE TMI 2020): every output segmentation plausible.

:mod:`~echolatent.guarantees.densify`
    fill the latent space with codes whose decodings pass the 12 criteria (KDE target,
    Gaussian proposal, rejection sampling, batched validity filtering);
:mod:`~echolatent.guarantees.nearest`
    exact nearest-neighbour search of codes against millions of stored valid codes;
:mod:`~echolatent.guarantees.correction`
    replace each invalid frame by the valid decoding closest to it along the segment to its
    nearest valid code (bisection).
"""

from echolatent.guarantees.correction import STATUSES, Correction, correct_frames
from echolatent.guarantees.densify import (Densified, GaussianDensity, KernelDensity, RejectionResult, densify,
                                           fit_gaussian, fit_kde, log_bound, model_labels, rejection_sample,
                                           valid_maps)
from echolatent.guarantees.nearest import nearest_codes

__all__ = ["STATUSES", "Correction", "correct_frames", "Densified", "GaussianDensity", "KernelDensity",
           "RejectionResult", "densify", "fit_gaussian", "fit_kde", "log_bound", "model_labels",
           "rejection_sample", "valid_maps", "nearest_codes"]
