"""Stage "population statistics": the functions its rules call (``workflow/rules/stats.smk``).

Rules, their files and their function
-------------------------------------
``stats_patients``  the cohort tables, clinical indices, attribute and anatomy shards of the
                    input masks (and the latent shards of every model when
                    ``population.families`` names ``latent``) -> ``results/stats/patients.tsv``
                    and ``results/stats/exclusions.tsv``; :func:`patients_stage`
``stats_table1``    ``patients.tsv`` -> ``results/stats/table1.tsv`` and ``table1.md``;
                    :func:`table1_stage`
``stats_effects``   ``patients.tsv`` -> ``results/stats/effects.tsv``; :func:`effects_stage`
``stats_curves``    ``patients.tsv``, the sequences, attribute shards of the input masks and
                    (``latent`` family) the latent shards -> ``results/stats/curves.tsv``,
                    ``curve_tests.tsv``, ``curve_intervals.tsv``, ``curve_exclusions.tsv``;
                    :func:`curves_stage`
``stats_latent``    ``patients.tsv``, a model's latent shards and the attribute shards ->
                    ``results/stats/latent/{model}/{correlations,disentanglement,pca,pca_scores,
                    direction,permutation,codes}.tsv``; :func:`latent_stage` (the codes are
                    decoded by ``stats_latent_decode``, :func:`echolatent.stages.encode.decode_codes_stage`)
``stats_classification`` ``patients.tsv`` -> ``results/stats/classification.tsv``,
                    ``classification_comparisons.tsv``, ``roc.tsv``, ``calibration.tsv``,
                    ``predictions.tsv``, ``classification_exclusions.tsv``;
                    :func:`classification_stage`
``stats_agreement`` the clinical indices of the input masks, of every model's reconstructions
                    and temporally corrected masks (and the synthetic truth) ->
                    ``results/stats/agreement.tsv`` and ``agreement_exclusions.tsv``;
                    :func:`agreement_stage`

The columns of every table are documented in :mod:`echolatent.stats`. Settings: the
``population`` section of the configuration (``config/README.md``); the keyword defaults here
are the schema's. A clinical-plus-attributes analysis reads no model output.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from echolatent.io.atomic import atomic_path
from echolatent.io.tables import read_table, read_tables, write_table

__all__ = ["patients_stage", "table1_stage", "effects_stage", "analysed_patients", "agreement_stage", "curves_stage", "latent_stage", "classification_stage"]

logger = logging.getLogger(__name__)

#: Table 1's rows besides the clinical indices: demographics, acquisition, QC.
TABLE1_CONTINUOUS = ["age", "bsa", "severity", "frame_rate", "n_frames"]
TABLE1_CATEGORICAL = ["sex", "image_quality_2CH", "image_quality_4CH"]
TABLE1_QC = ["qc.anatomical_error_frames"]


def _concat(paths, columns=None) -> pd.DataFrame:
    """The shards of a frame table as one, reading only ``columns`` (:func:`~echolatent.io.tables.read_tables`)."""
    return read_tables(paths, columns)


#: What the analysis table reads of the frame tables (the rest of their columns stay on disk).
_FRAME_KEYS = ("patient_id", "view", "frame")


def _by_model(paths) -> dict[str, list]:
    """Latent shard paths by model: ``results/latents/{model}/shard-{k}.parquet``."""
    models: dict[str, list] = {}
    for path in paths:
        models.setdefault(Path(path).parent.name, []).append(path)
    return models


def _groups(table: pd.DataFrame, groups) -> tuple[str, str]:
    from echolatent.stats.design import resolve_groups

    return resolve_groups(table.get("group", pd.Series(dtype=object)), groups)  # no column: no group


def patients_stage(patients, sequences, clinical, attributes, anatomy, latents=None, corrections=None, *, groups=(),
                   splits=("train", "val", "test"), covariates=("age", "sex", "bsa"), min_group_size: int = 10,
                   out_table, out_exclusions) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The analysis table and its exclusions (rule ``stats_patients``).

    ``attributes``, ``anatomy``: the shards of the input masks; ``latents``: latent shards
    ``results/latents/{model}/shard-{k}.parquet`` of any number of models (the model is the
    folder's name), or none; ``corrections``: the temporal stage's sequence tables
    ``results/temporal/{model}/shard-{k}.tsv`` (QC flags after correction), or none. The group sizes are checked here already, so that a study that
    cannot compare its groups stops at its first statistics job.
    """
    from echolatent.shape.attributes import MM_ATTRIBUTES
    from echolatent.stats.analysis_table import analysis_table
    from echolatent.stats.design import check_group_sizes

    cohort = read_table(patients)
    control, case = _groups(cohort, groups)
    table, exclusions = analysis_table(
        cohort, read_table(sequences), read_table(clinical), _concat(attributes, [*_FRAME_KEYS, *MM_ATTRIBUTES]),
        _concat(anatomy, [*_FRAME_KEYS, "anatomical_errors"]),
        {model: _concat(paths, lambda c: c in _FRAME_KEYS or c.startswith("mu_"))
         for model, paths in _by_model(latents or []).items()},
        {model: _concat(paths) for model, paths in _by_model(corrections or []).items()},
        attribute_columns=list(MM_ATTRIBUTES), control=control, case=case, splits=list(splits),
        covariates=list(covariates))
    sizes = check_group_sizes(table.loc[table["analysed"], "group"], control, case, min_group_size)
    write_table(table, out_table)
    write_table(exclusions, out_exclusions)
    logger.info(f"{len(table)} patients, {int(table['analysed'].sum())} analysed ({sizes}); "
                f"{len(exclusions)} exclusions listed in {out_exclusions}")
    return table, exclusions


def analysed_patients(table: pd.DataFrame, groups, min_group_size: int, covariates=()) -> tuple[pd.DataFrame, str, str]:
    """The analysed patients with every covariate, and ``(control, case)``; group sizes checked."""
    from echolatent.stats.design import check_group_sizes

    control, case = _groups(table, groups)
    rows = table[table["analysed"].astype(bool)]
    present = [c for c in covariates if c in rows]
    rows = rows.dropna(subset=present)  # listed in exclusions.tsv by stats_patients
    check_group_sizes(rows["group"], control, case, min_group_size)
    return rows, control, case


def table1_stage(table, *, groups=(), skewed=(), min_group_size: int = 10, out_tsv, out_md) -> pd.DataFrame:
    """Table 1 of the analysed patients, by group (rule ``stats_table1``)."""
    from echolatent.stats.table_one import table_one, table_one_markdown

    patients = read_table(table)
    rows, control, case = analysed_patients(patients, groups, min_group_size)
    clinical = [c for c in patients.columns if c.startswith("clinical.")]
    table1 = table_one(rows, control, case, [*TABLE1_CONTINUOUS, *clinical, *TABLE1_QC], TABLE1_CATEGORICAL,
                       skewed=list(skewed))
    groups_of = rows["group"].astype(str)
    sizes = {"overall": len(rows), "control": int((groups_of == control).sum()), "case": int((groups_of == case).sum())}
    write_table(table1, out_tsv)
    with atomic_path(out_md) as tmp:
        tmp.write_text(table_one_markdown(table1, control, case, sizes))
    logger.info(f"Table 1: {len(table1)} rows, {sizes}")
    return table1


def effects_stage(table, *, families=("clinical", "attributes", "latent"), covariates=("age", "sex", "bsa"), groups=(),
                  min_group_size: int = 10, out) -> pd.DataFrame:
    """Adjusted and unadjusted group effects of every outcome of ``families`` (rule ``stats_effects``)."""
    from echolatent.stats.effects import group_effects

    rows, control, case = analysed_patients(read_table(table), groups, min_group_size, covariates)
    effects = group_effects(rows, list(families), list(covariates), control, case)
    write_table(effects, out)
    adjusted = effects[effects["adjusted"]]
    logger.info(f"{len(adjusted)} outcomes, {case} minus {control} on {len(rows)} patients; "
                f"{int((adjusted['q'] < 0.05).sum())} adjusted effects with q < 0.05")
    return effects


#: The clinical indices compared between mask sources (``agreement.tsv``).
AGREEMENT_INDICES = ["edv_ml", "esv_ml", "ef_pct", "la_volume_ml"]
#: Columns of the synthetic truth (``results/cohort/truth/patients.tsv``) holding each index:
#: the analytic volumes of the simulated hearts (LA: its volume at LV end-systole).
TRUTH_INDEX_COLUMNS = {"la_volume_ml": "la_volume_es_ml"}


def agreement_stage(input_indices, patients, *, reconstruction=(), temporal=(), truth=None, out,
                    out_exclusions) -> pd.DataFrame:
    """Agreement of the clinical indices between mask sources (rule ``stats_agreement``).

    Sources: ``input`` (``results/clinical/indices.tsv``), ``reconstruction.{model}`` and
    ``temporal.{model}`` (``results/clinical/{reconstruction,temporal}/{model}/indices.tsv``: the
    model's reconstructions and temporally corrected masks) and, on a synthetic cohort,
    ``truth`` (the analytic volumes). Every source is compared with the input masks and with the
    truth (method minus reference), per split and over all patients (:mod:`echolatent.stats.agreement`).
    """
    from echolatent.stats.agreement import agreement_table

    sources = {"input": read_table(input_indices)}
    for kind, paths in (("reconstruction", reconstruction), ("temporal", temporal)):
        for path in paths:
            sources[f"{kind}.{Path(path).parent.name}"] = read_table(path)
    references = ["input"]
    columns = {}
    if truth is not None:
        sources["truth"] = read_table(truth)
        references.append("truth")
        columns["truth"] = TRUTH_INDEX_COLUMNS
    methods = [name for name in sources if name != "truth"]  # the truth is a reference only
    table, exclusions = agreement_table(sources, indices=AGREEMENT_INDICES, methods=methods,
                                        reference=references, patients=read_table(patients), columns=columns)
    write_table(table, out)
    write_table(exclusions, out_exclusions)
    overall = table[(table["split"] == "all") & (table["index"] == "ef_pct")]
    for row in overall.itertuples():
        logger.info(f"EF {row.method} vs {row.reference}: bias {row.bias:+.2f} points, "
                    f"LoA [{row.loa_low:.2f}, {row.loa_high:.2f}], n = {row.n}")
    return table


def curves_stage(table, sequences, attributes, latents=(), *, families=("clinical", "attributes", "latent"),
                 covariates=("age", "sex", "bsa"), groups=(), min_group_size: int = 10, n_points: int = 64,
                 n_permutations: int = 999, seed: int = 0, out_curves, out_tests, out_intervals,
                 out_exclusions) -> dict[str, pd.DataFrame]:
    """Phase-resolved curves of the attributes and latent means, with the phases where the groups
    differ (rule ``stats_curves``; :mod:`echolatent.stats.curves`).

    ``attributes``: the attribute shards of the input masks; ``latents``: the latent shards of every
    model (``results/latents/{model}/shard-{k}.parquet``). Every sequence is warped onto one
    normalised cycle (ED at 0, the median systolic fraction of the cohort's full cycles at ES);
    the tests are Freedman-Lane max-|t| permutation tests over the phase points, adjusted for
    ``covariates``.
    """
    from echolatent.shape.attributes import MM_ATTRIBUTES
    from echolatent.stats.curves import curve_statistics, normalised_curves

    rows, control, case = analysed_patients(read_table(table), groups, min_group_size, covariates)
    seqs = read_table(sequences)
    parts = []
    if "attributes" in families:
        parts.append(("attributes", "", _concat(attributes), list(MM_ATTRIBUTES)))
    if "latent" in families:
        for model, paths in _by_model(latents or []).items():
            frames = _concat(paths)
            mu = sorted((c for c in frames.columns if c.startswith("mu_")), key=lambda c: int(c.split("_")[1]))
            parts.append(("latent", model, frames, mu))
    if not parts:
        raise ValueError(f"population.families {list(families)}: curves need 'attributes' or 'latent'")
    results = []
    for family, model, frames, columns in parts:
        curves = normalised_curves(frames, seqs, columns, n_points=n_points)
        results.append(curve_statistics(curves, rows, control=control, case=case, covariates=list(covariates),
                                        seed=seed, columns=columns, family=family, model=model,
                                        n_permutations=n_permutations))
        logger.info(f"{family} {model}: {len(columns)} curves x views, "
                    f"{len(results[-1].intervals)} significant phase intervals")
    tables = {name: pd.concat([getattr(r, name) for r in results], ignore_index=True)
              for name in ("curves", "tests", "intervals", "exclusions")}
    for name, out in (("curves", out_curves), ("tests", out_tests), ("intervals", out_intervals),
                      ("exclusions", out_exclusions)):
        write_table(tables[name], out)
    return tables


#: The tables of rule ``stats_latent`` (``results/stats/latent/{model}/{name}.tsv``).
LATENT_TABLES = ("correlations", "disentanglement", "pca", "pca_scores", "direction", "permutation", "codes")


def latent_stage(table, latents, attributes, patients, *, model: str, regularised=(), covariates=("age", "sex", "bsa"),
                 groups=(), min_group_size: int = 10, pca_components: int = 3, n_permutations: int = 999,
                 seed: int = 0, out: dict) -> dict[str, pd.DataFrame]:
    """Latent-space analyses of one model (rule ``stats_latent``; :mod:`echolatent.stats.latent_space`).

    Frame level (every frame, reported per split; the test split is the held-out figure): Spearman
    rho of every latent mean with every physical shape attribute of the input masks, and the
    disentanglement scores of the regularised dimensions. Patient level (the analysed patients,
    codes of the ED and ES frames per view): PCA with the codes of its modes of variation, the
    covariate-adjusted group means and direction with codes along it, and the Freedman-Lane
    permutation test of the group difference. ``out``: table name -> path, for every name of
    :data:`LATENT_TABLES`; the ``codes`` table is decoded by rule ``stats_latent_decode``.
    """
    from echolatent.shape.attributes import MM_ATTRIBUTES, PHYSICAL_NAMES
    from echolatent.stats.latent_space import (attribute_correlations, group_direction, group_permutation_test,
                                               latent_codes, latent_pca)

    rows, control, case = analysed_patients(read_table(table), groups, min_group_size, covariates)
    frames = _concat(latents)
    keys = ["patient_id", "view", "frame"]
    frames = frames.merge(_concat(attributes, [*keys, *MM_ATTRIBUTES]), on=keys, how="left", validate="one_to_one")
    frames = frames.merge(read_table(patients)[["patient_id", "split"]], on="patient_id", how="left")
    # the model was regularised on model-grid attributes (fixed mm per pixel): the physical ones rank alike
    tied = {dim: PHYSICAL_NAMES.get(name, name) for dim, name in enumerate(regularised)}
    correlations, scores = attribute_correlations(frames, tied, attributes=list(MM_ATTRIBUTES), seed=seed)
    codes = latent_codes(rows.set_index("patient_id", drop=False), model)
    subjects = rows.set_index("patient_id", drop=False)
    pca, pca_scores, mode_codes = latent_pca(codes, subjects, n_modes=pca_components)
    direction, direction_codes = group_direction(codes, subjects, control=control, case=case,
                                                 covariates=list(covariates))
    permutation = group_permutation_test(codes, subjects, control=control, case=case, covariates=list(covariates),
                                         n_permutations=n_permutations, seed=seed)
    tables = {"correlations": correlations, "disentanglement": scores, "pca": pca, "pca_scores": pca_scores,
              "direction": direction, "permutation": permutation,
              "codes": pd.concat([mode_codes, direction_codes], ignore_index=True)}
    for name, frame in tables.items():
        if "model" not in frame:
            frame.insert(0, "model", model)
        write_table(frame, out[name])
    adjusted = permutation[permutation["adjusted"].astype(bool)]
    for row in adjusted.itertuples():
        logger.info(f"{model} {row.view} {row.phase}: group difference of latent means {row.statistic_name} "
                    f"= {row.statistic:.1f}, permutation p = {row.p:.4f} ({row.n_permutations} permutations)")
    return tables


#: The tables of rule ``stats_classification`` (``results/stats/{name}.tsv``).
CLASSIFICATION_TABLES = {"classification": "classification", "comparisons": "classification_comparisons",
                         "roc": "roc", "calibration": "calibration", "predictions": "predictions",
                         "exclusions": "classification_exclusions"}


def classification_stage(table, *, models=(), clinical_features=(), latent_summaries=("ed", "es"), groups=(),
                         min_group_size: int = 10, folds: int = 5, repeats: int = 5, n_bootstrap: int = 1000,
                         seed: int = 0, out: dict):
    """Is the group in the latent space? Classification of the groups (rule ``stats_classification``).

    Feature sets: ``clinical`` (the baseline, ``population.classification.clinical_features``),
    and for every model ``latent.{model}`` (its latent means' ``latent_summaries`` per view) and
    ``clinical+latent.{model}``; L2 logistic regression in repeated stratified cross-validation
    by patient, AUC with bootstrap and DeLong CIs, paired DeLong tests against the baseline
    (:mod:`echolatent.stats.classification`). ``out``: table name -> path for every key of
    :data:`CLASSIFICATION_TABLES`.
    """
    from echolatent.stats.classification import classify_groups, latent_columns

    patients = read_table(table)
    rows, control, case = analysed_patients(patients, groups, min_group_size)
    missing = [c for c in clinical_features if c not in patients]
    if missing:
        raise ValueError(f"population.classification.clinical_features: {missing} are not columns of {table}")
    sets = {"clinical": list(clinical_features)}
    for model in models:
        latent = latent_columns(rows, model, list(latent_summaries))
        sets[f"latent.{model}"] = latent
        sets[f"clinical+latent.{model}"] = [*clinical_features, *latent]
    result = classify_groups(rows, sets, control=control, case=case, n_splits=folds, n_repeats=repeats,
                             n_bootstrap=n_bootstrap, seed=seed)
    for name in CLASSIFICATION_TABLES:
        write_table(getattr(result, name), out[name])
    for row in result.classification.itertuples():
        logger.info(f"{row.features}: AUC {row.auc:.3f} [{row.auc_ci_low:.3f}, {row.auc_ci_high:.3f}] "
                    f"on {row.n} patients ({row.n_features} features)")
    return result
