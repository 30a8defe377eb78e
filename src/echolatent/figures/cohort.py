"""The cohort's flow chart: from the planned patients to the analysed ones, every exclusion with its reason.

:func:`flow_counts` counts patients, sequences (views) and frames at each step from the
cohort and statistics tables; :func:`cohort_flow` draws them as boxes and arrows (the CONSORT
style of an inclusion diagram), the exclusions in side boxes.
"""

from __future__ import annotations

import textwrap
from collections import Counter

import pandas as pd

from echolatent.figures.style import COLUMN, OKABE_ITO, new_figure, styled

__all__ = ["SPLITS", "flow_counts", "cohort_flow"]

#: The splits, in the order they are drawn.
SPLITS = ("train", "val", "test")


def _reasons(reasons, width: int = 26, limit: int = 4) -> list[str]:
    """``"n x reason"`` lines, most frequent first, wrapped; the rest summed on one line."""
    counts = Counter(str(r) for r in reasons).most_common()
    lines = [textwrap.shorten(f"{n} \u00d7 {reason}", width=width * 2, placeholder="\u2026") for reason, n in
             counts[:limit]]
    rest = sum(n for _, n in counts[limit:])
    if rest:
        lines.append(f"{rest} \u00d7 other reasons")
    return [textwrap.fill(line, width, subsequent_indent="  ") for line in lines]


def flow_counts(plan: pd.DataFrame, patients: pd.DataFrame, sequences: pd.DataFrame, qc: pd.DataFrame,
                analysis: pd.DataFrame | None = None, exclusions: pd.DataFrame | None = None,
                groups=()) -> dict:
    """The numbers of the flow chart.

    Parameters
    ----------
    plan : DataFrame
        ``results/cohort/plan.tsv``: every patient the cohort planned (``patient_id``).
    patients : DataFrame
        ``results/cohort/patients.tsv``: ingested patients (``patient_id``, ``split``, ``group``).
    sequences : DataFrame
        ``results/cohort/sequences.tsv``: ingested sequences (``patient_id``, ``view``, ``n_frames``).
    qc : DataFrame
        ``results/cohort/qc.tsv``: sequences skipped at ingestion (``patient_id``, ``view``, ``reason``).
    analysis, exclusions : DataFrame, optional
        ``results/stats/patients.tsv`` (``analysed``, ``group``) and ``exclusions.tsv``
        (``patient_id``, ``variable``, ``reason``), when the study runs its statistics.
    groups : sequence of str
        The compared groups (control, case), to order the group counts.

    Returns
    -------
    dict
        ``planned`` (patients, sequences), ``qc`` (sequences, patients left without a
        sequence, reason lines), ``ingested`` (patients, sequences, views, frames), ``splits``
        (split -> patients, sequences, frames, groups) and, with the statistics,
        ``analysed`` (patients, groups), ``not_analysed`` (reason lines) and ``missing``
        (values, patients).
    """
    frames = sequences.merge(patients[["patient_id", "split"]], on="patient_id", how="left")
    ingested_ids = set(patients["patient_id"])
    counts = {
        "planned": {"patients": int(plan["patient_id"].nunique()), "sequences": len(sequences) + len(qc)},
        "qc": {"sequences": len(qc), "patients": len(set(plan["patient_id"]) - ingested_ids),
               "reasons": _reasons(qc["reason"]) if len(qc) else []},
        "ingested": {"patients": len(ingested_ids), "sequences": len(sequences),
                     "views": sequences["view"].value_counts().sort_index().to_dict(),
                     "frames": int(sequences["n_frames"].sum())},
        "splits": {},
    }
    for split in [s for s in SPLITS if s in set(patients["split"])] + sorted(set(patients["split"]) - set(SPLITS)):
        members = patients[patients["split"] == split]
        rows = frames[frames["split"] == split]
        by_group = members["group"].value_counts() if "group" in members else pd.Series(dtype=int)
        order = [g for g in groups if g in by_group.index] + sorted(set(by_group.index) - set(groups))
        counts["splits"][split] = {"patients": len(members), "sequences": len(rows),
                                   "frames": int(rows["n_frames"].sum()),
                                   "groups": {g: int(by_group[g]) for g in order}}
    if analysis is not None:
        analysed = analysis[analysis["analysed"].astype(bool)]
        by_group = analysed["group"].value_counts()
        order = [g for g in groups if g in by_group.index] + sorted(set(by_group.index) - set(groups))
        counts["analysed"] = {"patients": len(analysed), "groups": {g: int(by_group[g]) for g in order}}
        exclusions = exclusions if exclusions is not None else pd.DataFrame(columns=["patient_id", "variable", "reason"])
        variable = exclusions["variable"].fillna("").astype(str)
        whole = exclusions[variable == ""]
        counts["not_analysed"] = _reasons(whole["reason"]) if len(whole) else []
        values = exclusions[variable != ""]
        counts["missing"] = {"values": len(values), "patients": int(values["patient_id"].nunique())}
    return counts


def _bold(text: str) -> str:
    """``text`` in bold, as mathtext (so one line of a box can be bold)."""
    return r"$\bf{" + text.replace(" ", r"\ ") + "}$"


def _n(count: int, noun: str) -> str:
    """``"1 patient"``, ``"2 patients"``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _box(ax, x, y, text, *, colour=OKABE_ITO["black"], face="white", size=6.5):
    return ax.text(x, y, text, ha="center", va="center", fontsize=size, linespacing=1.3,
                   bbox=dict(boxstyle="round,pad=0.45,rounding_size=0.15", facecolor=face, edgecolor=colour,
                             linewidth=0.8))


def _arrow(ax, start, end, *, start_at=(0.5, 0.0), end_at=(0.5, 1.0)):
    """An arrow from a point of one box's outline to a point of another's (fractions of their extents)."""
    ax.annotate("", xy=end_at, xycoords=end, xytext=start_at, textcoords=start,
                arrowprops=dict(arrowstyle="-|>", color=OKABE_ITO["black"], linewidth=0.7, shrinkA=0, shrinkB=0,
                                mutation_scale=7))


def _groups_text(groups: dict) -> str:
    return "\n".join(f"{name}: {n}" for name, n in groups.items())


@styled
def cohort_flow(counts: dict, *, title: str | None = None):
    """The flow chart of :func:`flow_counts` (one column wide).

    Boxes, top to bottom: planned patients; ingested patients, sequences (per view) and frames,
    with the sequences skipped at quality control and their reasons beside; one box per split
    (patients, sequences, frames, patients per group); and, when the statistics ran, the analysed
    patients per group with the patients not analysed (and missing values) beside.

    Returns
    -------
    matplotlib.figure.Figure
    """
    has_stats = "analysed" in counts
    fig = new_figure(COLUMN, 4.6 if has_stats else 3.7, layout=None)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    rows = [0.93, 0.72, 0.42, 0.12] if has_stats else [0.91, 0.64, 0.2]
    main_x, side_x = 0.28, 0.76

    planned = counts["planned"]
    top = _box(ax, main_x, rows[0], f"{_bold('Planned')}\n{_n(planned['patients'], 'patient')}\n"
               f"{_n(planned['sequences'], 'sequence')}")
    ingested = counts["ingested"]
    views = ", ".join(f"{view} {n}" for view, n in ingested["views"].items())
    middle = _box(ax, main_x, rows[1], f"{_bold('Ingested')}\n{_n(ingested['patients'], 'patient')}\n"
                  f"{_n(ingested['sequences'], 'sequence')}\n({views})\n{_n(ingested['frames'], 'frame')}")
    _arrow(ax, top, middle)
    qc = counts["qc"]
    qc_text = _bold("Excluded at QC") + "\n" + (_n(qc["sequences"], "sequence") + (f", {_n(qc['patients'], 'patient')}" if qc["patients"]
                                                                      else "")
                                    + "\n" + "\n".join(qc["reasons"]) if qc["sequences"] else "none")
    side = _box(ax, side_x, (rows[0] + rows[1]) / 2, qc_text, colour=OKABE_ITO["vermillion"], size=5.8)
    ax.annotate("", xy=(0.0, 0.5), xycoords=side, xytext=(main_x, (rows[0] + rows[1]) / 2), textcoords="data",
                arrowprops=dict(arrowstyle="-|>", color=OKABE_ITO["vermillion"], linewidth=0.7, shrinkA=0, shrinkB=0,
                                mutation_scale=7))

    splits = counts["splits"]
    n = max(len(splits), 1)
    split_boxes = []
    for i, (split, c) in enumerate(splits.items()):
        x = (i + 0.5) / n
        text = (f"{_bold(split)}\n{_n(c['patients'], 'patient')}\n{_n(c['sequences'], 'sequence')}\n"
                f"{_n(c['frames'], 'frame')}"
                + ("\n" + _groups_text(c["groups"]) if c["groups"] else ""))
        box = _box(ax, x, rows[2], text, size=6)
        _arrow(ax, middle, box)
        split_boxes.append(box)

    if has_stats:
        analysed = counts["analysed"]
        bottom = _box(ax, main_x, rows[3], f"{_bold('Analysed')}\n{_n(analysed['patients'], 'patient')}\n"
                      + _groups_text(analysed["groups"]))
        for box in split_boxes:
            _arrow(ax, box, bottom)
        reasons = counts["not_analysed"] or ["none"]
        missing = counts["missing"]
        text = _bold("Not analysed") + "\n" + "\n".join(reasons)
        text += (f"\nMissing values: {missing['values']}\n({_n(missing['patients'], 'patient')};\nleft out per outcome)"
                 if missing["values"] else "\nMissing values: none")
        side = _box(ax, side_x, rows[3], text, colour=OKABE_ITO["vermillion"], size=5.8)
        ax.annotate("", xy=(0.0, 0.5), xycoords=side, xytext=(1.0, 0.5), textcoords=bottom,
                    arrowprops=dict(arrowstyle="-|>", color=OKABE_ITO["vermillion"], linewidth=0.7, shrinkA=0,
                                    shrinkB=0, mutation_scale=7))
    if title:
        ax.text(0.02, 0.995, title, ha="left", va="top", fontsize=8, fontweight="bold")
    return fig
