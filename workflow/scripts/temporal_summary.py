"""Rule temporal_summary: cohort totals of the per-shard before/after tables."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.temporal import summary_stage  # noqa: E402

summary_stage(snakemake.input.tables, model=snakemake.wildcards.model, out=snakemake.output.summary)
