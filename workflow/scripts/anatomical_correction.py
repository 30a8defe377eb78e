"""Rule anatomical_correction: replace every frame of a shard that fails a criterion by its nearest valid shape."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

import torch  # noqa: E402

from echolatent.stages.guarantees import correction_stage  # noqa: E402

torch.set_num_threads(snakemake.params.torch_threads)  # from config, not --cores
correction_stage(
    snakemake.input.checkpoint,
    snakemake.input.codes,
    snakemake.input.shard,
    patients=snakemake.input.patients,
    truth_shard=snakemake.input.get("truth"),
    grid=snakemake.params.grid,
    n_bisections=snakemake.params.n_bisections,
    max_distance=snakemake.params.max_distance,
    refine=snakemake.params.refine,
    batch_size=snakemake.params.batch_size,
    device=snakemake.params.device,
    masks=snakemake.params.masks,
    model=snakemake.wildcards.model,
    out_h5=snakemake.output.h5,
    out_table=snakemake.output.table,
)
