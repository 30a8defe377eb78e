# Stage "figures": the paper's figures, redrawn from results/ (tables, shards, checkpoints) without
# training, encoding or correcting anything. One rule per figure, each writing a 300-dpi PNG (in the
# report, with its caption) and a vector PDF under results/figures/; `snakemake figures` (or
# `make figures`) builds every figure the configured study has, and nothing it has not
# (echolatent.figures.targets). Include after every stage whose results the figures read.
#
# The rules are local (localrule): each runs for seconds on one CPU, the models decode on the CPU.

from echolatent.figures import targets as figure_paths

#: Whether the statistics tables are built (stats_outputs() in common.smk decides it at parse time).
FIGURE_STATISTICS = bool(stats_outputs())
#: The compared groups [control, case] when the statistics run, else none (the figures then take the
#: cohort's own groups).
FIGURE_GROUPS = population_groups() if FIGURE_STATISTICS else []


rule figures:
    # The target: every figure of the configured study.
    input:
        figure_paths.figure_targets(
            MODELS,
            temporal_models=TEMPORAL_MODELS,
            statistics=FIGURE_STATISTICS,
            families=POPULATION["families"],
            synthetic=SYNTHETIC,
        ),


rule figure_cohort_flow:
    input:
        unpack(lambda wildcards: figure_paths.flow_inputs(FIGURE_STATISTICS)),
    output:
        png=report(
            "results/figures/cohort/flow.png",
            caption="../report/figures/cohort_flow.rst",
            category="Cohort",
            labels={"figure": "flow chart"},
        ),
        pdf="results/figures/cohort/flow.pdf",
    log:
        "logs/figures/cohort_flow.log",
    params:
        groups=FIGURE_GROUPS,
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_cohort_flow.py"


rule figure_learning_curves:
    input:
        history="results/models/{model}/history.tsv",
    output:
        png=report(
            "results/figures/models/{model}/learning_curves.png",
            caption="../report/figures/learning_curves.rst",
            category="Models",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "learning curves"},
        ),
        pdf="results/figures/models/{model}/learning_curves.pdf",
    log:
        "logs/figures/learning_curves/{model}.log",
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_learning_curves.py"


rule figure_reconstruction_dice:
    input:
        latents=figure_paths.latent_tables(list(MODELS), SHARDS),
        patients="results/cohort/patients.tsv",
    output:
        png=report(
            "results/figures/models/reconstruction_dice.png",
            caption="../report/figures/reconstruction_dice.rst",
            category="Models",
            subcategory="all models",
            labels={"model": "all", "figure": "reconstruction Dice"},
        ),
        pdf="results/figures/models/reconstruction_dice.pdf",
    log:
        "logs/figures/reconstruction_dice.log",
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_reconstruction_dice.py"


rule figure_model_comparison:
    input:
        quality="results/models/quality.tsv",
        priors=expand("results/figures/latent/{model}/prior_samples.tsv", model=list(MODELS)),
        summaries=expand("results/models/{model}/summary.json", model=list(MODELS)),
    output:
        png=report(
            "results/figures/models/comparison.png",
            caption="../report/figures/model_comparison.rst",
            category="Models",
            subcategory="all models",
            labels={"model": "all", "figure": "comparison"},
        ),
        pdf="results/figures/models/comparison.pdf",
    log:
        "logs/figures/model_comparison.log",
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_model_comparison.py"


rule figure_latent_interpolation:
    input:
        checkpoint="results/models/{model}/checkpoint.pt",
        latents=lambda wildcards: figure_paths.latent_tables(wildcards.model, SHARDS),
        sequences="results/cohort/sequences.tsv",
        patients="results/cohort/patients.tsv",
    output:
        png=report(
            "results/figures/latent/{model}/interpolation.png",
            caption="../report/figures/latent_interpolation.rst",
            category="Latent space",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "interpolation"},
        ),
        pdf="results/figures/latent/{model}/interpolation.pdf",
    log:
        "logs/figures/latent_interpolation/{model}.log",
    params:
        groups=FIGURE_GROUPS,
        image_size=COHORT["image_size"],
        criteria_grid=config["anatomy"]["grid"],
        steps=7,
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_latent_interpolation.py"


rule figure_prior_samples:
    input:
        checkpoint="results/models/{model}/checkpoint.pt",
        sequences="results/cohort/sequences.tsv",
    output:
        png=report(
            "results/figures/latent/{model}/prior_samples.png",
            caption="../report/figures/prior_samples.rst",
            category="Latent space",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "prior samples"},
        ),
        pdf="results/figures/latent/{model}/prior_samples.pdf",
        table="results/figures/latent/{model}/prior_samples.tsv",
    log:
        "logs/figures/prior_samples/{model}.log",
    params:
        n_samples=200,  # all measured (validity rate); the first n_shown are drawn
        n_shown=32,
        seed=0,
        image_size=COHORT["image_size"],
        criteria_grid=config["anatomy"]["grid"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_prior_samples.py"


rule figure_traversals:
    # AR-VAE models only (figure_targets asks for no other): one row per regularised dimension
    input:
        checkpoint="results/models/{model}/checkpoint.pt",
        bounds="results/models/{model}/latent_bounds.tsv",
        latents=lambda wildcards: figure_paths.latent_tables(wildcards.model, SHARDS),
        patients="results/cohort/patients.tsv",
        sequences="results/cohort/sequences.tsv",
    output:
        png=report(
            "results/figures/latent/{model}/traversals.png",
            caption="../report/figures/traversals.rst",
            category="Latent space",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "traversals"},
        ),
        pdf="results/figures/latent/{model}/traversals.pdf",
        table="results/figures/latent/{model}/traversals.tsv",
    log:
        "logs/figures/traversals/{model}.log",
    params:
        view="4CH",
        steps=7,
        image_size=COHORT["image_size"],
        criteria_grid=config["anatomy"]["grid"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_traversals.py"


rule figure_latent_pca:
    input:
        latents=lambda wildcards: figure_paths.latent_tables(wildcards.model, SHARDS),
        patients="results/cohort/patients.tsv",
    output:
        png=report(
            "results/figures/latent/{model}/pca.png",
            caption="../report/figures/latent_pca.rst",
            category="Latent space",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "PCA"},
        ),
        pdf="results/figures/latent/{model}/pca.pdf",
    log:
        "logs/figures/latent_pca/{model}.log",
    params:
        groups=FIGURE_GROUPS,
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_latent_pca.py"


rule figure_temporal_sequence:
    input:
        tables=expand("results/temporal/{{model}}/shard-{shard}.tsv", shard=SHARDS),
        corrected=expand("results/temporal/{{model}}/shard-{shard}.h5", shard=SHARDS),
        cohort=expand("results/cohort/shard-{shard}.h5", shard=SHARDS),
        thresholds=temporal_paths.image_thresholds(TEMPORAL),
    output:
        png=report(
            "results/figures/temporal/{model}/sequence.png",
            caption="../report/figures/temporal_sequence.rst",
            category="Temporal consistency",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "example sequence"},
        ),
        pdf="results/figures/temporal/{model}/sequence.pdf",
    log:
        "logs/figures/temporal_sequence/{model}.log",
    params:
        cycle=cohort_cycle(),
        margin=TEMPORAL["thresholds"]["margin"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_temporal_sequence.py"


rule figure_anatomy_validity:
    input:
        criteria=expand("results/anatomy/input/shard-{shard}.parquet", shard=SHARDS),
        corrected=expand("results/temporal/{{model}}/shard-{shard}.h5", shard=SHARDS),
        cohort=expand("results/cohort/shard-{shard}.h5", shard=SHARDS),
        truth=expand("results/anatomy/truth/shard-{shard}.parquet", shard=SHARDS) if SYNTHETIC else [],
    output:
        png=report(
            "results/figures/anatomy/{model}/validity.png",
            caption="../report/figures/anatomy_validity.rst",
            category="Anatomy",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "validity by criterion"},
        ),
        pdf="results/figures/anatomy/{model}/validity.pdf",
        table="results/figures/anatomy/{model}/validity.tsv",
    log:
        "logs/figures/anatomy_validity/{model}.log",
    params:
        # the anatomy stage's grid: the corrected frames are measured as the input frames were
        criteria_grid=config["anatomy"]["grid"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=20,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_anatomy_validity.py"


rule figure_forest:
    input:
        effects="results/stats/effects.tsv",
        # which attribute each AR-VAE dimension regularises: the latent family's rows are named after it
        bounds=lambda wildcards: figure_paths.bounds_files(MODELS) if wildcards.family == "latent" else [],
    output:
        png=report(
            "results/figures/stats/forest_{family}.png",
            caption="../report/figures/forest.rst",
            category="Population statistics",
            subcategory="group effects",
            labels={"family": "{family}", "figure": "forest plot"},
        ),
        pdf="results/figures/stats/forest_{family}.pdf",
    log:
        "logs/figures/forest/{family}.log",
    wildcard_constraints:
        family="clinical|attributes|latent",
    params:
        groups=FIGURE_GROUPS,
        covariates=POPULATION["covariates"],
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_forest.py"


rule figure_table1:
    input:
        table1="results/stats/table1.tsv",
        patients="results/stats/patients.tsv",
    output:
        png=report(
            "results/figures/stats/table1.png",
            caption="../report/figures/table1.rst",
            category="Population statistics",
            subcategory="Table 1",
            labels={"family": "cohort", "figure": "Table 1"},
        ),
        pdf="results/figures/stats/table1.pdf",
        tex="results/figures/stats/table1.tex",
    log:
        "logs/figures/table1.log",
    params:
        groups=FIGURE_GROUPS,
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_table1.py"


rule figure_curves_attributes:
    input:
        curves="results/stats/curves.tsv",
        intervals="results/stats/curve_intervals.tsv",
    output:
        png=report(
            "results/figures/stats/curves_attributes.png",
            caption="../report/figures/curves_attributes.rst",
            category="Population statistics",
            subcategory="curves over the cycle",
            labels={"family": "attributes", "figure": "curves over the cycle"},
        ),
        pdf="results/figures/stats/curves_attributes.pdf",
    log:
        "logs/figures/curves_attributes.log",
    params:
        groups=FIGURE_GROUPS,
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_curves_attributes.py"


rule figure_curves_latent:
    input:
        curves="results/stats/curves.tsv",
        intervals="results/stats/curve_intervals.tsv",
        # which attribute each AR-VAE dimension regularises (none for a plain VAE)
        bounds=lambda wildcards: figure_paths.bounds_files([wildcards.model])
        if MODELS[wildcards.model]["kind"] == "ar-vae"
        else [],
    output:
        png=report(
            "results/figures/latent/{model}/curves.png",
            caption="../report/figures/curves_latent.rst",
            category="Latent space",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "latent curves over the cycle"},
        ),
        pdf="results/figures/latent/{model}/curves.pdf",
    log:
        "logs/figures/curves_latent/{model}.log",
    params:
        groups=FIGURE_GROUPS,
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_curves_latent.py"


rule figure_roc:
    input:
        classification="results/stats/classification.tsv",
        comparisons="results/stats/classification_comparisons.tsv",
        roc="results/stats/roc.tsv",
    output:
        png=report(
            "results/figures/stats/roc.png",
            caption="../report/figures/roc.rst",
            category="Population statistics",
            subcategory="classification",
            labels={"family": "classification", "figure": "ROC curves"},
        ),
        pdf="results/figures/stats/roc.pdf",
    log:
        "logs/figures/roc.log",
    params:
        groups=FIGURE_GROUPS,
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_roc.py"


rule figure_agreement:
    input:
        agreement="results/stats/agreement.tsv",
        method=lambda wildcards: figure_paths.source_file(wildcards.method),
        reference=lambda wildcards: figure_paths.source_file(wildcards.reference),
    output:
        png=report(
            "results/figures/stats/agreement/{method}_vs_{reference}.png",
            caption="../report/figures/agreement.rst",
            category="Population statistics",
            subcategory="agreement",
            labels={"family": "{method} vs {reference}", "figure": "Bland-Altman"},
        ),
        pdf="results/figures/stats/agreement/{method}_vs_{reference}.pdf",
    log:
        "logs/figures/agreement/{method}_vs_{reference}.log",
    wildcard_constraints:
        method=r"input|(reconstruction|temporal)\.[^/]+",
        reference="input|truth",
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_agreement.py"


rule figure_latent_modes:
    input:
        table="results/stats/latent/{model}/decoded.tsv",
        h5="results/stats/latent/{model}/decoded.h5",
    output:
        png=report(
            "results/figures/latent/{model}/modes.png",
            caption="../report/figures/latent_modes.rst",
            category="Latent space",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "decoded modes"},
        ),
        pdf="results/figures/latent/{model}/modes.pdf",
    log:
        "logs/figures/modes/{model}.log",
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_latent_modes.py"


rule figure_group_shapes:
    input:
        table="results/stats/latent/{model}/decoded.tsv",
        h5="results/stats/latent/{model}/decoded.h5",
    output:
        png=report(
            "results/figures/latent/{model}/group_means.png",
            caption="../report/figures/group_shapes.rst",
            category="Latent space",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "group-mean shapes"},
        ),
        pdf="results/figures/latent/{model}/group_means.pdf",
    log:
        "logs/figures/group_means/{model}.log",
    params:
        groups=FIGURE_GROUPS,
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_group_shapes.py"


rule figure_group_direction:
    input:
        table="results/stats/latent/{model}/decoded.tsv",
        h5="results/stats/latent/{model}/decoded.h5",
    output:
        png=report(
            "results/figures/latent/{model}/group_direction.png",
            caption="../report/figures/group_direction.rst",
            category="Latent space",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "group direction"},
        ),
        pdf="results/figures/latent/{model}/group_direction.pdf",
    log:
        "logs/figures/group_direction/{model}.log",
    params:
        groups=FIGURE_GROUPS,
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=10,
    localrule: True
    conda:
        "../../envs/figures.yaml"
    script:
        "../scripts/figure_group_direction.py"
