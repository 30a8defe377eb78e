"""Attribute and latent curves over the normalised cardiac cycle: group means, 95 % bands, significant phases.

Drawn from ``results/stats/curves.tsv`` and ``curve_intervals.tsv`` (:mod:`echolatent.stats.curves`):
one panel per (outcome, view) (and cycle type, when a study has both), the mean curve of each
compared group with its pointwise 95 % confidence band, the ES phase marked, and the phase
intervals where the groups differ (family-wise permutation max-|t| test) shaded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from echolatent.figures.names import label, unit
from echolatent.figures.style import OKABE_ITO, PAGE, group_colours, new_figure, shade_intervals, styled

__all__ = ["phase_curves", "outcome_label"]

#: The shading of the significant phase intervals.
SIGNIFICANT_COLOUR = OKABE_ITO["grey"]


def outcome_label(outcome: str, dim_labels=None) -> str:
    """Axis label of a curve's outcome with its unit: ``LV area (mm²)``, ``z3 (a.u.)``, ``z0: lv_area (a.u.)``."""
    dim_labels = dim_labels or {}
    if outcome in dim_labels and dim_labels[outcome]:
        return f"{label(outcome, units=False)}: {dim_labels[outcome]} (a.u.)"
    return label(outcome) if unit(outcome) else f"{label(outcome)} (a.u.)"


def _n_text(values) -> str:
    values = pd.Series(values).dropna().astype(int)
    if values.empty:
        return "n = 0"
    low, high = int(values.min()), int(values.max())
    return f"n = {low}" if low == high else f"n = {low}–{high}"


def _order(outcomes) -> list[str]:
    """Outcomes in a natural order (``mu_2`` before ``mu_10``)."""
    def key(name):
        head, _, tail = str(name).rpartition("_")
        return (head, int(tail)) if tail.isdigit() else (str(name), -1)

    return sorted(set(outcomes), key=key)


@styled
def phase_curves(curves: pd.DataFrame, intervals: pd.DataFrame | None = None, *, groups=(), title: str = "",
                 dim_labels=None, ncols: int | None = None):
    """Group mean curves with 95 % bands, one panel per (outcome, view[, cycle]).

    Parameters
    ----------
    curves : DataFrame
        Rows of ``curves.tsv`` of one family (and model): ``outcome, view, cycle, phase, group, n,
        mean, ci_low, ci_high, es_phase``.
    intervals : DataFrame, optional
        Rows of ``curve_intervals.tsv`` of the same curves (``outcome, view, cycle, phase_start,
        phase_end``): shaded.
    groups : sequence of str
        ``(control, case)``: their colours and legend order; the groups of ``curves`` otherwise.
    title : str
        Figure title.
    dim_labels : mapping, optional
        Outcome (``mu_k``) -> attribute its AR-VAE dimension regularises (shown in the panel title).
    ncols : int, optional
        Panels per row (default: 4, 6 for more than 16 panels, fewer when there are fewer panels).
    """
    if curves.empty:
        raise ValueError("no curves to draw")
    curves = curves.copy()
    curves["cycle"] = curves["cycle"].astype(str) if "cycle" in curves else "full"
    names = [str(g) for g in groups] or sorted(curves["group"].astype(str).unique())
    names += sorted(set(curves["group"].astype(str)) - set(names))
    colours = group_colours(names)
    cycles = sorted(curves["cycle"].unique())
    views = sorted(curves["view"].astype(str).unique())
    panels = [(o, v, c) for o in _order(curves["outcome"]) for v in views for c in cycles
              if ((curves["outcome"] == o) & (curves["view"] == v) & (curves["cycle"] == c)).any()]
    if ncols is None:
        ncols = 4 if len(panels) <= 16 else 6
    ncols = max(1, min(ncols, len(panels)))
    nrows = int(np.ceil(len(panels) / ncols))
    fig = new_figure(PAGE, 1.3 * nrows + 0.7)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    shaded = False
    for ax, (outcome, view, cycle) in zip(axes, panels):
        rows = curves[(curves["outcome"] == outcome) & (curves["view"] == view) & (curves["cycle"] == cycle)]
        for group in names:
            line = rows[rows["group"].astype(str) == group].sort_values("phase")
            if line.empty:
                continue
            ax.fill_between(line["phase"], line["ci_low"], line["ci_high"], color=colours[group], alpha=0.25,
                            linewidth=0)
            ax.plot(line["phase"], line["mean"], color=colours[group])
        if intervals is not None and len(intervals):
            mine = intervals[(intervals["outcome"] == outcome) & (intervals["view"].astype(str) == view)
                             & (intervals["cycle"].astype(str) == cycle)] if "cycle" in intervals else \
                intervals[(intervals["outcome"] == outcome) & (intervals["view"].astype(str) == view)]
            if len(mine):
                shade_intervals(ax, zip(mine["phase_start"].astype(float), mine["phase_end"].astype(float)),
                                colour=SIGNIFICANT_COLOUR)
                shaded = True
        es = rows["es_phase"].dropna()
        if len(es) and float(es.iloc[0]) < 1:
            ax.axvline(float(es.iloc[0]), color=OKABE_ITO["black"], linestyle=":", linewidth=0.7)
            ax.text(float(es.iloc[0]), 1.0, " ES", transform=ax.get_xaxis_transform(), ha="left", va="top",
                    fontsize=6)
        ax.set_xlim(0, 1)
        ax.set_xticks([0, 0.5, 1])
        suffix = f", {cycle} cycle" if len(cycles) > 1 else ""
        ax.set_title(f"{outcome_label(outcome, dim_labels).rsplit(' (', 1)[0]}, {view}{suffix}", fontsize=7)
        ax.set_ylabel(outcome_label(outcome, dim_labels), fontsize=6.5)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:len(panels)]:
        ax.set_xlabel("Cycle phase (fraction, ED = 0)", fontsize=6.5)
    handles = [Line2D([], [], color=colours[g], linewidth=1.5) for g in names if (curves["group"] == g).any()]
    labels = [f"{g} ({_n_text(curves.loc[curves['group'] == g, 'n'])}), mean and 95 % CI" for g in names
              if (curves["group"] == g).any()]
    handles.append(Line2D([], [], color=OKABE_ITO["black"], linestyle=":", linewidth=0.7))
    labels.append("ES")
    if shaded:
        handles.append(Patch(color=SIGNIFICANT_COLOUR, alpha=0.3, linewidth=0))
        labels.append("groups differ (p_FWE ≤ 0.05, adjusted)")
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4))
    if title:
        fig.suptitle(title)
    return fig
