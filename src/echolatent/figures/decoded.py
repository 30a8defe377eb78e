"""Decoded shapes of the latent-space analyses: modes of variation, group means, the group direction.

Drawn from ``results/stats/latent/{model}/decoded.tsv`` and ``decoded.h5`` (the network's
decodings of the codes of :mod:`echolatent.stats.latent_space`: ``kind`` = ``mode``,
``group_mean``, ``direction``; one mask per row). Shapes are drawn in mm with a scale bar; a
decoding failing any of the 12 anatomical criteria (``anatomical_errors``) is framed and crossed
(:func:`~echolatent.figures.style.mark_invalid`).

* :func:`decoded_modes`: one block per view, rows = (phase, principal component), columns = the
  code at mean + sd * sqrt(eigenvalue) * loading, sd = -2 .. +2, structures in their colours.
* :func:`group_mean_shapes`: per view (columns) and phase (rows, ED and ES), the covariate-adjusted
  mean shape of the case group over that of the control group: one colour per group, the
  structures told apart by line style (:data:`~echolatent.figures.style.STRUCTURE_LINESTYLES`).
* :func:`group_direction`: rows = (view, phase), columns = steps along the group direction
  (0: the control mean, 1: the case mean; below 0 and above 1 extrapolate).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from echolatent.figures.style import (PAGE, crop_window, draw_masks, draw_outlines, group_colours, mark_invalid,
                                      new_figure, outline_legend, scale_bar, structure_legend, styled)

__all__ = ["decoded_modes", "group_mean_shapes", "group_direction"]

PHASES = {"ed": "ED", "es": "ES"}


def _invalid(table: pd.DataFrame) -> np.ndarray:
    if "anatomical_errors" not in table:
        return np.zeros(len(table), bool)
    return table["anatomical_errors"].astype(str).str.lower().isin(["true", "1", "1.0"]).to_numpy()


def _spacing(spacing, rows) -> tuple[float, float]:
    spacing = np.asarray(spacing, float)
    if spacing.ndim == 1:
        return float(spacing[0]), float(spacing[1])
    first = spacing[np.asarray(rows)[0]]
    return float(first[0]), float(first[1])


def _aspect(window, spacing) -> float:
    r0, r1, c0, c1 = window
    return (r1 - r0) * float(spacing[0]) / ((c1 - c0) * float(spacing[1]))


def _phase_order(values) -> list[str]:
    return sorted(set(map(str, values)), key=lambda p: (list(PHASES).index(p) if p in PHASES else 9, p))


def _shape(ax, mask, spacing, window, invalid: bool, bar: bool):
    draw_masks(ax, mask, spacing=spacing, window=window)
    if bar:
        scale_bar(ax, 20.0)
    if invalid:
        mark_invalid(ax)


def _decoded(table: pd.DataFrame, kind: str, what: str):
    """The rows of one kind of code (their index = their row in ``masks``) and every row's invalid flag."""
    table = table.reset_index(drop=True)
    rows = table[table["kind"] == kind]
    if rows.empty:
        raise ValueError(f"no decoded {what}")
    return rows, _invalid(table)


@styled
def decoded_modes(masks: np.ndarray, table: pd.DataFrame, spacing, *, model: str = ""):
    """Modes of variation: per view a block of rows (phase, component) x columns (sd)."""
    modes, invalid = _decoded(table, "mode", "modes")
    views = sorted(modes["view"].astype(str).unique())
    sds = sorted(modes["sd"].astype(float).unique())
    keys = [(p, int(c)) for p in _phase_order(modes["phase"]) for c in sorted(modes["component"].astype(float).unique())]
    sp = _spacing(spacing, modes.index)
    window = crop_window(masks[modes.index])
    n_cols = len(views) * len(sds)
    fig = new_figure(PAGE, (PAGE - 0.5) / n_cols * _aspect(window, sp) * len(keys) + 1.0)
    subfigures = np.atleast_1d(fig.subfigures(1, len(views), wspace=0.03))
    any_invalid = False
    for sub, view in zip(subfigures, views):
        axes = sub.subplots(len(keys), len(sds), squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.04})
        for r, (phase, component) in enumerate(keys):
            for c, sd in enumerate(sds):
                ax = axes[r, c]
                rows = modes[(modes["view"].astype(str) == view) & (modes["phase"].astype(str) == phase)
                             & (modes["component"].astype(float) == component) & (modes["sd"].astype(float) == sd)]
                if rows.empty:
                    ax.set_visible(False)
                    continue
                i = rows.index[0]
                any_invalid |= bool(invalid[i])
                _shape(ax, masks[i], sp, window, bool(invalid[i]), bar=(r == len(keys) - 1 and c == 0))
                if r == 0:
                    ax.set_title(f"{sd:+g} SD" if sd else "mean", fontsize=7)
            axes[r, 0].text(-0.06, 0.5, f"PC{component} {PHASES.get(phase, phase)}", transform=axes[r, 0].transAxes,
                            rotation=90, ha="right", va="center", fontsize=7)
        sub.suptitle(view, fontsize=8)
    fig.suptitle(f"Modes of variation of the patient codes{f', model {model}' if model else ''}: "
                 "mean + k SD along each principal component, decoded", fontsize=8)
    structure_legend(fig, invalid=any_invalid)
    return fig


@styled
def group_mean_shapes(masks: np.ndarray, table: pd.DataFrame, spacing, *, groups=(), model: str = ""):
    """The case group's adjusted mean shape over the control group's, per view (columns) and phase (rows)."""
    means, invalid = _decoded(table, "group_mean", "group means")
    names = [str(g) for g in groups] or sorted(means["group"].astype(str).unique())
    names += sorted(set(means["group"].astype(str)) - set(names))
    colours = group_colours(names)
    views = sorted(means["view"].astype(str).unique())
    phases = _phase_order(means["phase"])
    sp = _spacing(spacing, means.index)
    window = crop_window(masks[means.index])
    width = min(PAGE, 1.9 * len(views) + 0.4)
    fig = new_figure(width, (width - 0.4) / len(views) * _aspect(window, sp) * len(phases) + 1.0)
    axes = fig.subplots(len(phases), len(views), squeeze=False, gridspec_kw={"wspace": 0.03, "hspace": 0.06})
    for r, phase in enumerate(phases):
        for c, view in enumerate(views):
            ax = axes[r, c]
            bad = []
            for group in names:  # control first, the case drawn over it
                rows = means[(means["view"].astype(str) == view) & (means["phase"].astype(str) == phase)
                             & (means["group"].astype(str) == group)]
                if len(rows):
                    draw_outlines(ax, masks[rows.index[0]], colours[group], spacing=sp, window=window)
                    if invalid[rows.index[0]]:
                        bad.append(group)
            if r == len(phases) - 1 and c == 0:
                scale_bar(ax, 20.0)
            if bad:
                mark_invalid(ax)
                ax.text(0.02, 0.02, "invalid: " + ", ".join(bad), transform=ax.transAxes, fontsize=5.5,
                        color="black", va="bottom")
            if r == 0:
                ax.set_title(view, fontsize=8)
        axes[r, 0].text(-0.04, 0.5, PHASES.get(phase, phase), transform=axes[r, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=7.5)
    fig.suptitle(f"Adjusted group-mean shapes{f', model {model}' if model else ''}", fontsize=8)
    outline_legend(fig, {f"{g} (adjusted mean)": colours[g] for g in names})
    return fig


@styled
def group_direction(masks: np.ndarray, table: pd.DataFrame, spacing, *, groups=(), model: str = ""):
    """Shapes along the group direction: rows = (view, phase), columns = steps (0 control mean, 1 case mean)."""
    steps_table, invalid = _decoded(table, "direction", "group direction")
    steps = sorted(steps_table["step"].astype(float).unique())
    keys = [(v, p) for v in sorted(steps_table["view"].astype(str).unique()) for p in _phase_order(steps_table["phase"])]
    sp = _spacing(spacing, steps_table.index)
    window = crop_window(masks[steps_table.index])
    fig = new_figure(PAGE, (PAGE - 0.3) / len(steps) * _aspect(window, sp) * len(keys) * 1.05 + 1.0)
    axes = fig.subplots(len(keys), len(steps), squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.04})
    control, case = (list(groups) + ["control", "case"])[:2] if len(groups) >= 2 else ("control", "case")
    any_invalid = False
    for r, (view, phase) in enumerate(keys):
        for c, step in enumerate(steps):
            ax = axes[r, c]
            rows = steps_table[(steps_table["view"].astype(str) == view) & (steps_table["phase"].astype(str) == phase)
                               & (steps_table["step"].astype(float) == step)]
            if rows.empty:
                ax.set_visible(False)
                continue
            i = rows.index[0]
            any_invalid |= bool(invalid[i])
            _shape(ax, masks[i], sp, window, bool(invalid[i]), bar=(r == len(keys) - 1 and c == 0))
            if r == 0:
                name = {0.0: f"\n({control})", 1.0: f"\n({case})"}.get(step, "\n")
                ax.set_title(f"step {step:+g}{name}", fontsize=7)
        axes[r, 0].text(-0.04, 0.5, f"{view} {PHASES.get(phase, phase)}", transform=axes[r, 0].transAxes,
                        rotation=90, ha="right", va="center", fontsize=7.5)
    fig.suptitle(f"Along the group direction{f', model {model}' if model else ''}: control mean + step × "
                 f"({case} − {control})", fontsize=8)
    structure_legend(fig, invalid=any_invalid)
    return fig
