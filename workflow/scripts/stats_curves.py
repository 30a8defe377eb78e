"""Rule stats_curves: attribute and latent curves over the normalised cycle, group bands and max-|t| tests."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.stats import curves_stage  # noqa: E402

curves_stage(
    snakemake.input.table,
    snakemake.input.sequences,
    snakemake.input.attributes,
    snakemake.input.get("latents", []),
    families=snakemake.params.families,
    covariates=snakemake.params.covariates,
    groups=snakemake.params.groups,
    min_group_size=snakemake.params.min_group_size,
    n_points=snakemake.params.n_points,
    n_permutations=snakemake.params.n_permutations,
    seed=snakemake.params.seed,
    out_curves=snakemake.output.curves,
    out_tests=snakemake.output.tests,
    out_intervals=snakemake.output.intervals,
    out_exclusions=snakemake.output.exclusions,
)
