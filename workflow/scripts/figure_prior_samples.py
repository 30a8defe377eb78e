"""Rule figure_prior_samples: shapes decoded from prior samples, measured, invalid ones marked (on the CPU)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import prior_samples_stage  # noqa: E402

prior_samples_stage(
    snakemake.input.checkpoint,
    snakemake.input.sequences,
    n_samples=snakemake.params.n_samples,
    n_shown=snakemake.params.n_shown,
    seed=snakemake.params.seed,
    image_size=snakemake.params.image_size,
    criteria_grid=snakemake.params.criteria_grid,
    threads=snakemake.threads,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
    out_table=snakemake.output.table,
)
