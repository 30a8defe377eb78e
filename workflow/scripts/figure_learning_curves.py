"""Rule figure_learning_curves: every loss term (train and validation) of one model, per epoch."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import learning_curves_stage  # noqa: E402

learning_curves_stage(
    snakemake.input.history,
    model=snakemake.wildcards.model,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
