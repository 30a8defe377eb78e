"""Display names, with units, of the columns the figures plot.

The result tables name their columns for code (``clinical.ef_pct``,
``attributes.lv_area_mm2.4CH.ed``, ``frontier_ratio_between_lv_and_bg``); a figure shows
``EF (%)``, ``LV area 4CH at ED (mm²)``, ``9 LV-background frontier``. :func:`label` turns
any of those names into its display name; unknown names are returned unchanged, so a new
column is shown (under its own name) rather than dropped.
"""

from __future__ import annotations

import re

from echolatent.shape.criteria_definitions import CRITERIA

__all__ = ["QUANTITIES", "PIXEL_ATTRIBUTES", "SUMMARIES", "LOSS_TERMS", "CRITERION_LABELS", "label", "quantity", "unit", "criterion_label",
           "loss_label"]

#: Column -> (name, unit); unit "" for unitless quantities.
QUANTITIES = {
    # clinical indices (results/clinical/indices.tsv)
    "edv_ml": ("EDV", "mL"),
    "esv_ml": ("ESV", "mL"),
    "ef_pct": ("EF", "%"),
    "la_volume_ml": ("LA volume", "mL"),
    "lv_length_4ch_ed_mm": ("LV length 4CH ED", "mm"),
    "lv_length_2ch_ed_mm": ("LV length 2CH ED", "mm"),
    "lv_length_4ch_es_mm": ("LV length 4CH ES", "mm"),
    "lv_length_2ch_es_mm": ("LV length 2CH ES", "mm"),
    # shape attributes in physical units (echolatent.shape.attributes.MM_ATTRIBUTES)
    "lv_area_mm2": ("LV area", "mm²"),
    "lv_base_width_mm": ("LV base width", "mm"),
    "lv_length_mm": ("LV length", "mm"),
    "lv_orientation_deg": ("LV orientation", "°"),
    "myo_area_mm2": ("MYO area", "mm²"),
    "atrium_area_mm2": ("LA area", "mm²"),
    "epi_center_x_mm": ("EPI centre x", "mm"),
    "epi_center_y_mm": ("EPI centre y", "mm"),
    # covariates and acquisition (Table 1)
    "age": ("Age", "years"),
    "bsa": ("BSA", "m²"),
    "severity": ("Severity", "a.u."),
    "frame_rate": ("Frame rate", "Hz"),
    "n_frames": ("Frames per sequence", ""),
    "sex": ("Sex", ""),
    "image_quality_2CH": ("Image quality 2CH", ""),
    "image_quality_4CH": ("Image quality 4CH", ""),
    "anatomical_error_frames": ("Frames failing a criterion", "n"),
    "foreshortening": ("Foreshortening", ""),
}
#: The AR-VAE's attribute names (pixel units) -> their physical column, shown in its place. Written
#: out rather than imported from :mod:`echolatent.shape.attributes` (whose scikit-image import would
#: cost every figure job seconds); tests/test_figures.py checks it against ``PHYSICAL_NAMES``.
PIXEL_ATTRIBUTES = {"lv_area": "lv_area_mm2", "lv_base_width": "lv_base_width_mm", "lv_length": "lv_length_mm",
                    "lv_orientation": "lv_orientation_deg", "myo_area": "myo_area_mm2",
                    "epi_center_x": "epi_center_x_mm", "epi_center_y": "epi_center_y_mm",
                    "atrium_area": "atrium_area_mm2"}
QUANTITIES.update({pixel: QUANTITIES[physical] for pixel, physical in PIXEL_ATTRIBUTES.items()})

#: Per-view summaries of a curve (``echolatent.stats.analysis_table``).
SUMMARIES = {"ed": "at ED", "es": "at ES", "change": "ES − ED", "mean": "cycle mean"}

#: Loss terms of the training history (``train_{term}``, ``val_{term}``).
LOSS_TERMS = {"total": "Total loss", "rec": "Reconstruction", "ce": "Cross-entropy", "dice_loss": "Dice loss",
              "kl": "KL divergence", "attr": "Attribute regularisation", "phase": "Phase"}

#: The 12 anatomical criteria, numbered as in Painchaud et al. (TMI 2020).
CRITERION_LABELS = dict(zip(CRITERIA, [
    "1 Holes in LV", "2 Holes in EPI", "3 Holes in LA", "4 Gap LV-MYO", "5 Gap LV-LA",
    "6 LV fragments", "7 MYO fragments", "8 LA fragments", "9 LV-background frontier",
    "10 MYO-LA frontier", "11 LV/MYO width ratio", "12 MYO erosion ratio",
]))


def quantity(name: str) -> str:
    """The quantity a column measures, without its unit (the column itself if unknown)."""
    return QUANTITIES.get(name, (name, ""))[0]


def unit(name: str) -> str:
    """The unit of a column ("" when unitless or unknown)."""
    return QUANTITIES.get(name, (name, ""))[1]


def _with_unit(text: str, units: str) -> str:
    return f"{text} ({units})" if units else text


def label(column: str, *, units: bool = True) -> str:
    """Display name of a result column, with its unit in parentheses.

    Understands plain columns (``ef_pct``), family-prefixed outcome columns of the analysis table
    (``clinical.ef_pct``, ``attributes.lv_area_mm2.4CH.ed``, ``latent.arvae.mu_3.2CH.es``,
    ``qc.anatomical_error_frames``) and the ``outcome`` column of ``effects.tsv``
    (``lv_area_mm2.4CH.ed``, ``mu_3.2CH.es``).

    Examples
    --------
    >>> label("clinical.ef_pct")
    'EF (%)'
    >>> label("attributes.lv_area_mm2.4CH.ed")
    'LV area 4CH at ED (mm²)'
    """
    parts = column.split(".")
    if parts[0] in ("clinical", "attributes", "qc"):
        parts = parts[1:]
    elif parts[0] == "latent" and len(parts) > 2:
        parts = parts[2:]  # latent.{model}.mu_k...
    if not parts:
        return column
    name, rest = parts[0], parts[1:]
    view = next((p for p in rest if p in ("2CH", "4CH")), None)
    summary = next((SUMMARIES[p] for p in rest if p in SUMMARIES), None)
    latent = re.fullmatch(r"mu_(\d+)", name)
    text = f"z{latent.group(1)}" if latent else quantity(name)
    text = " ".join(t for t in (text, view, summary) if t)
    return _with_unit(text, unit(name) if units and not latent else "")


def criterion_label(name: str) -> str:
    """Numbered short name of an anatomical criterion (``"9 LV-background frontier"``)."""
    return CRITERION_LABELS.get(name, name)


def loss_label(term: str) -> str:
    """Display name of a loss term of the training history."""
    return LOSS_TERMS.get(term, term.replace("_", " ").capitalize())
