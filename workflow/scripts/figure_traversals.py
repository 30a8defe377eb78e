"""Rule figure_traversals: AR-VAE attribute traversals, the attribute measured on each decoded shape (on the CPU)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import traversals_stage  # noqa: E402

traversals_stage(
    snakemake.input.checkpoint,
    snakemake.input.bounds,
    snakemake.input.latents,
    snakemake.input.patients,
    snakemake.input.sequences,
    view=snakemake.params.view,
    steps=snakemake.params.steps,
    image_size=snakemake.params.image_size,
    criteria_grid=snakemake.params.criteria_grid,
    threads=snakemake.threads,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
    out_table=snakemake.output.table,
)
