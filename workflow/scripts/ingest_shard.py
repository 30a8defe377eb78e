"""Rule ingest_shard: read, check, resample and write the patients of one shard."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.ingest import ingest_stage  # noqa: E402

params, output = snakemake.params, snakemake.output
ingest_stage(
    params.source,
    snakemake.input.source,
    snakemake.input.plan,
    snakemake.wildcards.shard,
    cycle=params.cycle,
    layout=params.layout,
    image_size=params.image_size,
    on_bad_sequence=params.on_bad_sequence,
    out_h5=output.h5,
    out_sequences=output.sequences,
    out_qc=output.qc,
    out_inputs=output.inputs,
    out_truth_h5=output.get("truth"),
)
