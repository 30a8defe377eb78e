"""Rule temporal_summary: cohort totals of the per-shard before/after tables."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (snakemake is injected)

from echolatent.stages.temporal import summary_stage  # noqa: E402

summary_stage(snakemake.input.tables, model=snakemake.wildcards.model, out=snakemake.output.summary, log=sys.stderr)
