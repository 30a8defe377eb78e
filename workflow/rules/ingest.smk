# Stage 1: the cohort. A synthetic cohort is simulated first; every cohort is then planned
# (splits, shards), ingested one shard per job, and merged into results/cohort/.


rule simulate_cohort:
    output:
        directory("results/synthetic"),
    log:
        "logs/simulate_cohort.log",
    benchmark:
        "logs/benchmarks/simulate_cohort.tsv"
    params:
        synthetic=COHORT["synthetic"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=60,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/simulate_cohort.py"


rule cohort_manifest:
    # Content (SHA-256) of the files planning reads: sheet, covariates, split lists, cfg files.
    # Refreshed at every parse (common.smk) and rewritten only when that content changes.
    input:
        source=cohort_source_path(),
    output:
        manifest="results/cohort/manifest/cohort.tsv",
    log:
        "logs/cohort_manifest.log",
    benchmark:
        "logs/benchmarks/cohort_manifest.tsv"
    params:
        **source_params(),
        extra_files=covariate_files(),
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=30,
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/input_manifest.py"


rule shard_manifest:
    # Content (SHA-256) of the sequence files of one shard's patients: a changed mask re-runs
    # that shard only.
    input:
        source=cohort_source_path(),
        plan="results/cohort/plan.tsv",
    output:
        manifest="results/cohort/manifest/shard-{shard}.tsv",
    log:
        "logs/shard_manifest/{shard}.log",
    benchmark:
        "logs/benchmarks/shard_manifest/{shard}.tsv"
    params:
        **source_params(),
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=30,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/input_manifest.py"


rule plan_cohort:
    input:
        unpack(manifest_input("cohort")),
        source=cohort_source_path(),
        covariates=covariate_files(),
    output:
        plan="results/cohort/plan.tsv",
    log:
        "logs/plan_cohort.log",
    benchmark:
        "logs/benchmarks/plan_cohort.tsv"
    params:
        source=COHORT["source"],
        cycle=cohort_cycle(),
        layout=COHORT["layout"],
        shards=len(SHARDS),
        seed=COHORT["seed"],
        fractions=split_fractions(),
        split_source=COHORT["split"]["source"],
        covariates=COHORT["covariates"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/plan_cohort.py"


rule ingest_shard:
    input:
        unpack(manifest_input("shard-{shard}")),
        source=cohort_source_path(),
        plan="results/cohort/plan.tsv",
    output:
        h5="results/cohort/shard-{shard}.h5",
        # Kept (not temp): when one shard's inputs change, only that shard is ingested again
        # and the merge re-uses the other shards' tables.
        sequences="results/cohort/parts/sequences-{shard}.tsv",
        qc="results/cohort/parts/qc-{shard}.tsv",
        inputs="results/cohort/parts/inputs-{shard}.tsv",
        **truth_shard_outputs(),
    log:
        "logs/ingest_shard/{shard}.log",
    benchmark:
        "logs/benchmarks/ingest_shard/{shard}.tsv"
    params:
        source=COHORT["source"],
        cycle=cohort_cycle(),
        layout=COHORT["layout"],
        image_size=COHORT["image_size"],
        on_bad_sequence=config["qc"]["on_bad_sequence"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(3000),
        runtime=120,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/ingest_shard.py"


rule merge_cohort:
    input:
        source=cohort_source_path(),
        plan="results/cohort/plan.tsv",
        sequences=expand("results/cohort/parts/sequences-{shard}.tsv", shard=SHARDS),
        qc=expand("results/cohort/parts/qc-{shard}.tsv", shard=SHARDS),
        inputs=expand("results/cohort/parts/inputs-{shard}.tsv", shard=SHARDS),
    output:
        patients="results/cohort/patients.tsv",
        sequences="results/cohort/sequences.tsv",
        qc="results/cohort/qc.tsv",
        provenance="results/cohort/provenance.json",
        **truth_table_outputs(),
    log:
        "logs/merge_cohort.log",
    benchmark:
        "logs/benchmarks/merge_cohort.tsv"
    params:
        source=COHORT["source"],
        cycle=cohort_cycle(),
        layout=COHORT["layout"],
        config={"cohort": COHORT, "qc": config["qc"]},
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/merge_cohort.py"
