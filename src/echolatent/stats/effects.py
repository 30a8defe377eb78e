"""Covariate-adjusted group effects: OLS ``outcome ~ group + covariates`` with HC3 standard errors.

Per outcome, two fits on the same patients (those with the outcome and every covariate):
adjusted (group and covariates) and unadjusted (group alone), so confounding is visible.
The group is coded 0 (control) / 1 (case): its coefficient is the case-minus-control
difference in the outcome's units; dividing by the outcome's SD over the fitted patients
gives the standardised effect (the coefficient of the same fit on the z-scored outcome).
Confidence intervals and p-values use HC3 standard errors and the t distribution with the
residual degrees of freedom (statsmodels). q-values: Benjamini-Hochberg within each family,
model and adjustment. Columns: see :mod:`echolatent.stats`.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from echolatent.stats.analysis_table import family_columns
from echolatent.stats.design import covariate_matrix

__all__ = ["EFFECT_COLUMNS", "group_effect", "group_effects", "bh_qvalues"]

logger = logging.getLogger(__name__)

EFFECT_COLUMNS = ["family", "outcome", "model", "adjusted", "n", "beta", "ci_low", "ci_high", "p", "std_beta",
                  "std_ci_low", "std_ci_high", "q"]
_ESTIMATES = EFFECT_COLUMNS[5:12]


def group_effect(y, is_case, covariates=None, alpha: float = 0.05) -> dict:
    """The case-minus-control coefficient of one OLS fit with HC3 standard errors.

    Parameters
    ----------
    y : array_like, shape (n,)
        The outcome (no NaN).
    is_case : array_like of bool or 0/1, shape (n,)
    covariates : array_like, shape (n, k), optional
        Model columns of the covariates (:func:`echolatent.stats.design.covariate_matrix`).
    alpha : float
        1 - confidence level.

    Returns
    -------
    dict
        ``n, beta, ci_low, ci_high, p, std_beta, std_ci_low, std_ci_high``; NaN estimates when
        the fit is not possible (fewer patients than parameters plus one, a constant outcome,
        a leverage of 1 making HC3 undefined).
    """
    import statsmodels.api as sm

    y = np.asarray(y, dtype=np.float64)
    group = np.asarray(is_case, dtype=np.float64)
    columns = [np.ones_like(y), group]
    if covariates is not None:
        covariates = np.asarray(covariates, dtype=np.float64).reshape(len(y), -1)
        columns += list(covariates.T)
    X = np.column_stack(columns)
    result = dict.fromkeys(_ESTIMATES, np.nan)
    result["n"] = len(y)
    sd = y.std(ddof=1) if len(y) > 1 else np.nan
    if len(y) <= X.shape[1] or not sd > 0 or np.linalg.matrix_rank(X) < X.shape[1]:
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = sm.OLS(y, X).fit(cov_type="HC3", use_t=True)
        low, high = fit.conf_int(alpha)[1]
    if not np.isfinite([fit.bse[1], low, high]).all():
        return result
    result.update(beta=fit.params[1], ci_low=low, ci_high=high, p=fit.pvalues[1], std_beta=fit.params[1] / sd,
                  std_ci_low=low / sd, std_ci_high=high / sd)
    return result


def bh_qvalues(p) -> np.ndarray:
    """Benjamini-Hochberg q-values (statsmodels ``fdr_bh``); NaN p-values stay NaN and do not count."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p, dtype=np.float64)
    q = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        q[finite] = multipletests(p[finite], method="fdr_bh")[1]
    return q


def group_effects(table: pd.DataFrame, families, covariates, control: str, case: str,
                  alpha: float = 0.05) -> pd.DataFrame:
    """Adjusted and unadjusted group effects of every outcome of ``families``.

    Parameters
    ----------
    table : DataFrame
        The analysed patients of the analysis table (``group``, the covariates, outcome columns
        ``{family}.*``), of the two groups ``control`` and ``case`` only.
    families : list of str
        Outcome families (``clinical``, ``attributes``, ``latent``).
    covariates : list of str
        Adjustment covariates; patients missing one must have been left out.
    control, case : str

    Returns
    -------
    DataFrame
        :data:`EFFECT_COLUMNS`, one row per (outcome, adjusted).
    """
    groups = table["group"].astype(str)
    if not groups.isin([control, case]).all():
        raise ValueError(f"group_effects: groups other than {control!r} and {case!r} in the table")
    is_case = (groups == case).to_numpy()
    covariate_matrix(table, covariates)  # a covariate absent or constant over the patients: a clear error
    rows = []
    for family in families:
        by_model = family_columns(table, family)
        if not by_model:
            raise ValueError(f"population.families names {family!r}, but the analysis table has no {family}.* column")
        for model, columns in by_model.items():
            block = []
            for column in columns:
                keep = table[column].notna().to_numpy()
                kept = table[keep]
                name = column.split(".", 2 if family == "latent" else 1)[-1]
                for adjusted in (True, False):
                    try:
                        design = covariate_matrix(kept, covariates).to_numpy() if adjusted and covariates else None
                    except ValueError as err:  # constant over the few patients with this outcome
                        effect = {"n": int(keep.sum()), **dict.fromkeys(_ESTIMATES, np.nan)}
                        logger.warning(f"{column} (adjusted): no estimate: {err}")
                    else:
                        effect = group_effect(kept[column], is_case[keep], design, alpha)
                        if not np.isfinite(effect["beta"]):
                            logger.warning(f"{column} ({'adjusted' if adjusted else 'unadjusted'}): no estimate "
                                           f"from {effect['n']} patients")
                    block.append({"family": family, "outcome": name, "model": model, "adjusted": adjusted, **effect})
            block = pd.DataFrame(block)
            block["q"] = np.nan
            for adjusted in (True, False):
                rows_of = block["adjusted"] == adjusted
                block.loc[rows_of, "q"] = bh_qvalues(block.loc[rows_of, "p"])
            rows.append(block)
    return pd.concat(rows, ignore_index=True)[EFFECT_COLUMNS]
