"""Rule plan_cohort: patients, covariates, split and shard of every patient."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.ingest import plan_stage  # noqa: E402

params = snakemake.params
plan_stage(params.source, snakemake.input.source, cycle=params.cycle, layout=params.layout, n_shards=params.shards,
           seed=params.seed, fractions=params.fractions, split_source=params.split_source,
           covariates=params.covariates, out=snakemake.output.plan)
