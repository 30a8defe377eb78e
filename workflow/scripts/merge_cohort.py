"""Rule merge_cohort: cohort tables and provenance from the per-shard parts."""

from pathlib import Path

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.ingest import merge_stage  # noqa: E402

params, inputs = snakemake.params, snakemake.input
merge_stage(
    params.source,
    inputs.source,
    inputs.plan,
    inputs.sequences,
    inputs.qc,
    inputs.inputs,
    cycle=params.cycle,
    layout=params.layout,
    config=params.config,
    out_dir=Path(snakemake.output.patients).parent,
)
