"""Rule figure_curves_attributes: shape attributes over the normalised cycle, group means and bands."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import curves_figure_stage  # noqa: E402

curves_figure_stage(
    snakemake.input.curves,
    snakemake.input.intervals,
    family="attributes",
    groups=snakemake.params.groups,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
