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
    benchmark:
        "logs/benchmarks/model_quality/{model}.tsv"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/model_quality.py"


rule study_quality:
    # The study's models side by side (one row per model and split; the test rows are held out).
    input:
        tables=expand("results/models/{model}/quality.tsv", model=list(MODELS)),
    output:
        quality=report("results/models/quality.tsv", caption="../report/study_quality.rst", category="Models"),
    log:
        "logs/study_quality.log",
    benchmark:
        "logs/benchmarks/study_quality.tsv"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/study_quality.py"
