"""Figure of anatomical validity by criterion: how many frames fail each of the 12 criteria, per mask source.

:func:`failure_rates` turns per-frame criteria tables (``results/anatomy/{source}/``, or
the same measured on corrected masks) into the percentage of frames failing each criterion;
:func:`validity_by_criterion` draws them side by side (input masks, temporally corrected
masks, and the clean truth of a synthetic cohort as the floor).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from echolatent.figures.names import criterion_label
from echolatent.figures.style import COLUMN, OKABE_ITO, SOURCE_COLOURS, new_figure, styled
from echolatent.shape.criteria import criteria_validity
from echolatent.shape.criteria_definitions import CRITERIA

__all__ = ["ANY", "failure_rates", "validity_by_criterion"]

#: Row of :func:`failure_rates` for frames failing at least one criterion.
ANY = "any criterion"


def failure_rates(criteria: pd.DataFrame, source: str) -> pd.DataFrame:
    """Frames failing each criterion (and any), in % of the measured frames of one mask source.

    Parameters
    ----------
    criteria : DataFrame
        One row per frame, the 12 :data:`~echolatent.shape.criteria_definitions.CRITERIA`
        columns (and ``anatomical_errors``), as the anatomy stage writes them.
    source : str
        The mask source's name (``input``, ``temporal``, ``truth``, ...).

    Returns
    -------
    DataFrame
        ``source``, ``criterion`` (the 12 and :data:`ANY`), ``failing`` (frames), ``frames``,
        ``failing_pct``.
    """
    valid = criteria_validity(criteria)
    failing = (~valid).sum().astype(int)
    any_failing = int((~valid).any(axis=1).sum()) if "anatomical_errors" not in criteria else int(
        criteria["anatomical_errors"].astype(bool).sum())
    n = len(criteria)
    rows = [{"criterion": name, "failing": int(failing[name])} for name in CRITERIA]
    rows.append({"criterion": ANY, "failing": any_failing})
    table = pd.DataFrame(rows)
    table.insert(0, "source", source)
    table["frames"] = n
    table["failing_pct"] = 100.0 * table["failing"] / n if n else np.nan
    return table


@styled
def validity_by_criterion(rates: pd.DataFrame, *, title: str = "", source_labels: dict | None = None):
    """Horizontal bars: % of frames failing each criterion, one bar per mask source.

    Parameters
    ----------
    rates : DataFrame
        Rows of :func:`failure_rates` for several sources (drawn in their order of appearance).
    title : str
    source_labels : dict, optional
        Source -> legend label (e.g. ``{"temporal": "temporally corrected (arvae)"}``).

    Returns
    -------
    matplotlib.figure.Figure
        One column wide; the failing-frame count is printed beside each non-zero bar.
    """
    sources = list(dict.fromkeys(rates["source"]))
    criteria = [c for c in [*CRITERIA, ANY] if c in set(rates["criterion"])]
    labels = source_labels or {}
    fig = new_figure(COLUMN, 0.13 * len(criteria) * max(1.0, 0.6 * len(sources)) + 0.5 + 0.12 * len(sources))
    ax = fig.add_subplot()
    height = 0.8 / max(len(sources), 1)
    y = np.arange(len(criteria))[::-1]  # criterion 1 on top, "any" at the bottom
    fallback = iter([OKABE_ITO["reddish_purple"], OKABE_ITO["orange"], OKABE_ITO["sky_blue"]])
    top = 0.0
    for j, source in enumerate(sources):
        table = rates[rates["source"] == source].set_index("criterion")
        pct = np.array([table.loc[c, "failing_pct"] if c in table.index else np.nan for c in criteria], float)
        counts = [int(table.loc[c, "failing"]) if c in table.index else 0 for c in criteria]
        offset = ((len(sources) - 1) / 2 - j) * height
        colour = SOURCE_COLOURS.get(source) or next(fallback)
        frames = int(table["frames"].iloc[0]) if len(table) else 0
        ax.barh(y + offset, pct, height * 0.92, color=colour,
                label=f"{labels.get(source, source)} ({frames:,} frames)")
        for yi, p, k, name in zip(y + offset, pct, counts, criteria):
            if k or name == ANY:  # the total always, so that a source without failures shows its 0
                ax.text(p, yi, f" {k}", va="center", ha="left", fontsize=5)
        top = max(top, float(np.nanmax(pct)) if np.isfinite(pct).any() else 0.0)
    ax.set_yticks(y, [criterion_label(c) for c in criteria])
    ax.axhline(0.5, color="0.6", linewidth=0.5)  # sets "any criterion" apart
    ax.set_xlim(0, max(1.0, top * 1.2))
    ax.set_xlabel("Frames failing the criterion (%)")
    fig.legend(loc="outside upper center", ncols=1)
    if title:
        ax.set_title(title)
    return fig
