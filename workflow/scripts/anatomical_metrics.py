"""Rule anatomical_metrics: per-frame criteria and attributes of one shard of one mask source."""

import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

from echolatent.shape_tables import shard_anatomy_tables, write_table  # noqa: E402

criteria, attributes = shard_anatomy_tables(
    snakemake.input.masks, dataset=snakemake.params.dataset, attrs_from=snakemake.input.get("cohort_shard"),
    grid=snakemake.params.grid,
)
write_table(criteria, snakemake.output.criteria)
write_table(attributes, snakemake.output.attributes)
print(f"{len(criteria)} frames, {int(criteria['anatomical_errors'].sum())} with anatomical errors "
      f"(criteria grid: {snakemake.params.grid})", file=sys.stderr)
