# Stage "temporal consistency" (TMI 2022): thresholds re-derived on the cohort's reference
# sequences, the metric's detection rates on a synthetic cohort's injected defects, and the
# correction of every sequence by smoothing its latent trajectory (before/after tables,
# corrected mask shards, NIfTI export for ITK-SNAP / 3D Slicer).
#
# Include after common.smk and before encode.smk (encode.smk reads TEMPORAL).

from echolatent.attributes import TEMPORAL_ATTRIBUTES

# Defaults of the `temporal:` config section (also in the config schema; config/README.md).
TEMPORAL_DEFAULTS = {
    "thresholds": "derived",  # derived | published | path of a thresholds TSV
    "reference": "auto",  # auto (observed if synthetic, else input) | truth | observed | input
    "reference_splits": ["train"],
    "latent_thresholds": "derived",  # derived | image
    "weight": 50.0,
    "max_weight": 128.0,
    "n_bisections": 5,
    "n_neighbours": 1,
    "margin": 0.0,
    "atrium": "keep",  # keep | drop (models without an LA class)
    "scope": "all",  # all | inconsistent
    "max_rounds": 1,
    "tighten": 0.5,
    "batch_size": 256,
    "export_nifti": True,
    "runtime_minutes": 60,
}
TEMPORAL = {**TEMPORAL_DEFAULTS, **config.get("temporal", {})}
CORRECTION_KEYS = ("weight", "max_weight", "n_bisections", "n_neighbours", "margin", "atrium", "scope",
                   "max_rounds", "tighten", "batch_size")

# Fail at parse time on nonsense correction settings, with the package's own message.
from echolatent.temporal.pipeline import CorrectionConfig

CorrectionConfig.from_dict({key: TEMPORAL[key] for key in CORRECTION_KEYS})


def temporal_reference():
    """Which masks are the reference sequences of the thresholds."""
    reference = TEMPORAL["reference"]
    if reference == "auto":
        return "observed" if SYNTHETIC else "input"
    if reference in ("truth", "observed") and not SYNTHETIC:
        raise ValueError(f"config: temporal.reference {reference!r} needs a synthetic cohort")
    return reference


def temporal_image_thresholds():
    """The image-space thresholds file the metric uses."""
    choice = TEMPORAL["thresholds"]
    if choice == "derived":
        return "results/temporal/thresholds.tsv"
    if choice == "published":
        return "resources/temporal_thresholds.tsv"
    return choice


def temporal_threshold_inputs(wildcards):
    source = "truth" if temporal_reference() == "truth" else "input"
    files = {
        "attributes": expand("results/attributes/{source}/shard-{shard}.parquet", source=source, shard=SHARDS),
        "patients": "results/cohort/patients.tsv",
    }
    if temporal_reference() == "observed":
        files["frames"] = "results/cohort/truth/frames.tsv"
    return files


def latent_threshold_inputs(wildcards):
    files = {
        "checkpoint": f"results/models/{wildcards.model}/checkpoint.pt",
        "bounds": f"results/models/{wildcards.model}/latent_bounds.tsv",
        "image": temporal_image_thresholds(),
    }
    if TEMPORAL["latent_thresholds"] == "derived":
        truth = temporal_reference() == "truth"
        files["reference_shards"] = expand(
            "results/cohort/truth/shard-{shard}.h5" if truth else "results/cohort/shard-{shard}.h5", shard=SHARDS
        )
        files["cohort_shards"] = expand("results/cohort/shard-{shard}.h5", shard=SHARDS)
        files["patients"] = "results/cohort/patients.tsv"
        if temporal_reference() == "observed":
            files["frames"] = "results/cohort/truth/frames.tsv"
    return files


def temporal_correction_inputs(wildcards):
    files = {
        "checkpoint": f"results/models/{wildcards.model}/checkpoint.pt",
        "shard": f"results/cohort/shard-{wildcards.shard}.h5",
        "image": temporal_image_thresholds(),
        "latent": f"results/temporal/{wildcards.model}/latent_thresholds.tsv",
    }
    if SYNTHETIC:
        files["truth"] = f"results/cohort/truth/shard-{wildcards.shard}.h5"
        files["frames"] = "results/cohort/truth/frames.tsv"
    return files


def temporal_outputs():
    """Targets of the temporal stage (for rule all)."""
    model = MODEL["name"]
    files = [f"results/temporal/{model}/summary.tsv"]
    files += expand("results/temporal/{model}/shard-{shard}.{ext}", model=model, shard=SHARDS, ext=["tsv", "h5"])
    if TEMPORAL["export_nifti"]:
        files += expand("results/temporal/{model}/nifti/shard-{shard}.tsv", model=model, shard=SHARDS)
    if SYNTHETIC:
        files.append("results/temporal/detection.tsv")
    return files


def latent_outputs():
    """Targets of the latent-encoding stage (for rule all)."""
    return expand("results/latents/{model}/shard-{shard}.{ext}", model=MODEL["name"], shard=SHARDS,
                  ext=["parquet", "h5"])


rule temporal_thresholds:
    input:
        unpack(temporal_threshold_inputs),
    output:
        thresholds="results/temporal/thresholds.tsv",
    log:
        "logs/temporal_thresholds.log",
    params:
        reference=temporal_reference(),
        splits=TEMPORAL["reference_splits"],
        names=list(TEMPORAL_ATTRIBUTES),
        cycle=cohort_cycle(),
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    localrule: True
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/temporal_thresholds.py"


rule temporal_detection:
    input:
        attributes=expand("results/attributes/input/shard-{shard}.parquet", shard=SHARDS),
        frames="results/cohort/truth/frames.tsv",
        thresholds=temporal_image_thresholds(),
    output:
        rates="results/temporal/detection.tsv",
    log:
        "logs/temporal_detection.log",
    params:
        cycle=cohort_cycle(),
        margin=TEMPORAL["margin"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    localrule: True
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/temporal_detection.py"


rule latent_thresholds:
    input:
        unpack(latent_threshold_inputs),
    output:
        thresholds="results/temporal/{model}/latent_thresholds.tsv",
    log:
        "logs/latent_thresholds/{model}.log",
    params:
        mode=TEMPORAL["latent_thresholds"],
        reference=temporal_reference(),
        splits=TEMPORAL["reference_splits"],
        cycle=cohort_cycle(),
        device=MODEL["training"].get("device", "auto"),
        batch_size=TEMPORAL["batch_size"],
    threads: 2
    resources:
        gpu=gpu_request(),
        mem_mb=mem_by_attempt(4000),
        runtime=TEMPORAL["runtime_minutes"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/latent_thresholds.py"


rule temporal_correction:
    input:
        unpack(temporal_correction_inputs),
    output:
        table="results/temporal/{model}/shard-{shard}.tsv",
        h5="results/temporal/{model}/shard-{shard}.h5",
    log:
        "logs/temporal_correction/{model}/{shard}.log",
    benchmark:
        "logs/benchmarks/temporal_correction/{model}/{shard}.tsv"
    params:
        settings={key: TEMPORAL[key] for key in CORRECTION_KEYS},
        cycle=cohort_cycle(),
        device=MODEL["training"].get("device", "auto"),
    threads: 2
    resources:
        gpu=gpu_request(),
        mem_mb=mem_by_attempt(6000),
        runtime=TEMPORAL["runtime_minutes"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/temporal_correction.py"


rule export_temporal_nifti:
    input:
        h5="results/temporal/{model}/shard-{shard}.h5",
    output:
        # The NIfTI files go to results/temporal/{model}/nifti/{patient}/ (the cohort's
        # per-patient layout); this manifest lists them and is the rule's declared output.
        manifest="results/temporal/{model}/nifti/shard-{shard}.tsv",
    log:
        "logs/export_temporal_nifti/{model}/{shard}.log",
    params:
        out_dir=lambda wildcards: f"results/temporal/{wildcards.model}/nifti",
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/export_temporal_nifti.py"


rule temporal_summary:
    input:
        tables=expand("results/temporal/{{model}}/shard-{shard}.tsv", shard=SHARDS),
    output:
        summary="results/temporal/{model}/summary.tsv",
    log:
        "logs/temporal_summary/{model}.log",
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/temporal_summary.py"
