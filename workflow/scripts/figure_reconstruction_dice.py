"""Rule figure_reconstruction_dice: reconstruction Dice per structure, split and model (patients as points)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import reconstruction_dice_stage  # noqa: E402

reconstruction_dice_stage(
    snakemake.input.latents,
    snakemake.input.patients,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
