"""Stage "anatomical evaluation": the functions its rules call (``workflow/rules/anatomy.smk``).

Rules, their files and their function
-------------------------------------
``anatomical_metrics``  a mask shard (and, for truth shards, the cohort shard) ->
                        ``results/anatomy/{source}/shard-{k}.parquet`` (the 12 criteria) and
                        ``results/attributes/{source}/shard-{k}.parquet`` (shape attributes);
                        :func:`anatomy_stage`
``clinical_indices``    the cohort shards -> ``results/clinical/indices.tsv`` (one row per
                        patient); :func:`clinical_stage`

Glue between the cohort shards (:mod:`echolatent.io.shards`) and the measures
(:mod:`echolatent.shape.criteria`, :mod:`echolatent.shape.attributes`, :mod:`echolatent.shape.clinical`):
one call per shard, so the workflow runs one job per shard.

Mask sources
------------
``input``
    The ingested masks (``results/cohort/shard-{k}.h5``).
``truth``
    The simulator's clean masks (``results/cohort/truth/shard-{k}.h5``, synthetic cohorts).
Later stages add reconstructions, temporally corrected and anatomically corrected masks,
stored in shards of the same layout.

Tables are measured on the native masks (``mask_native``) by default, with their spacing:
clinical volumes need the true spacing, and the 12 criteria use it to measure criteria 9-12
on the canonical isotropic grid (0.3 mm, config key ``anatomy.grid``) and criteria 1-8 on
the native grid (:func:`echolatent.shape.criteria.anatomical_metrics`).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from echolatent.io.shards import iter_shard
from echolatent.io.tables import write_table
from echolatent.shape.criteria import anatomical_metrics

__all__ = ["anatomy_stage", "clinical_stage", "cohort_clinical_indices", "shard_anatomy_tables",
           "shard_clinical_records"]

logger = logging.getLogger(__name__)

ID_COLUMNS = ["patient_id", "view", "frame", "frame_pos"]


def _ids(sequence, n_frames: int) -> pd.DataFrame:
    frame_pos = sequence.arrays.get("frame_pos")
    return pd.DataFrame({
        "patient_id": sequence.patient_id,
        "view": sequence.view,
        "frame": np.arange(n_frames),
        "frame_pos": np.full(n_frames, np.nan) if frame_pos is None else frame_pos,
    })


def shard_anatomy_tables(shard, *, dataset: str = "mask_native", attrs_from=None, grid=0.3,
                         batch_frames: int = 2048) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 12 criteria and the shape attributes of every frame of a shard.

    Frames of consecutive sequences with the same grid are measured together in batches
    of about ``batch_frames`` (the measures are vectorised across masks), so memory stays
    bounded whatever the shard size.

    Parameters
    ----------
    shard : path
        A cohort shard, or a shard of the same layout holding other masks.
    dataset : str
        ``mask_native`` (native grid) or ``mask`` (model grid).
    attrs_from : path, optional
        Shard whose group attributes (spacing, frame positions) apply, for shards that
        carry masks only (truth shards).
    grid : "auto", "native" or float
        Grid of the criteria (:func:`echolatent.shape.criteria.anatomical_metrics`): ``"auto"`` =
        criteria 9-12 on the canonical isotropic 0.3 mm grid, 1-8 on the dataset's grid.
    batch_frames : int
        Frames measured per call.

    Returns
    -------
    criteria, attributes : DataFrame
        One row per frame, keyed by ``patient_id, view, frame, frame_pos``.
    """
    from echolatent.shape.attributes import shape_attributes

    criteria, attributes = [], []
    batch_ids, batch_masks, batch_spacing = [], [], []

    def flush():
        if not batch_masks:
            return
        masks, spacing = np.concatenate(batch_masks), np.concatenate(batch_spacing)
        ids = pd.concat(batch_ids, ignore_index=True)
        criteria.append(pd.concat([ids, anatomical_metrics(masks, spacing, grid=grid)], axis=1))
        attributes.append(pd.concat([ids, shape_attributes(masks, spacing)], axis=1))
        batch_ids.clear(), batch_masks.clear(), batch_spacing.clear()

    positions = {}
    if attrs_from is not None:
        positions = {(s.patient_id, s.view): s.arrays["frame_pos"] for s in iter_shard(attrs_from, ("frame_pos",))}
    needed = (dataset,) if attrs_from is not None else (dataset, "frame_pos")
    for sequence in iter_shard(shard, needed, attrs_from=attrs_from):
        if attrs_from is not None:
            sequence.arrays["frame_pos"] = positions[(sequence.patient_id, sequence.view)]
        masks = sequence.arrays[dataset]
        if batch_masks and (masks.shape[1:] != batch_masks[0].shape[1:]
                            or sum(len(m) for m in batch_masks) + len(masks) > batch_frames):
            flush()
        batch_masks.append(masks)
        batch_spacing.append(np.tile(sequence.spacing(dataset), (len(masks), 1)))
        batch_ids.append(_ids(sequence, len(masks)))
    flush()
    if not criteria:
        raise ValueError(f"{shard}: the shard holds no sequences")
    return pd.concat(criteria, ignore_index=True), pd.concat(attributes, ignore_index=True)


def shard_clinical_records(shard, *, dataset: str = "mask_native", attrs_from=None) -> list[dict]:
    """ED and ES frames of every sequence of a shard, as :func:`echolatent.shape.clinical.clinical_indices` records.

    ``attrs_from``: the cohort shard giving ED/ES and spacing, for shards holding masks only.
    """
    records = []
    for sequence in iter_shard(shard, (dataset,), attrs_from=attrs_from):
        masks = sequence.arrays[dataset]
        ed, es = int(sequence.attrs["ed"]), int(sequence.attrs["es"])
        records.append({"patient_id": sequence.patient_id, "view": sequence.view, "ed": masks[ed], "es": masks[es],
                        "spacing": sequence.spacing(dataset)})
    return records


def cohort_clinical_indices(shards, *, dataset: str = "mask_native", rule: str = "midpoint",
                            attrs_from=None) -> pd.DataFrame:
    """Biplane Simpson EDV/ESV/EF and LA volume of every patient of a cohort (one row per patient).

    ``attrs_from``: the cohort shards matching ``shards`` one to one, for shards holding masks only.
    """
    from echolatent.shape.clinical import clinical_indices

    metas = attrs_from if attrs_from is not None else [None] * len(shards)
    records = [record for shard, meta in zip(shards, metas)
               for record in shard_clinical_records(shard, dataset=dataset, attrs_from=meta)]
    return clinical_indices(records, rule=rule)


def anatomy_stage(masks, *, attrs_from=None, dataset: str, grid, out_criteria,
                  out_attributes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The criteria and attributes tables of one shard of one mask source (rule ``anatomical_metrics``).

    ``masks``: the shard holding the source's masks; ``attrs_from``: the cohort shard, for
    shards holding masks only (see :func:`shard_anatomy_tables`).
    """
    criteria, attributes = shard_anatomy_tables(masks, dataset=dataset, attrs_from=attrs_from, grid=grid)
    write_table(criteria, out_criteria)
    write_table(attributes, out_attributes)
    logger.info(f"{len(criteria)} frames, {int(criteria['anatomical_errors'].sum())} with anatomical errors "
                f"(criteria grid: {grid})")
    return criteria, attributes


def clinical_stage(shards, *, dataset: str, rule: str, out) -> pd.DataFrame:
    """Biplane Simpson EDV/ESV/EF and LA volume per patient (rule ``clinical_indices``;
    :func:`cohort_clinical_indices`), written to ``out``."""
    table = cohort_clinical_indices(shards, dataset=dataset, rule=rule)
    write_table(table, out)
    logger.info(f"{len(table)} patients, {int(table['foreshortening'].sum())} flagged for foreshortening")
    return table
