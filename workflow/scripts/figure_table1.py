"""Rule figure_table1: Table 1 as a figure and as LaTeX."""

from echolatent.stages.logs import log_to

log_to(snakemake.log[0], attempt=snakemake.resources.attempt)  # noqa: F821 (snakemake is injected)

from echolatent.stages.figures import table1_figure_stage  # noqa: E402

table1_figure_stage(
    snakemake.input.table1,
    snakemake.input.patients,
    groups=snakemake.params.groups,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
    out_tex=snakemake.output.tex,
)
