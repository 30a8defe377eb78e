"""Rule ingest_shard: read, check, resample and write the patients of one shard."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

import pandas as pd  # noqa: E402

from echolatent.ingest import ingest_shard, open_source  # noqa: E402

params, output = snakemake.params, snakemake.output
source = open_source(params.source, snakemake.input.source, cycle=params.cycle, layout=params.layout)
truth = output.get("truth")
ingest_shard(
    source,
    pd.read_csv(snakemake.input.plan, sep="\t", dtype={"patient_id": str}),
    int(snakemake.wildcards.shard),
    image_size=params.image_size,
    out_h5=output.h5,
    out_sequences=output.sequences,
    out_qc=output.qc,
    out_inputs=output.inputs,
    on_bad_sequence=params.on_bad_sequence,
    truth_masks=Path(snakemake.input.source) / "truth" / "clean_masks.h5" if truth else None,
    out_truth_h5=truth,
    log=sys.stderr,
)
