"""Rule anatomical_metrics: per-frame criteria and attributes of one shard of one mask source."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.shape import anatomy_stage  # noqa: E402

anatomy_stage(
    snakemake.input.masks,
    attrs_from=snakemake.input.get("cohort_shard"),
    dataset=snakemake.params.dataset,
    grid=snakemake.params.grid,
    out_criteria=snakemake.output.criteria,
    out_attributes=snakemake.output.attributes,
)
