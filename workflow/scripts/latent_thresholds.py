"""Rule latent_thresholds: bounds and thresholds of the model's attribute dimensions."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

import torch  # noqa: E402

from echolatent.stages.temporal import latent_thresholds_stage  # noqa: E402

torch.set_num_threads(snakemake.params.torch_threads)  # from config, not --cores
latent_thresholds_stage(
    snakemake.input.checkpoint,
    snakemake.input.bounds,
    snakemake.input.image,
    mode=snakemake.params.mode,
    reference=snakemake.params.reference,
    reference_shards=snakemake.input.get("reference_shards", []),
    cohort_shards=snakemake.input.get("cohort_shards", []),
    patients=snakemake.input.get("patients"),
    splits=snakemake.params.splits,
    frames=snakemake.input.get("frames"),
    cycle=snakemake.params.cycle,
    device=snakemake.params.device,
    batch_size=snakemake.params.batch_size,
    out=snakemake.output.thresholds,
)
