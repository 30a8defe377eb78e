"""The compared groups and the covariates of the group-effect models, with their checks.

A single group, a group below the minimum size, a covariate the cohort lacks or one that
is constant over the analysed patients are errors naming the setting to change; a patient
missing a covariate value is an exclusion (:func:`covariate_exclusions`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["resolve_groups", "check_group_sizes", "covariate_matrix", "covariate_exclusions"]


def resolve_groups(values, groups=()) -> tuple[str, str]:
    """``(control, case)``: the configured pair, or, when ``groups`` is empty, the cohort's two groups.

    With ``groups`` empty the cohort must hold exactly two groups, one of them named ``control``.
    """
    present = sorted(pd.Series(values).dropna().astype(str).unique())
    if groups:
        if len(groups) != 2 or groups[0] == groups[1]:
            raise ValueError(f"population.groups must name two different groups [control, case], got {list(groups)}")
        control, case = (str(g) for g in groups)
        missing = [g for g in (control, case) if g not in present]
        if missing:
            raise ValueError(f"population.groups names {missing}, not a group of the cohort (groups present: "
                             f"{present})")
        return control, case
    if len(present) < 2:
        raise ValueError(f"the cohort has {len(present)} group(s) {present}: a group comparison needs two; "
                         f"give the cohort a 'group' column with two groups (cohort sheet or cohort.covariates)")
    if len(present) != 2 or "control" not in present:
        raise ValueError(f"the cohort's groups are {present}: set population.groups to [control, case]")
    return "control", next(g for g in present if g != "control")


def check_group_sizes(group, control: str, case: str, min_group_size: int) -> dict[str, int]:
    """Patients per compared group; a group below ``min_group_size`` is an error."""
    counts = pd.Series(group).astype(str).value_counts()
    sizes = {name: int(counts.get(name, 0)) for name in (control, case)}
    small = {name: n for name, n in sizes.items() if n < min_group_size}
    if small:
        raise ValueError(f"group(s) {small} below population.min_group_size = {min_group_size} analysed patients "
                         f"(population.splits, population.groups choose them)")
    return sizes


def covariate_exclusions(table: pd.DataFrame, covariates) -> pd.DataFrame:
    """``patient_id, variable, reason`` of every patient missing a covariate value."""
    rows = [{"patient_id": pid, "variable": name,
             "reason": "missing covariate: left out of the group-effect models"}
            for name in covariates if name in table
            for pid in table.loc[table[name].isna(), "patient_id"]]
    return pd.DataFrame(rows, columns=["patient_id", "variable", "reason"])


def covariate_matrix(table: pd.DataFrame, covariates) -> pd.DataFrame:
    """The covariates as model columns: continuous ones z-scored, ``sex`` coded 0/1 (1 = M).

    Any other text covariate is coded 0/1 (two levels, the first in sorted order 0) or as
    indicators of all levels but the first. Rows with a missing value must have been left
    out before (:func:`covariate_exclusions`).

    Raises
    ------
    ValueError
        A covariate the table lacks, or one constant over the rows.
    """
    columns = {}
    for name in covariates:
        if name not in table:
            raise ValueError(f"population.covariates names {name!r}, which the cohort does not have (columns: "
                             f"{sorted(c for c in table.columns if '.' not in c)}); add it with "
                             f"cohort.covariates or remove it from population.covariates")
        values = table[name]
        if values.isna().any():
            raise ValueError(f"covariate {name!r} has missing values; leave those patients out first")
        if values.nunique() < 2:
            raise ValueError(f"covariate {name!r} is constant over the {len(values)} analysed patients "
                             f"({values.iloc[0] if len(values) else 'none'}): remove it from population.covariates")
        if name == "sex":
            coded = values.astype(str).str.upper().str[0]
            if not set(coded) <= {"M", "F"}:
                raise ValueError(f"covariate 'sex' must be M or F, got {sorted(set(values.astype(str)))}")
            columns[name] = (coded == "M").astype(float)
        elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            x = values.to_numpy(float)
            columns[name] = pd.Series((x - x.mean()) / x.std(ddof=1), index=table.index)
        else:
            levels = sorted(values.astype(str).unique())
            for level in levels[1:]:
                columns[name if len(levels) == 2 else f"{name}[{level}]"] = (values.astype(str) == level).astype(float)
    return pd.DataFrame(columns, index=table.index, dtype=np.float64)
