"""Rule figure_model_comparison: the study's models side by side (Dice, valid prior decodings, attribute Spearman)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import model_comparison_stage  # noqa: E402

model_comparison_stage(
    snakemake.input.quality,
    snakemake.input.priors,
    snakemake.input.summaries,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
