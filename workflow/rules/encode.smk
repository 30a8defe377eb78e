# Stage "latent encoding": every frame of every shard through the trained model's encoder:
# latent means and log-variances (one row per frame) and the reconstructions (a mask shard
# of the cohort layout, measurable by the anatomy stage).


rule encode_latents:
    input:
        checkpoint="results/models/{model}/checkpoint.pt",
        shard="results/cohort/shard-{shard}.h5",
    output:
        table="results/latents/{model}/shard-{shard}.parquet",
        h5="results/latents/{model}/shard-{shard}.h5",
    log:
        "logs/encode_latents/{model}/{shard}.log",
    benchmark:
        "logs/benchmarks/encode_latents/{model}/{shard}.tsv"
    params:
        device=MODEL["training"].get("device", "auto"),
        batch_size=TEMPORAL["batch_size"],
        torch_threads=TORCH_THREADS,
    threads: TORCH_THREADS
    resources:
        gpu=gpu_request(),
        mem_mb=mem_by_attempt(4000),
        runtime=TEMPORAL["runtime_minutes"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/encode_latents.py"


rule model_quality:
    # Evaluation, not selection: training chose its checkpoint on the val split alone.
    input:
        latents=expand("results/latents/{{model}}/shard-{shard}.parquet", shard=SHARDS),
        patients="results/cohort/patients.tsv",
    output:
        quality="results/models/{model}/quality.tsv",
    log:
        "logs/model_quality/{model}.log",
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/ingest.yaml"
    script:
        "../scripts/model_quality.py"
