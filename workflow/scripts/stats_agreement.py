"""Rule stats_agreement: agreement of the clinical indices between mask sources (Bland-Altman, ICC, CCC)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.stats import agreement_stage  # noqa: E402

agreement_stage(
    snakemake.input.input_indices,
    snakemake.input.patients,
    reconstruction=snakemake.input.get("reconstruction", []),
    temporal=snakemake.input.get("temporal", []),
    truth=snakemake.input.get("truth"),
    out=snakemake.output.agreement,
    out_exclusions=snakemake.output.exclusions,
)
