"""Rule stats_classification: the groups from latent codes vs a clinical baseline vs both (CV AUC, DeLong)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.stats import classification_stage  # noqa: E402

classification_stage(
    snakemake.input.table,
    models=snakemake.params.models,
    clinical_features=snakemake.params.clinical_features,
    latent_summaries=snakemake.params.latent_summaries,
    groups=snakemake.params.groups,
    min_group_size=snakemake.params.min_group_size,
    folds=snakemake.params.folds,
    repeats=snakemake.params.repeats,
    n_bootstrap=snakemake.params.n_bootstrap,
    seed=snakemake.params.seed,
    out=dict(snakemake.output.items()),
)
