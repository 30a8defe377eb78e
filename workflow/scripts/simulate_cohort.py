"""Rule simulate_cohort: the synthetic cohort (simulator store with its truth)."""

import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

from echolatent.simulate import SimulationConfig, write_cohort  # noqa: E402

write_cohort(SimulationConfig.from_dict(snakemake.params.synthetic), snakemake.output[0], fmt="store")
