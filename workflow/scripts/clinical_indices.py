"""Rule clinical_indices: biplane Simpson EDV/ESV/EF and LA volume per patient."""

import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

from echolatent.shape_tables import cohort_clinical_indices, write_table  # noqa: E402

table = cohort_clinical_indices(snakemake.input.shards, dataset=snakemake.params.dataset,
                                rule=snakemake.params.disc_rule)
write_table(table, snakemake.output.indices)
print(f"{len(table)} patients, {int(table['foreshortening'].sum())} flagged for foreshortening", file=sys.stderr)
