"""Rule temporal_detection: how often the configured detector flags spiked, neighbouring and clean frames."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.temporal import detection_stage  # noqa: E402

detection_stage(
    snakemake.input.attributes,
    snakemake.input.frames,
    snakemake.input.thresholds,
    cycle=snakemake.params.cycle,
    margin=snakemake.params.margin,
    detector=snakemake.params.detector,
    patients=snakemake.input.patients,
    out=snakemake.output.rates,
)
