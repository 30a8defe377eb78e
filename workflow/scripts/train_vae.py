"""Rule train_vae: train the configured VAE on the train split, select on the val split."""

import sys
from pathlib import Path

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.train import train_stage  # noqa: E402

# An interrupted training exits non-zero (130 by default); re-running the rule resumes from last.pt.
sys.exit(train_stage(
    snakemake.input.shards,
    snakemake.input.patients,
    snakemake.params.training,
    snakemake.params.attributes,
    out_dir=Path(snakemake.output.checkpoint).parent,
))
