"""Rules cohort_manifest and shard_manifest: SHA-256 of the input files a cohort step reads."""

import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

import pandas as pd  # noqa: E402

from echolatent.ingest import open_source  # noqa: E402
from echolatent.io.manifest import cohort_files, shard_files, write_manifest  # noqa: E402

params = snakemake.params
source = open_source(params.source, snakemake.input.source, cycle=params.cycle, layout=params.layout)
if "plan" in snakemake.input.keys():
    plan = pd.read_csv(snakemake.input.plan, sep="\t", dtype={"patient_id": str})
    files = shard_files(source, plan, int(snakemake.wildcards.shard))
else:
    files = cohort_files(source) + list(params.extra_files)
write_manifest(snakemake.output.manifest, files)
