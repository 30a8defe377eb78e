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
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=60,
    conda:
        "../../envs/ingest.yaml"
    script:
        "../scripts/anatomical_metrics.py"
