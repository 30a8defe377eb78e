"""Stage "temporal consistency": the functions its rules call (``workflow/rules/temporal.smk``).

Rules, their files and their function
-------------------------------------
``temporal_thresholds``    reference attribute tables (``results/attributes/{truth,input}/``),
                           ``patients.tsv`` (and ``truth/frames.tsv``) ->
                           ``results/temporal/thresholds.tsv``; :func:`image_thresholds_stage`
``temporal_detection``     ``results/attributes/input/``, ``truth/frames.tsv``, ``patients.tsv``
                           and the image thresholds -> ``results/temporal/detection.tsv`` (rates
                           by split and frame class of ``temporal.thresholds.detector``);
                           :func:`detection_stage`
``latent_thresholds``      the checkpoint, its ``latent_bounds.tsv``, the image thresholds (and
                           reference shards) -> ``results/temporal/{model}/latent_thresholds.tsv``;
                           :func:`latent_thresholds_stage`
``temporal_correction``    the checkpoint, a cohort shard, both thresholds tables (and the truth
                           shard, ``frames.tsv``) -> ``results/temporal/{model}/shard-{k}.tsv``
                           (before/after, one row per sequence) and ``shard-{k}.h5`` (corrected
                           masks); :func:`correction_stage`
``export_temporal_nifti``  ``results/temporal/{model}/shard-{k}.h5`` -> the folder
                           ``results/temporal/{model}/nifti/shard-{k}/``: one NIfTI file per
                           sequence (one folder per patient) and ``manifest.tsv``; :func:`export_stage`
``temporal_summary``       the per-shard before/after tables -> ``results/temporal/{model}/summary.tsv``;
                           :func:`summary_stage`

The rules' paths are :mod:`echolatent.temporal.workflow`; the logic is in
:mod:`echolatent.temporal` (thresholds, evaluation, correction, export).

Reference sequences (for thresholds)
------------------------------------
``truth``     the simulator's clean masks (``results/attributes/truth``, truth shards);
``observed``  the ingested masks of a synthetic cohort, leaving out the frames with an
              injected defect and their neighbours (``truth/frames.tsv``): the observer
              variability without the segmentation failures, i.e. what manual annotations
              are for the published thresholds;
``input``     the ingested masks as they are (real cohorts: the manual annotations).
Only the sequences of the patients in ``splits`` are reference sequences.

Units
-----
The image-space thresholds name the attribute columns they apply to: the physical ones
(``lv_area_mm2``, ..., ``lv_orientation_deg``; ``temporal.thresholds.units: physical``, the default) or
the pixel ones (``units: pixels``, and the published TMI 2022 table). Detection and the
correction's image-space check measure whatever columns the table names (with the
sequence's spacing); the latent thresholds tie latent dim k to the row of the attribute it
regularises, in either unit (:func:`~echolatent.temporal.thresholds.by_attribute`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from echolatent.io.tables import read_table, read_tables, write_table
from echolatent.shape.attributes import temporal_attribute
from echolatent.temporal.evaluation import defects_of, injected_defects, read_frames_table
from echolatent.stages.encode import load_corrector
from echolatent.temporal.thresholds import (by_attribute, derive_thresholds, derive_thresholds_table, read_thresholds,
                                            sequence_curves, write_thresholds)

__all__ = [
    "REFERENCES",
    "read_latent_bounds",
    "image_thresholds_stage",
    "latent_thresholds_stage",
    "detection_stage",
    "correction_stage",
    "export_stage",
    "summary_stage",
]

logger = logging.getLogger(__name__)

REFERENCES = ("truth", "observed", "input")
LATENT_MODES = ("derived", "image")


def _members(patients, splits) -> set[str]:
    if not isinstance(patients, pd.DataFrame):
        patients = pd.read_csv(patients, sep="\t", dtype={"patient_id": str})
    members = set(patients.loc[patients["split"].isin(list(splits)), "patient_id"])
    if not members:
        raise ValueError(f"no patient in the reference split(s) {list(splits)}")
    return members


def read_latent_bounds(path) -> pd.DataFrame:
    """The trainer's ``latent_bounds.tsv`` (``dim, attribute, z_min, z_max, mu_p01, mu_p99``)."""
    table = pd.read_csv(path, sep="\t", dtype={"attribute": str}, keep_default_na=False,
                        na_values={"z_min": ["nan"], "z_max": ["nan"], "mu_p01": ["nan"], "mu_p99": ["nan"]})
    missing = [c for c in ("dim", "z_min", "z_max") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: latent bounds table lacks column(s) {missing}")
    return table.sort_values("dim").reset_index(drop=True)


def _rows_of(table: pd.DataFrame, patients) -> pd.DataFrame:
    """The rows of ``table`` whose patient is one of ``patients``."""
    return table[table["patient_id"].astype(str).isin(patients)]


def _read_defects(frames, cycle: str, patients=None) -> pd.DataFrame:
    """:func:`~echolatent.temporal.evaluation.injected_defects` of the simulator's frames table
    (a path, or a table), in compact dtypes (~12 bytes a frame; :func:`~echolatent.temporal.evaluation.defects_of` gives a
    patient set's rows in plain ones); ``patients``: only theirs."""
    if not isinstance(frames, pd.DataFrame):
        frames = read_frames_table(frames, patients=patients)
    elif patients is not None:
        frames = frames[frames["patient_id"].astype(str).isin(patients)]
    return injected_defects(frames, cycle=cycle)


def _with_defects(table: pd.DataFrame, defects: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the ``defective`` flag of each frame (``defects``: :func:`injected_defects` rows)."""
    out = table.merge(defects[["patient_id", "view", "frame", "defective"]], on=["patient_id", "view", "frame"],
                      how="left")
    if out["defective"].isna().any():
        raise ValueError("frames without a record in the simulator's frames table")
    out["defective"] = out["defective"].astype(bool)
    return out


def _reference_curves(attribute_tables, members, names, defects=None):
    """``read()``: the reference patients' curves of ``names``, shard by shard, read again at every
    call (:func:`~echolatent.temporal.thresholds.derive_thresholds`); with ``defects``, the
    frames with an injected defect are NaN (left out, as ``exclude`` does)."""
    columns = {"patient_id", "view", "frame", *names}

    def read():
        for path in attribute_tables:
            # only the keys and the attribute columns of the reference patients
            table = _rows_of(read_tables([path], columns=lambda name: name in columns), members)
            if not len(table):
                continue
            if defects is None:
                yield sequence_curves(table, names)[1]
                continue
            table = _with_defects(table, defects_of(defects, table["patient_id"].unique()))
            _, curves = sequence_curves(table, [*names, "defective"])
            yield [np.where(curve[:, -1:] == 1, np.nan, curve[:, :-1]) for curve in curves]

    return read


def image_thresholds_stage(attribute_tables, patients, *, reference: str, splits, names, rule: str = "max",
                           robust_k: float = 4.0, frames=None, cycle: str = "full", out=None) -> pd.DataFrame:
    """Image-space bounds and thresholds from the reference sequences (rule ``temporal_thresholds``).

    ``attribute_tables``: per-shard attribute tables of the reference masks (``truth``) or
    of the ingested masks (``observed``, ``input``); ``frames``: the simulator's frames
    table (``observed`` only); ``names``: the attribute columns (physical by default, see
    :func:`~echolatent.temporal.thresholds.image_attribute_names`); ``rule`` and ``robust_k``:
    how the thresholds are derived (:func:`~echolatent.temporal.thresholds.derive_thresholds_table`;
    the workflow's ``rule: auto`` is ``max`` for clean references and ``robust`` for ``input``).

    The reference is read shard by shard, once per pass of the derivation
    (:func:`~echolatent.temporal.thresholds.derive_thresholds`), and never held whole: the
    memory does not grow with the cohort.
    """
    if reference not in REFERENCES:
        raise ValueError(f"temporal reference must be one of {REFERENCES}, got {reference!r}")
    members, defects = _members(patients, splits), None
    if reference == "observed":
        if frames is None:
            raise ValueError("the 'observed' reference needs the simulator's frames table (synthetic cohorts)")
        defects = _read_defects(frames, cycle, patients=members)
    result = derive_thresholds(_reference_curves(attribute_tables, members, list(names), defects), list(names),
                               reference=f"{reference}:{'+'.join(splits)}:{rule}", cycle=cycle, rule=rule,
                               robust_k=robust_k)
    logger.info("image thresholds:\n%s", result.to_string(index=False))
    if out is not None:
        write_thresholds(result, out)
    return result


def latent_thresholds_stage(checkpoint, latent_bounds, image_thresholds, *, mode: str, reference: str = "input",
                            reference_shards=(), cohort_shards=(), patients=None, splits=("train",), frames=None,
                            cycle: str = "full", device: str = "auto", batch_size: int = 256,
                            out=None) -> pd.DataFrame:
    """Latent-space bounds and thresholds of the attribute dimensions (rule ``latent_thresholds``).

    ``mode="image"`` is the reference's choice: the image threshold of attribute k on latent
    dim k normalised by the training latent min/max. ``mode="derived"`` derives them from
    the latent trajectories (``mu`` of the pre-cleaned masks) of the reference sequences,
    normalised by the same min/max: the thresholds are then in the units they are applied in.
    A model without attribute dimensions gives an empty table (plain snake).
    """
    from echolatent.io.shards import iter_shard, shard_grid
    from echolatent.models.inference import encode_mu, knows_atrium, model_input
    from echolatent.temporal.preclean import preclean
    from echolatent.temporal.thresholds import THRESHOLD_COLUMNS

    if mode not in LATENT_MODES:
        raise ValueError(f"temporal latent_thresholds must be one of {LATENT_MODES}, got {mode!r}")
    model, names, dev = load_corrector(checkpoint, device)
    image = by_attribute(read_thresholds(image_thresholds, space="image"))  # pixel or physical rows
    bounds = read_latent_bounds(latent_bounds)
    dims = [k for k, name in enumerate(names) if temporal_attribute(name) in image.index]
    lo = bounds.set_index("dim").loc[dims, "z_min"].to_numpy(float)
    hi = bounds.set_index("dim").loc[dims, "z_max"].to_numpy(float)
    dim_names = [names[k] for k in dims]
    if not dims:
        result = pd.DataFrame(columns=THRESHOLD_COLUMNS)
    elif mode == "image":
        result = pd.DataFrame({"space": "latent", "name": dim_names, "dim": dims, "lo": lo, "hi": hi,
                               "tau": image.loc[[temporal_attribute(n) for n in dim_names], "tau"].to_numpy(float),
                               # the ends' own thresholds transfer as the interior ones do
                               "tau_end": image.loc[[temporal_attribute(n) for n in dim_names],
                                                    "tau_end"].to_numpy(float),
                               "n_sequences": pd.NA,
                               "seq_max_min": np.nan, "seq_max_mean": np.nan, "seq_max_std": np.nan,
                               "reference": "image-thresholds"}, columns=THRESHOLD_COLUMNS)
    else:
        members = _members(patients, splits)
        keep_la = knows_atrium(model)
        rows = []
        for ref_shard, cohort_shard in zip(reference_shards, cohort_shards):
            grid = shard_grid(cohort_shard)
            attrs_from = None if str(ref_shard) == str(cohort_shard) else cohort_shard
            for sequence in iter_shard(ref_shard, ("mask_native",), attrs_from=attrs_from):
                if sequence.patient_id not in members:
                    continue
                x = model_input(preclean(sequence.arrays["mask_native"], keep_atrium=keep_la), model, grid)
                mu = encode_mu(model, x, batch_size=batch_size, device=dev)[:, dims]
                frame = pd.DataFrame(mu, columns=[f"mu_{k}" for k in dims])
                frame.insert(0, "frame", np.arange(len(x)))
                frame.insert(0, "view", sequence.view)
                frame.insert(0, "patient_id", sequence.patient_id)
                rows.append(frame)
        if not rows:
            raise ValueError("no reference sequence in the reference shards")
        table = pd.concat(rows, ignore_index=True)
        exclude = None
        if reference == "observed":
            table, exclude = _with_defects(table, defects_of(_read_defects(frames, cycle, patients=members),
                                                             members)), "defective"
        result = derive_thresholds_table(table, [f"mu_{k}" for k in dims], names=dim_names, space="latent",
                                         dims=dims, bounds=(lo, hi), exclude=exclude, cycle=cycle,
                                         reference=f"latent:{reference}:{'+'.join(splits)}")
    logger.info("latent thresholds:\n%s", result.to_string(index=False))
    if out is not None:
        write_thresholds(result, out)
    return result


def detection_stage(attribute_tables, frames, thresholds, *, cycle: str = "full", margin: float = 0.0,
                    detector: str = "deviation", patients=None, out=None) -> pd.DataFrame:
    """Detection rates of both detectors on the injected defects (rule ``temporal_detection``).

    ``detector`` (``temporal.thresholds.detector``; :func:`~echolatent.temporal.detection.resolve_detector`)
    says which frames the correction treats as inconsistent; its rows come first, then those of
    the other detector (the spike search only where the thresholds have its stencil columns),
    named in a ``detector`` column. One row
    per frame class (:data:`~echolatent.temporal.evaluation.FRAME_CLASSES`: spikes by
    position -- single, pair, interior, end --, their clean neighbours, clean windows: the
    false alarms). With ``patients`` (``patients.tsv``) the rates are given per split
    (``train``, ``val``, ``test``, then ``all``) in a leading ``split`` column: the thresholds
    were derived on the reference splits, so the test rows are the held-out figures.
    """
    from echolatent.temporal.detection import resolve_detector
    from echolatent.temporal.evaluation import KEY, class_counts, detection_rates, rates_from_counts

    defects = _read_defects(frames, cycle)     # each shard takes its rows (defects_of)
    image = read_thresholds(thresholds, space="image")
    splits = ["all"]
    if patients is not None:
        from echolatent.models.quality import SPLIT_ORDER, with_split

        patients = pd.read_csv(patients, sep="\t", dtype={"patient_id": str})
        splits = list(SPLIT_ORDER)
    # the configured detector first, then the other one where its thresholds exist: the table
    # shows what the pair-aware spike search would flag next to the paper's deviation
    detectors = [resolve_detector(detector, cycle)]
    other = "spikes" if detectors[0] == "deviation" else "deviation"
    if other == "deviation" or "tau_pair" in image.columns:
        detectors.append(other)
    # Detection is per sequence and the rates are counts per frame class: the cohort is read
    # and checked shard by shard (the memory of one shard, not of the cohort) and the counts
    # are added up.
    counts = {}
    columns = [*KEY, *image["name"]]
    for table in attribute_tables:
        attributes = read_tables([table], columns=lambda name: name in columns)
        parts = {"all": attributes}
        if patients is not None:
            attributes = with_split(attributes, patients)
            parts = {split: attributes[attributes["split"] == split].drop(columns="split") if split != "all"
                     else attributes.drop(columns="split") for split in splits}
        shard_defects = defects_of(defects, attributes["patient_id"].unique())
        for name in detectors:
            for split, members in parts.items():
                if not len(members):
                    continue
                _, checked = detection_rates(members, shard_defects, image, margin=margin, cycle=cycle, detector=name)
                shard_counts = class_counts(checked, image["name"]).set_index("frames")
                key = (name, split)
                counts[key] = shard_counts if key not in counts else counts[key] + shard_counts
    tables = []
    for name in detectors:
        for split in splits:
            if (name, split) in counts:  # a split without frames has no rows
                rates = rates_from_counts(counts[name, split].reset_index())
                rates.insert(0, "detector", name)
                rates.insert(0, "split", split)
                tables.append(rates)
    rates = pd.concat(tables, ignore_index=True)
    if patients is None:
        rates = rates.drop(columns="split")
    logger.info("detection rates:\n%s", rates.to_string(index=False))
    if out is not None:
        write_table(rates, out)
    return rates


def correction_stage(checkpoint, shard, image_thresholds, latent_thresholds, *, settings: dict,
                     truth_shard=None, frames=None, cycle: str = "full", patients=None, out_table=None, out_h5=None,
                     model_name: str = "", device: str = "auto", criteria=None) -> pd.DataFrame:
    """Temporal correction of a shard (rule ``temporal_correction``).

    ``criteria``: the anatomy stage's table of the shard's masks
    (``results/anatomy/{source}/shard-k.parquet``), so that only the frames the correction
    changes are measured again (same results without it).

    With the simulator's ``frames`` table (synthetic cohorts) the table also gets
    ``n_spikes``, ``n_defects`` (injected per sequence) and ``spiked``; with ``patients``
    (``patients.tsv``) the ``split`` of each sequence's patient. ``settings``: the
    configuration's ``temporal`` and ``encoding`` sections (``{"temporal": ..., "encoding": ...}``;
    absent keys take the schema's defaults).
    """
    from echolatent.temporal.config import CorrectionConfig
    from echolatent.temporal.correction.consistency import LatentConstraint
    from echolatent.temporal.correction.shard import correct_shard

    model, _, dev = load_corrector(checkpoint, device)
    # the rows of the seven attributes, in the columns the table names (mm or pixels)
    image = by_attribute(read_thresholds(image_thresholds, space="image")).reset_index(drop=True)
    latent = pd.read_csv(latent_thresholds, sep="\t")
    constraint = LatentConstraint.from_table(latent) if len(latent) else None
    config = CorrectionConfig.from_settings(settings.get("temporal"), settings.get("encoding"))
    logger.info(f"correction settings {json.dumps(settings)}; constrained dims "
                f"{[] if constraint is None else constraint.dims.tolist()}")
    measured = None
    if criteria is not None:
        from echolatent.shape.criteria_definitions import CRITERIA

        measured = read_table(criteria)
        missing = [c for c in ("patient_id", "view", "frame", *CRITERIA) if c not in measured.columns]
        if missing:
            raise ValueError(f"{criteria}: the anatomical criteria table lacks the columns {missing}")
    table = correct_shard(shard, model, image_thresholds=image, constraint=constraint, config=config,
                          truth_shard=truth_shard, out_h5=out_h5, model_name=model_name, device=dev,
                          cycle=cycle, input_criteria=measured)
    if frames is not None:
        # the shard's patients' defects only, not the cohort's (a per-shard job)
        shard_patients = set(table["patient_id"].astype(str))
        defects = _read_defects(frames, cycle, patients=shard_patients)
        defects = defects_of(defects, shard_patients).groupby(["patient_id", "view"]).agg(
            n_spikes=("spike", "sum"), n_defects=("defective", "sum")).reset_index()
        table = table.merge(defects, on=["patient_id", "view"], how="left")
        table["spiked"] = table["n_spikes"] > 0
    if patients is not None:
        from echolatent.models.quality import with_split

        table = with_split(table, patients)
        table.insert(2, "split", table.pop("split"))
    if out_table is not None:
        write_table(table, out_table)
    return table


def export_stage(mask_shard, out_dir) -> pd.DataFrame:
    """Corrected sequences of one shard as NIfTI (rule ``export_temporal_nifti``;
    :func:`echolatent.temporal.export.export_nifti`).

    ``out_dir`` (``results/temporal/{model}/nifti/shard-{k}``, the rule's declared output) gets
    one folder per patient and ``manifest.tsv`` (``patient_id, view, n_frames, file``, paths
    relative to ``out_dir``); it is written complete or not at all.
    """
    from echolatent.io.atomic import atomic_directory
    from echolatent.temporal.export import export_nifti

    with atomic_directory(out_dir) as folder:
        table = export_nifti(mask_shard, folder, manifest=folder / "manifest.tsv", relative_to=folder)
    logger.info(f"{len(table)} sequences written under {out_dir}")
    return table


def summary_stage(tables, *, model: str | None = None, out=None) -> pd.DataFrame:
    """Cohort totals of the per-shard correction tables (rule ``temporal_summary``).

    One row per split (``train``, ``val``, ``test``, ``all``, when the tables have a
    ``split`` column; the test rows are the held-out figures) and group (``all``; for
    synthetic cohorts also the sequences with and without an injected spike when a
    ``spiked`` column is present): sequences, inconsistent
    sequences and frames before/after (by the configured detector; with
    ``deviation_inconsistent_sequences_*`` by the TMI 2022 deviation when the tables have its
    columns), anatomical errors before/after, mean Dice to the truth before/after. ``model``: the model's name, in a leading ``model`` column. The table
    is also logged.
    """
    table = pd.concat([pd.read_csv(t, sep="\t") for t in tables], ignore_index=True)
    splits = ["all"]
    if "split" in table.columns:
        from echolatent.models.quality import SPLIT_ORDER

        splits = list(SPLIT_ORDER)
    rows = []
    for split in splits:
        in_split = table if split == "all" else table[table["split"] == split]
        groups = {"all": in_split}
        if "spiked" in table.columns:
            spiked = in_split["spiked"].astype(bool)
            groups.update(spiked=in_split[spiked], not_spiked=in_split[~spiked])
        rows += [_summary_row(split, name, members) for name, members in groups.items()]
    result = pd.DataFrame(rows)
    if "split" not in table.columns:
        result = result.drop(columns="split")
    if model is not None:
        result.insert(0, "model", model)
    if out is not None:
        write_table(result, Path(out))
    logger.info("summary:\n%s", result.to_string(index=False))
    return result


def _summary_row(split: str, name: str, members: pd.DataFrame) -> dict:
    """Totals of one group of sequences of the correction tables."""
    row = {"split": split, "sequences": name, "n_sequences": len(members),
           "n_frames": int(members["n_frames"].sum())}
    for when in ("before", "after"):
        row[f"inconsistent_sequences_{when}"] = int(members[f"sequence_inconsistent_{when}"].sum())
        row[f"inconsistent_frames_{when}"] = int(members[f"inconsistent_frames_{when}"].sum())
        row[f"anatomical_errors_{when}"] = int(members[f"anatomical_errors_{when}"].sum())
        if f"deviation_sequence_inconsistent_{when}" in members.columns:   # the TMI 2022 metric
            row[f"deviation_inconsistent_sequences_{when}"] = int(
                members[f"deviation_sequence_inconsistent_{when}"].astype(bool).sum())
        if f"dice_{when}" in members.columns:
            row[f"dice_{when}"] = float(members[f"dice_{when}"].mean())
    if "dice_before" in members.columns:
        delta = members["dice_after"] - members["dice_before"]
        row["dice_change_mean"] = float(delta.mean())
        row["dice_decreased"] = int((delta < 0).sum())
        row["dice_increased"] = int((delta > 0).sum())
        row["dice_change_min"] = float(delta.min()) if len(delta) else np.nan
    if "method" in members.columns:
        for method in ("repair", "smooth"):
            row[f"method_{method}"] = int((members["method"] == method).sum())
    return row
