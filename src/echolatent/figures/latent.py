"""Figures of a model's latent space: decoded interpolations, prior samples, attribute traversals, PCA.

The shapes are decoded by the stage (:mod:`echolatent.stages.figures`) from the codes of
:mod:`echolatent.figures.latent_codes`; these functions only draw them. Every shape is drawn
with :func:`~echolatent.figures.style.draw_masks` (one colour per structure) in mm, with a
scale bar, and a shape failing any of the 12 anatomical criteria is framed and crossed in
the invalid colour (:func:`~echolatent.figures.style.mark_invalid`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from echolatent.figures.names import label as display_label
from echolatent.figures.names import unit
from echolatent.figures.style import (INVALID_COLOUR, PAGE, crop_window, draw_masks, group_colours, mark_invalid,
                                      new_figure, panel_label, scale_bar, structure_legend, styled)

__all__ = ["interpolation", "prior_samples", "traversals", "latent_pca"]


def _shape(ax, mask, spacing, window, invalid=False, bar: bool = False):
    draw_masks(ax, mask, spacing=spacing, window=window)
    if bar:
        scale_bar(ax, 20.0)
    if invalid:
        mark_invalid(ax)


def _aspect(window, spacing) -> float:
    """Height / width of a panel showing ``window`` of maps of pixel size ``spacing``."""
    r0, r1, c0, c1 = window
    return (r1 - r0) * float(spacing[0]) / ((c1 - c0) * float(spacing[1]))


@styled
def interpolation(masks: np.ndarray, t, *, spacing=(1.0, 1.0), row_labels=(), start: str = "", end: str = "",
                  invalid: np.ndarray | None = None):
    """Shapes decoded along ``t z0 + (1 - t) z1``: one row per pair of frames, one column per ``t``.

    Parameters
    ----------
    masks : ndarray (R, S, H, W)
        The decoded label maps: row r, step s.
    t : sequence of float (S,)
        The interpolation weight of each column (1: the first frame's code, 0: the second's).
    spacing : (float, float)
        Pixel size (h, w) of the maps in mm.
    row_labels : sequence of str (R,)
        E.g. the view of each row.
    start, end : str
        What ``z0`` and ``z1`` are (shown in the title).
    invalid : ndarray (R, S) of bool, optional
        Decodings failing an anatomical criterion.

    Returns
    -------
    matplotlib.figure.Figure
    """
    masks = np.asarray(masks)
    n_rows, n_steps = masks.shape[:2]
    window = crop_window(masks)
    fig = new_figure(PAGE, (PAGE - 0.3) / n_steps * _aspect(window, spacing) * n_rows + 0.8)
    axes = fig.subplots(n_rows, n_steps, squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.02})
    for r in range(n_rows):
        for s in range(n_steps):
            ax = axes[r, s]
            _shape(ax, masks[r, s], spacing, window, bool(invalid[r, s]) if invalid is not None else False,
                   bar=(r == n_rows - 1 and s == n_steps - 1))
            if r == 0:
                ax.set_title(f"t = {float(t[s]):.2f}", fontsize=7)
        if r < len(row_labels):
            axes[r, 0].text(-0.04, 0.5, row_labels[r], transform=axes[r, 0].transAxes, rotation=90, ha="right",
                            va="center", fontsize=7.5)
    if start or end:
        fig.suptitle(f"Decoded along t z0 + (1 \u2212 t) z1;  z0: {start or '?'};  z1: {end or '?'}", x=0.01, ha="left",
                     fontsize=7.5)
    structure_legend(fig, invalid=invalid is not None and bool(np.any(invalid)))
    return fig


@styled
def prior_samples(masks: np.ndarray, *, spacing=(1.0, 1.0), invalid: np.ndarray | None = None, n_cols: int = 8,
                  title: str = ""):
    """Shapes decoded from codes drawn from the prior N(0, I), in a grid.

    Parameters
    ----------
    masks : ndarray (N, H, W)
    spacing : (float, float)
        Pixel size (h, w) in mm.
    invalid : ndarray (N,) of bool, optional
        Decodings failing an anatomical criterion (framed and crossed).
    n_cols : int
        Panels per row.
    title : str
        E.g. how many of all the drawn samples are valid.

    Returns
    -------
    matplotlib.figure.Figure
    """
    masks = np.asarray(masks)
    n = len(masks)
    n_cols = min(n_cols, max(n, 1))
    n_rows = max(1, math.ceil(n / n_cols))
    window = crop_window(masks) if n else (0, 1, 0, 1)
    fig = new_figure(PAGE, PAGE / n_cols * _aspect(window, spacing) * n_rows + 0.6)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.02}).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.axis("off")
            continue
        _shape(ax, masks[i], spacing, window, bool(invalid[i]) if invalid is not None else False, bar=(i == 0))
    if title:
        fig.suptitle(title, x=0.01, ha="left")
    structure_legend(fig, invalid=invalid is not None and bool(np.any(invalid)))
    return fig


@styled
def traversals(masks: np.ndarray, values: np.ndarray, measured: np.ndarray, *, attributes, spacing=(1.0, 1.0),
               invalid: np.ndarray | None = None, dims=None):
    """AR-VAE attribute traversals: one row of decoded shapes per regularised dimension, the attribute
    measured on each shape plotted under its row.

    Parameters
    ----------
    masks : ndarray (D, S, H, W)
        Decodings: row d moves dimension ``dims[d]`` over ``values[d]``, the others fixed.
    values : ndarray (D, S)
        The traversed dimension's value at each step.
    measured : ndarray (D, S)
        The attribute that dimension regularises, measured on each decoded shape (physical units).
    attributes : sequence of str (D,)
        The attribute of each row (a column name of :mod:`echolatent.shape.attributes`; its
        display name and unit come from :mod:`echolatent.figures.names`).
    spacing : (float, float)
        Pixel size (h, w) in mm.
    invalid : ndarray (D, S) of bool, optional
        Decodings failing an anatomical criterion: framed on the shape, a cross on the curve.
    dims : sequence of int, optional
        The dimension index of each row (default 0..D-1).

    Returns
    -------
    matplotlib.figure.Figure
        Two columns wide, about 1.2 inch per row.
    """
    masks = np.asarray(masks)
    n_dims, n_steps = masks.shape[:2]
    dims = list(range(n_dims)) if dims is None else list(dims)
    window = crop_window(masks)
    aspect = _aspect(window, spacing)
    # shapes at most 0.8 in high, so that seven rows fit a page
    shape_height = min((PAGE - 0.8) / n_steps * aspect, 0.8)
    fig = new_figure(PAGE, n_dims * (shape_height + 0.45) + 0.5)
    outer = fig.add_gridspec(n_dims, 1, hspace=0.08)
    for d in range(n_dims):
        inner = outer[d].subgridspec(2, n_steps, height_ratios=[shape_height, 0.4], wspace=0.03, hspace=0.05)
        shape_axes = [fig.add_subplot(inner[0, s]) for s in range(n_steps)]
        for s, ax in enumerate(shape_axes):
            bad = bool(invalid[d, s]) if invalid is not None else False
            _shape(ax, masks[d, s], spacing, window, bad, bar=(d == n_dims - 1 and s == n_steps - 1))
        shape_axes[0].text(-0.08, 0.5, f"z{dims[d]}\n{display_label(attributes[d], units=False)}",
                           transform=shape_axes[0].transAxes, rotation=90, ha="right", va="center", fontsize=6.5)
        curve = fig.add_subplot(inner[1, :])
        x = np.arange(n_steps)
        curve.plot(x, measured[d], "-o", color="black", markersize=2.5, linewidth=0.8)
        if invalid is not None and np.any(invalid[d]):
            bad = np.asarray(invalid[d], bool)
            curve.plot(x[bad], np.asarray(measured[d])[bad], "x", color=INVALID_COLOUR, markersize=4, mew=1.2)
        curve.set_xlim(-0.5, n_steps - 0.5)
        curve.set_xticks(x, [f"{v:.1f}" for v in values[d]], fontsize=5.5)
        curve.tick_params(axis="y", labelsize=5.5)
        curve.set_ylabel(unit(attributes[d]) or "a.u.", fontsize=5.5)
        curve.grid(axis="y", linewidth=0.3, color="0.85")
    # one label for all rows, below them (on the last curve it would shrink the last row of shapes)
    fig.supxlabel("Value of the traversed latent dimension (latent units)", fontsize=6.5)
    structure_legend(fig, invalid=invalid is not None and bool(np.any(invalid)), loc="outside upper center")
    return fig


@styled
def latent_pca(frames: pd.DataFrame, patients: pd.DataFrame, *, explained_frames, explained_patients, groups=(),
               trajectories: pd.DataFrame | None = None):
    """PCA of the latent means: (a) frames coloured by phase, (b) patients coloured by group.

    Parameters
    ----------
    frames : DataFrame
        One row per frame: ``pc1``, ``pc2``, ``frame_pos`` (0 at ED, 1 at ES).
    patients : DataFrame
        One row per patient: ``pc1``, ``pc2``, ``group``.
    explained_frames, explained_patients : sequence of float
        Fraction of the variance along PC1 and PC2 of each projection.
    groups : sequence of str
        The compared groups, control first (their colours); other groups follow.
    trajectories : DataFrame, optional
        Frames (``pc1``, ``pc2``, ``sequence``) of a few sequences, drawn as lines in frame order.

    Returns
    -------
    matplotlib.figure.Figure
        Two columns wide.
    """
    fig = new_figure(PAGE, 3.0)
    ax_frames, ax_patients = fig.subplots(1, 2)
    points = ax_frames.scatter(frames["pc1"], frames["pc2"], c=frames["frame_pos"], cmap="viridis", vmin=0, vmax=1,
                               s=2, linewidths=0, alpha=0.7, rasterized=True)
    if trajectories is not None:
        for _, sequence in trajectories.groupby("sequence", sort=False):
            ax_frames.plot(sequence["pc1"], sequence["pc2"], "-", color="black", linewidth=0.6, alpha=0.8)
            ax_frames.plot(sequence["pc1"].iloc[:1], sequence["pc2"].iloc[:1], "o", color="black", markersize=2.5)
    bar = fig.colorbar(points, ax=ax_frames, shrink=0.85, pad=0.02)
    bar.set_label("Phase position (0 = ED, 1 = ES)")
    ax_frames.set_title(f"Frames (n = {len(frames):,})")
    present = list(dict.fromkeys(patients["group"].astype(str)))
    order = [g for g in groups if g in present] + [g for g in present if g not in groups]
    colours = group_colours(order)
    for group in order:
        rows = patients[patients["group"].astype(str) == group]
        ax_patients.scatter(rows["pc1"], rows["pc2"], s=10, color=colours[group], linewidths=0.3, edgecolors="white",
                            label=f"{group} (n = {len(rows)})")
    ax_patients.legend(loc="best", title="group")
    ax_patients.set_title(f"Patients (n = {len(patients)})")
    for ax, explained in ((ax_frames, explained_frames), (ax_patients, explained_patients)):
        ax.set_xlabel(f"PC1 (latent units; {100 * explained[0]:.0f} % of variance)")
        ax.set_ylabel(f"PC2 (latent units; {100 * explained[1]:.0f} % of variance)")
    panel_label(ax_frames, "a")
    panel_label(ax_patients, "b")
    return fig
