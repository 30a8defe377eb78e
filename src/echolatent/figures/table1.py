"""Table 1 (cohort characteristics by group) typeset: as a figure, and as a LaTeX table.

Both read ``results/stats/table1.tsv`` (:mod:`echolatent.stats.table_one`; its Markdown twin
``table1.md`` is written by the statistics stage). :func:`table1_lines` gives the rows as they
are printed (display names with units and the summary statistic, categorical levels indented
under their variable); :func:`table1_figure` and :func:`table1_latex` typeset them.
"""

from __future__ import annotations

import math
import textwrap

import pandas as pd

from echolatent.figures.names import label as display_label
from echolatent.figures.style import PAGE, new_figure, styled

__all__ = ["table1_header", "table1_lines", "table1_figure", "table1_latex", "group_sizes"]

_STATISTICS = {"mean_sd": "mean ± SD", "median_iqr": "median [Q1, Q3]", "n_pct": "n (%)"}


def _p(value) -> str:
    value = float(value)
    if not math.isfinite(value):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _smd(value) -> str:
    value = float(value)
    return "–" if not math.isfinite(value) else f"{value:.2f}".replace("-", "\u2212")  # a true minus sign


def table1_header(control: str, case: str, sizes: dict | None = None) -> list[str]:
    """Column headers: Characteristic, Overall, control, case (with their n), SMD, p."""
    sizes = sizes or {}

    def named(key, name):
        return f"{name} (n = {sizes[key]})" if key in sizes else name

    return ["Characteristic", named("overall", "Overall"), named("control", control), named("case", case), "SMD", "p"]


def table1_lines(table1: pd.DataFrame) -> list[dict]:
    """The printed rows of Table 1, in order.

    Returns
    -------
    list of dict
        ``cells`` (six strings: characteristic, overall, control, case, SMD, p), ``level``
        (True for an indented categorical level), ``header`` (True for a categorical variable's
        title line, which has no numbers: its p is the test over all its levels).
    """
    lines = []
    seen = set()
    for row in table1.itertuples(index=False):
        level = "" if (isinstance(row.level, float) and math.isnan(row.level)) else str(row.level)
        name = display_label(str(row.variable))
        if row.statistic == "n_pct":
            if row.variable not in seen:
                seen.add(row.variable)
                lines.append({"cells": [f"{name}, n (%)", "", "", "", "", _p(row.p)], "level": False, "header": True})
            lines.append({"cells": [level, str(row.overall), str(row.control), str(row.case), _smd(row.smd), ""],
                          "level": True, "header": False})
        else:
            text = f"{name}, {_STATISTICS.get(row.statistic, row.statistic)}"
            lines.append({"cells": [text, str(row.overall), str(row.control), str(row.case), _smd(row.smd), _p(row.p)],
                          "level": False, "header": False})
    return lines


@styled
def table1_figure(table1: pd.DataFrame, *, control: str, case: str, sizes: dict | None = None, note: str = ""):
    """Table 1 drawn as a figure (two columns wide, booktabs rules).

    Parameters
    ----------
    table1 : DataFrame
        ``results/stats/table1.tsv``.
    control, case : str
        The group names (column headers).
    sizes : dict, optional
        ``overall``, ``control``, ``case`` -> patients (shown in the headers).
    note : str
        A footnote (tests used, SMD definition).

    Returns
    -------
    matplotlib.figure.Figure
    """
    lines = table1_lines(table1)
    # group sizes on a second header line: long group names then still fit their column
    header = [h.replace(" (n = ", "\n(n = ") for h in table1_header(control, case, sizes)]
    note_lines = textwrap.wrap(note, 150) if note else []
    row, header_rows = 0.16, 2  # inches per row; the header takes two
    height = row * (len(lines) + header_rows) + 0.15 + 0.11 * len(note_lines) + 0.1
    fig = new_figure(PAGE, height, layout=None)
    ax = fig.add_axes((0.01, 0.0, 0.98, 1.0))
    ax.axis("off")
    ax.set_xlim(0, 1)
    ax.set_ylim(height, 0)  # y in inches from the top
    top = 0.1
    centres = [0.49, 0.62, 0.75, 0.86, 0.95]  # columns 2-6; column 1 is left-aligned at 0

    def put(i, j, text, **style):
        x = 0.0 if j == 0 else centres[j - 1]
        ax.text(x, i, text, ha="left" if j == 0 else "center", va="center", fontsize=6.5, **style)

    for j, text in enumerate(header):
        put(top + row * header_rows / 2, j, text, fontweight="bold", linespacing=1.1)
    first = top + row * header_rows
    for i, line in enumerate(lines):
        for j, text in enumerate(line["cells"]):
            put(first + (i + 0.5) * row, j, ("    " if (j == 0 and line["level"]) else "") + text)
    bottom = first + len(lines) * row
    for y, width in ((top, 1.0), (first, 0.6), (bottom, 1.0)):  # booktabs: top, mid and bottom rules
        ax.plot([0, 1], [y, y], color="black", linewidth=width)
    for k, text in enumerate(note_lines):
        ax.text(0.0, bottom + 0.08 + 0.11 * k, text, ha="left", va="top", fontsize=5.5)
    return fig


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_SYMBOLS = {"±": r"$\pm$", "²": r"$^2$", "°": r"$^\circ$", "−": "$-$", "–": "--", "<": r"$<$", "≥": r"$\geq$"}


def _latex(text: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for symbol, command in _LATEX_SYMBOLS.items():
        out = out.replace(symbol, command)
    return out


def table1_latex(table1: pd.DataFrame, *, control: str, case: str, sizes: dict | None = None, caption: str = "",
                 label: str = "tab:table1") -> str:
    """Table 1 as a LaTeX ``table`` (``booktabs``; categorical levels indented with ``\\quad``).

    Returns
    -------
    str
        A complete ``table`` environment; needs ``\\usepackage{booktabs}``.
    """
    header = [_latex(h) for h in table1_header(control, case, sizes)]
    body = []
    for line in table1_lines(table1):
        cells = [_latex(c) for c in line["cells"]]
        if line["level"]:
            cells[0] = r"\quad " + cells[0]
        body.append(" & ".join(cells) + r" \\")
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
    ]
    if caption:
        lines.append(r"\caption{" + _latex(caption) + "}")
    lines += [r"\label{" + label + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def group_sizes(patients: pd.DataFrame, control: str, case: str) -> dict:
    """``overall``, ``control``, ``case`` -> analysed patients of ``results/stats/patients.tsv``."""
    analysed = patients[patients["analysed"].astype(bool)]
    groups = analysed["group"].astype(str)
    return {"overall": int(groups.isin([control, case]).sum()), "control": int((groups == control).sum()),
            "case": int((groups == case).sum())}

