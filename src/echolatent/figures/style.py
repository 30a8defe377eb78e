"""The one plotting style of EchoLatent's figures: palette, fonts, sizes, saving, masks over images.

Every figure of :mod:`echolatent.figures` is drawn through this module, so that the paper's
figures look alike and a change of style is made once:

* **Palette.** Okabe & Ito's colour-blind-safe palette (:data:`OKABE_ITO`). One colour per
  structure, used in every figure (:data:`STRUCTURE_COLOURS`: LV sky blue, MYO orange, LA
  bluish green); one per compared group, per split, per mask source, per model.
* **Sizes and fonts.** Figures are drawn at the size they are printed: :data:`COLUMN` (one
  column, 3.5 in) or :data:`PAGE` (two columns, 7.2 in) wide, with 7-8 pt fonts that stay
  readable at that size (:data:`RC`). Figure functions run under :func:`styled`.
* **Saving.** :func:`save_figure` writes a 300-dpi PNG and a vector PDF, each under a
  temporary name then renamed (:mod:`echolatent.io.atomic`), without time stamps, so a
  figure rebuilt from the same results is the same file.
* **Masks.** :func:`draw_masks` draws label maps as contours (and a light fill) in the
  structure colours, over a B-mode image when there is one; :func:`scale_bar` gives the
  physical size of shape panels, which have no axes.

Figures are built on :class:`matplotlib.figure.Figure` objects, never through ``pyplot``'s
global state: a figure function can run in any process or thread and leaks nothing.
"""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are files (must precede any backend use)

import numpy as np  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from echolatent.io.atomic import atomic_path  # noqa: E402
from echolatent.labels import LA, LV, MYO  # noqa: E402

__all__ = ["OKABE_ITO", "STRUCTURE_COLOURS", "STRUCTURE_LABELS", "GROUP_COLOURS", "SPLIT_COLOURS",
           "SOURCE_COLOURS", "MODEL_COLOURS", "INVALID_COLOUR", "COLUMN", "PAGE", "DPI", "RC", "styled",
           "new_figure", "group_colours", "model_colour", "save_figure", "crop_window", "draw_masks", "scale_bar", "mark_invalid",
           "panel_label", "structure_legend", "STRUCTURE_LINESTYLES", "FEATURE_COLOURS", "draw_outlines",
           "outline_legend", "shade_intervals"]

#: Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "grey": "#999999",
}

#: Label value -> colour; the same in every figure (bright enough to show over a B-mode image).
STRUCTURE_COLOURS = {LV: OKABE_ITO["sky_blue"], MYO: OKABE_ITO["orange"], LA: OKABE_ITO["bluish_green"]}
#: Label value -> its name in legends.
STRUCTURE_LABELS = {LV: "LV", MYO: "MYO", LA: "LA"}
#: The compared groups, control then case (:func:`group_colours` names them).
GROUP_COLOURS = (OKABE_ITO["blue"], OKABE_ITO["vermillion"])
#: The cohort's splits.
SPLIT_COLOURS = {"train": OKABE_ITO["grey"], "val": OKABE_ITO["reddish_purple"], "test": OKABE_ITO["black"]}
#: Mask sources: the ingested masks, the simulator's clean truth, the temporally corrected masks.
SOURCE_COLOURS = {"input": OKABE_ITO["grey"], "truth": OKABE_ITO["black"], "temporal": OKABE_ITO["blue"],
                  "corrected": OKABE_ITO["bluish_green"]}
#: The study's models, in the order of the config.
MODEL_COLOURS = (OKABE_ITO["blue"], OKABE_ITO["vermillion"], OKABE_ITO["bluish_green"], OKABE_ITO["reddish_purple"],
                 OKABE_ITO["orange"], OKABE_ITO["sky_blue"], OKABE_ITO["black"])
#: Structure -> line style, where contours take a group's colour (one shape over another, :func:`draw_outlines`).
STRUCTURE_LINESTYLES = {LV: "solid", MYO: "dashed", LA: "dotted"}
#: Feature sets of the classification: the clinical baseline, the latent codes, both.
FEATURE_COLOURS = {"clinical": OKABE_ITO["black"], "latent": OKABE_ITO["blue"], "both": OKABE_ITO["bluish_green"]}
#: Marks an anatomically invalid decoding or an inconsistent frame.
INVALID_COLOUR = OKABE_ITO["vermillion"]

#: Widths (inches) of a one-column and a two-column figure of a journal page.
COLUMN = 3.5
PAGE = 7.2
#: Resolution of the PNG files.
DPI = 300

#: Matplotlib settings of every figure: fonts readable at print size, light axes, no top/right spines.
RC = {
    "font.family": "DejaVu Sans",
    "font.size": 7.5,
    "axes.titlesize": 8,
    "axes.labelsize": 7.5,
    "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5,
    "legend.fontsize": 6.5,
    "legend.title_fontsize": 7,
    "legend.frameon": False,
    "figure.titlesize": 9,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "axes.prop_cycle": matplotlib.cycler(color=list(MODEL_COLOURS)),
    "savefig.dpi": DPI,
    "pdf.fonttype": 42,  # TrueType in the PDF: text stays text (editable, searchable)
    "svg.fonttype": "none",
    "image.interpolation": "nearest",
}


def styled(function):
    """Decorator: run a figure function under :data:`RC` (the settings are read when artists are made)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(RC):
            return function(*args, **kwargs)

    return wrapper


def new_figure(width: float = COLUMN, height: float | None = None, *, layout: str | None = "constrained") -> Figure:
    """An empty figure of ``width`` x ``height`` inches (height: 3/4 of the width by default).

    Call it inside a :func:`styled` function. The figure is not registered with ``pyplot``: it is
    freed with its last reference.
    """
    return Figure(figsize=(width, 0.75 * width if height is None else height), layout=layout)


def group_colours(groups) -> dict:
    """Group name -> colour, for ``groups = (control, case)`` (further groups take the model colours)."""
    colours = list(GROUP_COLOURS) + [c for c in MODEL_COLOURS if c not in GROUP_COLOURS]
    return {group: colours[i % len(colours)] for i, group in enumerate(groups)}


def model_colour(index: int) -> str:
    """The colour of the study's ``index``-th model."""
    return MODEL_COLOURS[index % len(MODEL_COLOURS)]


def save_figure(fig: Figure, png, pdf=None) -> list[Path]:
    """Write ``fig`` as a 300-dpi PNG (and a vector PDF), each atomically.

    The files carry no creation date, so the same figure gives the same bytes. Folders are
    created as needed.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    png, pdf : path-like
        Targets; ``pdf`` may be None.

    Returns
    -------
    list of Path
        The files written.
    """
    written = []
    for path, fmt, metadata in ((png, "png", {"Software": None}), (pdf, "pdf", {"CreationDate": None, "Producer": None})):
        if path is None:
            continue
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=metadata, facecolor="white")
        written.append(path)
    return written


def crop_window(masks, margin: float = 0.1, coverage: float = 0.995) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)``: the box holding the structures of all ``masks`` (..., H, W), padded.

    One window for all the panels of a figure keeps their scale and position comparable while the
    empty field of view around the heart is left out. The box spans the central ``coverage`` of
    the structure pixels of all maps in each direction, so that a stray fragment of one invalid
    decoding does not shrink every panel (it may fall outside the window). ``margin``: padding,
    as a fraction of the box's larger side. The whole map when no map holds a structure.
    """
    masks = np.asarray(masks)
    height, width = masks.shape[-2:]
    counts = (masks.reshape(-1, height, width) > 0).sum(axis=0)
    if not counts.any():
        return 0, height, 0, width
    tail = (1 - coverage) / 2

    def span(profile):
        cumulative = np.cumsum(profile) / profile.sum()
        return int(np.searchsorted(cumulative, tail)), int(np.searchsorted(cumulative, 1 - tail))

    (top, bottom), (left, right) = span(counts.sum(axis=1)), span(counts.sum(axis=0))
    pad = int(np.ceil(margin * max(bottom - top + 1, right - left + 1)))
    return max(0, top - pad), min(height, bottom + 1 + pad), max(0, left - pad), min(width, right + 1 + pad)


def draw_masks(ax, mask: np.ndarray, *, image: np.ndarray | None = None, spacing=(1.0, 1.0), fill: float = 0.25,
               linewidth: float = 0.8, labels=(LV, MYO, LA), window=None) -> None:
    """Draw a label map as structure-coloured contours (and a light fill), over a B-mode image if given.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Its axis is turned off; the map is drawn in mm (origin at the top left, rows downwards).
    mask : ndarray (H, W) of int
        Label map (:mod:`echolatent.labels`).
    image : ndarray (h, w), optional
        B-mode image of the same field of view (any grid: it is stretched over the mask's
        extent), shown in grey.
    spacing : (float, float)
        Pixel size (h, w) of ``mask`` in mm.
    fill : float
        Opacity of the fill inside each structure (0: contours only). Over an image the fill is
        halved, so the echo stays readable.
    linewidth : float
        Contour width (points).
    labels : sequence of int
        Structures drawn.
    window : (int, int, int, int), optional
        ``(row0, row1, col0, col1)`` of ``mask`` shown (:func:`crop_window`); the whole map by default.
    """
    mask = np.asarray(mask)
    height, width = mask.shape
    sh, sw = float(spacing[0]), float(spacing[1])
    r0, r1, c0, c1 = window if window is not None else (0, height, 0, width)
    mask = mask[r0:r1, c0:c1]
    extent = (c0 * sw, c1 * sw, r1 * sh, r0 * sh)
    if image is not None:
        image = np.asarray(image)
        # the image may be on another grid over the same field of view: crop the matching pixels
        fh, fw = image.shape[0] / height, image.shape[1] / width
        i0, i1 = int(np.floor(r0 * fh)), max(int(np.ceil(r1 * fh)), int(np.floor(r0 * fh)) + 1)
        j0, j1 = int(np.floor(c0 * fw)), max(int(np.ceil(c1 * fw)), int(np.floor(c0 * fw)) + 1)
        low, high = np.percentile(image, [0.5, 99.5]) if image.size else (0.0, 1.0)  # robust grey range
        ax.imshow(image[i0:i1, j0:j1], cmap="gray", interpolation="bilinear", vmin=float(low),
                  vmax=float(max(high, low + 1e-6)), extent=(j0 / fw * sw, j1 / fw * sw, i1 / fh * sh, i0 / fh * sh))
        fill = fill / 2
    if fill > 0:
        overlay = np.zeros((*mask.shape, 4))
        for label in labels:
            overlay[mask == label] = to_rgba(STRUCTURE_COLOURS[label], fill)
        ax.imshow(overlay, extent=extent, interpolation="nearest")
    # contours of each structure's indicator at 0.5, through pixel centres (in mm)
    xs = (np.arange(c0, c1) + 0.5) * sw
    ys = (np.arange(r0, r1) + 0.5) * sh
    for label in sorted(labels, reverse=True):  # LV last: its outline stays visible inside the MYO
        inside = (mask == label).astype(float)
        if inside.any() and not inside.all():
            ax.contour(xs, ys, inside, levels=[0.5], colors=[STRUCTURE_COLOURS[label]], linewidths=linewidth)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.axis("off")


def scale_bar(ax, length_mm: float = 20.0, *, colour: str = "black", label: bool = True) -> None:
    """A horizontal bar of ``length_mm`` at the bottom left of a panel drawn in mm (:func:`draw_masks`)."""
    x0, x1 = ax.get_xlim()
    y_bottom, y_top = ax.get_ylim()
    span_y = abs(y_bottom - y_top)
    x = x0 + 0.06 * (x1 - x0)
    y = max(y_bottom, y_top) - 0.07 * span_y
    ax.plot([x, x + length_mm], [y, y], color=colour, linewidth=1.5, solid_capstyle="butt")
    if label:
        ax.text(x + length_mm / 2, y - 0.03 * span_y, f"{length_mm:g} mm", ha="center", va="bottom", fontsize=5.5,
                color=colour)


def mark_invalid(ax, *, colour: str = INVALID_COLOUR) -> None:
    """Frame a panel in the invalid colour and cross its top right corner: an anatomically invalid shape."""
    ax.axis("on")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(colour)
        spine.set_linewidth(1.4)
    ax.text(0.96, 0.96, "\u2715", transform=ax.transAxes, ha="right", va="top", color=colour, fontsize=7,
            fontweight="bold")


def panel_label(ax, text: str) -> None:
    """A bold panel letter (a, b, ...) at the top left, outside the axes."""
    ax.text(-0.02, 1.02, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=9, fontweight="bold")


def structure_legend(fig, *, invalid: bool = False, loc: str = "outside lower center", extra=((), ())) -> None:
    """A figure legend of the structure colours (and of the invalid mark), after the ``extra``
    ``(handles, labels)`` of the figure's own lines, so that a figure has one legend."""
    handles = list(extra[0]) + [Line2D([], [], color=colour, linewidth=1.5) for colour in STRUCTURE_COLOURS.values()]
    labels = list(extra[1]) + [STRUCTURE_LABELS[label] for label in STRUCTURE_COLOURS]
    if invalid:
        handles.append(Line2D([], [], color=INVALID_COLOUR, marker="s", markerfacecolor="none", linestyle="",
                              markersize=6))
        labels.append("fails an anatomical criterion")
    fig.legend(handles, labels, loc=loc, ncols=min(len(labels), 7))


def draw_outlines(ax, mask: np.ndarray, colour: str, *, spacing=(1.0, 1.0), linewidth: float = 0.9,
                  labels=(LV, MYO, LA), window=None) -> None:
    """Contours of a label map in one ``colour``, each structure in its line style (:data:`STRUCTURE_LINESTYLES`).

    For shapes drawn over one another (a case over a control): the colour says which shape, the
    line style which structure. Same coordinates (mm) and ``window`` as :func:`draw_masks`.
    """
    mask = np.asarray(mask)
    height, width = mask.shape
    sh, sw = float(spacing[0]), float(spacing[1])
    r0, r1, c0, c1 = window if window is not None else (0, height, 0, width)
    mask = mask[r0:r1, c0:c1]
    xs = (np.arange(c0, c1) + 0.5) * sw
    ys = (np.arange(r0, r1) + 0.5) * sh
    for label in labels:
        inside = (mask == label).astype(float)
        if inside.any() and not inside.all():
            ax.contour(xs, ys, inside, levels=[0.5], colors=[colour], linewidths=linewidth,
                       linestyles=[STRUCTURE_LINESTYLES[label]])
    ax.set_xlim(c0 * sw, c1 * sw)
    ax.set_ylim(r1 * sh, r0 * sh)
    ax.set_aspect("equal")
    ax.axis("off")


def outline_legend(fig, colours: dict, *, loc: str = "outside lower center") -> None:
    """One legend for :func:`draw_outlines` figures: ``colours`` (name -> colour), then the structures' line styles."""
    handles = [Line2D([], [], color=colour, linewidth=1.5) for colour in colours.values()]
    labels = list(colours)
    handles += [Line2D([], [], color="black", linewidth=1.0, linestyle=STRUCTURE_LINESTYLES[label])
                for label in STRUCTURE_LINESTYLES]
    labels += [STRUCTURE_LABELS[label] for label in STRUCTURE_LINESTYLES]
    fig.legend(handles, labels, loc=loc, ncols=max(len(colours), len(STRUCTURE_LINESTYLES)))


def shade_intervals(ax, intervals, *, colour: str = OKABE_ITO["grey"], alpha: float = 0.2) -> None:
    """Shade phase intervals ``(start, end)`` of a cycle over [0, 1]; ``start > end`` wraps through 1 = 0."""
    for start, end in intervals:
        spans = [(start, end)] if start <= end else [(start, 1.0), (0.0, end)]
        for a, b in spans:
            ax.axvspan(a, b if b > a else a + 0.005, color=colour, alpha=alpha, linewidth=0, zorder=0)
