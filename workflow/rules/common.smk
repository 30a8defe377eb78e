# Helpers shared by all rules: config validation, input functions, resources.

import os
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

COHORT = config["cohort"]
SHARDS = list(range(int(COHORT["shards"])))
SYNTHETIC = COHORT["source"] == "synthetic"


if SYNTHETIC:
    # Fail at parse time, with the simulator's own message, on a nonsense synthetic config.
    from echolatent.simulate import SimulationConfig

    SimulationConfig.from_dict(COHORT["synthetic"])
else:
    if not COHORT.get("path"):
        raise ValueError(f"config: cohort.path is required when cohort.source is {COHORT['source']!r}")
    # Opening the source checks it now (a sheet row by row, with the package's messages naming
    # the sheet, the 1-based row and the column), not in the first job.
    from echolatent.stages.ingest import open_source

    SOURCE = open_source(COHORT["source"], COHORT["path"], cycle=COHORT["cycle"], layout=COHORT["layout"])
    if workflow.is_main_process:
        # Changed input files (content, not timestamps) re-run the steps that read them.
        from echolatent.io.manifest import refresh_manifests

        for changed in refresh_manifests(SOURCE, "results/cohort/manifest", "results/cohort/plan.tsv", SHARDS):
            logger.info(f"input files changed since the last run: {changed} updated")



# The study's models, each entry completed with its defaults and checked by the trainer's own
# settings (echolatent.models.config imports no torch: building the DAG never loads it).
from echolatent.gpu_slots import may_have_gpu
from echolatent.models.config import study_models
from echolatent.stages.stats import CLASSIFICATION_TABLES, LATENT_TABLES

MODELS = study_models(config)
#: Models the temporal stage corrects with: the AR-VAEs (their regularised dims carry the constraint).
TEMPORAL_MODELS = [name for name, entry in MODELS.items() if entry["kind"] == "ar-vae"]

# The post-processing chain: temporal and anatomical corrections in the configured order, each
# reading the masks of the step before it (echolatent.postprocess).
from echolatent import postprocess as guarantee_paths

GUARANTEES = config["guarantees"]
CHAIN = guarantee_paths.postprocess_chain(GUARANTEES, MODELS, TEMPORAL_MODELS)
#: The model of the anatomical guarantees ("" when the stage is off).
GUARANTEE_MODEL = GUARANTEES["model"]

def guarantee_outputs():
    """Targets of the stage for rule all (none when guarantees.model is empty)."""
    if not GUARANTEE_MODEL:
        return []
    return guarantee_paths.guarantee_outputs(
        GUARANTEE_MODEL, SHARDS, export_nifti=config["temporal"]["correction"]["export_nifti"]
    )


def anatomical_correction_inputs(wildcards):
    shard, _ = guarantee_paths.anatomical_input(CHAIN, wildcards.model, wildcards.shard)
    files = {
        "checkpoint": f"results/models/{wildcards.model}/checkpoint.pt",
        "codes": f"results/guarantees/{wildcards.model}/valid_codes.h5",
        "shard": shard,
        "patients": "results/cohort/patients.tsv",
    }
    if SYNTHETIC:
        files["truth"] = f"results/cohort/truth/shard-{wildcards.shard}.h5"
    return files


# Idle OpenMP threads of torch sleep instead of spinning (on a small shared CPU, spinning made
# training up to 10x slower); the jobs inherit this environment. Set it yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def configured_model(name):
    """The settings of model ``name``; any name the config does not list is a clear error."""
    if name not in MODELS:
        raise ValueError(f"model {name!r} is not configured; the study's models (config models:) are "
                         f"{sorted(MODELS)}")
    return MODELS[name]


def training_inputs(wildcards):
    """What model {model} trains on; a model the config does not list fails here, at DAG build."""
    configured_model(wildcards.model)
    return {"shards": expand("results/cohort/shard-{shard}.h5", shard=SHARDS), "patients": "results/cohort/patients.tsv"}


def torch_threads(wildcards):
    """PyTorch's CPU threads in the rules running model {model} (models.{model}.training.num_threads).

    Results depend on this number and never on --cores: Snakemake may give the job fewer cores,
    the job keeps its threads.
    """
    return int(configured_model(wildcards.model)["training"]["num_threads"])


def model_device(wildcards):
    return configured_model(wildcards.model)["training"].get("device", "auto")


def local_cpu_only():
    """A local run on a machine without an NVIDIA GPU: `device: auto` runs on the CPU there, so its
    network jobs take no GPU token and `--resources gpu=1` does not run them one at a time. A
    cluster run (or a job on a node) keeps the token: the compute nodes' GPUs are not visible
    here. Asked when resources are evaluated, not at parse time: the executor is not known
    while the Snakefile is read (``workflow.local_exec`` is then always true)."""
    return workflow.local_exec and not workflow.remote_exec and not may_have_gpu()


def gpu_request(wildcards):
    """1 GPU token for rules running a network, unless the model runs on the CPU (pinned, or
    ``auto`` in a local run without a GPU)."""
    device = model_device(wildcards)
    return 0 if device == "cpu" or (device == "auto" and local_cpu_only()) else 1


def model_outputs():
    return expand(
        "results/models/{model}/{name}",
        model=list(MODELS),
        name=["checkpoint.pt", "history.tsv", "latent_bounds.tsv", "config.json", "summary.json", "quality.tsv"],
    ) + ["results/models/quality.tsv"]


def cohort_source_path():
    """Where the cohort is read from: the simulator's store, or the user's folder/sheet."""
    return "results/synthetic" if SYNTHETIC else COHORT["path"]


def source_params():
    """How to open the cohort source (params of the rules that read it)."""
    return {"source": COHORT["source"], "cycle": COHORT["cycle"], "layout": COHORT["layout"]}


def covariate_files():
    """The per-patient covariate table, when the config names one."""
    return [COHORT["covariates"]] if COHORT.get("covariates") else []


def manifest_input(name):
    """The input manifest ``name`` of a user cohort; none for the simulated one (a workflow output)."""

    def manifest(wildcards):
        if SYNTHETIC:
            return {}
        return {"manifest": f"results/cohort/manifest/{name}.tsv".format(shard=wildcards.get("shard"))}

    return manifest


def cohort_cycle():
    return COHORT["cycle"]


def split_fractions():
    """The train/val/test fractions, checked (>= 0, summing to 1) when the rules are parsed."""
    from echolatent.ingest.plan import split_fractions as checked_fractions

    return checked_fractions(COHORT["split"])


def truth_shard_outputs():
    return {"truth": "results/cohort/truth/shard-{shard}.h5"} if SYNTHETIC else {}


def truth_table_outputs():
    """The simulator's truth tables, copied next to the cohort (synthetic cohorts only)."""
    if not SYNTHETIC:
        return {}
    return {
        "truth_patients": "results/cohort/truth/patients.tsv",
        "truth_frames": "results/cohort/truth/frames.tsv",
    }


def cohort_outputs():
    """The files that make up results/cohort/ (the ingestion stage's contract)."""
    files = [
        "results/cohort/patients.tsv",
        "results/cohort/sequences.tsv",
        "results/cohort/qc.tsv",
        "results/cohort/provenance.json",
    ]
    files += expand("results/cohort/shard-{shard}.h5", shard=SHARDS)
    if SYNTHETIC:
        files += expand("results/cohort/truth/shard-{shard}.h5", shard=SHARDS)
        files += list(truth_table_outputs().values())
    return files


def mask_sources():
    """Mask sources measured by the anatomy stage: the input, the truth (synthetic cohorts) and the
    masks of each post-processing step ("temporal/{model}", "guaranteed/{model}")."""
    sources = ["input", "truth"] if SYNTHETIC else ["input"]
    return sources + [f"{kind}/{model}" for kind, model in CHAIN]


#: A model's mask shards measured by the clinical stage: masks name -> results folder.
MODEL_MASK_FOLDERS = {"reconstruction": "latents", "temporal": "temporal", "guaranteed": "guarantees"}


def mask_source_inputs(wildcards):
    """The shard holding a mask source's masks (and the cohort shard for its attributes)."""
    cohort_shard = f"results/cohort/shard-{wildcards.shard}.h5"
    if wildcards.source == "input":
        return {"masks": cohort_shard}
    if wildcards.source == "truth":
        return {"masks": f"results/cohort/truth/shard-{wildcards.shard}.h5", "cohort_shard": cohort_shard}
    kind, _, model = wildcards.source.partition("/")
    if (kind, model) in CHAIN:
        return {"masks": guarantee_paths.mask_source_shard(kind, model, wildcards.shard)}
    raise ValueError(f"unknown mask source {wildcards.source!r}")


def analysis_masks():
    """The masks the statistics describe (population.masks): ("input", None), or the final step of
    the post-processing chain as (source, clinical indices file)."""
    if POPULATION["masks"] == "input":
        return "input", "results/clinical/indices.tsv"
    final = guarantee_paths.final_masks(CHAIN)
    if final is None:
        raise ValueError("config: population.masks is final, but no post-processing runs (guarantees.postprocess "
                         "with an AR-VAE for temporal, guarantees.model for anatomical)")
    kind, model = final
    return f"{kind}/{model}", f"results/clinical/{kind}/{model}/indices.tsv"


def anatomy_outputs():
    return expand(
        "results/{table}/{source}/shard-{shard}.parquet",
        table=["anatomy", "attributes"],
        source=mask_sources(),
        shard=SHARDS,
    ) + ["results/clinical/indices.tsv"]


CLUSTER = config["cluster"]


def mem_by_attempt(base_mb):
    """Memory request that grows with each retry (cluster OOM kills are retried bigger), capped at
    cluster.max_mem_mb."""

    def mem_mb(wildcards, attempt):
        return min(base_mb * attempt, max(base_mb, CLUSTER["max_mem_mb"]))

    return mem_mb


def job_resources(defined):
    """Resources given to every defined step in one place, at the end of the Snakefile.

    - ``attempt``: the job's attempt (1, 2, ...), for its log (echolatent.stages.logs keeps every
      attempt; Snakemake's script object does not carry it);
    - ``runtime``: a fixed request grows with each retry, capped at cluster.max_runtime;
    - ``slurm_partition`` / ``slurm_account`` (when the cluster section sets them). GPU jobs (those
      whose ``gpu`` resource is non-zero) go on cluster.gpu_partition, the others on
      cluster.cpu_partition.
    """
    cpu, gpu = CLUSTER["cpu_partition"], CLUSTER["gpu_partition"] or CLUSTER["cpu_partition"]
    for step in defined:
        resources = step.resources
        resources["attempt"] = lambda wildcards, attempt: attempt
        runtime = resources["runtime"] if "runtime" in resources else None
        if runtime is not None and not runtime.is_evaluable() and isinstance(runtime.value, int):
            resources["runtime"] = lambda wildcards, attempt, base=runtime.value: min(
                base * attempt, max(base, CLUSTER["max_runtime"]))
        if cpu or gpu:
            request = resources["gpu"] if "gpu" in resources else None
            resources["slurm_partition"] = lambda wildcards, request=request: (
                gpu if request is not None and request.evaluate(wildcards=wildcards, attempt=1).value else cpu)
        if CLUSTER["account"]:
            resources["slurm_account"] = CLUSTER["account"]


# --------------------------------------------------------------------------- population statistics
POPULATION = config["population"]


def population_groups():
    """The compared groups [control, case]: population.groups, else the simulator's (synthetic
    cohorts), else empty (the stage then takes the cohort's two groups, one named control)."""
    if POPULATION["groups"]:
        if len(set(POPULATION["groups"])) != 2:
            raise ValueError(f"config: population.groups must name two different groups [control, case], got "
                             f"{POPULATION['groups']}")
        return list(POPULATION["groups"])
    if SYNTHETIC:
        from echolatent.simulate import SimulationConfig

        return list(SimulationConfig.from_dict(COHORT["synthetic"]).population.groups)
    return []


def stats_inputs(wildcards):
    """What the analysis table reads: no model output unless population.families names latent."""
    source, clinical = analysis_masks()
    inputs = {
        "patients": "results/cohort/patients.tsv",
        "sequences": "results/cohort/sequences.tsv",
        "clinical": clinical,
        "attributes": expand("results/attributes/{source}/shard-{shard}.parquet", source=source, shard=SHARDS),
        "anatomy": expand("results/anatomy/{source}/shard-{shard}.parquet", source=source, shard=SHARDS),
    }
    if "latent" in POPULATION["families"]:
        inputs["latents"] = expand("results/latents/{model}/shard-{shard}.parquet", model=list(MODELS), shard=SHARDS)
        # QC flags after the temporal correction: only when the study trains its models anyway
        inputs["corrections"] = expand("results/temporal/{model}/shard-{shard}.tsv", model=TEMPORAL_MODELS,
                                       shard=SHARDS)
    return inputs


def curves_inputs(wildcards):
    """The frame tables of the curves: attributes of the input masks, and latent means when
    population.families names latent."""
    inputs = {
        "table": "results/stats/patients.tsv",
        "sequences": "results/cohort/sequences.tsv",
        "attributes": expand("results/attributes/{source}/shard-{shard}.parquet", source=analysis_masks()[0],
                             shard=SHARDS),
    }
    if "latent" in POPULATION["families"]:
        inputs["latents"] = expand("results/latents/{model}/shard-{shard}.parquet", model=list(MODELS), shard=SHARDS)
    return inputs


def agreement_inputs(wildcards):
    """The clinical indices of every mask source: input, each model's reconstructions and temporally
    corrected masks (only when the study trains its models: latent in population.families), truth."""
    inputs = {"input_indices": "results/clinical/indices.tsv", "patients": "results/cohort/patients.tsv"}
    if "latent" in POPULATION["families"]:
        inputs["reconstruction"] = expand("results/clinical/reconstruction/{model}/indices.tsv", model=list(MODELS))
        inputs["temporal"] = expand("results/clinical/temporal/{model}/indices.tsv", model=TEMPORAL_MODELS)
    if SYNTHETIC:
        inputs["truth"] = "results/cohort/truth/patients.tsv"
    return inputs


def stats_outputs():
    """The statistics tables of the default target. The agreement always; the group comparisons when
    the compared groups are known at parse time (a synthetic cohort, or population.groups set); a
    CAMUS or sheet cohort asks for those by name otherwise."""
    outputs = ["results/stats/agreement.tsv"]  # needs no groups
    if not (SYNTHETIC or POPULATION["groups"]):
        return outputs
    return outputs + ["results/stats/patients.tsv", "results/stats/exclusions.tsv", "results/stats/table1.tsv",
                      "results/stats/table1.md", "results/stats/effects.tsv", "results/stats/curves.tsv",
                      "results/stats/classification.tsv", *latent_stats_outputs()]


def latent_stats_outputs():
    """The latent-space analyses of every model, with their decoded shapes (latent in population.families)."""
    if "latent" not in POPULATION["families"]:
        return []
    names = [f"{name}.tsv" for name in LATENT_TABLES] + ["decoded.h5", "decoded.tsv"]
    return expand("results/stats/latent/{model}/{name}", model=list(MODELS), name=names)
