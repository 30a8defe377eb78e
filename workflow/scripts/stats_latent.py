"""Rule stats_latent: latent-space analyses of one model (correlations, disentanglement, PCA, group direction and test)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.stats import latent_stage  # noqa: E402

latent_stage(
    snakemake.input.table,
    snakemake.input.latents,
    snakemake.input.attributes,
    snakemake.input.patients,
    model=snakemake.wildcards.model,
    regularised=snakemake.params.regularised,
    covariates=snakemake.params.covariates,
    groups=snakemake.params.groups,
    min_group_size=snakemake.params.min_group_size,
    pca_components=snakemake.params.pca_components,
    n_permutations=snakemake.params.n_permutations,
    seed=snakemake.params.seed,
    out=dict(snakemake.output.items()),
)
