"""Rule figure_anatomy_validity: frames failing each anatomical criterion, before and after the temporal correction."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import anatomy_validity_stage  # noqa: E402

anatomy_validity_stage(
    snakemake.input.criteria,
    snakemake.input.corrected,
    snakemake.input.cohort,
    snakemake.input.truth,
    criteria_grid=snakemake.params.criteria_grid,
    model=snakemake.wildcards.model,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
    out_table=snakemake.output.table,
)
