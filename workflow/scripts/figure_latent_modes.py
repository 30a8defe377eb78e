"""Rule figure_latent_modes: decoded modes of variation of one model's patient codes."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import latent_modes_stage  # noqa: E402

latent_modes_stage(
    snakemake.input.table,
    snakemake.input.h5,
    model=snakemake.wildcards.model,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
