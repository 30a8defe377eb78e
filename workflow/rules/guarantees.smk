# Stage "anatomical guarantees" (TMI 2020): the latent space of guarantees.model is filled with
# codes whose decodings pass the 12 criteria, and every frame that fails a criterion is replaced by
# the valid shape nearest to it (valid frames untouched). The corrected shards are measured by the
# anatomy stage like any other mask source (results/anatomy/guaranteed/{model}/).
#
# Include after common.smk (CHAIN, GUARANTEES and the input functions of these rules) and
# encode.smk. Path logic lives in echolatent.postprocess.


rule densify_latent_space:
    input:
        checkpoint="results/models/{model}/checkpoint.pt",
        latents=expand("results/latents/{{model}}/shard-{shard}.parquet", shard=SHARDS),
        patients="results/cohort/patients.tsv",
        sequences="results/cohort/sequences.tsv",
    output:
        codes="results/guarantees/{model}/valid_codes.h5",
        summary="results/guarantees/{model}/densification.json",
    log:
        "logs/guarantees/densify/{model}.log",
    benchmark:
        "logs/benchmarks/densify_latent_space/{model}.tsv"
    params:
        splits=GUARANTEES["splits"],
        n_samples=GUARANTEES["n_samples"],
        sampler=GUARANTEES["sampler"],
        bandwidth=GUARANTEES["bandwidth"],
        bound_quantile=GUARANTEES["bound_quantile"],
        seed=GUARANTEES["seed"],
        grid=config["anatomy"]["grid"],  # checked as the anatomy stage measures
        device=model_device,
        batch_size=config["encoding"]["batch_size"],
        torch_threads=torch_threads,
    threads: torch_threads
    resources:
        gpu=gpu_request,
        mem_mb=mem_by_attempt(4000),
        runtime=GUARANTEES["runtime_minutes"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/densify_latent_space.py"


rule anatomical_correction:
    input:
        unpack(anatomical_correction_inputs),
    output:
        h5="results/guarantees/{model}/shard-{shard}.h5",
        table="results/guarantees/{model}/shard-{shard}.tsv",
    log:
        "logs/guarantees/correction/{model}/{shard}.log",
    benchmark:
        "logs/benchmarks/anatomical_correction/{model}/{shard}.tsv"
    params:
        masks=lambda wildcards: guarantee_paths.anatomical_input(CHAIN, wildcards.model, wildcards.shard)[1],
        grid=config["anatomy"]["grid"],
        n_bisections=GUARANTEES["n_bisections"],
        max_distance=GUARANTEES["max_distance"],
        refine=GUARANTEES["refine"],
        device=model_device,
        batch_size=config["encoding"]["batch_size"],
        torch_threads=torch_threads,
    threads: torch_threads
    resources:
        gpu=gpu_request,
        mem_mb=mem_by_attempt(4000),
        runtime=GUARANTEES["runtime_minutes"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/anatomical_correction.py"


rule guarantees_summary:
    input:
        tables=expand("results/guarantees/{{model}}/shard-{shard}.tsv", shard=SHARDS),
    output:
        summary=report(
            "results/guarantees/{model}/summary.tsv",
            caption="../report/guarantees_summary.rst",
            category="Anatomical guarantees",
        ),
    log:
        "logs/guarantees/summary/{model}.log",
    benchmark:
        "logs/benchmarks/guarantees/summary/{model}.tsv"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/guarantees_summary.py"


rule export_guaranteed_nifti:
    input:
        h5="results/guarantees/{model}/shard-{shard}.h5",
    output:
        # {patient}/{patient}_{view}_sequence_gt_corrected.nii.gz and manifest.tsv, as the temporal export
        folder=directory("results/guarantees/{model}/nifti/shard-{shard}"),
    log:
        "logs/export_guaranteed_nifti/{model}/{shard}.log",
    benchmark:
        "logs/benchmarks/export_guaranteed_nifti/{model}/{shard}.tsv"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/export_nifti.py"
