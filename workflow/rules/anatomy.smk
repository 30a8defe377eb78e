# Stage "anatomical evaluation": the 12 criteria and the shape attributes of every frame,
# per shard and per mask source; clinical indices per patient.


rule anatomical_metrics:
    input:
        unpack(mask_source_inputs),
    output:
        criteria="results/anatomy/{source}/shard-{shard}.parquet",
        attributes="results/attributes/{source}/shard-{shard}.parquet",
    log:
        "logs/anatomical_metrics/{source}/{shard}.log",
    benchmark:
        "logs/benchmarks/anatomical_metrics/{source}/{shard}.tsv"
    params:
        dataset="mask_native",
        # criteria 9-12 on an isotropic grid of this many mm (1-8 on the native grid), or "native"
        grid=config["anatomy"]["grid"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=60,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/anatomical_metrics.py"


rule clinical_indices:
    input:
        shards=expand("results/cohort/shard-{shard}.h5", shard=SHARDS),
    output:
        indices="results/clinical/indices.tsv",
    log:
        "logs/clinical_indices.log",
    benchmark:
        "logs/benchmarks/clinical_indices.tsv"
    params:
        dataset="mask_native",
        disc_rule=config["clinical"]["disc_rule"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=60,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/clinical_indices.py"


rule clinical_indices_model:
    # The same indices on a model's masks: its reconstructions (results/latents/{model}) or the
    # temporally corrected masks (results/temporal/{model}); compared with the input's in
    # results/stats/agreement.tsv.
    input:
        shards=lambda wildcards: expand(
            "results/{folder}/{model}/shard-{shard}.h5",
            folder=MODEL_MASK_FOLDERS[wildcards.masks],
            model=wildcards.model,
            shard=SHARDS,
        ),
    output:
        indices="results/clinical/{masks}/{model}/indices.tsv",
    log:
        "logs/clinical_indices/{masks}/{model}.log",
    benchmark:
        "logs/benchmarks/clinical_indices/{masks}/{model}.tsv"
    wildcard_constraints:
        masks="|".join(MODEL_MASK_FOLDERS),
    params:
        dataset="mask_native",
        disc_rule=config["clinical"]["disc_rule"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=60,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/clinical_indices.py"
