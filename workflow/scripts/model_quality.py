"""Rule model_quality: reconstruction Dice of the trained model per split (train/val/test/all)."""

import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

import pandas as pd  # noqa: E402

from echolatent.models.quality import reconstruction_quality  # noqa: E402
from echolatent.shape_tables import write_table  # noqa: E402

latents = pd.concat([pd.read_parquet(path) for path in snakemake.input.latents], ignore_index=True)
write_table(reconstruction_quality(latents, snakemake.input.patients, model=snakemake.wildcards.model),
            snakemake.output.quality)
