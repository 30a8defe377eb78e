"""Rule figure_curves_latent: one model's latent means over the normalised cycle, group means and bands."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import curves_figure_stage  # noqa: E402

curves_figure_stage(
    snakemake.input.curves,
    snakemake.input.intervals,
    snakemake.input.bounds,
    family="latent",
    model=snakemake.wildcards.model,
    groups=snakemake.params.groups,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
