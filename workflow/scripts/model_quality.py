"""Rule model_quality: reconstruction Dice of the trained model per split (train/val/test/all)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.encode import quality_stage  # noqa: E402

quality_stage(snakemake.input.latents, snakemake.input.patients, model=snakemake.wildcards.model,
              out=snakemake.output.quality)
