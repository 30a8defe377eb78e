"""Figures of the trained models: learning curves, reconstruction Dice, and the study's models side by side.

:func:`learning_curves`
    every loss term of one model's ``history.tsv``, train and validation, per epoch, with the
    validation Dice per structure and the selected (best) epoch marked;
:func:`reconstruction_dice`
    the reconstruction Dice of every structure, per split and model: one point per patient
    (the patient is the unit), mean and 95 % CI;
:func:`model_comparison`
    the study's models side by side: test Dice per structure, anatomically valid decodings
    of prior samples, and (AR-VAEs) the Spearman correlation of each regularised dimension
    with its attribute.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from scipy import stats

from echolatent.figures.names import loss_label, quantity
from echolatent.figures.style import (COLUMN, PAGE, SPLIT_COLOURS, STRUCTURE_COLOURS, model_colour, new_figure,
                                      panel_label, styled)
from echolatent.labels import LA, LV, MYO

__all__ = ["STRUCTURES", "loss_terms", "best_epoch", "mean_ci", "learning_curves", "reconstruction_dice",
           "model_comparison"]

#: Structure name in the tables (``dice_{name}``) -> label value.
STRUCTURES = {"lv": LV, "myo": MYO, "la": LA}
_NAMES = {"lv": "LV", "myo": "MYO", "la": "LA"}


def loss_terms(history: pd.DataFrame) -> list[str]:
    """The loss terms of a history (``train_{term}`` and ``val_{term}`` columns), those never finite left out."""
    terms = []
    for column in history.columns:
        if column.startswith("train_"):
            term = column[len("train_"):]
            values = history[[c for c in (column, f"val_{term}") if c in history]].to_numpy(dtype=float)
            if np.isfinite(values).any():
                terms.append(term)
    return terms


def best_epoch(history: pd.DataFrame) -> int | None:
    """The epoch training selected: the first with the lowest validation total loss."""
    if "val_total" not in history or not np.isfinite(history["val_total"]).any():
        return None
    return int(history.loc[history["val_total"].idxmin(), "epoch"])


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and its ``level`` confidence interval (t distribution), NaNs left out; NaN without 2 values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


@styled
def learning_curves(history: pd.DataFrame, *, model: str = ""):
    """One panel per loss term (train solid, validation dashed) and one of validation Dice per structure.

    Parameters
    ----------
    history : DataFrame
        ``results/models/{model}/history.tsv``: ``epoch``, ``train_{term}``, ``val_{term}``,
        ``val_dice_{structure}``.
    model : str
        Shown in the title.

    Returns
    -------
    matplotlib.figure.Figure
        Two columns wide. A term spanning more than two decades is drawn on a log scale.
    """
    terms = loss_terms(history)
    dice = [name for name in STRUCTURES if f"val_dice_{name}" in history]
    n_panels = len(terms) + (1 if dice else 0)
    n_cols = min(4, max(n_panels, 1))
    n_rows = max(1, math.ceil(n_panels / n_cols))
    fig = new_figure(PAGE, 1.55 * n_rows + 0.35)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    epochs = history["epoch"].to_numpy()
    chosen = best_epoch(history)
    for ax, term in zip(axes, terms):
        for split, style in (("train", "-"), ("val", "--")):
            column = f"{split}_{term}"
            if column in history:
                ax.plot(epochs, history[column], style, color=SPLIT_COLOURS[split] if split == "val" else "black",
                        label="train" if split == "train" else "validation", marker="o" if len(epochs) < 12 else None,
                        markersize=2)
        values = history[[c for c in (f"train_{term}", f"val_{term}") if c in history]].to_numpy(dtype=float)
        positive = values[np.isfinite(values) & (values > 0)]
        if len(positive) and (values[np.isfinite(values)] > 0).all() and positive.max() / positive.min() > 100:
            ax.set_yscale("log")
        ax.set_title(loss_label(term))
        ax.set_ylabel("KL (nats per frame)" if term == "kl" else "Loss (a.u.)")
    if dice:
        ax = axes[len(terms)]
        for name in dice:
            ax.plot(epochs, history[f"val_dice_{name}"], color=STRUCTURE_COLOURS[STRUCTURES[name]], label=_NAMES[name])
        ax.set_title("Validation Dice")
        ax.set_ylabel("Dice (0-1)")
        ax.legend(loc="lower right", ncols=1)
    for ax in axes[:n_panels]:
        ax.set_xlabel("Epoch")
        if chosen is not None:
            ax.axvline(chosen, color="0.4", linestyle=":", linewidth=0.8)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    if terms:
        handles, labels = axes[0].get_legend_handles_labels()
        if chosen is not None:
            handles.append(Line2D([], [], color="0.4", linestyle=":", linewidth=0.8))
            labels.append(f"selected epoch ({chosen})")
        fig.legend(handles, labels, loc="outside upper right", ncols=len(labels))
    fig.suptitle(f"Learning curves{f' of {model}' if model else ''}", x=0.01, ha="left")
    return fig


@styled
def reconstruction_dice(per_patient: pd.DataFrame):
    """Reconstruction Dice per structure, split and model: patients as points, mean and 95 % CI as bars.

    Parameters
    ----------
    per_patient : DataFrame
        One row per (model, patient): ``model``, ``split``, ``patient_id`` and ``dice_{lv,myo,la}``
        (mean over the patient's frames). Structures without a column are left out.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per model (one column wide for one model).
    """
    models = list(dict.fromkeys(per_patient["model"]))
    structures = [name for name in STRUCTURES if f"dice_{name}" in per_patient]
    splits = [s for s in ("train", "val", "test") if s in set(per_patient["split"])]
    fig = new_figure(COLUMN if len(models) == 1 else PAGE, 2.4)
    axes = np.atleast_1d(fig.subplots(1, len(models), sharey=True, squeeze=False).ravel())
    rng = np.random.default_rng(0)  # jitter only: the same figure every time
    width = 0.8 / max(len(structures), 1)
    low = 1.0
    for ax, model in zip(axes, models):
        rows = per_patient[per_patient["model"] == model]
        for j, name in enumerate(structures):
            colour = STRUCTURE_COLOURS[STRUCTURES[name]]
            for i, split in enumerate(splits):
                values = rows.loc[rows["split"] == split, f"dice_{name}"].to_numpy(dtype=float)
                values = values[np.isfinite(values)]
                x = i + (j - (len(structures) - 1) / 2) * width
                ax.scatter(x + rng.uniform(-0.3, 0.3, len(values)) * width, values, s=4, color=colour, alpha=0.45,
                           linewidths=0, label=_NAMES[name] if i == 0 else None)
                mean, lo, hi = mean_ci(values)
                if np.isfinite(mean):
                    ax.errorbar(x, mean, yerr=[[mean - lo], [hi - mean]] if np.isfinite(lo) else None, fmt="o",
                                color="black", markerfacecolor=colour, markersize=3.5, capsize=1.5, linewidth=0.8)
                if len(values):
                    low = min(low, float(values.min()))
        ax.set_xticks(range(len(splits)), [f"{s}\n(n = {int((rows['split'] == s).sum())})" for s in splits])
        ax.set_title(model)
        ax.set_xlim(-0.6, len(splits) - 0.4)
    axes[0].set_ylabel("Reconstruction Dice (0-1)")
    axes[0].set_ylim(max(0.0, low - 0.02), 1.0)
    axes[-1].legend(loc="lower right", title="structure", markerscale=2)
    return fig


@styled
def model_comparison(quality: pd.DataFrame, validity: pd.DataFrame, spearman: pd.DataFrame, *, split: str = "test"):
    """The study's models side by side (one figure for a study with several models).

    Parameters
    ----------
    quality : DataFrame
        ``results/models/quality.tsv``: ``model``, ``split``, ``dice_{lv,myo,la}``.
    validity : DataFrame
        One row per model: ``model``, ``n`` (decoded prior samples) and ``valid`` (how many
        pass the 12 anatomical criteria).
    spearman : DataFrame
        ``model``, ``attribute``, ``rho``: validation Spearman correlation of each regularised
        dimension with its attribute (AR-VAEs only; other models have no row).
    split : str
        The split whose Dice is shown (the held-out test split by default).

    Returns
    -------
    matplotlib.figure.Figure
        Three panels, two columns wide: (a) Dice, (b) % valid decodings with a 95 % Wilson
        interval, (c) Spearman rho.
    """
    models = list(dict.fromkeys(list(quality["model"]) + list(validity["model"])))
    colours = {m: model_colour(i) for i, m in enumerate(models)}
    fig = new_figure(PAGE, 2.5)
    ax_dice, ax_valid, ax_rho = fig.subplots(1, 3, width_ratios=[1.1, 0.8, 1.6])
    structures = [name for name in STRUCTURES if f"dice_{name}" in quality]
    width = 0.8 / max(len(models), 1)
    rows = quality[quality["split"] == split]
    for i, model in enumerate(models):
        row = rows[rows["model"] == model]
        offset = (i - (len(models) - 1) / 2) * width
        values = [float(row[f"dice_{s}"].iloc[0]) if len(row) else math.nan for s in structures]
        # points, not bars: Dice differences live near 1, and a bar must start at 0
        ax_dice.plot(np.arange(len(structures)) + offset, values, "o", color=colours[model], label=model,
                     markersize=4)
    ax_dice.set_xticks(range(len(structures)), [_NAMES[s] for s in structures])
    ax_dice.set_xlim(-0.6, len(structures) - 0.4)
    finite = rows[[f"dice_{s}" for s in structures]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    ax_dice.set_ylim(max(0.0, (finite.min() if len(finite) else 0.0) - 0.03), 1.0)
    ax_dice.set_ylabel(f"Reconstruction Dice, {split} (0-1)")
    ax_dice.grid(axis="y", linewidth=0.4, color="0.85")

    for i, model in enumerate(models):
        row = validity[validity["model"] == model]
        if not len(row):
            continue
        n, k = int(row["n"].iloc[0]), int(row["valid"].iloc[0])
        p, lo, hi = _wilson(k, n)
        ax_valid.bar(i, 100 * p, 0.7, color=colours[model])
        ax_valid.errorbar(i, 100 * p, yerr=[[100 * (p - lo)], [100 * (hi - p)]], color="black", capsize=2,
                          linewidth=0.8)
        ax_valid.text(i, 100 * hi + 2, f"{k}/{n}", ha="center", va="bottom", fontsize=5.5)
    ax_valid.set_xticks(range(len(models)), models, rotation=30, ha="right")
    ax_valid.set_ylim(0, 112)
    ax_valid.set_ylabel("Valid prior decodings (%)")

    attributes = list(dict.fromkeys(spearman["attribute"]))
    with_rho = [m for m in models if m in set(spearman["model"])]
    width = 0.8 / max(len(with_rho), 1)
    for i, model in enumerate(with_rho):
        table = spearman[spearman["model"] == model].set_index("attribute")["rho"]
        offset = (i - (len(with_rho) - 1) / 2) * width
        ax_rho.bar(np.arange(len(attributes)) + offset, [table.get(a, math.nan) for a in attributes], width * 0.9,
                   color=colours[model], label=model)
    if attributes:
        ax_rho.set_xticks(range(len(attributes)), [quantity(a) for a in attributes], rotation=35, ha="right")
        ax_rho.set_ylim(min(0.0, float(np.nanmin(spearman["rho"])) - 0.05) if len(spearman) else 0.0, 1.05)
    else:
        ax_rho.text(0.5, 0.5, "no attribute-regularised model", ha="center", va="center", transform=ax_rho.transAxes)
        ax_rho.set_xticks([])
    ax_rho.set_ylabel("Spearman \u03c1, dimension vs attribute")
    for ax, letter in zip((ax_dice, ax_valid, ax_rho), "abc"):
        panel_label(ax, letter)
    handles = [Line2D([], [], marker="s", linestyle="", color=colours[m], markersize=5) for m in models]
    fig.legend(handles, models, loc="outside upper center", ncols=len(models), title="model")
    return fig


def _wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float, float]:
    """Proportion ``k / n`` and its Wilson score interval."""
    if n == 0:
        return math.nan, math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half
