"""Rules cohort_manifest and shard_manifest: SHA-256 of the input files a cohort step reads."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.ingest import manifest_stage  # noqa: E402

params = snakemake.params
manifest_stage(
    params.source,
    snakemake.input.source,
    cycle=params.cycle,
    layout=params.layout,
    plan=snakemake.input.get("plan"),  # shard_manifest only
    shard=snakemake.wildcards.get("shard"),
    extra_files=params.get("extra_files", []),  # cohort_manifest only
    out=snakemake.output.manifest,
)
