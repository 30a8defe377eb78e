"""Rule figure_forest: forest plot of one family of standardised group effects (adjusted and unadjusted)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import forest_plot_stage  # noqa: E402

forest_plot_stage(
    snakemake.input.effects,
    snakemake.input.bounds,
    family=snakemake.wildcards.family,
    groups=snakemake.params.groups,
    covariates=snakemake.params.covariates,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
