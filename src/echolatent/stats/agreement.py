"""Agreement of clinical indices between two sources of masks (or a source and the analytic truth).

The patient is the unit: each statistic compares one value per patient from a *method*
(e.g. indices on temporally corrected masks) with one from a *reference* (the input masks, the
analytic truth of a synthetic cohort). Differences are always **method minus reference**.
Pure functions over arrays and DataFrames (no file I/O, no Snakemake, no torch).

Statistics and their conventions
--------------------------------
Bland-Altman (Bland & Altman 1986, 1999), :func:`bland_altman`:
    ``d = method - reference``, ``m = (method + reference) / 2``; bias ``mean(d)``; ``sd_diff``
    the SD of ``d`` (ddof 1); limits of agreement ``bias -/+ 1.96 sd_diff``. 95 % CI of the bias:
    t distribution, ``bias +/- t(n-1) sd_diff / sqrt(n)``. CI of each limit: **exact** by
    default, i.e. under normal differences ``sqrt(n) (LoA - dbar) / s`` follows a non-central t
    with ``n - 1`` degrees of freedom and non-centrality ``+/-1.96 sqrt(n)`` (Carkeet 2015,
    Optom Vis Sci 92:e71), quantiles from :data:`scipy.stats.nct`; ``loa_ci="approximate"``
    gives Bland & Altman's ``LoA +/- t(n-1) sqrt(3 sd_diff^2 / n)``, symmetric where the exact
    interval is skewed away from the bias; it undercovers for small n (0.91 at n = 8).
    Proportional bias: OLS slope of ``d`` on ``m`` and its two-sided p
    (:func:`scipy.stats.linregress`); a slope of 0.1 means the difference grows by 0.1 units per
    unit of the mean. Note that when only the method carries noise (``y = x + e``) the slope
    is biased upwards by ``var(e) / 2 / var(m)``; with equal noise on both sides it is unbiased.
MAE: ``mean(|d|)``. ``cv_pct``, the coefficient of variation of the differences:
    ``100 sd_diff / mean(m)``, the SD of the differences over the grand mean of the paired
    means (NaN when that mean is not positive: indices are positive quantities). The
    within-subject CV ``sqrt(mean(d^2) / 2) / mean(m)`` used by some papers is about
    ``cv_pct / sqrt(2)`` when the bias is small.
ICC (Shrout & Fleiss 1979; McGraw & Wong 1996), :func:`icc`:
    two-way ANOVA of the ``n x k`` table (targets x raters; here patients x {method,
    reference}, ``k = 2``) with mean squares ``MSR`` (rows), ``MSC`` (columns), ``MSE``
    (residual). ICC(2,1), two-way random, absolute agreement, single measurement:
    ``(MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n)``; CI from the F-based
    Satterthwaite approximation of Shrout & Fleiss (1979, eq. for case 2; McGraw & Wong 1996
    Table 7, "A,1"). ICC(3,1), two-way mixed, consistency: ``(MSR - MSE) / (MSR + (k-1) MSE)``;
    exact F-based CI with ``F0 = MSR / MSE`` on ``(n-1, (n-1)(k-1))`` degrees of freedom.
    The ICC(2,1) interval is approximate: nominal without rater variance, conservative when
    method and reference differ by a fixed bias (this table's case), too narrow when two raters
    are drawn from a population with a large rater variance (a known limit of the
    approximation with k = 2: coverage 0.89 at n = 30 and rater variance a quarter of the
    patient variance in our simulations).
Lin's concordance correlation coefficient (Lin 1989, Biometrics 45:255; correction 2000,
    56:324), :func:`lin_ccc`: ``2 s_xy / (s_x^2 + s_y^2 + (xbar - ybar)^2)`` with moment
    (1/n) variances and covariance, as Lin defines it; 95 % CI by the Fisher z-transform of
    the CCC with Lin's asymptotic variance (``n - 2`` in the denominator).
Pearson r: :func:`scipy.stats.pearsonr`, CI by the Fisher z-transform (scipy).

Table (``agreement.tsv``)
-------------------------
One row per (method, reference, index, split), from :func:`agreement_table`:
    ``method``, ``reference`` (source names, e.g. ``temporal_arvae``, ``input``, ``truth``),
    ``index`` (clinical index, e.g. ``ef_pct``), ``split`` (``all``: every paired patient;
    otherwise the patients of that split of the patients table), ``n`` (paired patients:
    a value on both sides), ``mean_method``, ``mean_reference`` (means over those patients,
    index units), ``bias`` (mean of method minus reference), ``bias_ci_low``,
    ``bias_ci_high`` (t CI), ``sd_diff``, ``loa_low``, ``loa_high`` (``bias -/+ 1.96
    sd_diff``), ``loa_low_ci_low``, ``loa_low_ci_high``, ``loa_high_ci_low``,
    ``loa_high_ci_high`` (exact CIs of the limits, see above), ``proportional_slope``,
    ``proportional_p`` (slope of the differences on the means and its p), ``icc_2_1``,
    ``icc_2_1_ci_low``, ``icc_2_1_ci_high`` (ICC(2,1) and its F-based CI), ``icc_3_1``
    (ICC(3,1)), ``ccc``, ``ccc_ci_low``, ``ccc_ci_high`` (Lin's CCC and CI), ``pearson_r``,
    ``mae`` (index units), ``cv_pct`` (%), ``note`` (empty, or why some estimates are NaN:
    fewer than 3 paired patients, constant values, no residual variance). Every CI is at the
    level given (default 95 %).

``exclusions`` (returned next to the table): ``patient_id``, ``variable``, ``reason``. A
    clinical index as ``variable``: the patient has no value (NaN, or no row) on one side of
    a (method, reference) comparison and is left out of that comparison for that index only;
    the reason names the source. ``split``: the patient is paired but has no split in the
    patients table, and is counted in split ``all`` only.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

__all__ = ["AGREEMENT_COLUMNS", "EXCLUSION_COLUMNS", "LOA_Z", "MIN_PATIENTS", "bland_altman", "icc", "lin_ccc",
           "pearson", "agreement", "agreement_table"]

AGREEMENT_COLUMNS = ["method", "reference", "index", "split", "n", "mean_method", "mean_reference", "bias",
                     "bias_ci_low", "bias_ci_high", "sd_diff", "loa_low", "loa_low_ci_low", "loa_low_ci_high",
                     "loa_high", "loa_high_ci_low", "loa_high_ci_high", "proportional_slope", "proportional_p",
                     "icc_2_1", "icc_2_1_ci_low", "icc_2_1_ci_high", "icc_3_1", "ccc", "ccc_ci_low", "ccc_ci_high",
                     "pearson_r", "mae", "cv_pct", "note"]
EXCLUSION_COLUMNS = ["patient_id", "variable", "reason"]
_ESTIMATES = AGREEMENT_COLUMNS[4:-1]
#: Multiplier of the SD of the differences in the limits of agreement (95 % limits).
LOA_Z = 1.96
#: Fewest paired patients for which the agreement statistics are computed.
MIN_PATIENTS = 3
ALL_SPLITS = "all"

_BA_KEYS = ["n", "mean_method", "mean_reference", "bias", "bias_ci_low", "bias_ci_high", "sd_diff", "loa_low",
            "loa_low_ci_low", "loa_low_ci_high", "loa_high", "loa_high_ci_low", "loa_high_ci_high",
            "proportional_slope", "proportional_p", "mae", "cv_pct"]


def _pair(method, reference) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(method, dtype=np.float64).ravel()
    y = np.asarray(reference, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"method and reference differ in length ({x.size} vs {y.size})")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("method and reference must be finite (leave NaN patients out first, and list them)")
    return x, y


@lru_cache(maxsize=256)
def _nct_quantiles(n: int, z: float, level: float) -> tuple[float, float]:
    """Quantiles (alpha/2, 1 - alpha/2) of the non-central t with n-1 df and non-centrality z sqrt(n)."""
    from scipy import stats

    alpha = 1.0 - level
    low, high = stats.nct.ppf([alpha / 2, 1 - alpha / 2], n - 1, z * np.sqrt(n))
    return float(low), float(high)


def bland_altman(method, reference, *, level: float = 0.95, loa_ci: str = "exact") -> dict:
    """Bland-Altman statistics of paired measurements (method minus reference).

    Parameters
    ----------
    method, reference : array_like, shape (n,)
        Paired values, finite.
    level : float
        Confidence level of the CIs.
    loa_ci : {"exact", "approximate"}
        CI of the limits of agreement: exact (non-central t, Carkeet 2015) or Bland & Altman's
        ``LoA +/- t(n-1) sqrt(3 sd^2 / n)``.

    Returns
    -------
    dict
        ``n, mean_method, mean_reference, bias, bias_ci_low, bias_ci_high, sd_diff, loa_low,
        loa_low_ci_low, loa_low_ci_high, loa_high, loa_high_ci_low, loa_high_ci_high,
        proportional_slope, proportional_p, mae, cv_pct``. With fewer than :data:`MIN_PATIENTS`
        pairs every estimate but ``n`` and the means is NaN; CIs are NaN (not zero-width) when
        the differences are constant; the proportional-bias slope is NaN when the means are.
    """
    from scipy import stats

    if loa_ci not in ("exact", "approximate"):
        raise ValueError(f"loa_ci must be 'exact' or 'approximate', not {loa_ci!r}")
    x, y = _pair(method, reference)
    n = x.size
    out = dict.fromkeys(_BA_KEYS, np.nan)
    out.update(n=n, mean_method=x.mean() if n else np.nan, mean_reference=y.mean() if n else np.nan)
    if n < MIN_PATIENTS:
        return out
    d = x - y
    m = (x + y) / 2
    bias = d.mean()
    sd = d.std(ddof=1)
    loa_low, loa_high = bias - LOA_Z * sd, bias + LOA_Z * sd
    grand_mean = m.mean()
    out.update(bias=bias, sd_diff=sd, loa_low=loa_low, loa_high=loa_high, mae=np.abs(d).mean(),
               cv_pct=100 * sd / grand_mean if grand_mean > 0 else np.nan)
    if sd > 0:
        se = sd / np.sqrt(n)
        t = stats.t.ppf(0.5 + level / 2, n - 1)
        out.update(bias_ci_low=bias - t * se, bias_ci_high=bias + t * se)
        if loa_ci == "exact":
            q_low, q_high = _nct_quantiles(n, LOA_Z, level)
            out.update(loa_high_ci_low=bias + q_low * se, loa_high_ci_high=bias + q_high * se,
                       loa_low_ci_low=bias - q_high * se, loa_low_ci_high=bias - q_low * se)
        else:
            half = t * np.sqrt(3 * sd**2 / n)
            out.update(loa_low_ci_low=loa_low - half, loa_low_ci_high=loa_low + half,
                       loa_high_ci_low=loa_high - half, loa_high_ci_high=loa_high + half)
    if np.ptp(m) > 0:
        fit = stats.linregress(m, d)
        out.update(proportional_slope=fit.slope, proportional_p=fit.pvalue)
    return out


def icc(ratings, *, level: float = 0.95) -> dict:
    """ICC(2,1) and ICC(3,1) of an ``n x k`` table (targets in rows, raters in columns) with CIs.

    Parameters
    ----------
    ratings : array_like, shape (n, k)
        Complete table (no NaN), ``n >= 2`` targets, ``k >= 2`` raters.
    level : float
        Confidence level of the CIs.

    Returns
    -------
    dict
        ``icc_2_1, icc_2_1_ci_low, icc_2_1_ci_high`` (two-way random, absolute agreement,
        single measurement; Shrout & Fleiss 1979 F-based CI with Satterthwaite's degrees of
        freedom), ``icc_3_1, icc_3_1_ci_low, icc_3_1_ci_high`` (two-way mixed, consistency;
        exact F-based CI), ``ms_rows, ms_cols, ms_error, n, k``. NaN where undefined: no
        variance at all (every mean square 0); CIs NaN when ``ms_error`` is 0.
    """
    from scipy import stats

    table = np.asarray(ratings, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] < 2 or table.shape[1] < 2:
        raise ValueError(f"icc needs an n x k table with n >= 2 and k >= 2, got shape {table.shape}")
    if not np.isfinite(table).all():
        raise ValueError("icc needs a complete table (no NaN)")
    n, k = table.shape
    grand = table.mean()
    row_means, col_means = table.mean(axis=1), table.mean(axis=0)
    ss_rows = k * ((row_means - grand) ** 2).sum()
    ss_cols = n * ((col_means - grand) ** 2).sum()
    ss_error = ((table - row_means[:, None] - col_means[None, :] + grand) ** 2).sum()
    df_rows, df_cols, df_error = n - 1, k - 1, (n - 1) * (k - 1)
    msr, msc, mse = ss_rows / df_rows, ss_cols / df_cols, ss_error / df_error
    # Rounding: a residual mean square at the level of machine precision is exact agreement.
    if mse <= 1e-24 * max(msr, msc, np.finfo(float).tiny):
        mse = 0.0
    out = {"icc_2_1": np.nan, "icc_2_1_ci_low": np.nan, "icc_2_1_ci_high": np.nan, "icc_3_1": np.nan,
           "icc_3_1_ci_low": np.nan, "icc_3_1_ci_high": np.nan, "ms_rows": msr, "ms_cols": msc, "ms_error": mse,
           "n": n, "k": k}
    alpha = 1.0 - level
    denominator_2 = msr + (k - 1) * mse + k * (msc - mse) / n
    if denominator_2 > 0:
        out["icc_2_1"] = (msr - mse) / denominator_2
    if msr + (k - 1) * mse > 0:
        out["icc_3_1"] = (msr - mse) / (msr + (k - 1) * mse)
    if mse > 0:
        # ICC(3,1): F0 = MSR / MSE on (n-1, (n-1)(k-1)) df (Shrout & Fleiss 1979, case 3).
        f0 = msr / mse
        f_low = f0 / stats.f.ppf(1 - alpha / 2, df_rows, df_error)
        f_high = f0 * stats.f.ppf(1 - alpha / 2, df_error, df_rows)
        out["icc_3_1_ci_low"] = (f_low - 1) / (f_low + k - 1)
        out["icc_3_1_ci_high"] = (f_high - 1) / (f_high + k - 1)
        # ICC(2,1): Satterthwaite df v of the denominator, F* on (n-1, v) and (v, n-1)
        # (Shrout & Fleiss 1979, case 2; McGraw & Wong 1996, Table 7, ICC(A,1)).
        rho = out["icc_2_1"]
        fj = msc / mse
        b = n * (1 + (k - 1) * rho) - k * rho
        v = df_error * (k * rho * fj + b) ** 2 / (df_rows * (k * rho * fj) ** 2 + b**2)
        f_star_high = stats.f.ppf(1 - alpha / 2, df_rows, v)
        f_star_low = stats.f.ppf(1 - alpha / 2, v, df_rows)
        base = k * msc + (k * n - k - n) * mse
        out["icc_2_1_ci_low"] = n * (msr - f_star_high * mse) / (f_star_high * base + n * msr)
        out["icc_2_1_ci_high"] = n * (f_star_low * msr - mse) / (base + n * f_star_low * msr)
    return out


def lin_ccc(x, y, *, level: float = 0.95) -> dict:
    """Lin's concordance correlation coefficient with its Fisher-z CI (Lin 1989, corrected 2000).

    Parameters
    ----------
    x, y : array_like, shape (n,)
        Paired values, finite.
    level : float

    Returns
    -------
    dict
        ``ccc`` (``2 s_xy / (s_x^2 + s_y^2 + (xbar - ybar)^2)``, moment variances),
        ``ci_low, ci_high``, ``n``. ``ccc`` NaN when both samples are constant and equal; the CI
        NaN when n < 3 or when the asymptotic variance is undefined (``|ccc| = 1``, ``r = 0``).
    """
    from scipy import stats

    x, y = _pair(x, y)
    n = x.size
    out = {"ccc": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": n}
    if n < 2:
        return out
    sx2, sy2 = x.var(), y.var()
    sxy = ((x - x.mean()) * (y - y.mean())).mean()
    shift2 = (x.mean() - y.mean()) ** 2
    denominator = sx2 + sy2 + shift2
    if not denominator > 0:
        return out
    pc = 2 * sxy / denominator
    out["ccc"] = pc
    if n < 3 or not (sx2 > 0 and sy2 > 0) or abs(pc) >= 1:
        return out
    r = sxy / np.sqrt(sx2 * sy2)
    if r == 0:
        return out
    u2 = shift2 / np.sqrt(sx2 * sy2)
    var_z = ((1 - r**2) * pc**2 / ((1 - pc**2) * r**2)
             + 2 * pc**3 * (1 - pc) * u2 / (r * (1 - pc**2) ** 2)
             - pc**4 * u2**2 / (2 * r**2 * (1 - pc**2) ** 2)) / (n - 2)
    if not var_z > 0:
        return out
    z = np.arctanh(pc)
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(var_z)
    out.update(ci_low=np.tanh(z - half), ci_high=np.tanh(z + half))
    return out


def pearson(x, y, *, level: float = 0.95) -> dict:
    """Pearson r with its Fisher-z CI and p (:func:`scipy.stats.pearsonr`); NaN for n < 3 or a constant sample."""
    from scipy import stats

    x, y = _pair(x, y)
    out = {"r": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan, "n": x.size}
    if x.size < MIN_PATIENTS or not (np.ptp(x) > 0 and np.ptp(y) > 0):
        return out
    result = stats.pearsonr(x, y)
    out.update(r=float(result.statistic), p=float(result.pvalue))
    if x.size > 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ci = result.confidence_interval(confidence_level=level)
        out.update(ci_low=float(ci.low), ci_high=float(ci.high))
    return out


def agreement(method, reference, *, level: float = 0.95) -> tuple[dict, str]:
    """Every estimate of a table row (:data:`AGREEMENT_COLUMNS` from ``n`` to ``cv_pct``) and a note.

    Parameters
    ----------
    method, reference : array_like, shape (n,)
        Paired values, finite (method minus reference).
    level : float

    Returns
    -------
    (dict, str)
        The estimates, and why some of them are NaN (empty when none is for a foreseeable
        reason).
    """
    x, y = _pair(method, reference)
    row = dict.fromkeys(_ESTIMATES, np.nan)
    row.update(bland_altman(x, y, level=level))
    n = x.size
    if n < MIN_PATIENTS:
        return row, f"fewer than {MIN_PATIENTS} paired patients (n={n}): no estimate"
    notes = []
    constant = [name for name, v in (("method", x), ("reference", y)) if not np.ptp(v) > 0]
    if constant:
        notes.append(f"constant {' and '.join(constant)} values: Pearson r undefined")
    if not row["sd_diff"] > 0:
        notes.append("constant differences: CIs of bias and limits undefined")
    if not np.ptp((x + y) / 2) > 0:
        notes.append("constant means: proportional bias undefined")
    icc_values = icc(np.column_stack([x, y]), level=level)
    row.update(icc_2_1=icc_values["icc_2_1"], icc_2_1_ci_low=icc_values["icc_2_1_ci_low"],
               icc_2_1_ci_high=icc_values["icc_2_1_ci_high"], icc_3_1=icc_values["icc_3_1"])
    if np.isnan(icc_values["icc_2_1"]) or np.isnan(icc_values["icc_3_1"]):
        notes.append("no variance between patients: ICC undefined")
    elif icc_values["ms_error"] == 0:
        notes.append("no residual variance: ICC CI undefined")
    ccc = lin_ccc(x, y, level=level)
    row.update(ccc=ccc["ccc"], ccc_ci_low=ccc["ci_low"], ccc_ci_high=ccc["ci_high"])
    if np.isnan(ccc["ccc"]):
        notes.append("identical constant values: CCC undefined")
    elif np.isnan(ccc["ci_low"]) and not constant:
        notes.append("CCC CI undefined (|CCC| = 1 or r = 0)")
    row["pearson_r"] = pearson(x, y, level=level)["r"]
    return row, "; ".join(notes)


def _source_table(name: str, frame: pd.DataFrame, indices: Sequence[str], columns: Mapping[str, str]) -> pd.DataFrame:
    """The index columns of one source, indexed by ``patient_id``, renamed to the index names, as float."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"source {name!r}: expected a DataFrame, got {type(frame).__name__}")
    frame = frame.reset_index() if "patient_id" not in frame.columns and frame.index.name == "patient_id" else frame
    if "patient_id" not in frame.columns:
        raise ValueError(f"source {name!r} has no patient_id column")
    ids = frame["patient_id"].astype(str)
    duplicated = ids[ids.duplicated()].unique()
    if len(duplicated):
        raise ValueError(f"source {name!r} has duplicated patient_id: {', '.join(sorted(duplicated)[:10])}")
    wanted = {index: columns.get(index, index) for index in indices}
    missing = [column for column in wanted.values() if column not in frame.columns]
    if missing:
        raise ValueError(f"source {name!r} lacks the index column(s) {missing}")
    out = pd.DataFrame(index=pd.Index(ids.to_numpy(), name="patient_id"))
    for index, column in wanted.items():
        try:
            out[index] = pd.to_numeric(frame[column], errors="raise").to_numpy(dtype=np.float64)
        except (ValueError, TypeError) as error:
            raise ValueError(f"source {name!r}, column {column!r}: not numeric ({error})") from None
    return out


def agreement_table(pairs: Mapping[str, pd.DataFrame], *, indices: Sequence[str], methods: Sequence[str],
                    reference: str | Sequence[str], patients: pd.DataFrame | None = None,
                    columns: Mapping[str, Mapping[str, str]] | None = None,
                    level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Agreement of each method with each reference, per clinical index and split.

    Parameters
    ----------
    pairs : mapping of str to DataFrame
        Per-patient tables of indices, one per source (``{"input": ..., "temporal_arvae": ...,
        "truth": ...}``), each with ``patient_id`` (a column, or the index name) and the index
        columns. Patients are paired by ``patient_id``.
    indices : sequence of str
        Index names (columns, unless ``columns`` renames them for a source).
    methods : sequence of str
        Sources compared with each reference (differences: method minus reference). A method
        equal to the reference is skipped.
    reference : str or sequence of str
        The reference source(s).
    patients : DataFrame, optional
        ``patient_id, split``: the splits. Without it, only split ``all`` is reported.
    columns : mapping, optional
        Per-source column of an index when it is named differently there, e.g.
        ``{"truth": {"la_volume_ml": "la_volume_es_ml"}}``.
    level : float
        Confidence level of every CI.

    Returns
    -------
    (DataFrame, DataFrame)
        The table (:data:`AGREEMENT_COLUMNS`, one row per method, reference, index and split:
        ``all`` first, then each split of ``patients`` in sorted order, rows with fewer than
        :data:`MIN_PATIENTS` paired patients having NaN estimates and a note) and the exclusions
        (:data:`EXCLUSION_COLUMNS`). Columns: see the module docstring.

    Raises
    ------
    KeyError
        A method or reference that is not in ``pairs``.
    ValueError
        No index, no method, a source without ``patient_id``, with duplicated patients, without
        an index column or with a non-numeric one; ``patients`` without ``patient_id``/``split``
        or with duplicated patients.
    """
    indices = list(indices)
    methods = list(methods)
    references = [reference] if isinstance(reference, str) else list(reference)
    if not indices:
        raise ValueError("agreement_table: no index given")
    if not methods or not references:
        raise ValueError("agreement_table: no method or no reference given")
    unknown = [name for name in [*methods, *references] if name not in pairs]
    if unknown:
        raise KeyError(f"agreement_table: source(s) {unknown} not among {sorted(pairs)}")
    columns = columns or {}
    tables = {name: _source_table(name, pairs[name], indices, columns.get(name, {}))
              for name in dict.fromkeys([*methods, *references])}

    split_of = pd.Series(dtype=object)
    split_names: list[str] = []
    if patients is not None:
        if not {"patient_id", "split"} <= set(patients.columns):
            raise ValueError("agreement_table: patients needs patient_id and split columns")
        ids = patients["patient_id"].astype(str)
        if ids.duplicated().any():
            raise ValueError("agreement_table: duplicated patient_id in patients")
        split_of = pd.Series(patients["split"].to_numpy(), index=ids.to_numpy()).dropna().astype(str)
        split_names = sorted(set(split_of) - {ALL_SPLITS})

    rows, exclusions = [], []
    no_split: set[str] = set()
    for ref in references:
        for method in methods:
            if method == ref:
                continue
            left, right = tables[method], tables[ref]
            ids = left.index.union(right.index, sort=False).sort_values()
            patient_ids = ids.to_numpy(dtype=object)
            present = {method: left.index.get_indexer(ids) >= 0, ref: right.index.get_indexer(ids) >= 0}
            values = {method: left.reindex(ids), ref: right.reindex(ids)}
            splits = split_of.reindex(ids).to_numpy(dtype=object)
            has_split = pd.notna(splits)
            for index in indices:
                x, y = values[method][index].to_numpy(), values[ref][index].to_numpy()
                for name, v, role in ((method, x, "method"), (ref, y, "reference")):
                    exclusions += [(patient, index, f"no row in {name!r} ({role}): left out of {method} vs {ref}")
                                   for patient in patient_ids[~present[name]]]
                    exclusions += [(patient, index, f"NaN in {name!r} ({role}): left out of {method} vs {ref}")
                                   for patient in patient_ids[present[name] & np.isnan(v)]]
                paired = ~np.isnan(x) & ~np.isnan(y)
                no_split.update(patient_ids[paired & ~has_split])
                for split in [ALL_SPLITS, *split_names]:
                    keep = paired if split == ALL_SPLITS else paired & (splits == split)
                    estimates, note = agreement(x[keep], y[keep], level=level)
                    rows.append({"method": method, "reference": ref, "index": index, "split": split, **estimates,
                                 "note": note})
    if patients is not None:
        exclusions += [(patient, "split", f"no split in the patients table: counted in split {ALL_SPLITS!r} only")
                       for patient in sorted(no_split)]
    table = pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)
    table["n"] = table["n"].astype(int)
    return table, pd.DataFrame(exclusions, columns=EXCLUSION_COLUMNS)
