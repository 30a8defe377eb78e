"""Rule stats_table1: Table 1 of the analysed patients, by group (TSV and Markdown)."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.stats import table1_stage  # noqa: E402

table1_stage(
    snakemake.input.table,
    groups=snakemake.params.groups,
    skewed=snakemake.params.skewed,
    min_group_size=snakemake.params.min_group_size,
    out_tsv=snakemake.output.tsv,
    out_md=snakemake.output.md,
)
