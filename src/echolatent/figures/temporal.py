"""Figure of the temporal correction of one sequence: attribute curves and frames, before and after.

:func:`correction_example` draws, for a few shape attributes, the curve of the input masks
and of the corrected masks over the frames, the frames the TMI 2022 metric flags, and the
metric itself (each frame's deviation from its neighbours divided by its threshold: a frame
above 1 is inconsistent); below, the frames around the worst one, input and corrected, as
contours over the B-mode image.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from echolatent.figures.names import label as display_label
from echolatent.figures.style import (INVALID_COLOUR, PAGE, SOURCE_COLOURS, crop_window, draw_masks, new_figure,
                                      scale_bar, structure_legend, styled)

__all__ = ["correction_example"]


@styled
def correction_example(before: pd.DataFrame, after: pd.DataFrame, ratio_before: np.ndarray, ratio_after: np.ndarray,
                       *, masks_before: np.ndarray, masks_after: np.ndarray, shown, images: np.ndarray | None = None,
                       spacing=(1.0, 1.0), title: str = ""):
    """One sequence before and after the temporal correction.

    Parameters
    ----------
    before, after : DataFrame (T, K)
        The plotted attributes (physical columns of :mod:`echolatent.shape.attributes`) of each
        frame of the input and of the corrected masks.
    ratio_before, ratio_after : ndarray (T, K)
        Each frame's metric deviation divided by its threshold (> 1: inconsistent), per attribute.
    masks_before, masks_after : ndarray (F, H, W)
        The shown frames, input and corrected.
    shown : sequence of int (F,)
        Their frame indices.
    images : ndarray (F, h, w), optional
        B-mode images of the shown frames (any grid covering the same field of view).
    spacing : (float, float)
        Pixel size (h, w) of the masks in mm.
    title : str
        E.g. the sequence and its correction.

    Returns
    -------
    matplotlib.figure.Figure
        Two columns wide.
    """
    attributes = list(before.columns)
    frames = np.arange(len(before))
    n_attr, n_shown = len(attributes), len(shown)
    # a wider margin than for shapes alone: the echo around the heart is part of the picture
    window = crop_window(np.concatenate([masks_before, masks_after]), margin=0.25)
    aspect = (window[1] - window[0]) * spacing[0] / ((window[3] - window[2]) * spacing[1])
    image_row = (PAGE - 0.3) / max(n_shown, 1) * aspect
    fig = new_figure(PAGE, 2.6 + 2 * image_row + 0.4)
    top, bottom = fig.add_gridspec(2, 1, height_ratios=[2.6, 2 * image_row], hspace=0.06)
    curves = top.subgridspec(2, n_attr, height_ratios=[1.6, 1.0], hspace=0.1, wspace=0.3)
    colours = {"input": SOURCE_COLOURS["input"], "corrected": SOURCE_COLOURS["temporal"]}
    for k, attribute in enumerate(attributes):
        ax = fig.add_subplot(curves[0, k])
        flagged = ratio_before[:, k] > 1
        ax.plot(frames, before[attribute], "-o", color=colours["input"], markersize=2, label="input")
        ax.plot(frames, after[attribute], "-", color=colours["corrected"], label="corrected")
        ax.plot(frames[flagged], before[attribute].to_numpy()[flagged], "x", color=INVALID_COLOUR, markersize=4,
                mew=1.2, label="inconsistent (input)")
        ax.set_title(display_label(attribute, units=False), fontsize=7)
        ax.set_ylabel(display_label(attribute).split("(")[-1].rstrip(")") if "(" in display_label(attribute) else "")
        ax.tick_params(labelbottom=False)
        for f in shown:
            ax.axvline(f, color="0.85", linewidth=0.5, zorder=0)
        metric = fig.add_subplot(curves[1, k], sharex=ax)
        metric.plot(frames, ratio_before[:, k], "-o", color=colours["input"], markersize=2)
        metric.plot(frames, ratio_after[:, k], "-", color=colours["corrected"])
        metric.axhline(1.0, color=INVALID_COLOUR, linestyle="--", linewidth=0.8)
        metric.set_ylim(0, max(2.0, float(np.nanmax(ratio_before[:, k])) * 1.1 if np.isfinite(ratio_before[:, k]).any()
                               else 2.0))
        metric.set_xlabel("Frame")
        if k == 0:
            metric.set_ylabel("|d| / \u03c4")
            handles, labels = ax.get_legend_handles_labels()
            handles.append(metric.lines[-1])
            labels.append("threshold (|d| = \u03c4)")
    frames_grid = bottom.subgridspec(2, n_shown, wspace=0.02, hspace=0.04)
    for i, frame in enumerate(shown):
        for row, (masks, name) in enumerate(((masks_before, "input"), (masks_after, "corrected"))):
            ax = fig.add_subplot(frames_grid[row, i])
            draw_masks(ax, masks[i], image=None if images is None else images[i], spacing=spacing, window=window)
            if row == 0:
                ax.set_title(f"frame {frame}", fontsize=6.5,
                             color=INVALID_COLOUR if (ratio_before[frame] > 1).any() else "black")
            if i == 0:
                ax.text(-0.04, 0.5, name, transform=ax.transAxes, rotation=90, ha="right", va="center", fontsize=7)
                if row == 1:
                    scale_bar(ax, 20.0, colour="white" if images is not None else "black")
    structure_legend(fig, extra=(handles, labels))
    if title:
        fig.suptitle(title, x=0.01, ha="left")
    return fig
