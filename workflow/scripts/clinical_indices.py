"""Rule clinical_indices: biplane Simpson EDV/ESV/EF and LA volume per patient."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.shape import clinical_stage  # noqa: E402

clinical_stage(
    snakemake.input.shards,
    dataset=snakemake.params.dataset,
    rule=snakemake.params.disc_rule,
    out=snakemake.output.indices,
)
