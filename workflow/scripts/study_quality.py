"""Rule study_quality: the reconstruction quality of every model of the study, side by side."""

import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

from echolatent.models.quality import study_quality  # noqa: E402
from echolatent.shape_tables import write_table  # noqa: E402

write_table(study_quality(snakemake.input.tables), snakemake.output.quality)
