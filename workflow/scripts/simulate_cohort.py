"""Rule simulate_cohort: the synthetic cohort (simulator store with its truth)."""

import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

from echolatent.stages.ingest import simulate_stage  # noqa: E402

simulate_stage(snakemake.params.synthetic, snakemake.output[0])
