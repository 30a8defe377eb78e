"""Bland-Altman and identity plots of the clinical indices: one method of masks against a reference.

Per-patient values come from the sources' index tables (``results/clinical/indices.tsv``,
``results/clinical/{reconstruction,temporal}/{model}/indices.tsv``, the synthetic truth); the
bias and limits of agreement drawn and printed are those of ``results/stats/agreement.tsv``
(split ``all``, :mod:`echolatent.stats.agreement`), so the figure and the table agree. One row per
index: the identity plot (method against reference, y = x) and the Bland-Altman plot
(difference method minus reference against their mean, bias and 95 % limits of agreement).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from echolatent.figures.names import quantity, unit
from echolatent.figures.style import OKABE_ITO, PAGE, new_figure, styled

__all__ = ["agreement_plots", "source_label", "paired_values"]


def source_label(source: str) -> str:
    """``temporal.arvae`` -> ``temporal (arvae)``; ``input`` -> ``input masks``; ``truth`` -> ``truth``."""
    if source == "input":
        return "input masks"
    if source == "truth":
        return "truth"
    kind, _, model = source.partition(".")
    names = {"reconstruction": "reconstruction", "temporal": "temporal"}
    return f"{names.get(kind, kind)} ({model})" if model else source


def paired_values(method: pd.DataFrame, reference: pd.DataFrame, indices, *, method_columns=None,
                  reference_columns=None) -> pd.DataFrame:
    """Long table ``patient_id, index, method, reference`` of the patients with a value on both sides.

    ``*_columns``: index -> the column holding it in that source, where it is named differently
    (the truth's ``la_volume_es_ml``).
    """
    method_columns, reference_columns = dict(method_columns or {}), dict(reference_columns or {})
    rows = []
    for index in indices:
        mc, rc = method_columns.get(index, index), reference_columns.get(index, index)
        if mc not in method or rc not in reference:
            continue
        left = method[["patient_id", mc]].rename(columns={mc: "method"})
        right = reference[["patient_id", rc]].rename(columns={rc: "reference"})
        both = left.merge(right, on="patient_id").dropna()
        both.insert(1, "index", index)
        rows.append(both)
    columns = ["patient_id", "index", "method", "reference"]
    return pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)


def _line(ax, y, text, colour, style):
    ax.axhline(y, color=colour, linestyle=style, linewidth=0.8)
    ax.text(1.0, y, f" {text}", transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=5.5,
            color=colour, clip_on=False)


@styled
def agreement_plots(values: pd.DataFrame, statistics: pd.DataFrame, *, method: str, reference: str):
    """Identity and Bland-Altman plots, one row per index.

    Parameters
    ----------
    values : DataFrame
        :func:`paired_values` (``patient_id, index, method, reference``).
    statistics : DataFrame
        Rows of ``agreement.tsv`` of this method and reference (split ``all`` used): ``index, n,
        bias, loa_low, loa_high, icc_2_1, ccc``.
    method, reference : str
        Source names (``temporal.arvae``, ``input``, ``truth``).
    """
    stats = statistics[statistics["split"].astype(str) == "all"] if "split" in statistics else statistics
    stats = stats.set_index("index")
    # every index of the table, paired values or not: a source with no measurable index (e.g. the
    # blank reconstructions of an untrained model) is shown as such, not left out
    indices = list(dict.fromkeys([*stats.index, *values["index"]]))
    if not indices:
        raise ValueError(f"no index of {method} and {reference} in the agreement table or the values")
    fig = new_figure(PAGE, 1.75 * len(indices) + 0.5)
    axes = fig.subplots(len(indices), 2, squeeze=False, gridspec_kw={"width_ratios": [1, 1.5]})
    m_name, r_name = source_label(method), source_label(reference)
    point = dict(s=7, color=OKABE_ITO["blue"], alpha=0.75, linewidths=0)
    for (ax_id, ax_ba), index in zip(axes, indices):
        rows = values[values["index"] == index]
        x, y = rows["reference"].to_numpy(float), rows["method"].to_numpy(float)
        name, units = quantity(index), unit(index)
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        if not len(x):
            for ax, label in ((ax_id, f"{name} ({units})"), (ax_ba, f"Δ {name} ({units})")):
                ax.text(0.5, 0.5, f"no patient with {name}\non both sides (n = 0)", transform=ax.transAxes,
                        ha="center", va="center", fontsize=6.5)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_ylabel(label)
            ax_ba.set_title(f"{name}: {m_name} − {r_name}", fontsize=7)
            continue
        # identity
        low, high = np.nanmin([x.min(), y.min()]), np.nanmax([x.max(), y.max()])
        pad = 0.05 * (high - low or 1.0)
        ax_id.plot([low - pad, high + pad], [low - pad, high + pad], color=OKABE_ITO["grey"], linestyle="--",
                   linewidth=0.7)
        ax_id.scatter(x, y, **point)
        ax_id.set_xlim(low - pad, high + pad)
        ax_id.set_ylim(low - pad, high + pad)
        ax_id.set_aspect("equal")
        ax_id.set_xlabel(f"{name} ({units})\n{r_name}", fontsize=6.5)
        ax_id.set_ylabel(f"{name} ({units})\n{m_name}", fontsize=6.5)
        row = stats.loc[index] if index in stats.index else None
        if row is not None:
            parts = [f"n = {int(row['n'])}"]
            if np.isfinite(row.get("icc_2_1", np.nan)):
                parts.append(f"ICC(2,1) {row['icc_2_1']:.3f}")
            if np.isfinite(row.get("ccc", np.nan)):
                parts.append(f"CCC {row['ccc']:.3f}")
            ax_id.text(0.03, 0.97, "\n".join(parts), transform=ax_id.transAxes, ha="left", va="top", fontsize=5.5)
        # Bland-Altman
        ax_ba.scatter((x + y) / 2, y - x, **point)
        ax_ba.axhline(0, color=OKABE_ITO["grey"], linewidth=0.5)
        if row is not None and np.isfinite(row["bias"]):
            _line(ax_ba, row["bias"], f"bias {row['bias']:+.2f}", OKABE_ITO["black"], "-")
            _line(ax_ba, row["loa_high"], f"+1.96 SD {row['loa_high']:+.2f}", OKABE_ITO["vermillion"], "--")
            _line(ax_ba, row["loa_low"], f"−1.96 SD {row['loa_low']:+.2f}", OKABE_ITO["vermillion"], "--")
            spread = max(abs(row["loa_high"]), abs(row["loa_low"]), np.nanmax(np.abs(y - x)))
            spread = spread if np.isfinite(spread) and spread > 0 else 1.0  # identical values: no spread
            ax_ba.set_ylim(-1.25 * spread, 1.25 * spread)
        ax_ba.set_xlabel(f"{name}, mean of the two ({units})")
        ax_ba.set_ylabel(f"Δ {name} ({units})")
        ax_ba.set_title(f"{name}: {m_name} − {r_name}", fontsize=7)
    fig.suptitle(f"Agreement of {m_name} with {r_name}: identity (y = x) and Bland-Altman (bias, 95 % limits of "
                 "agreement)", fontsize=8)
    return fig
