"""Table 1: the cohort's characteristics by group, with standardised mean differences and p-values.

Continuous variables as mean ± SD (or median [Q1, Q3] for the skewed ones), categorical ones
as n (%) per level; the SMD (case minus control over the pooled SD) and a p-value (Welch's
t-test, Mann-Whitney for skewed variables, chi-square over the contingency table for
categorical ones, scipy's defaults), and missing counts. Columns: see :mod:`echolatent.stats`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["TABLE1_COLUMNS", "smd", "table_one", "table_one_markdown"]

TABLE1_COLUMNS = ["variable", "level", "statistic", "overall", "control", "case", "n_control", "n_case",
                  "missing_overall", "missing_control", "missing_case", "smd", "p", "test"]


def smd(case, control) -> float:
    """Standardised mean difference (case minus control) over ``sqrt((s_case^2 + s_control^2) / 2)``.

    For a 0/1 indicator this is the usual proportion SMD, (p1 - p0) / sqrt((p1 q1 + p0 q0) / 2),
    with the sample variances (ddof 1). NaN when both groups are constant.
    """
    case, control = np.asarray(case, float), np.asarray(control, float)
    pooled = np.sqrt((case.var(ddof=1) + control.var(ddof=1)) / 2)
    return float((case.mean() - control.mean()) / pooled) if pooled > 0 else np.nan


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}" if np.isfinite(x) else "NA"


def _continuous(values: pd.Series, skewed: bool, digits: int) -> str:
    values = values.dropna()
    if not len(values):
        return "NA"
    if skewed:
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        return f"{_fmt(median, digits)} [{_fmt(q1, digits)}, {_fmt(q3, digits)}]"
    sd = values.std(ddof=1) if len(values) > 1 else np.nan
    return f"{_fmt(values.mean(), digits)} ± {_fmt(sd, digits)}"


def table_one(table: pd.DataFrame, control: str, case: str, continuous, categorical=(), skewed=(),
              digits: int = 1) -> pd.DataFrame:
    """Table 1 of ``table`` (one row per patient, a ``group`` column), by group.

    Parameters
    ----------
    continuous, categorical : list of str
        Columns described as numbers and as levels; absent columns are left out.
    skewed : list of str
        Continuous columns given as median [Q1, Q3] and tested with Mann-Whitney.
    digits : int
        Decimals of the formatted numbers.
    """
    groups = table["group"].astype(str)
    parts = {"overall": table, "control": table[groups == control], "case": table[groups == case]}
    rows = []
    for name in [c for c in continuous if c in table]:
        values = {key: pd.to_numeric(part[name], errors="coerce") for key, part in parts.items()}
        x1, x0 = values["case"].dropna(), values["control"].dropna()
        is_skewed = name in skewed
        row = {"variable": name, "level": "", "statistic": "median_iqr" if is_skewed else "mean_sd",
               **{key: _continuous(v, is_skewed, digits) for key, v in values.items()},
               "n_control": len(x0), "n_case": len(x1),
               **{f"missing_{key}": int(v.isna().sum()) for key, v in values.items()},
               "smd": smd(x1, x0) if len(x1) > 1 and len(x0) > 1 else np.nan,
               "test": "mann-whitney" if is_skewed else "welch"}
        if np.isfinite(row["smd"]):
            row["p"] = (stats.mannwhitneyu(x1, x0).pvalue if is_skewed
                        else stats.ttest_ind(x1, x0, equal_var=False).pvalue)
        rows.append(row)
    for name in [c for c in categorical if c in table]:
        values = {key: part[name] for key, part in parts.items()}
        present = table[name].dropna()
        levels = sorted(present.astype(str).unique())
        counts = pd.crosstab(present.astype(str), groups[present.index]).reindex(index=levels,
                                                                                 columns=[control, case], fill_value=0)
        p = stats.chi2_contingency(counts.to_numpy()).pvalue if counts.shape[0] > 1 and (counts.sum(axis=0) > 0).all() \
            else np.nan
        for level in levels:
            row = {"variable": name, "level": level, "statistic": "n_pct", "p": p, "test": "chi-square",
                   "n_control": int(values["control"].notna().sum()), "n_case": int(values["case"].notna().sum())}
            for key, v in values.items():
                v = v.dropna().astype(str)
                k = int((v == level).sum())
                row[key] = f"{k} ({100 * k / len(v):.{digits}f} %)" if len(v) else "NA"
                row[f"missing_{key}"] = int(values[key].isna().sum())
            indicator = {key: (values[key].dropna().astype(str) == level).astype(float) for key in ("case", "control")}
            row["smd"] = smd(indicator["case"], indicator["control"]) \
                if min(len(indicator["case"]), len(indicator["control"])) > 1 else np.nan
            rows.append(row)
    return pd.DataFrame(rows).reindex(columns=TABLE1_COLUMNS)


def table_one_markdown(table1: pd.DataFrame, control: str, case: str, sizes: dict | None = None) -> str:
    """Table 1 as a Markdown table, the group names (and sizes) as headers."""
    def label(key, name):
        return f"{name} (n = {sizes[key]})" if sizes and key in sizes else name

    header = ["Variable", label("overall", "Overall"), label("control", control), label("case", case), "SMD", "p",
              "Missing"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table1.itertuples(index=False):
        name = f"{row.variable}: {row.level}" if row.level else row.variable
        if row.statistic != "n_pct":
            name += ", median [Q1, Q3]" if row.statistic == "median_iqr" else ", mean ± SD"
        p = "NA" if not np.isfinite(row.p) else ("< 0.001" if row.p < 0.001 else f"{row.p:.3f}")
        smd_text = "NA" if not np.isfinite(row.smd) else f"{row.smd:.2f}"
        lines.append("| " + " | ".join([name, row.overall, row.control, row.case, smd_text, p,
                                         str(row.missing_overall)]) + " |")
    return "\n".join(lines) + "\n"
