"""Rule merge_cohort: cohort tables and provenance from the per-shard parts."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

import pandas as pd  # noqa: E402

from echolatent.ingest import merge_cohort, open_source  # noqa: E402

params, inputs = snakemake.params, snakemake.input
source = open_source(params.source, inputs.source, cycle=params.cycle, layout=params.layout)
merge_cohort(
    pd.read_csv(inputs.plan, sep="\t", dtype={"patient_id": str}),
    inputs.sequences,
    inputs.qc,
    inputs.inputs,
    out_dir=Path(snakemake.output.patients).parent,
    config=params.config,
    global_inputs=source.input_files(),
    truth_dir=Path(inputs.source) / "truth" if params.source == "synthetic" else None,
)
