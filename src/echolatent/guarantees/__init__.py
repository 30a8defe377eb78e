"""Anatomical guarantees (Painchaud et al., IEEE TMI 2020): every output segmentation plausible.

:mod:`~echolatent.guarantees.densify`
    fill the latent space with codes whose decodings pass the 12 criteria (KDE target,
    Gaussian proposal, rejection sampling, batched validity filtering);
:mod:`~echolatent.guarantees.nearest`
    exact nearest-neighbour search of codes against millions of stored valid codes;
:mod:`~echolatent.guarantees.correction`
    replace each invalid frame by the valid decoding closest to it along the segment to its
    nearest valid code (bisection);
:mod:`~echolatent.guarantees.refine`
    the image-space refinement of a correction towards the original frame;
:mod:`~echolatent.guarantees.shard`
    the correction of every frame of a mask shard, with its per-frame table.

The rules' paths and the chain of temporal and anatomical corrections are
:mod:`echolatent.postprocess` (it imports no torch: the workflow reads it to build the DAG).
"""

from echolatent.guarantees.correction import STATUSES, Correction, correct_frames
from echolatent.guarantees.densify import (Densified, GaussianDensity, KernelDensity, RejectionResult, densify,
                                           fit_gaussian, fit_kde, log_bound, model_labels, rejection_sample,
                                           sample_kde, valid_maps)
from echolatent.guarantees.nearest import nearest_codes

__all__ = ["STATUSES", "Correction", "correct_frames", "Densified", "GaussianDensity", "KernelDensity",
           "RejectionResult", "densify", "fit_gaussian", "fit_kde", "log_bound", "model_labels",
           "rejection_sample", "sample_kde", "valid_maps", "nearest_codes"]
