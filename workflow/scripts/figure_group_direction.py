"""Rule figure_group_direction: decoded shapes along one model's group direction."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import group_direction_stage  # noqa: E402

group_direction_stage(
    snakemake.input.table,
    snakemake.input.h5,
    model=snakemake.wildcards.model,
    groups=snakemake.params.groups,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
