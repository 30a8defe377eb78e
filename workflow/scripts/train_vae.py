"""Rule train_vae: train the configured VAE on the train split, select on the val split."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (snakemake is injected)

from echolatent.models.training import TrainingInterrupted  # noqa: E402
from echolatent.train_cohort import train_on_cohort  # noqa: E402

try:
    train_on_cohort(
        snakemake.input.shards,
        snakemake.input.patients,
        snakemake.params.training,
        snakemake.params.attributes,
        out_dir=Path(snakemake.output.checkpoint).parent,
        log=sys.stderr,
        on_mismatch="restart",  # Snakemake re-runs the job because config or data changed
    )
except TrainingInterrupted as interrupted:
    print(f"training interrupted ({interrupted}); re-run to resume from last.pt", file=sys.stderr)
    sys.exit(getattr(interrupted, "exit_code", 130))
