"""Rule export_temporal_nifti: corrected sequences of one shard as NIfTI, one folder per patient."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (snakemake is injected)

from echolatent.stages.temporal import export_stage  # noqa: E402

export_stage(snakemake.input.h5, snakemake.params.out_dir, manifest=snakemake.output.manifest, log=sys.stderr)
