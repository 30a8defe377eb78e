"""Rule export_temporal_nifti: corrected sequences of one shard as NIfTI, one folder per patient."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (snakemake is injected)

from echolatent.temporal.export import export_nifti  # noqa: E402

table = export_nifti(
    snakemake.input.h5,
    snakemake.params.out_dir,
    manifest=snakemake.output.manifest,
    relative_to=snakemake.params.out_dir,
)
print(f"{len(table)} sequences written under {snakemake.params.out_dir}", file=sys.stderr)
