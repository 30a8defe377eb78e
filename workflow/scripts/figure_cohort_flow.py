"""Rule figure_cohort_flow: the cohort's flow chart (patients, views, frames, splits, exclusions with reasons)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import cohort_flow_stage  # noqa: E402

cohort_flow_stage(
    snakemake.input.plan,
    snakemake.input.patients,
    snakemake.input.sequences,
    snakemake.input.qc,
    snakemake.input.get("analysis"),
    snakemake.input.get("exclusions"),
    groups=snakemake.params.groups,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
