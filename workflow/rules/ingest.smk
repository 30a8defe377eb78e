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
        "../../envs/ingest.yaml"
    script:
        "../scripts/simulate_cohort.py"


rule plan_cohort:
    input:
        source=cohort_source_path(),
    output:
        plan="results/cohort/plan.tsv",
    log:
        "logs/plan_cohort.log",
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
        "../../envs/ingest.yaml"
    script:
        "../scripts/plan_cohort.py"


rule ingest_shard:
    input:
        source=cohort_source_path(),
        plan="results/cohort/plan.tsv",
    output:
        h5="results/cohort/shard-{shard}.h5",
        sequences=temp("results/cohort/parts/sequences-{shard}.tsv"),
        qc=temp("results/cohort/parts/qc-{shard}.tsv"),
        inputs=temp("results/cohort/parts/inputs-{shard}.tsv"),
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
        "../../envs/ingest.yaml"
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
        "../../envs/ingest.yaml"
    script:
        "../scripts/merge_cohort.py"
