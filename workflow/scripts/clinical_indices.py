"""Rule clinical_indices: biplane Simpson EDV/ESV/EF and LA volume per patient."""

import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

from echolatent.stages.shape import clinical_stage  # noqa: E402

clinical_stage(
    snakemake.input.shards,
    dataset=snakemake.params.dataset,
    rule=snakemake.params.disc_rule,
    out=snakemake.output.indices,
    log=sys.stderr,
)
