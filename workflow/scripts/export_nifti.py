"""Rules export_temporal_nifti and export_guaranteed_nifti: corrected sequences of one shard as NIfTI, one folder per patient."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.temporal import export_stage  # noqa: E402

export_stage(snakemake.input.h5, snakemake.output.folder)
