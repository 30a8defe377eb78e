"""Rule simulate_cohort: the synthetic cohort (simulator store with its truth)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.ingest import simulate_stage  # noqa: E402

simulate_stage(snakemake.params.synthetic, snakemake.output[0])
