"""Temporal correction of label-map sequences with a trained mask VAE.

Two methods (``CorrectionConfig.method``, :mod:`echolatent.temporal.config`):

``repair`` (default, :mod:`~.repair`)
    only the frames that fail the anatomical criteria (with the smallest valid edit) or that
    the image-space metric needs re-estimated (the spike, not its neighbours; both frames of a
    two-frame defect; the first and last frames too when the cohort's ``cycle`` is given) are
    rebuilt from the trusted frames through the latent space, calibrated on the decoder's
    error; a sequence still inconsistent after ``repair_rounds`` goes to the smoothing
    (``fallback="smooth"``). Smoothing every frame flattens the true cardiac motion and puts
    the decoder's error everywhere (benchmarks/README.md).
``smooth`` (:mod:`~.smooth`)
    the TMI 2022 pipeline: encode every frame, smooth the latent trajectories, decode.

Modules
-------
:mod:`~.sequences`      :func:`correct_sequences`: a list of sequences through the configured method
:mod:`~.shard`          :func:`correct_shard`: a cohort shard, its before/after table and corrected mask shard
:mod:`~.result`         :class:`CorrectedSequence`, what a correction returns per sequence
:mod:`~.consistency`    the latent constraint and the image-space check a correction works against
:mod:`~.smooth`         the smoothing method
:mod:`~.displacement`   the smoothing's ``output="displacement"``: its boundary motion applied to the input
:mod:`~.repair`         the repair method, its steps in:
:mod:`~.regions`        the nested regions rebuilt, and the attributes and criteria that move them
:mod:`~.planning`       which frames to repair
:mod:`~.interpolation`  their codes re-estimated from the trusted frames
:mod:`~.rebuild`        their regions rebuilt from the decoding, calibrated on the decoder's error

The network runs through :mod:`echolatent.models.inference`; this package's own modules
import nothing at package import, so :mod:`~.regions` and the planning stay torch-free.
"""
