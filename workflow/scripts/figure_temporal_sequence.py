"""Rule figure_temporal_sequence: one sequence before and after the temporal correction (curves, metric, frames)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import temporal_sequence_stage  # noqa: E402

temporal_sequence_stage(
    snakemake.input.tables,
    snakemake.input.corrected,
    snakemake.input.cohort,
    snakemake.input.thresholds,
    cycle=snakemake.params.cycle,
    margin=snakemake.params.margin,
    model=snakemake.wildcards.model,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
