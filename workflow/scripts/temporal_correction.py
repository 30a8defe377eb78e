"""Rule temporal_correction: correct one shard's sequences (repair or smoothing); before/after table."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

import torch  # noqa: E402

from echolatent.stages.temporal import correction_stage  # noqa: E402

torch.set_num_threads(snakemake.params.torch_threads)  # from config, not --cores
correction_stage(
    snakemake.input.checkpoint,
    snakemake.input.shard,
    snakemake.input.image,
    snakemake.input.latent,
    settings=dict(snakemake.params.settings),
    truth_shard=snakemake.input.get("truth"),
    frames=snakemake.input.get("frames"),
    cycle=snakemake.params.cycle,
    patients=snakemake.input.patients,
    out_table=snakemake.output.table,
    out_h5=snakemake.output.h5,
    model_name=snakemake.wildcards.model,
    device=snakemake.params.device,
    criteria=snakemake.input.get("criteria"),
)
