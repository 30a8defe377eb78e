"""The figures a study has, by file: what ``snakemake figures`` builds for a configuration, and what they read.

Kept in the package (not in the rule file) so that the choice can be tested without Snakemake.
A figure is listed only when its input stage is part of the study: a model's figures for each
configured model, the traversals for AR-VAEs only, the comparison for studies with several
models, the temporal and anatomy figures for the models the temporal stage corrects with, the
statistics figures when the statistics run (and the latent forest plot when they analyse
latent means). Nothing is drawn empty.

Every figure is a 300-dpi PNG and a vector PDF of the same stem (:data:`FORMATS`); some have a
source-data TSV (decoded shapes measured) or a LaTeX twin (Table 1). The rules writing them are
in ``workflow/rules/figures.smk``.
"""

from __future__ import annotations

from typing import Iterable, Mapping

__all__ = ["ROOT", "FORMATS", "FAMILIES", "figure_files", "figure_targets", "flow_inputs", "latent_tables",
           "bounds_files", "agreement_pairs", "source_file"]

#: Where the figures are written.
ROOT = "results/figures"
#: The formats of every figure.
FORMATS = ("png", "pdf")
#: Outcome families that have a forest plot (``population.families``).
FAMILIES = ("clinical", "attributes", "latent")


def figure_files(stem: str, extra: Iterable[str] = ()) -> list[str]:
    """``{ROOT}/{stem}.png``, ``.pdf`` and the ``extra`` suffixes."""
    return [f"{ROOT}/{stem}.{ext}" for ext in (*FORMATS, *extra)]


def figure_targets(models: Mapping[str, Mapping], *, temporal_models: Iterable[str] = (), statistics: bool = False,
                   families: Iterable[str] = (), synthetic: bool = False) -> list[str]:
    """Every figure file of a study.

    Parameters
    ----------
    models : mapping
        The study's models, name -> settings with a ``kind`` (:func:`echolatent.models.config.study_models`).
    temporal_models : iterable of str
        The models the temporal stage corrects with (the AR-VAEs).
    statistics : bool
        Whether the study's statistics tables are built (groups known at parse time).
    families : iterable of str
        ``population.families``: one forest plot each (``latent`` only with a model); ``attributes``
        draws the attribute curves, ``latent`` (with statistics and a model) each model's latent
        curves and decoded shapes (modes, group means, group direction).
    synthetic : bool
        A synthetic cohort: the agreement figures against the simulator's truth
        (:func:`agreement_pairs`; the agreement table is built with or without statistics).

    Returns
    -------
    list of str
        Paths, in a stable order (cohort, models, latent space, temporal, anatomy, statistics).
    """
    files = figure_files("cohort/flow")
    names = list(models)
    if names:
        files += figure_files("models/reconstruction_dice")
    for name in names:
        files += figure_files(f"models/{name}/learning_curves")
    if len(names) > 1:
        files += figure_files("models/comparison")
    for name in names:
        files += figure_files(f"latent/{name}/interpolation")
        files += figure_files(f"latent/{name}/prior_samples", ["tsv"])
        if models[name].get("kind") == "ar-vae":
            files += figure_files(f"latent/{name}/traversals", ["tsv"])
        files += figure_files(f"latent/{name}/pca")
    for name in temporal_models:
        files += figure_files(f"temporal/{name}/sequence")
        files += figure_files(f"anatomy/{name}/validity", ["tsv"])
    if statistics:
        files += figure_files("stats/table1", ["tex"])
        for family in families:
            if family in FAMILIES and (family != "latent" or names):
                files += figure_files(f"stats/forest_{family}")
        families = list(families)
        if "attributes" in families:
            files += figure_files("stats/curves_attributes")
        files += figure_files("stats/roc")
        if "latent" in families:
            for name in names:
                files += figure_files(f"latent/{name}/curves")
                for stem in ("modes", "group_means", "group_direction"):
                    files += figure_files(f"latent/{name}/{stem}")
    latent = "latent" in list(families)
    for method, reference in agreement_pairs(names, temporal_models if latent else (), latent=latent,
                                             synthetic=synthetic):
        files += figure_files(f"stats/agreement/{method}_vs_{reference}")
    return files


def agreement_pairs(models, temporal_models=(), *, latent: bool = False, synthetic: bool = False) -> list[tuple[str, str]]:
    """``(method, reference)`` of the agreement figures: the sources of ``agreement.tsv``.

    Methods: ``input`` and, when the study's latent family runs (``latent``), each model's
    ``reconstruction.{model}`` and each temporal model's ``temporal.{model}``; references:
    ``input`` and, on a synthetic cohort, ``truth`` (as :func:`echolatent.stages.stats.agreement_stage`).
    """
    methods = ["input"]
    if latent:
        methods += [f"reconstruction.{m}" for m in models] + [f"temporal.{m}" for m in temporal_models]
    references = ["input"] + (["truth"] if synthetic else [])
    return [(m, r) for r in references for m in methods if m != r]


def source_file(source: str) -> str:
    """The per-patient index table of an agreement source (``input``, ``truth``, ``{reconstruction,temporal}.{model}``)."""
    if source == "input":
        return "results/clinical/indices.tsv"
    if source == "truth":
        return "results/cohort/truth/patients.tsv"
    kind, _, model = source.partition(".")
    if kind not in ("reconstruction", "temporal") or not model:
        raise ValueError(f"unknown agreement source {source!r}")
    return f"results/clinical/{kind}/{model}/indices.tsv"


def flow_inputs(statistics: bool) -> dict:
    """The files of the cohort's flow chart: the cohort tables, and the statistics tables when the study has them."""
    files = {"plan": "results/cohort/plan.tsv", "patients": "results/cohort/patients.tsv",
             "sequences": "results/cohort/sequences.tsv", "qc": "results/cohort/qc.tsv"}
    if statistics:
        files.update(analysis="results/stats/patients.tsv", exclusions="results/stats/exclusions.tsv")
    return files


def latent_tables(models, shards) -> list[str]:
    """The latent tables of ``models`` (a name or several), every shard."""
    models = [models] if isinstance(models, str) else list(models)
    return [f"results/latents/{model}/shard-{shard}.parquet" for model in models for shard in shards]


def bounds_files(models) -> list[str]:
    """The ``latent_bounds.tsv`` of ``models``: which attribute each AR-VAE dimension regularises."""
    return [f"results/models/{model}/latent_bounds.tsv" for model in models]
