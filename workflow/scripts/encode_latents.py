"""Rule encode_latents: latent means, log-variances and reconstructions of one shard."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

import torch  # noqa: E402

from echolatent.stages.encode import encode_stage  # noqa: E402

torch.set_num_threads(snakemake.params.torch_threads)  # from config, not --cores
encode_stage(
    snakemake.input.checkpoint,
    snakemake.input.shard,
    out_table=snakemake.output.table,
    out_h5=snakemake.output.h5,
    model_name=snakemake.wildcards.model,
    device=snakemake.params.device,
    batch_size=snakemake.params.batch_size,
)
