# Stage "population statistics": the analysis table (one row per patient), Table 1 and the
# covariate-adjusted group effects. A clinical-plus-attributes analysis reads no model output,
# so it needs no trained model (population.families).


rule stats_patients:
    input:
        unpack(stats_inputs),
    output:
        table="results/stats/patients.tsv",
        exclusions="results/stats/exclusions.tsv",
    log:
        "logs/stats/patients.log",
    benchmark:
        "logs/benchmarks/stats/patients.tsv"
    params:
        groups=population_groups(),
        splits=POPULATION["splits"],
        covariates=POPULATION["covariates"],
        min_group_size=POPULATION["min_group_size"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=30,
    conda:
        "../../envs/stats.yaml"
    script:
        "../scripts/stats_patients.py"


rule stats_table1:
    input:
        table="results/stats/patients.tsv",
    output:
        tsv="results/stats/table1.tsv",
        md="results/stats/table1.md",
    log:
        "logs/stats/table1.log",
    benchmark:
        "logs/benchmarks/stats/table1.tsv"
    params:
        groups=population_groups(),
        skewed=POPULATION["skewed"],
        min_group_size=POPULATION["min_group_size"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    conda:
        "../../envs/stats.yaml"
    script:
        "../scripts/stats_table1.py"


rule stats_effects:
    input:
        table="results/stats/patients.tsv",
    output:
        effects="results/stats/effects.tsv",
    log:
        "logs/stats/effects.log",
    benchmark:
        "logs/benchmarks/stats/effects.tsv"
    params:
        families=POPULATION["families"],
        covariates=POPULATION["covariates"],
        groups=population_groups(),
        min_group_size=POPULATION["min_group_size"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=30,
    conda:
        "../../envs/stats.yaml"
    script:
        "../scripts/stats_effects.py"


rule stats_agreement:
    input:
        unpack(agreement_inputs),
    output:
        agreement="results/stats/agreement.tsv",
        exclusions="results/stats/agreement_exclusions.tsv",
    log:
        "logs/stats/agreement.log",
    benchmark:
        "logs/benchmarks/stats/agreement.tsv"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    conda:
        "../../envs/stats.yaml"
    script:
        "../scripts/stats_agreement.py"


rule stats_curves:
    input:
        unpack(curves_inputs),
    output:
        curves="results/stats/curves.tsv",
        tests="results/stats/curve_tests.tsv",
        intervals="results/stats/curve_intervals.tsv",
        exclusions="results/stats/curve_exclusions.tsv",
    log:
        "logs/stats/curves.log",
    benchmark:
        "logs/benchmarks/stats/curves.tsv"
    params:
        families=POPULATION["families"],
        covariates=POPULATION["covariates"],
        groups=population_groups(),
        min_group_size=POPULATION["min_group_size"],
        n_points=POPULATION["curve_points"],
        n_permutations=POPULATION["n_permutations"],
        seed=POPULATION["seed"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=30,
    conda:
        "../../envs/stats.yaml"
    script:
        "../scripts/stats_curves.py"


rule stats_latent:
    input:
        table="results/stats/patients.tsv",
        latents=expand("results/latents/{{model}}/shard-{shard}.parquet", shard=SHARDS),
        attributes=expand("results/attributes/input/shard-{shard}.parquet", shard=SHARDS),
        patients="results/cohort/patients.tsv",
    output:
        **{name: f"results/stats/latent/{{model}}/{name}.tsv" for name in LATENT_TABLES},
    log:
        "logs/stats/latent/{model}.log",
    benchmark:
        "logs/benchmarks/stats/latent/{model}.tsv"
    params:
        regularised=lambda wildcards: configured_model(wildcards.model)["attributes"],
        covariates=POPULATION["covariates"],
        groups=population_groups(),
        min_group_size=POPULATION["min_group_size"],
        pca_components=POPULATION["pca_components"],
        n_permutations=POPULATION["n_permutations"],
        seed=POPULATION["seed"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=30,
    conda:
        "../../envs/stats.yaml"
    script:
        "../scripts/stats_latent.py"


rule stats_latent_decode:
    # The network decodes the codes of the latent analyses (modes, group means, group direction).
    input:
        codes="results/stats/latent/{model}/codes.tsv",
        checkpoint="results/models/{model}/checkpoint.pt",
        sequences="results/cohort/sequences.tsv",
    output:
        h5="results/stats/latent/{model}/decoded.h5",
        table="results/stats/latent/{model}/decoded.tsv",
    log:
        "logs/stats/latent_decode/{model}.log",
    benchmark:
        "logs/benchmarks/stats/latent_decode/{model}.tsv"
    params:
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
        "../scripts/stats_latent_decode.py"


rule stats_classification:
    input:
        table="results/stats/patients.tsv",
    output:
        **{name: f"results/stats/{file}.tsv" for name, file in CLASSIFICATION_TABLES.items()},
    log:
        "logs/stats/classification.log",
    benchmark:
        "logs/benchmarks/stats/classification.tsv"
    params:
        models=list(MODELS) if "latent" in POPULATION["families"] else [],
        clinical_features=POPULATION["classification"]["clinical_features"],
        latent_summaries=POPULATION["classification"]["latent_summaries"],
        groups=population_groups(),
        min_group_size=POPULATION["min_group_size"],
        folds=POPULATION["classification"]["folds"],
        repeats=POPULATION["classification"]["repeats"],
        n_bootstrap=POPULATION["classification"]["n_bootstrap"],
        seed=POPULATION["seed"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=30,
    conda:
        "../../envs/stats.yaml"
    script:
        "../scripts/stats_classification.py"
