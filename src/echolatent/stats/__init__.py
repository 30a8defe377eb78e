"""Population statistics: how groups of patients differ, the patient being the unit of inference.

Pure functions over DataFrames (no file I/O; the stage functions of
:mod:`echolatent.stages.stats` read and write the files). One module per concept:

:mod:`~.analysis_table`  the analysis table: one row per patient (covariates, clinical indices,
                         per-view summaries of attributes and latent means, QC flags) and the
                         exclusions
:mod:`~.design`          the two groups (control, case), the covariates and their checks
:mod:`~.table_one`       Table 1: cohort characteristics by group
:mod:`~.effects`         covariate-adjusted group effects (OLS, HC3), with BH q-values
:mod:`~.curves`          attribute and latent curves over a normalised cycle, group bands and the
                         max-|t| permutation test of the phases where the groups differ
:mod:`~.latent_space`    latent-space analyses: Spearman with the attributes, PCA and modes,
                         group direction and means, permutation test of the group difference
:mod:`~.disentanglement` interpretability, MIG, SAP, modularity, SCC
:mod:`~.classification`  groups from latent codes vs a clinical baseline (CV AUC, DeLong)
:mod:`~.agreement`       agreement of clinical indices between mask sources (Bland-Altman, ICC, CCC)

Tables (``results/stats/``)
---------------------------
``patients.tsv``: one row per patient of the cohort.
    ``patient_id`` and every column of ``results/cohort/patients.tsv`` (``group``, ``severity``,
    ``age``, ``sex``, ``bsa``, ``split``, ...); ``analysed`` (true when the patient's split is one
    of ``population.splits`` and its group one of the two compared groups); ``frame_rate`` and
    ``n_frames`` (means over the patient's views), ``image_quality_{view}`` (when the cohort
    records it); then one column per outcome, named
    ``{family}.{...}``:

    - ``clinical.{index}``: the numeric columns of ``results/clinical/indices.tsv``
      (``edv_ml``, ``esv_ml``, ``ef_pct``, ``la_volume_ml``, LV lengths in mm);
    - ``attributes.{attribute}.{view}.{summary}``: each physical shape attribute (mm, mm^2,
      degrees; :data:`echolatent.shape.attributes.MM_ATTRIBUTES`) of the input masks, per view,
      summarised as ``ed`` (value at the ED frame), ``es`` (at the ES frame), ``change``
      (ES minus ED) and ``mean`` (mean over the sequence's frames, NaN frames left out);
    - ``latent.{model}.{mu_k}.{view}.{summary}``: the same four summaries of each latent mean
      of model ``{model}`` (only when ``population.families`` names ``latent``);
    - ``qc.frames``, ``qc.anatomical_error_frames`` (frames of the input masks failing any of
      the 12 anatomical criteria), ``qc.foreshortening`` (clinical stage's flag), and for every
      model whose temporal stage ran (with ``latent`` in ``population.families``):
      ``qc.{model}.inconsistent_frames_before``, ``qc.{model}.inconsistent_frames_after``
      (temporally inconsistent frames, both views, before and after the correction) and
      ``qc.{model}.anatomical_error_frames_after`` (frames failing a criterion after it).

``exclusions.tsv``: what an analysis leaves out, never silently: ``patient_id``, ``variable``,
    ``reason``. An empty ``variable``: the patient is in no analysis (split not analysed,
    group not compared). A covariate: the patient misses it and is left out of the
    group-effect models (adjusted and unadjusted alike, so both are fitted on the same
    patients). An outcome column: that value is missing (NaN), and the patient is left out of
    that outcome's models only.

``table1.tsv`` (and ``table1.md``, the same table for reading): one row per variable, or per
    level of a categorical variable, over the analysed patients: ``variable``, ``level``
    (categorical level, else empty), ``statistic`` (``mean_sd``, ``median_iqr`` or ``n_pct``),
    ``overall``, ``control``, ``case`` (formatted: ``mean ± SD``, ``median [Q1, Q3]`` or
    ``n (%)``), ``n_control``, ``n_case`` (patients with a value), ``missing_overall``,
    ``missing_control``, ``missing_case``, ``smd`` (case minus control, standardised by the
    pooled SD ``sqrt((s_case^2 + s_control^2) / 2)``; for a level, on its 0/1 indicator),
    ``p`` and ``test`` (``welch`` t-test, ``mann-whitney`` for skewed variables,
    ``chi-square`` over the whole contingency table for categorical ones). The group names
    are those of ``population.groups`` (``table1.md`` uses them as headers).

``curves.tsv``, ``curve_tests.tsv``, ``curve_intervals.tsv``, ``curve_exclusions.tsv``: the
    phase-resolved curves (group means and bands; per phase point the adjusted difference, t,
    family-wise p; the significant intervals; incomplete curves left out): columns in
    :mod:`echolatent.stats.curves`.

``latent/{model}/{correlations,disentanglement,pca,pca_scores,direction,permutation,codes}.tsv``:
    the latent-space analyses of each model (columns in :mod:`echolatent.stats.latent_space`);
    ``latent/{model}/decoded.tsv`` and ``decoded.h5``: the shapes decoded from ``codes.tsv``
    (:func:`echolatent.stages.encode.decode_codes_stage`).

``classification.tsv``, ``classification_comparisons.tsv``, ``roc.tsv``, ``calibration.tsv``,
    ``predictions.tsv``, ``classification_exclusions.tsv``: columns in
    :mod:`echolatent.stats.classification`.

``agreement.tsv``, ``agreement_exclusions.tsv``: columns in :mod:`echolatent.stats.agreement`;
    the sources are ``input``, ``reconstruction.{model}``, ``temporal.{model}`` and ``truth``.

``effects.tsv``: one row per (outcome, adjusted): ``family`` (``clinical``, ``attributes``,
    ``latent``), ``outcome`` (the column without its family and model), ``model`` (latent
    model, else empty), ``adjusted`` (true: ``outcome ~ group + covariates``; false:
    ``outcome ~ group``, on the same patients), ``n`` (patients fitted), ``beta`` (case minus
    control, in the outcome's units), ``ci_low``, ``ci_high`` (95 % CI, HC3 standard errors,
    t distribution), ``p``, ``std_beta``, ``std_ci_low``, ``std_ci_high`` (the same with the
    outcome z-scored over the fitted patients: a standardised mean difference; continuous
    covariates are z-scored, sex coded 0/1), ``q`` (Benjamini-Hochberg within family, model
    and adjustment). A fit that cannot be made (fewer patients than parameters, a leverage
    of 1) has NaN estimates and is logged.
"""
