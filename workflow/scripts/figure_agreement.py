"""Rule figure_agreement: identity and Bland-Altman plots of the clinical indices, one method vs one reference."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import agreement_figure_stage  # noqa: E402

agreement_figure_stage(
    snakemake.input.agreement,
    snakemake.input.method,
    snakemake.input.reference,
    method=snakemake.wildcards.method,
    reference=snakemake.wildcards.reference,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
