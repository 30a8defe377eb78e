"""Is the group information in the latent space? Cross-validated classification of the group.

Pure functions over the analysis table (one row per patient, see :mod:`echolatent.stats`);
no file I/O.

Design
------
* **Unit.** The patient: one row of the analysis table is one patient (a duplicated
  ``patient_id`` is an error), so the folds are drawn with a repeated *stratified* K-fold over
  patients (:class:`sklearn.model_selection.RepeatedStratifiedKFold`); a grouped K-fold
  (``StratifiedGroupKFold``) would only be needed with frame-level rows, which this module
  does not accept.
* **Model.** ``Pipeline(StandardScaler, LogisticRegression)`` with an L2 penalty (``C``,
  default 1), refitted inside every training fold, so the scaling never sees the held-out
  patients. Default 5 folds x 5 repeats; the folds are a function of ``seed`` and of the
  feature set's patients and groups only, so feature sets with the same patients share their
  folds.
* **Predictions.** Each patient's out-of-fold probability of being a case, averaged over the
  repeats (every probability comes from a model that did not see the patient). All metrics of
  ``classification.tsv`` except ``auc_mean_repeats`` and ``auc_sd_repeats`` are computed on
  these averaged probabilities.
* **Missing values.** A patient with a NaN (or infinite value) in any column of a feature set is left out of
  *that* feature set (not imputed) and listed in ``exclusions``; it stays in the feature sets
  whose columns it has. A paired comparison uses the patients of both sets.
* **AUC intervals.** (i) Patient bootstrap: ``n_bootstrap`` resamples (default 1000) of the
  patients with replacement, stratified by group (the numbers of cases and controls are kept,
  so every resample has both), of the out-of-fold probabilities (the models are not refitted:
  the interval is the sampling uncertainty of the evaluated patients), percentile interval.
  (ii) DeLong: the fast midrank algorithm of Sun & Xu (2014, IEEE SPL 21:1389) for the
  variance (structural components, covariances with ``ddof = 1``), normal interval clipped to
  [0, 1].
* **Threshold.** The pre-registered threshold ``threshold`` (default 0.5) on the averaged
  probability: ``probability >= threshold`` is called a case.
* **Calibration.** Logistic recalibration of the outcome on ``logit(p)``
  (Steyerberg's convention): ``calibration_slope`` is ``b`` of ``logit P(case) = a + b
  logit(p)``; ``calibration_intercept`` is calibration-in-the-large, ``a`` of
  ``logit P(case) = a + logit(p)`` (slope fixed at 1, ``logit(p)`` as offset). A well
  calibrated model has intercept 0 and slope 1; slope < 1 means too extreme predictions.
  Probabilities are clipped to [1e-6, 1 - 1e-6]; a fit that fails (separation) gives NaN.
* **Permutation p-value** (optional, ``n_permutations``): the group labels are permuted and
  the whole cross-validation rerun; ``p = (1 + #{permuted AUC >= AUC}) / (1 + n_permutations)``
  (one-sided: more group information than chance). This is the valid test of "no
  information": see the caveat below.
* **Paired comparison.** DeLong's test of the difference of two correlated AUCs, on the same
  patients, for every pair of feature sets (in the order of ``feature_sets``: for sets
  ``a`` listed before ``b``, ``delta_auc = auc_b - auc_a``, so list the baseline first).

Caveat (measured): the bootstrap and DeLong intervals hold the fitted models fixed, so they
miss the variability of the fits themselves. On feature sets with no information the
cross-validated AUC is slightly below 0.5 (anti-learning: a patient's own data pushes its
models away from it) and varies about 1.5 times more than their SE says: over 200 null
cohorts of 200 patients x 4 noise features (5 x 5 CV) both intervals covered 0.5 in 80 % of
cohorts (84 % with 100 patients, 5 x 2 CV), where the label-permutation p-value rejected in
3 % at alpha 0.05 (10 % at 0.10; uniform, KS p = 0.2). With real group information the
intervals cover the Bayes AUC of Gaussian classes (tests). Averaging the probabilities over
the repeats makes the null spread a little wider than one repeat's (SD about 0.065 vs 0.055 at 200
patients and 1 to 4 features); ``auc_mean_repeats`` is the per-repeat alternative.

Tables
------
``classification.tsv``: one row per feature set: ``features`` (the feature set's name),
    ``n_features``, ``n`` (patients classified), ``n_case``, ``n_control``, ``n_excluded``
    (patients left out for a NaN feature, listed in the exclusions), ``auc`` (ROC AUC of the
    averaged out-of-fold probabilities), ``auc_ci_low``, ``auc_ci_high`` (95 % patient-bootstrap
    percentile interval), ``auc_delong_se``, ``auc_delong_ci_low``, ``auc_delong_ci_high``
    (95 % DeLong interval), ``auc_mean_repeats``, ``auc_sd_repeats`` (mean and SD over the
    repeats of the AUC of each repeat's out-of-fold probabilities), ``threshold``,
    ``balanced_accuracy``, ``sensitivity``, ``specificity`` (at ``threshold``), ``brier``
    (mean squared difference of probability and 0/1 outcome), ``calibration_intercept``,
    ``calibration_slope``, ``n_permutations``, ``p_permutation`` (NaN without permutations).
``classification_comparisons.tsv``: one row per pair of feature sets: ``features_a``,
    ``features_b``, ``n`` (patients in both sets), ``auc_a``, ``auc_b`` (on those patients),
    ``delta_auc`` (``auc_b - auc_a``), ``se`` (DeLong), ``ci_low``, ``ci_high`` (95 %, normal),
    ``z``, ``p`` (two-sided; identical scores give ``z = 0``, ``p = 1``).
``roc.tsv``: ROC points of each feature set (:func:`sklearn.metrics.roc_curve` of the averaged
    probabilities, collinear points dropped): ``features``, ``fpr``, ``tpr``, ``threshold``
    (the first point, (0, 0), has threshold ``inf``).
``calibration.tsv``: binned reliability points: ``features``, ``bin`` (0-based, of
    ``n_bins`` equal-width bins of [0, 1]; empty bins omitted), ``n``, ``predicted`` (mean
    probability in the bin), ``observed`` (fraction of cases), ``observed_ci_low``,
    ``observed_ci_high`` (95 % Wilson interval).
``predictions``: ``features``, ``patient_id``, ``is_case`` (0/1), ``probability`` (averaged
    out-of-fold), ``probability_sd`` (SD over the repeats).
``exclusions``: ``features`` (the feature set, empty for a patient in no feature set),
    ``patient_id``, ``variable`` (the NaN feature columns, comma-separated, or ``group``),
    ``reason``.
"""

from __future__ import annotations

import logging
import math
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "CLASSIFICATION_COLUMNS", "COMPARISON_COLUMNS", "ROC_COLUMNS", "CALIBRATION_COLUMNS", "PREDICTION_COLUMNS",
    "EXCLUSION_COLUMNS", "CLINICAL_BASELINE", "WALL_THICKNESS_PROXY", "ClassificationResult",
    "classify_groups", "clinical_baseline_columns", "latent_columns", "default_feature_sets",
    "delong_components", "delong_auc", "delong_test", "bootstrap_auc", "calibration_fit", "reliability_points",
]

logger = logging.getLogger(__name__)

CLASSIFICATION_COLUMNS = ["features", "n_features", "n", "n_case", "n_control", "n_excluded", "auc", "auc_ci_low",
                          "auc_ci_high", "auc_delong_se", "auc_delong_ci_low", "auc_delong_ci_high",
                          "auc_mean_repeats", "auc_sd_repeats", "threshold", "balanced_accuracy", "sensitivity",
                          "specificity", "brier", "calibration_intercept", "calibration_slope", "n_permutations",
                          "p_permutation"]
COMPARISON_COLUMNS = ["features_a", "features_b", "n", "auc_a", "auc_b", "delta_auc", "se", "ci_low", "ci_high", "z",
                      "p"]
ROC_COLUMNS = ["features", "fpr", "tpr", "threshold"]
CALIBRATION_COLUMNS = ["features", "bin", "n", "predicted", "observed", "observed_ci_low", "observed_ci_high"]
PREDICTION_COLUMNS = ["features", "patient_id", "is_case", "probability", "probability_sd"]
EXCLUSION_COLUMNS = ["features", "patient_id", "variable", "reason"]

#: Clinical indices of the baseline (columns of the analysis table).
CLINICAL_BASELINE = ("clinical.ef_pct", "clinical.edv_ml", "clinical.esv_ml", "clinical.la_volume_ml")
#: The shape attribute standing in for wall thickness, which the workflow does not measure: the
#: myocardial area of each apical view at ED (mm^2). In a 2D apical view it is about the wall
#: thickness times the length of the myocardial contour, so it also grows with the cavity; the
#: baseline holds EDV, so the classifier can use the part not explained by the cavity size.
WALL_THICKNESS_PROXY = "myo_area_mm2"
_Z95 = stats.norm.ppf(0.975)


@dataclass
class ClassificationResult:
    """The tables of :func:`classify_groups` (columns: see the module docstring)."""

    classification: pd.DataFrame
    comparisons: pd.DataFrame
    roc: pd.DataFrame
    calibration: pd.DataFrame
    predictions: pd.DataFrame
    exclusions: pd.DataFrame
    folds: dict = field(default_factory=dict)  #: feature set -> (n_repeats, n) fold index of each patient


# --------------------------------------------------------------------------------------------
# Feature sets of the analysis table
# --------------------------------------------------------------------------------------------

def clinical_baseline_columns(table: pd.DataFrame, views=None) -> list[str]:
    """The clinical baseline: EF, EDV, ESV, LA volume and the wall-thickness proxy of each view.

    ``clinical.ef_pct``, ``clinical.edv_ml``, ``clinical.esv_ml``, ``clinical.la_volume_ml`` and
    ``attributes.myo_area_mm2.{view}.ed`` for each view (:data:`WALL_THICKNESS_PROXY`; all views
    of the table when ``views`` is None). GLS, in the reference baseline, is not measured by the
    workflow and is not part of it.

    Raises
    ------
    ValueError
        A baseline column the table lacks (named).
    """
    missing = [c for c in CLINICAL_BASELINE if c not in table.columns]
    if views is None:
        prefix = f"attributes.{WALL_THICKNESS_PROXY}."
        views = sorted(c[len(prefix):-len(".ed")] for c in table.columns
                       if c.startswith(prefix) and c.endswith(".ed"))
        if not views:
            missing.append(f"{prefix}{{view}}.ed")
    proxy = [f"attributes.{WALL_THICKNESS_PROXY}.{view}.ed" for view in views]
    missing += [c for c in proxy if c not in table.columns]
    if missing:
        raise ValueError(f"clinical baseline: the analysis table lacks column(s) {missing}")
    return [*CLINICAL_BASELINE, *proxy]


def latent_columns(table: pd.DataFrame, model: str, summaries=None, views=None) -> list[str]:
    """The columns ``latent.{model}.{mu_k}.{view}.{summary}`` (optionally only some summaries/views).

    Raises
    ------
    ValueError
        No such column (the models present are named).
    """
    prefix = f"latent.{model}."
    columns = []
    for column in table.columns:
        if not column.startswith(prefix):
            continue
        parts = column.split(".")
        if summaries is not None and parts[-1] not in summaries:
            continue
        if views is not None and parts[-2] not in views:
            continue
        columns.append(column)
    if not columns:
        models = sorted({c.split(".")[1] for c in table.columns if c.startswith("latent.")})
        raise ValueError(f"no column latent.{model}.* (summaries {summaries}, views {views}) in the analysis table; "
                         f"latent models present: {models}")
    return columns


def default_feature_sets(table: pd.DataFrame, models=(), summaries=None, views=None) -> dict[str, list[str]]:
    """``{"clinical": baseline, "latent.{m}": latent, "clinical+latent.{m}": both}`` for each model ``m``.

    The baseline comes first, so the comparisons' ``delta_auc`` are gains over it.
    """
    baseline = clinical_baseline_columns(table, views)
    sets = {"clinical": baseline}
    for model in models:
        latent = latent_columns(table, model, summaries, views)
        sets[f"latent.{model}"] = latent
        sets[f"clinical+latent.{model}"] = baseline + latent
    return sets


# --------------------------------------------------------------------------------------------
# DeLong (Sun & Xu 2014) and the bootstrap
# --------------------------------------------------------------------------------------------

def _labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y.shape}")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1, True, False}:
        raise ValueError(f"labels must be 0/1, got values {sorted(values)}")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("labels hold a single class: an AUC needs cases (1) and controls (0)")
    return y


def delong_components(y, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong's structural components by midranks (Sun & Xu 2014), O(n log n).

    Parameters
    ----------
    y : array_like, shape (n,)
        0/1 (1 = case, the positive class).
    scores : array_like, shape (n,) or (k, n)
        Higher = more likely a case.

    Returns
    -------
    auc : ndarray, shape (k,)
    v10 : ndarray, shape (k, m)
        For each case, the fraction of controls scored below it (ties count 1/2).
    v01 : ndarray, shape (k, n0)
        For each control, the fraction of cases scored above it (ties count 1/2).
    """
    y = _labels(y)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if scores.shape[1] != len(y):
        raise ValueError(f"scores have {scores.shape[1]} columns for {len(y)} labels")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    tx = stats.rankdata(pos, axis=1)
    ty = stats.rankdata(neg, axis=1)
    tz = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    auc = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    return auc, v10, v01


def _delong_covariance(y, scores) -> tuple[np.ndarray, np.ndarray]:
    auc, v10, v01 = delong_components(y, scores)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10, ddof=1)) if m > 1 else np.zeros((len(auc), len(auc)))
    s01 = np.atleast_2d(np.cov(v01, ddof=1)) if n > 1 else np.zeros((len(auc), len(auc)))
    return auc, s10 / m + s01 / n


def delong_auc(y, score, alpha: float = 0.05) -> dict:
    """AUC with DeLong's variance and its normal ``1 - alpha`` interval (clipped to [0, 1]).

    Returns
    -------
    dict
        ``auc, variance, se, ci_low, ci_high``.
    """
    auc, cov = _delong_covariance(y, np.asarray(score, dtype=np.float64)[None, :])
    auc, var = float(auc[0]), float(cov[0, 0])
    se = math.sqrt(max(var, 0.0))
    z = stats.norm.ppf(1.0 - alpha / 2.0)
    return {"auc": auc, "variance": var, "se": se,
            "ci_low": max(0.0, auc - z * se), "ci_high": min(1.0, auc + z * se)}


def delong_test(y, score_a, score_b, alpha: float = 0.05) -> dict:
    """DeLong's test of ``AUC_b - AUC_a`` for two scores of the same patients.

    Returns
    -------
    dict
        ``auc_a, auc_b, delta_auc`` (b - a), ``se``, ``ci_low, ci_high`` (normal, ``1 - alpha``),
        ``z, p`` (two-sided). Identical scores (zero variance and zero difference) give
        ``z = 0`` and ``p = 1``.
    """
    auc, cov = _delong_covariance(y, np.vstack([np.asarray(score_a, float), np.asarray(score_b, float)]))
    delta = float(auc[1] - auc[0])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    if se <= 1e-12 * max(1.0, abs(delta)):
        z = 0.0 if abs(delta) <= 1e-12 else math.copysign(math.inf, delta)
    else:
        z = delta / se
    p = float(2.0 * stats.norm.sf(abs(z)))
    q = stats.norm.ppf(1.0 - alpha / 2.0)
    return {"auc_a": float(auc[0]), "auc_b": float(auc[1]), "delta_auc": delta, "se": se,
            "ci_low": delta - q * se, "ci_high": delta + q * se, "z": float(z), "p": p}


def _auc_from_ranks(ranks: np.ndarray, m: int, n: int) -> np.ndarray:
    return (ranks[..., :m].sum(axis=-1) / m - (m + 1) / 2.0) / n


def bootstrap_auc(y, score, n_bootstrap: int = 1000, seed=0, chunk: int = 256) -> np.ndarray:
    """AUCs of ``n_bootstrap`` patient resamples, stratified by class (case and control counts kept).

    Parameters
    ----------
    y : array_like of 0/1
    score : array_like
    n_bootstrap : int
    seed : int or numpy SeedSequence or Generator
    chunk : int
        Resamples ranked at once (memory ``chunk * n`` floats).

    Returns
    -------
    ndarray, shape (n_bootstrap,)
    """
    y = _labels(y)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = score[y], score[~y]
    m, n = len(pos), len(neg)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = np.empty(int(n_bootstrap))
    for start in range(0, len(out), chunk):
        b = min(chunk, len(out) - start)
        sample = np.concatenate([pos[rng.integers(0, m, size=(b, m))], neg[rng.integers(0, n, size=(b, n))]], axis=1)
        out[start:start + b] = _auc_from_ranks(stats.rankdata(sample, axis=1), m, n)
    return out


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------

def calibration_fit(y, probability, eps: float = 1e-6) -> tuple[float, float]:
    """``(intercept, slope)`` of the logistic recalibration (see the module docstring); NaN when it fails."""
    import statsmodels.api as sm

    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(probability, dtype=np.float64), eps, 1.0 - eps)
    lp = np.log(p / (1.0 - p))
    intercept = slope = math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=lp).fit()
            intercept = float(fit.params[0]) if fit.converged else math.nan
        except Exception as error:  # noqa: BLE001 - separation, singular fits
            logger.info("calibration intercept not estimable: %s", error)
        try:
            fit = sm.GLM(y, np.column_stack([np.ones_like(lp), lp]), family=sm.families.Binomial()).fit()
            slope = float(fit.params[1]) if fit.converged else math.nan
        except Exception as error:  # noqa: BLE001
            logger.info("calibration slope not estimable: %s", error)
    if not (math.isfinite(intercept) and abs(intercept) < 1e3):
        intercept = math.nan
    if not (math.isfinite(slope) and abs(slope) < 1e3):
        slope = math.nan
    return intercept, slope


def reliability_points(y, probability, n_bins: int = 10) -> pd.DataFrame:
    """Binned reliability: ``bin, n, predicted, observed, observed_ci_low, observed_ci_high`` (Wilson 95 %)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(probability, dtype=np.float64)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    rows = []
    for b in range(n_bins):
        inside = bins == b
        k = int(inside.sum())
        if not k:
            continue
        obs = float(y[inside].mean())
        centre = (obs + _Z95 ** 2 / (2 * k)) / (1 + _Z95 ** 2 / k)
        half = _Z95 / (1 + _Z95 ** 2 / k) * math.sqrt(obs * (1 - obs) / k + _Z95 ** 2 / (4 * k * k))
        rows.append({"bin": b, "n": k, "predicted": float(p[inside].mean()), "observed": obs,
                     "observed_ci_low": max(0.0, centre - half), "observed_ci_high": min(1.0, centre + half)})
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS[1:])


# --------------------------------------------------------------------------------------------
# Cross-validated classification
# --------------------------------------------------------------------------------------------

def _set_seed(seed: int, name: str, stream: int = 0) -> np.random.SeedSequence:
    """A stream per (seed, feature-set name): adding a feature set leaves the others' draws unchanged."""
    return np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), stream])


def _check_inputs(table, feature_sets, group_column, id_column, control, case, n_splits, n_repeats, n_bootstrap,
                  threshold, n_permutations):
    if not isinstance(feature_sets, dict) or not feature_sets:
        raise ValueError("feature_sets must be a non-empty dict {name: [columns]}")
    for name in (group_column, id_column):
        if name not in table.columns:
            raise ValueError(f"the analysis table has no {name!r} column")
    if table[id_column].duplicated().any():
        dup = table.loc[table[id_column].duplicated(), id_column].tolist()[:10]
        raise ValueError(f"{id_column}: duplicated patients {dup}; classification needs one row per patient "
                         f"(frame-level rows would need a grouped K-fold)")
    if control == case:
        raise ValueError(f"control and case must differ, both are {control!r}")
    for name, columns in feature_sets.items():
        if isinstance(columns, str) or not len(columns):
            raise ValueError(f"feature set {name!r}: give a non-empty list of columns, got {columns!r}")
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise ValueError(f"feature set {name!r}: column(s) {missing} not in the analysis table")
        if len(set(columns)) != len(columns):
            raise ValueError(f"feature set {name!r}: duplicated columns")
        bad = [c for c in columns if not (pd.api.types.is_numeric_dtype(table[c]) or
                                          pd.api.types.is_bool_dtype(table[c]))]
        if bad:
            raise ValueError(f"feature set {name!r}: column(s) {bad} are not numeric")
    if int(n_splits) < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits}")
    if int(n_repeats) < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    if int(n_bootstrap) < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    if int(n_permutations) < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")


def _cross_validated(x, y, *, n_splits, n_repeats, seed, C):
    """Out-of-fold probabilities, shape (n_repeats, n), and the fold of each patient per repeat."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(y)
    prob = np.full((n_repeats, n), np.nan)
    folds = np.full((n_repeats, n), -1, dtype=np.int16)
    cv = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=int(seed) % (2 ** 32))
    for k, (train, test) in enumerate(cv.split(x, y)):
        repeat, fold = divmod(k, n_splits)
        model = Pipeline([("scale", StandardScaler()),
                          ("logistic", LogisticRegression(C=C, l1_ratio=0.0, max_iter=5000))])
        model.fit(x[train], y[train])
        prob[repeat, test] = model.predict_proba(x[test])[:, 1]
        folds[repeat, test] = fold
    return prob, folds


def _auc(y, score) -> float:
    return float(delong_components(y, score)[0][0])


def classify_groups(table: pd.DataFrame, feature_sets: dict, *, control: str, case: str, n_splits: int = 5,
                    n_repeats: int = 5, n_bootstrap: int = 1000, seed: int, threshold: float = 0.5,
                    C: float = 1.0, n_bins: int = 10, n_permutations: int = 0, group_column: str = "group",
                    id_column: str = "patient_id") -> ClassificationResult:
    """Classify ``case`` vs ``control`` from each feature set by repeated stratified cross-validation.

    Parameters
    ----------
    table : DataFrame
        The analysis table, one row per patient (``id_column``, ``group_column`` and the
        feature columns). Pass the analysed patients; rows of any other group are left out
        and listed in the exclusions.
    feature_sets : dict of str -> list of str
        Name -> columns. Order matters for the comparisons (baseline first).
    control, case : str
        The two groups (``case`` is the positive class).
    n_splits, n_repeats : int
        Stratified K-fold by patient, repeated with different shuffles.
    n_bootstrap : int
        Patient-bootstrap resamples of the AUC interval.
    seed : int
        Folds and bootstrap.
    threshold : float
        Pre-registered probability threshold of the sensitivity, specificity and balanced accuracy.
    C : float
        Inverse L2 strength of the logistic regression (on standardised features).
    n_bins : int
        Bins of the reliability points.
    n_permutations : int
        Label permutations of the permutation p-value (0: none, ``p_permutation`` NaN). Each
        permutation reruns the whole cross-validation (``n_splits * n_repeats`` fits).

    Returns
    -------
    ClassificationResult
        See the module docstring for the tables' columns.

    Raises
    ------
    ValueError
        A missing column (named with its feature set), a non-numeric feature, duplicated
        patients, a single compared group, or a feature set with fewer patients of a group
        than ``n_splits`` (after the NaN exclusions).
    """
    from threadpoolctl import threadpool_limits

    _check_inputs(table, feature_sets, group_column, id_column, control, case, n_splits, n_repeats, n_bootstrap,
                  threshold, n_permutations)
    # The fits are small: BLAS threads only contend (several-fold slower on a shared machine).
    with threadpool_limits(limits=1):
        return _classify(table, feature_sets, control=control, case=case, n_splits=int(n_splits),
                         n_repeats=int(n_repeats), n_bootstrap=int(n_bootstrap), seed=seed, threshold=threshold, C=C,
                         n_bins=n_bins, n_permutations=int(n_permutations), group_column=group_column,
                         id_column=id_column)


def _classify(table, feature_sets, *, control, case, n_splits, n_repeats, n_bootstrap, seed, threshold, C, n_bins,
              n_permutations, group_column, id_column) -> ClassificationResult:
    from sklearn.metrics import roc_curve

    group = table[group_column].astype("string")
    compared = group.isin([control, case]).fillna(False).to_numpy(bool)
    exclusions = [{"features": "", "patient_id": pid, "variable": group_column,
                   "reason": "missing group: not classified" if pd.isna(g) else
                             f"group {g!r} is neither the control ({control!r}) nor the case ({case!r}): "
                             f"not classified"}
                  for pid, g in zip(table.loc[~compared, id_column], table.loc[~compared, group_column])]
    data = table.loc[compared].reset_index(drop=True)
    is_case = (data[group_column].astype(str) == case).to_numpy()
    counts = {control: int((~is_case).sum()), case: int(is_case.sum())}
    if min(counts.values()) == 0:
        present = sorted(table[group_column].dropna().astype(str).unique())
        raise ValueError(f"{group_column}: classification needs both groups {control!r} and {case!r}; patients per "
                         f"group {counts} (groups present: {present})")

    rows, roc, calibration, predictions, folds, scores = [], [], [], [], {}, {}
    for name, columns in feature_sets.items():
        columns = list(columns)
        x_all = data[columns].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(x_all)
        keep = ~bad.any(axis=1)
        for i in np.flatnonzero(~keep):
            exclusions.append({"features": name, "patient_id": data[id_column].iloc[i],
                               "variable": ", ".join(c for c, b in zip(columns, bad[i]) if b),
                               "reason": f"NaN (or infinite) feature: left out of classification feature set {name!r}"})
        if (~keep).any():
            logger.info("feature set %r: %d patient(s) with a NaN feature left out", name, int((~keep).sum()))
        x, y = x_all[keep], is_case[keep]
        ids = data[id_column].to_numpy()[keep]
        n_case, n_control = int(y.sum()), int((~y).sum())
        if min(n_case, n_control) < n_splits:
            raise ValueError(f"feature set {name!r}: {n_case} {case!r} and {n_control} {control!r} patients with "
                             f"every feature; n_splits = {n_splits} needs at least that many of each group "
                             f"(lower n_splits or fix the NaN features)")
        prob, fold = _cross_validated(x, y.astype(int), n_splits=n_splits, n_repeats=n_repeats, seed=seed, C=C)
        p = prob.mean(axis=0)
        folds[name] = fold
        scores[name] = pd.Series(p, index=ids)
        repeat_auc = np.array([_auc(y, prob[r]) for r in range(n_repeats)])
        de = delong_auc(y, p)
        boot = bootstrap_auc(y, p, n_bootstrap, seed=np.random.default_rng(_set_seed(seed, name)))
        called = p >= threshold
        sensitivity = float(called[y].mean())
        specificity = float((~called[~y]).mean())
        intercept, slope = calibration_fit(y, p)
        p_perm = math.nan
        if n_permutations:
            perm_rng = np.random.default_rng(_set_seed(seed, name, 1))
            null = np.array([_auc(yp, _cross_validated(x, yp.astype(int), n_splits=n_splits, n_repeats=n_repeats,
                                                        seed=seed, C=C)[0].mean(axis=0))
                             for yp in (perm_rng.permutation(y) for _ in range(int(n_permutations)))])
            p_perm = float((1 + np.sum(null >= de["auc"] - 1e-12)) / (1 + len(null)))
        rows.append({
            "features": name, "n_features": len(columns), "n": len(y), "n_case": n_case, "n_control": n_control,
            "n_excluded": int((~keep).sum()), "auc": de["auc"],
            "auc_ci_low": float(np.percentile(boot, 2.5)), "auc_ci_high": float(np.percentile(boot, 97.5)),
            "auc_delong_se": de["se"], "auc_delong_ci_low": de["ci_low"], "auc_delong_ci_high": de["ci_high"],
            "auc_mean_repeats": float(repeat_auc.mean()),
            "auc_sd_repeats": float(repeat_auc.std(ddof=1)) if n_repeats > 1 else math.nan,
            "threshold": float(threshold), "balanced_accuracy": (sensitivity + specificity) / 2.0,
            "sensitivity": sensitivity, "specificity": specificity, "brier": float(np.mean((p - y) ** 2)),
            "calibration_intercept": intercept, "calibration_slope": slope,
            "n_permutations": int(n_permutations), "p_permutation": p_perm,
        })
        fpr, tpr, thr = roc_curve(y.astype(int), p, drop_intermediate=True)
        roc.append(pd.DataFrame({"features": name, "fpr": fpr, "tpr": tpr, "threshold": thr}))
        rel = reliability_points(y, p, n_bins)
        rel.insert(0, "features", name)
        calibration.append(rel)
        predictions.append(pd.DataFrame({"features": name, "patient_id": ids, "is_case": y.astype(int),
                                         "probability": p,
                                         "probability_sd": prob.std(axis=0, ddof=1) if n_repeats > 1 else np.nan}))

    comparisons = []
    names = list(feature_sets)
    case_of = pd.Series(is_case, index=data[id_column].to_numpy())
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = scores[a].index.intersection(scores[b].index, sort=False)
            y = case_of.loc[common].to_numpy(bool)
            if y.all() or not y.any():
                comparisons.append({"features_a": a, "features_b": b, "n": len(common)})
                continue
            test = delong_test(y, scores[a].loc[common].to_numpy(), scores[b].loc[common].to_numpy())
            comparisons.append({"features_a": a, "features_b": b, "n": len(common), **test})

    def frame(parts, columns):
        parts = [p for p in parts if len(p)]
        return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)

    return ClassificationResult(
        classification=pd.DataFrame(rows, columns=CLASSIFICATION_COLUMNS),
        comparisons=pd.DataFrame(comparisons, columns=COMPARISON_COLUMNS),
        roc=frame(roc, ROC_COLUMNS),
        calibration=frame(calibration, CALIBRATION_COLUMNS),
        predictions=frame(predictions, PREDICTION_COLUMNS),
        exclusions=pd.DataFrame(exclusions, columns=EXCLUSION_COLUMNS),
        folds=folds,
    )
