"""Rule study_quality: the reconstruction quality of every model of the study, side by side."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.encode import study_quality_stage  # noqa: E402

study_quality_stage(snakemake.input.tables, out=snakemake.output.quality)
