"""Rule stats_patients: the analysis table (one row per patient) and its exclusions."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.stats import patients_stage  # noqa: E402

patients_stage(
    snakemake.input.patients,
    snakemake.input.sequences,
    snakemake.input.clinical,
    snakemake.input.attributes,
    snakemake.input.anatomy,
    snakemake.input.get("latents", []),
    snakemake.input.get("corrections", []),
    groups=snakemake.params.groups,
    splits=snakemake.params.splits,
    covariates=snakemake.params.covariates,
    min_group_size=snakemake.params.min_group_size,
    out_table=snakemake.output.table,
    out_exclusions=snakemake.output.exclusions,
)
