"""Rule figure_latent_pca: PCA of the latent means, frames by phase and patients by group."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import latent_pca_stage  # noqa: E402

latent_pca_stage(
    snakemake.input.latents,
    snakemake.input.patients,
    groups=snakemake.params.groups,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
