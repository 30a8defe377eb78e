"""Rule figure_latent_interpolation: shapes decoded between two patients' ED codes (on the CPU)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import interpolation_stage  # noqa: E402

interpolation_stage(
    snakemake.input.checkpoint,
    snakemake.input.latents,
    snakemake.input.sequences,
    snakemake.input.patients,
    groups=snakemake.params.groups,
    image_size=snakemake.params.image_size,
    criteria_grid=snakemake.params.criteria_grid,
    steps=snakemake.params.steps,
    threads=snakemake.threads,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
