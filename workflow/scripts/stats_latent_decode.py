"""Rule stats_latent_decode: decode the codes of the latent analyses into shapes and measure them."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

import torch  # noqa: E402

from echolatent.stages.encode import decode_codes_stage  # noqa: E402

torch.set_num_threads(snakemake.params.torch_threads)  # from config, not --cores
decode_codes_stage(
    snakemake.input.codes,
    snakemake.input.checkpoint,
    snakemake.input.sequences,
    device=snakemake.params.device,
    batch_size=snakemake.params.batch_size,
    out_h5=snakemake.output.h5,
    out_table=snakemake.output.table,
)
