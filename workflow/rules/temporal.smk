# Stage "temporal consistency" (TMI 2022): thresholds re-derived on the cohort's reference
# sequences, the metric's detection rates on a synthetic cohort's injected defects, and the
# correction of every sequence by smoothing its latent trajectory (before/after tables,
# corrected mask shards, NIfTI export for ITK-SNAP / 3D Slicer).
#
# Include after common.smk and before encode.smk (encode.smk reads TEMPORAL). Path logic lives
# in echolatent.temporal.workflow; rule all takes temporal_paths.temporal_outputs(...) and
# temporal_paths.latent_outputs(...).

from echolatent.temporal import workflow as temporal_paths

# The `temporal:` config section with the schema's defaults (validate() in common.smk filled
# them in already; this also checks them with the package's messages).
TEMPORAL = temporal_paths.settings(config)


rule temporal_thresholds:
    input:
        unpack(lambda wildcards: temporal_paths.threshold_inputs(TEMPORAL, SYNTHETIC, SHARDS)),
    output:
        thresholds="results/temporal/thresholds.tsv",
    log:
        "logs/temporal_thresholds.log",
    benchmark:
        "logs/benchmarks/temporal_thresholds.tsv"
    params:
        reference=temporal_paths.reference(TEMPORAL, SYNTHETIC),
        rule=temporal_paths.threshold_rule(TEMPORAL, SYNTHETIC),  # max for clean references, robust for input
        robust_k=TEMPORAL["thresholds"]["robust_k"],
        splits=TEMPORAL["thresholds"]["reference_splits"],
        names=temporal_paths.threshold_names(TEMPORAL),  # physical (mm) columns unless temporal.thresholds.units: pixels
        cycle=cohort_cycle(),
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/temporal_thresholds.py"


rule temporal_detection:
    input:
        attributes=expand("results/attributes/input/shard-{shard}.parquet", shard=SHARDS),
        frames="results/cohort/truth/frames.tsv",
        patients="results/cohort/patients.tsv",
        thresholds=temporal_paths.image_thresholds(TEMPORAL),
    output:
        rates=report("results/temporal/detection.tsv", caption="../report/detection.rst", category="Temporal consistency"),
    log:
        "logs/temporal_detection.log",
    benchmark:
        "logs/benchmarks/temporal_detection.tsv"
    params:
        cycle=cohort_cycle(),
        margin=TEMPORAL["thresholds"]["margin"],
        detector=TEMPORAL["thresholds"]["detector"],  # auto: spikes for full cycles, deviation for half
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/temporal_detection.py"


rule latent_thresholds:
    input:
        unpack(lambda wildcards: temporal_paths.latent_threshold_inputs(wildcards.model, TEMPORAL, SYNTHETIC, SHARDS)),
    output:
        thresholds="results/temporal/{model}/latent_thresholds.tsv",
    log:
        "logs/latent_thresholds/{model}.log",
    benchmark:
        "logs/benchmarks/latent_thresholds/{model}.tsv"
    params:
        mode=TEMPORAL["thresholds"]["latent"],
        reference=temporal_paths.reference(TEMPORAL, SYNTHETIC),
        splits=TEMPORAL["thresholds"]["reference_splits"],
        cycle=cohort_cycle(),
        device=model_device,
        batch_size=config["encoding"]["batch_size"],
        torch_threads=torch_threads,
    threads: torch_threads
    resources:
        gpu=gpu_request,
        mem_mb=mem_by_attempt(4000),
        runtime=config["encoding"]["runtime_minutes"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/latent_thresholds.py"


rule temporal_correction:
    input:
        unpack(
            lambda wildcards: temporal_paths.correction_inputs(wildcards.model, wildcards.shard, TEMPORAL, SYNTHETIC)
            # the masks corrected: the cohort's, or the anatomically corrected ones (guarantees.postprocess)
            | {"shard": guarantee_paths.temporal_input(CHAIN, wildcards.model, wildcards.shard)}
            # and their criteria from the anatomy stage: only the frames the correction changes are measured
            | guarantee_paths.temporal_input_criteria(CHAIN, wildcards.model, wildcards.shard, config["anatomy"]["grid"])
        ),
    output:
        table="results/temporal/{model}/shard-{shard}.tsv",
        h5="results/temporal/{model}/shard-{shard}.h5",
    log:
        "logs/temporal_correction/{model}/{shard}.log",
    benchmark:
        "logs/benchmarks/temporal_correction/{model}/{shard}.tsv"
    params:
        settings=temporal_paths.correction_settings(config),
        cycle=cohort_cycle(),
        device=model_device,
        torch_threads=torch_threads,
    threads: torch_threads
    resources:
        gpu=gpu_request,
        mem_mb=mem_by_attempt(6000),
        runtime=TEMPORAL["correction"]["runtime_minutes"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/temporal_correction.py"


rule export_temporal_nifti:
    input:
        h5="results/temporal/{model}/shard-{shard}.h5",
    output:
        # {patient}/{patient}_{view}_sequence_gt_corrected.nii.gz (the cohort's per-patient
        # layout) and manifest.tsv listing them
        folder=directory("results/temporal/{model}/nifti/shard-{shard}"),
    log:
        "logs/export_temporal_nifti/{model}/{shard}.log",
    benchmark:
        "logs/benchmarks/export_temporal_nifti/{model}/{shard}.tsv"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/export_nifti.py"


rule temporal_summary:
    input:
        tables=expand("results/temporal/{{model}}/shard-{shard}.tsv", shard=SHARDS),
    output:
        summary=report(
            "results/temporal/{model}/summary.tsv",
            caption="../report/temporal_summary.rst",
            category="Temporal consistency",
        ),
    log:
        "logs/temporal_summary/{model}.log",
    benchmark:
        "logs/benchmarks/temporal_summary/{model}.tsv"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/temporal_summary.py"
