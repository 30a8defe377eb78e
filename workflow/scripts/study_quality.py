"""Rule study_quality: the reconstruction quality of every model of the study, side by side."""

import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

from echolatent.stages.encode import study_quality_stage  # noqa: E402

study_quality_stage(snakemake.input.tables, out=snakemake.output.quality)
