"""Rule plan_cohort: patients, covariates, split and shard of every patient."""

import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

from echolatent.ingest import open_source, plan_cohort  # noqa: E402

params = snakemake.params
source = open_source(params.source, snakemake.input.source, cycle=params.cycle, layout=params.layout)
plan = plan_cohort(source, n_shards=params.shards, seed=params.seed, fractions=params.fractions,
                   split_source=params.split_source, covariates=params.covariates or None)
plan.to_csv(snakemake.output.plan, sep="\t", index=False)
