"""Rule figure_roc: ROC curves of the latent codes, the clinical baseline and both."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import roc_figure_stage  # noqa: E402

roc_figure_stage(
    snakemake.input.classification,
    snakemake.input.comparisons,
    snakemake.input.roc,
    groups=snakemake.params.groups,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
