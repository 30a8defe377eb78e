"""Forest plot of the group effects: standardised beta with 95 % CI, adjusted and unadjusted, per family.

:func:`forest_rows` lays the rows of ``results/stats/effects.tsv`` out (outcome, view and
per-view summary parsed from the ``outcome`` column); :func:`forest_plot` draws one family:
one panel per summary (at ED, at ES, ES − ED, cycle mean) for the per-view families, one row
per outcome (and view, and model), the covariate-adjusted estimate as a coloured circle and
the unadjusted one as a grey square beside it, filled when its Benjamini-Hochberg q < 0.05.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from echolatent.figures.names import SUMMARIES
from echolatent.figures.names import label as display_label
from echolatent.figures.style import OKABE_ITO, PAGE, new_figure, styled

__all__ = ["Q_LEVEL", "forest_rows", "forest_plot"]

#: The false-discovery rate under which an estimate is drawn filled.
Q_LEVEL = 0.05

_ADJUSTED = OKABE_ITO["blue"]
_UNADJUSTED = OKABE_ITO["grey"]


def forest_rows(effects: pd.DataFrame, family: str, *, dim_labels: dict | None = None) -> pd.DataFrame:
    """The rows of one family, with the plotted row label and panel parsed from ``outcome``.

    Parameters
    ----------
    effects : DataFrame
        ``results/stats/effects.tsv`` (:data:`echolatent.stats.effects.EFFECT_COLUMNS`).
    family : str
        ``clinical``, ``attributes`` or ``latent``.
    dim_labels : dict, optional
        ``(model, "mu_k")`` -> what dimension k of that model regularises (AR-VAE), shown with
        the dimension.

    Returns
    -------
    DataFrame
        The family's rows with ``row`` (label of the plotted line: quantity, view, model) and
        ``panel`` (the per-view summary, or "" for per-patient outcomes).
    """
    rows = effects[effects["family"] == family].copy()
    models = rows["model"].fillna("").astype(str) if "model" in rows else pd.Series("", index=rows.index)
    several = models.nunique() > 1
    labels, panels = [], []
    for outcome, model in zip(rows["outcome"].astype(str), models):
        parts = outcome.split(".")
        summary = parts[-1] if parts[-1] in SUMMARIES else ""
        base = ".".join(parts[:-1]) if summary else outcome
        text = display_label(base, units=False)
        name = parts[0]
        if dim_labels and (model, name) in dim_labels and dim_labels[(model, name)]:
            view = f" {parts[1]}" if len(parts) > 2 else ""
            text = f"z{name[3:]} {display_label(dim_labels[(model, name)], units=False)}{view}"
        if several and model:
            text = f"{model}: {text}"
        labels.append(text)
        panels.append(summary)
    rows["row"] = labels
    rows["panel"] = panels
    return rows


def _draw(ax, y, rows: pd.DataFrame, colour: str, marker: str):
    estimate = rows["std_beta"].to_numpy(float)
    low, high = rows["std_ci_low"].to_numpy(float), rows["std_ci_high"].to_numpy(float)
    significant = (rows["q"].to_numpy(float) < Q_LEVEL)
    ax.hlines(y, low, high, color=colour, linewidth=0.8)
    for filled in (True, False):
        keep = significant == filled
        ax.plot(estimate[keep], y[keep], marker, color=colour, markersize=3.2, markeredgewidth=0.8,
                markerfacecolor=colour if filled else "white", linestyle="")


@styled
def forest_plot(effects: pd.DataFrame, family: str, *, groups=(), covariates=(), dim_labels: dict | None = None):
    """Standardised group effects of one family of outcomes, adjusted and unadjusted.

    Parameters
    ----------
    effects : DataFrame
        ``results/stats/effects.tsv``.
    family : str
        The family drawn.
    groups : (str, str), optional
        (control, case): the effect is case minus control (axis label).
    covariates : sequence of str
        The adjustment covariates (legend).
    dim_labels : dict, optional
        See :func:`forest_rows`.

    Returns
    -------
    matplotlib.figure.Figure
        Two columns wide (one column for a family without per-view summaries); one line per
        outcome, its height growing with their number.

    Raises
    ------
    ValueError
        When ``effects`` has no row of ``family``.
    """
    rows = forest_rows(effects, family, dim_labels=dim_labels)
    if rows.empty:
        raise ValueError(f"effects.tsv has no row of the family {family!r}")
    panels = [p for p in [*SUMMARIES, ""] if p in set(rows["panel"])]
    labels = list(dict.fromkeys(rows["row"]))
    position = {name: i for i, name in enumerate(labels)}
    width = PAGE if len(panels) > 1 else PAGE * 0.6
    fig = new_figure(width, 0.16 * len(labels) + 1.1)
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True, squeeze=False).ravel())
    finite = rows[["std_ci_low", "std_ci_high"]].to_numpy(float)
    finite = finite[np.isfinite(finite)]
    limit = max(1.0, float(np.abs(finite).max()) * 1.05) if len(finite) else 1.0
    for ax, panel in zip(axes, panels):
        block = rows[rows["panel"] == panel]
        for adjusted, colour, marker, shift in ((True, _ADJUSTED, "o", -0.17), (False, _UNADJUSTED, "s", 0.17)):
            part = block[block["adjusted"].astype(str).str.lower() == str(adjusted).lower()]
            y = np.array([position[r] for r in part["row"]], float) + shift
            _draw(ax, y, part, colour, marker)
        ax.axvline(0.0, color="black", linewidth=0.6, zorder=0)
        ax.set_xlim(-limit, limit)
        ax.set_title(SUMMARIES.get(panel, "per patient"))
        ax.grid(axis="x", linewidth=0.3, color="0.88")
        ax.set_xlabel("Standardised \u03b2 (SD)")
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].set_ylim(len(labels) - 0.5, -0.5)
    for start in range(1, len(labels), 2):  # light bands help the eye follow a row across panels
        for ax in axes:
            ax.axhspan(start - 0.5, start + 0.5, color="0.96", zorder=-1, linewidth=0)
    adjusted_text = f"adjusted for {', '.join(covariates)}" if covariates else "adjusted"
    handles = [Line2D([], [], marker="o", color=_ADJUSTED, linestyle="-", markersize=3.5),
               Line2D([], [], marker="s", color=_UNADJUSTED, linestyle="-", markersize=3.5),
               Line2D([], [], marker="o", color="black", markerfacecolor="black", linestyle="", markersize=3.5),
               Line2D([], [], marker="o", color="black", markerfacecolor="white", linestyle="", markersize=3.5)]
    fig.legend(handles, [adjusted_text, "unadjusted", f"q < {Q_LEVEL:g} (BH)", f"q \u2265 {Q_LEVEL:g}"],
               loc="outside lower center", ncols=4)
    contrast = f"{groups[1]} \u2212 {groups[0]}" if len(groups) == 2 else "case \u2212 control"
    fig.suptitle(f"Group effects ({contrast}), {family} outcomes; 95 % CI", x=0.01, ha="left")
    return fig
