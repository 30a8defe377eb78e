# EchoLatent: cohort studies of the heart in echocardiography through the latent space of VAEs.
#
#   snakemake --cores 8 --resources gpu=1          # the whole workflow on config/config.yaml
#   snakemake --cores 8 --configfile my.yaml       # a config of one's own
#   snakemake --workflow-profile profiles/slurm    # on a SLURM cluster
#
# Stages exchange data only through the documented files under results/ (see README.md).

import re
from pathlib import Path

from snakemake.utils import min_version

min_version("9.19")


# Snakemake's message for a broken YAML file names neither the file nor the line: check the
# workflow's own config file first (files given with --configfile are read by Snakemake
# before this line runs).
if Path("config/config.yaml").is_file():
    from echolatent.io.config_file import read_yaml

    read_yaml("config/config.yaml")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    shard=r"\d+",
    source="|".join(re.escape(source) for source in mask_sources()),
    model=r"[A-Za-z0-9][A-Za-z0-9_.-]*",


include: "workflow/rules/ingest.smk"
include: "workflow/rules/anatomy.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/temporal.smk"
include: "workflow/rules/encode.smk"
include: "workflow/rules/guarantees.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        cohort_outputs(),
        anatomy_outputs(),
        model_outputs(),
        [temporal_paths.latent_outputs(model, SHARDS) for model in MODELS],
        [temporal_paths.temporal_outputs(model, TEMPORAL, SYNTHETIC, SHARDS) for model in TEMPORAL_MODELS],
        guarantee_outputs(),
        stats_outputs(),
        rules.figures.input,  # every figure of the configured study, so the report holds them
    default_target: True


# Attempt, attempt-scaled runtime and the SLURM partition/account of every rule (common.smk).
job_resources(workflow.rules)
