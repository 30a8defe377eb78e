"""Rule densify_latent_space: fill a model's latent space with codes whose decodings are anatomically valid."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

import torch  # noqa: E402

from echolatent.stages.guarantees import densify_stage  # noqa: E402

torch.set_num_threads(snakemake.params.torch_threads)  # from config, not --cores
densify_stage(
    snakemake.input.checkpoint,
    snakemake.input.latents,
    snakemake.input.patients,
    snakemake.input.sequences,
    splits=snakemake.params.splits,
    n_samples=snakemake.params.n_samples,
    sampler=snakemake.params.sampler,
    bandwidth=snakemake.params.bandwidth,
    bound_quantile=snakemake.params.bound_quantile,
    seed=snakemake.params.seed,
    grid=snakemake.params.grid,
    batch_size=snakemake.params.batch_size,
    device=snakemake.params.device,
    model=snakemake.wildcards.model,
    out_codes=snakemake.output.codes,
    out_summary=snakemake.output.summary,
)
