"""Rule encode_latents: latent means, log-variances and reconstructions of one shard."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (snakemake is injected)

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
    log=sys.stderr,
)
