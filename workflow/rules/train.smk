# Stage "VAE training": every model of the study (config models:), trained on the train split
# of the cohort shards and selected on the validation split.


rule train_vae:
    input:
        unpack(training_inputs),
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
        training=lambda wildcards: configured_model(wildcards.model)["training"],
        attributes=lambda wildcards: configured_model(wildcards.model)["attributes"],
    threads: torch_threads
    resources:
        gpu=gpu_request,
        mem_mb=mem_by_attempt(8000),
        runtime=lambda wildcards: configured_model(wildcards.model)["runtime_minutes"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train_vae.py"
