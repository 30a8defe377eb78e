"""Rule stats_effects: adjusted and unadjusted group effects (OLS, HC3) of every outcome of the configured families."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.stats import effects_stage  # noqa: E402

effects_stage(
    snakemake.input.table,
    families=snakemake.params.families,
    covariates=snakemake.params.covariates,
    groups=snakemake.params.groups,
    min_group_size=snakemake.params.min_group_size,
    out=snakemake.output.effects,
)
