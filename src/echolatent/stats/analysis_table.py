"""The analysis table: one row per patient, everything the population statistics use.

Frame-level tables (attributes, latent means, anatomical criteria) are reduced to patient-level
summaries per view (ED value, ES value, ED->ES change, cycle mean) before any statistics:
frames are never treated as independent samples. Column names and the exclusion rules are in
the docstring of :mod:`echolatent.stats`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from echolatent.stats.design import covariate_exclusions

__all__ = ["SUMMARIES", "EXCLUSION_COLUMNS", "FAMILIES", "sequence_summaries", "qc_flags", "clinical_columns",
           "analysis_table", "family_columns", "correction_flags"]

#: The four per-view summaries of a frame-level measure.
SUMMARIES = ("ed", "es", "change", "mean")
EXCLUSION_COLUMNS = ["patient_id", "variable", "reason"]
#: Outcome families and the prefix of their columns in the analysis table.
FAMILIES = ("clinical", "attributes", "latent")


def sequence_summaries(frames: pd.DataFrame, sequences: pd.DataFrame, columns, prefix: str) -> pd.DataFrame:
    """ED value, ES value, ES minus ED and the mean over frames of each column, per patient and view.

    Parameters
    ----------
    frames : DataFrame
        One row per frame: ``patient_id, view, frame`` (0-based index) and ``columns``.
    sequences : DataFrame
        One row per (patient, view): ``patient_id, view, ed, es`` (0-based frame indices).
    columns : list of str
    prefix : str
        Column prefix of the result (``attributes``, ``latent.{model}``).

    Returns
    -------
    DataFrame
        Indexed by ``patient_id``, columns ``{prefix}.{column}.{view}.{summary}``.
    """
    columns = list(columns)
    keys = ["patient_id", "view"]
    frames = frames[[*keys, "frame", *columns]].merge(sequences[[*keys, "ed", "es"]], on=keys, how="inner")
    grouped = frames.groupby(keys, sort=True)
    parts = {
        "ed": frames[frames["frame"] == frames["ed"]].set_index(keys)[columns],
        "es": frames[frames["frame"] == frames["es"]].set_index(keys)[columns],
        "mean": grouped[columns].mean(),
    }
    index = grouped.size().index
    parts = {name: part[~part.index.duplicated()].reindex(index) for name, part in parts.items()}
    parts["change"] = parts["es"] - parts["ed"]
    wide = []
    for summary in SUMMARIES:
        part = parts[summary].unstack("view")
        part.columns = [f"{prefix}.{column}.{view}.{summary}" for column, view in part.columns]
        wide.append(part)
    table = pd.concat(wide, axis=1)
    order = [f"{prefix}.{c}.{v}.{s}" for c in columns for v in sorted(frames["view"].unique()) for s in SUMMARIES]
    return table.reindex(columns=order)


def qc_flags(anatomy: pd.DataFrame) -> pd.DataFrame:
    """Frames and frames with anatomical errors per patient (``qc.frames``, ``qc.anatomical_error_frames``)."""
    grouped = anatomy.groupby("patient_id")["anatomical_errors"]
    return pd.DataFrame({"qc.frames": grouped.size(), "qc.anatomical_error_frames": grouped.sum().astype(int)})


def correction_flags(corrections: pd.DataFrame, model: str) -> pd.DataFrame:
    """Per patient, summed over views, from a temporal stage's sequence table (``results/temporal/{model}/shard-*.tsv``):
    ``qc.{model}.inconsistent_frames_before`` / ``_after`` (temporally inconsistent frames before and after the
    correction) and ``qc.{model}.anatomical_error_frames_after`` (frames failing an anatomical criterion after it)."""
    columns = {"inconsistent_frames_before": "inconsistent_frames_before",
               "inconsistent_frames_after": "inconsistent_frames_after",
               "anatomical_error_frames_after": "anatomical_errors_after"}
    missing = sorted(set(columns.values()) - set(corrections.columns))
    if missing:
        raise ValueError(f"temporal table of model {model!r}: missing columns {missing}")
    sums = corrections.groupby("patient_id")[list(columns.values())].sum()
    return pd.DataFrame({f"qc.{model}.{name}": sums[source].astype(int) for name, source in columns.items()})


def clinical_columns(clinical: pd.DataFrame) -> pd.DataFrame:
    """The numeric clinical indices as ``clinical.{index}`` and the foreshortening flag as ``qc.foreshortening``."""
    table = clinical.set_index("patient_id")
    numeric = [c for c in table.columns
               if pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]
    out = table[numeric].add_prefix("clinical.")
    if "foreshortening" in table:
        out["qc.foreshortening"] = table["foreshortening"]
    return out


def family_columns(table: pd.DataFrame, family: str) -> dict[str, list[str]]:
    """The outcome columns of ``family``, by model (``""`` for the families without one)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown outcome family {family!r}; families: {list(FAMILIES)}")
    found: dict[str, list[str]] = {}
    for column in table.columns:
        parts = column.split(".")
        if parts[0] == family:
            found.setdefault(parts[1] if family == "latent" else "", []).append(column)
    return found


def _missing_reason(column: str, views_present: set) -> str:
    parts = column.split(".")
    if parts[0] == "clinical":
        return "NaN clinical index (no biplane measure or undefined on the ED/ES frames)"
    view, summary = parts[-2], parts[-1]
    if view not in views_present:
        return f"no {view} sequence"
    return f"NaN {summary} value (undefined on the frames it summarises)"


def analysis_table(patients: pd.DataFrame, sequences: pd.DataFrame, clinical: pd.DataFrame,
                   attributes: pd.DataFrame, anatomy: pd.DataFrame, latents: dict | None = None,
                   corrections: dict | None = None, *,
                   attribute_columns, control: str, case: str, splits,
                   covariates=()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The analysis table (one row per patient) and its exclusions.

    Parameters
    ----------
    patients, sequences : DataFrame
        ``results/cohort/patients.tsv`` and ``sequences.tsv``.
    clinical : DataFrame
        ``results/clinical/indices.tsv``.
    attributes, anatomy : DataFrame
        The frame tables of the input masks (all shards).
    latents : dict, optional
        Model name -> its frame table of latent means (``mu_*`` columns).
    corrections : dict, optional
        Model name -> its temporal stage's sequence table (QC flags after correction).
    attribute_columns : list of str
        Physical attribute columns summarised.
    control, case : str
        The compared groups; patients of other groups are not analysed.
    splits : list of str
        The analysed splits.
    covariates : list of str
        Covariates whose missing values are listed as exclusions.

    Returns
    -------
    table, exclusions : DataFrame
        See :mod:`echolatent.stats`.
    """
    table = patients.drop(columns=["shard"], errors="ignore").set_index("patient_id")
    if table.index.duplicated().any():
        raise ValueError(f"patients table: duplicated patient_id {table.index[table.index.duplicated()].tolist()}")
    if "group" not in table:
        raise ValueError("the cohort has no 'group' column: a group comparison needs one (cohort sheet or "
                         "cohort.covariates)")
    splits = [str(s) for s in splits]
    in_split = table["split"].astype(str).isin(splits)
    in_group = table["group"].astype(str).isin([control, case]) & table["group"].notna()
    table["analysed"] = in_split & in_group
    per_patient = sequences.groupby("patient_id")
    table["frame_rate"] = per_patient["frame_rate"].mean()
    table["n_frames"] = per_patient["n_frames"].mean()
    if "image_quality" in sequences:
        quality = sequences.pivot_table(index="patient_id", columns="view", values="image_quality", aggfunc="first")
        for view in quality.columns:
            table[f"image_quality_{view}"] = quality[view]
    parts = [clinical_columns(clinical),
             sequence_summaries(attributes, sequences, attribute_columns, "attributes")]
    for model, frames in (latents or {}).items():
        mu = sorted((c for c in frames.columns if c.startswith("mu_")), key=lambda c: int(c.split("_")[1]))
        parts.append(sequence_summaries(frames, sequences, mu, f"latent.{model}"))
    parts.append(qc_flags(anatomy))
    for model, sequences_after in (corrections or {}).items():
        parts.append(correction_flags(sequences_after, model))
    for part in parts:
        table = table.join(part.reindex(table.index))
    table = table.reset_index()

    rows = [(pid, "", f"split {split!r} not in population.splits {splits}" if not ok else
             f"group {group!r} is neither the control ({control!r}) nor the case ({case!r})")
            for pid, split, group, ok, analysed in zip(table["patient_id"], table["split"], table["group"],
                                                       in_split.to_numpy(), table["analysed"]) if not analysed]
    analysed = table[table["analysed"]]
    exclusions = [pd.DataFrame(rows, columns=EXCLUSION_COLUMNS)]
    exclusions.append(covariate_exclusions(analysed, covariates))
    outcomes = [c for c in table.columns if c.split(".")[0] in FAMILIES]
    views = sequences.groupby("patient_id")["view"].agg(set)
    missing = analysed.set_index("patient_id")[outcomes].isna()
    stacked = missing.stack()
    stacked = stacked[stacked]
    exclusions.append(pd.DataFrame(
        [(pid, column, _missing_reason(column, views.get(pid, set()))) for pid, column in stacked.index],
        columns=EXCLUSION_COLUMNS))
    return table, pd.concat(exclusions, ignore_index=True)
