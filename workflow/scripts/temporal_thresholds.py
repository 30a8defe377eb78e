"""Rule temporal_thresholds: image-space bounds and thresholds from the cohort's reference sequences."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.temporal import image_thresholds_stage  # noqa: E402

image_thresholds_stage(
    snakemake.input.attributes,
    snakemake.input.patients,
    reference=snakemake.params.reference,
    splits=snakemake.params.splits,
    names=snakemake.params.names,
    rule=snakemake.params.rule,
    robust_k=snakemake.params.robust_k,
    frames=snakemake.input.get("frames"),
    cycle=snakemake.params.cycle,
    out=snakemake.output.thresholds,
)
