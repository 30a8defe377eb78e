# Stage "VAE training": one model per config (model.name), trained on the train split of
# the cohort shards and selected on the validation split.


rule train_vae:
    input:
        shards=expand("results/cohort/shard-{shard}.h5", shard=SHARDS),
        patients="results/cohort/patients.tsv",
    output:
        checkpoint="results/models/{model}/checkpoint.pt",
        history="results/models/{model}/history.tsv",
        bounds="results/models/{model}/latent_bounds.tsv",
        config="results/models/{model}/config.json",
        summary="results/models/{model}/summary.json",
    # last.pt (written every epoch beside the outputs) is deliberately not an output:
    # Snakemake deletes the outputs of a failed job, and a re-run resumes from last.pt.
    log:
        "logs/train_vae/{model}.log",
    benchmark:
        "logs/benchmarks/train_vae/{model}.tsv"
    params:
        training=MODEL["training"],
        attributes=MODEL["attributes"],
    threads: TORCH_THREADS
    resources:
        gpu=gpu_request(),
        mem_mb=mem_by_attempt(8000),
        runtime=MODEL["runtime_minutes"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train_vae.py"
