"""Cohort ingestion (stage 1): from a cohort source to EchoLatent's cohort shards.

Three steps, each a Snakemake rule so that a 10,000-patient cohort runs as a handful of
shard jobs, never one job per patient:

1. :func:`plan_cohort` lists the patients, checks the covariates, assigns each patient
   a split (train/val/test, by patient) and a shard.
2. :func:`ingest_shard` streams the patients of one shard: reads, checks, resamples to
   the model grid and writes ``shard-{k}.h5``.
3. :func:`merge_cohort` joins the per-shard tables into ``patients.tsv``,
   ``sequences.tsv``, ``qc.tsv`` and ``provenance.json``.

Output contract (``results/cohort/``; later stages rely on it)
---------------------------------------------------------------
``patients.tsv``
    One row per ingested patient: ``patient_id``, covariates (``group``, ``age``, ``sex``,
    ``bsa``, ... as available), ``split``, ``shard``, ``n_sequences``.
``sequences.tsv``
    One row per (patient, view): ``patient_id, view, shard, cycle, n_frames, ed, es,
    height, width, spacing_h, spacing_w, model_spacing_h, model_spacing_w, frame_rate,
    has_image, image_quality, source_files``.
``shard-{k}.h5``
    Root attributes ``format="echolatent-cohort-shard"``, ``version``, ``shard``,
    ``image_size``. One group ``/{patient_id}/{view}`` per sequence with datasets
    ``mask_native`` (T, H, W) uint8, ``mask`` (T, S, S) uint8 (nearest),
    ``image`` (T, S, S) when the source has images (bilinear; uint8 stays uint8; native
    images stay in the source files, listed in ``sequences.tsv``),
    ``frame_pos`` (T,) float32 (0 at ED, 1 at ES; full cycles are periodic, falling
    back towards 0 before the next ED whatever the order of ED and ES; see
    :func:`frame_positions`), and attributes ``spacing_native`` and ``spacing`` (h, w
    mm; the model-grid spacing is the native one scaled by H/S and W/S), ``ed``, ``es``, ``cycle``,
    ``frame_rate`` (NaN when unknown). Chunked one frame per chunk, gzip-compressed.
``qc.tsv``
    Sequences skipped with ``qc.on_bad_sequence: skip``: ``patient_id, view, file,
    reason``; ``view`` is empty when the whole patient was skipped (e.g. an empty CAMUS
    patient folder). A patient whose every view was skipped is not in ``patients.tsv``
    but always has rows here.
``provenance.json``
    The configuration, package versions and the SHA-256 of every input file (an MHD's
    ``.raw`` included).
``truth/`` (synthetic cohorts only)
    ``shard-{k}.h5`` with the clean masks (same groups, ``mask_native``/``mask``) and the
    simulator's truth tables. Analysis stages never read it; evaluation stages do.

Patient ids are plain identifiers (:data:`echolatent.io.sources.IDENTIFIER_RULE`), as they
name HDF5 groups and files. Every file is written under a temporary name and renamed;
merging deletes the shards an earlier cohort with more shards left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from echolatent.io.atomic import atomic_path, atomic_paths, remove_stale_temporaries, temporary_path
from echolatent.io.errors import InputError
from echolatent.io.sources import (
    SPLITS,
    CamusSource,
    SequenceRecord,
    StoreSource,
    read_patient_table,
    sha256_file,
)
from echolatent.io.sheet import SheetSource
from echolatent.labels import VALID_LABELS
from echolatent.resample import resize_images_bilinear, resize_masks_nearest

SHARD_FORMAT = "echolatent-cohort-shard"
SHARD_VERSION = 1
SEQUENCE_COLUMNS = [
    "patient_id", "view", "shard", "cycle", "n_frames", "ed", "es", "height", "width", "spacing_h", "spacing_w",
    "model_spacing_h", "model_spacing_w", "frame_rate", "has_image", "image_quality", "source_files",
]
QC_COLUMNS = ["patient_id", "view", "file", "reason"]


# --------------------------------------------------------------------------- sources
def open_source(kind: str, path, *, cycle: str = "full", layout: str = "auto"):
    """Open a cohort source.

    Parameters
    ----------
    kind : {"synthetic", "store", "camus", "sheet"}
        ``synthetic`` and ``store`` both read a simulator store folder.
    path : path
        The store folder, the CAMUS/TED root folder, or the sheet TSV.
    cycle : {"full", "half"}
    layout : str
        CAMUS layout (``auto``, ``camus-nifti``, ``camus-mhd``, ``ted``).
    """
    if kind in ("synthetic", "store"):
        return StoreSource(path, cycle=cycle)
    if kind == "camus":
        return CamusSource(path, layout=layout, cycle=cycle)
    if kind == "sheet":
        return SheetSource(path, cycle=cycle)
    raise ValueError(f"unknown cohort source {kind!r}; expected synthetic, store, camus or sheet")


# --------------------------------------------------------------------------- step 1
def split_fractions(fractions) -> dict:
    """Check the split fractions (``cohort.split``); return ``{split: float}``.

    Raises
    ------
    InputError
        Unless train, val and test are finite numbers >= 0 that sum to 1.
    """
    try:
        values = {split: float(fractions[split]) for split in SPLITS}
    except (KeyError, TypeError, ValueError):
        raise InputError(None, f"cohort.split fractions must give train, val and test as numbers, got {fractions!r}") \
            from None
    total = sum(values.values())
    if not np.isclose(total, 1.0) or not all(np.isfinite(v) and v >= 0 for v in values.values()):
        shown = ", ".join(f"{split}={value:g}" for split, value in values.items())
        raise InputError(None, f"cohort.split fractions must be >= 0 and sum to 1, got {shown} (sum {total:g})")
    return values


def assign_splits(patients: pd.DataFrame, fractions: dict, seed: int, *, stratify: str = "group") -> pd.Series:
    """Random split by patient, stratified on ``stratify`` (when present), reproducible by seed.

    In each stratum (sorted), patients (sorted by id) are permuted by a generator seeded
    from ``seed`` and the stratum's position, then cut into train/val/test by rounding the
    fractions, so the split depends only on the ids, the strata and the seed. When rounding
    leaves a split with a fraction > 0 without any patient (small cohorts, small strata),
    it receives one patient from the largest split, in the stratum where that split is
    largest (first in order on ties), provided the largest split keeps at least one.
    """
    values = split_fractions(fractions)
    strata = patients[stratify].fillna("NA").astype(str) if stratify in patients else pd.Series("all", patients.index)
    orders, counts = [], []
    for position, stratum in enumerate(sorted(strata.unique())):
        members = patients.index[strata == stratum]
        order = members[np.argsort(patients.loc[members, "patient_id"].to_numpy(), kind="stable")]
        rng = np.random.default_rng([int(seed), position])
        order = order[rng.permutation(len(order))]
        n_val = int(round(values["val"] * len(order)))
        n_test = int(round(values["test"] * len(order)))
        n_train = max(len(order) - n_val - n_test, 0)
        n_val = min(n_val, len(order) - n_train)
        orders.append(order)
        counts.append({"train": n_train, "val": n_val, "test": len(order) - n_train - n_val})
    for split in SPLITS:
        totals = {name: sum(count[name] for count in counts) for name in SPLITS}
        if values[split] > 0 and totals[split] == 0:
            donor = max(SPLITS, key=totals.get)
            if totals[donor] >= 2:
                stratum = max(range(len(counts)), key=lambda i: counts[i][donor])
                counts[stratum][donor] -= 1
                counts[stratum][split] += 1
    split = pd.Series("", index=patients.index, dtype=object)
    for order, count in zip(orders, counts):
        start = 0
        for name in SPLITS:
            split.loc[order[start:start + count[name]]] = name
            start += count[name]
    return split


def _check_dataset_split(patients: pd.DataFrame, origin) -> None:
    """The dataset's own split must list every patient and give train and val patients."""
    path, field = origin
    missing = patients["patient_id"][patients["split"].isna()]
    if len(missing):
        raise InputError(path, f"the dataset's split{field} does not list {len(missing)} patient(s), "
                               f"e.g. {missing.iloc[0]}: give every patient a split, "
                               "or set cohort.split.source: random")
    for name in ("train", "val"):  # what training needs; test may be empty
        if not (patients["split"] == name).any():
            raise InputError(path, f"the dataset's split{field} puts no patient in {name!r}: training needs train "
                                   "and val patients; assign some, or set cohort.split.source: random")


def _check_random_split(split: pd.Series, values: dict) -> None:
    """Every split with a fraction > 0 got a patient; training needs train and val."""
    for name in ("train", "val"):
        if values[name] == 0:
            raise InputError(None, f"cohort.split.{name}=0: training needs {name} patients; give it a fraction > 0")
    wanted = [name for name in SPLITS if values[name] > 0]
    empty = [name for name in wanted if not (split == name).any()]
    if not empty:
        return
    if len(split) < len(wanted):
        hint = " (or set cohort.split.test: 0)" if "test" in wanted else ""
        raise InputError(None, f"cohort.split: the cohort has {len(split)} patients, too few for the {len(wanted)} "
                               f"splits with a fraction > 0 ({', '.join(wanted)}): ingest at least {len(wanted)} "
                               f"patients{hint}")
    raise InputError(None, f"cohort.split.{empty[0]}={values[empty[0]]:g} gives split {empty[0]!r} no patient out of "
                           f"{len(split)}: raise its fraction")


def plan_cohort(source, *, n_shards: int, seed: int, fractions: dict, split_source: str = "auto",
                covariates=None) -> pd.DataFrame:
    """List patients, merge covariates, assign splits and shards.

    Every setting is checked here, before any data is read, and the plan is checked to be
    usable by the later stages (every shard holds a patient; train and val are not empty).

    Parameters
    ----------
    source : a cohort source (:func:`open_source`)
    n_shards : int
        Number of shards (at most the number of patients); patients are dealt round-robin
        after sorting by (split, group, patient_id) so every shard holds a similar mix.
    seed : int
    fractions : dict
        ``{"train": f, "val": f, "test": f}`` (>= 0, sum 1) for the random split; train
        and val must be > 0 (training needs both), test may be 0.
    split_source : {"auto", "dataset", "random"}
        ``auto`` uses the dataset's own split (CAMUS ``database_split/``, a sheet's
        ``split`` column) when present, else a random stratified split. A dataset split
        must list every patient and put patients in train and val.
    covariates : path, optional
        A per-patient TSV (``patient_id`` + covariates) merged onto the source's patients;
        its values take precedence.

    Returns
    -------
    DataFrame
        One row per patient: ``patient_id``, covariates, ``split``, ``shard``.

    Raises
    ------
    InputError
        A bad setting (the message names it and says what to change) or bad input.
    """
    if int(n_shards) < 1:
        raise InputError(None, f"cohort.shards must be >= 1, got {n_shards}")
    values = split_fractions(fractions)
    if split_source not in ("auto", "dataset", "random"):
        raise InputError(None, f"cohort.split.source must be auto, dataset or random, got {split_source!r}")
    patients = source.patients()
    split_origin = getattr(source, "split_origin", (None, ""))
    if covariates:
        extra = read_patient_table(covariates)
        unknown = sorted(set(extra["patient_id"]) - set(patients["patient_id"]))
        if unknown:
            raise InputError(covariates, f"{len(unknown)} patient(s) not in the cohort, e.g. {unknown[0]}")
        patients = patients.drop(columns=[c for c in extra.columns if c != "patient_id" and c in patients])
        patients = patients.merge(extra, on="patient_id", how="left")
        if "split" in extra:
            split_origin = (covariates, " (column 'split')")
    duplicated = patients["patient_id"][patients["patient_id"].duplicated()]
    if len(duplicated):
        raise InputError(None, f"duplicate patient id {duplicated.iloc[0]!r} in the cohort")
    if patients.empty:
        raise InputError(None, "the cohort lists no patient")
    if int(n_shards) > len(patients):
        raise InputError(None, f"cohort.shards={n_shards} but the cohort has {len(patients)} patients: "
                               f"use at most {len(patients)} shards")
    has_dataset_split = "split" in patients and patients["split"].notna().any()
    if split_source == "dataset" and not has_dataset_split:
        raise InputError(None, "cohort.split.source is 'dataset' but the cohort provides no split")
    if split_source in ("auto", "dataset") and has_dataset_split:
        _check_dataset_split(patients, split_origin)
    else:
        patients["split"] = assign_splits(patients, values, seed)
        _check_random_split(patients["split"], values)
    order = patients.assign(_split=patients["split"].map({s: i for i, s in enumerate(SPLITS)}),
                            _group=patients["group"].astype(str) if "group" in patients else "")
    order = order.sort_values(["_split", "_group", "patient_id"], kind="stable").index
    patients.loc[order, "shard"] = np.arange(len(order)) % int(n_shards)
    patients["shard"] = patients["shard"].astype(int)
    return patients.sort_values("patient_id", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- step 2
def frame_positions(n_frames: int, ed: int, es: int, cycle: str) -> np.ndarray:
    """Position of each frame in the cardiac phase: 0 at ED, 1 at ES.

    Half cycles (``ed < es``) rise linearly from ED to ES; frames before ED are 0, frames
    after ES are 1.

    Full cycles are periodic with period ``n_frames`` (frame ``n_frames`` would be the next
    ED), whatever the order of ED and ES and wherever the sequence starts: from ED the
    position rises linearly to 1 at ES over the ``(es - ed) mod n_frames`` frames of
    systole, then falls linearly back towards 0 over the remaining frames of diastole.
    Frames before ED belong to the previous cycle (its diastole, or its systole when the
    sequence holds ES before ED).

    Raises
    ------
    ValueError
        ED or ES outside the sequence, ED == ES, a half cycle with ES before ED (a reader
        must reverse such a sequence first), or an unknown cycle.
    """
    n = int(n_frames)
    ed, es = int(ed), int(es)
    if not (0 <= ed < n and 0 <= es < n):
        raise ValueError(f"ED={ed}/ES={es} outside the {n} frames")
    if ed == es:
        raise ValueError(f"ED and ES are the same frame ({ed})")
    index = np.arange(n)
    if cycle == "half":
        if es < ed:
            raise ValueError(f"a half cycle runs from ED to ES: needs ED < ES, got ED={ed}, ES={es}")
        return np.clip((index - ed) / (es - ed), 0.0, 1.0).astype(np.float32)
    if cycle != "full":
        raise ValueError(f"cycle must be 'full' or 'half', got {cycle!r}")
    systole = (es - ed) % n  # frames from ED to ES, in 1..n-1
    since_ed = (index - ed) % n
    rising = since_ed / systole
    falling = 1.0 - (since_ed - systole) / (n - systole)
    return np.where(since_ed <= systole, rising, falling).astype(np.float32)


def check_record(record: SequenceRecord) -> np.ndarray:
    """Check a record's mask and frame indices; return the mask as uint8.

    Raises
    ------
    InputError
        Naming the mask file and the problem.
    """
    where = record.files[0] if record.files else None
    label = f"{record.patient_id} {record.view}"
    mask = np.asarray(record.mask)
    if mask.ndim != 3 or mask.shape[0] < 1 or min(mask.shape[1:]) < 2:
        raise InputError(where, f"{label}: mask must be (T, H, W) with T >= 1, got shape {mask.shape}")
    if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise InputError(where, f"{label}: mask has non-numeric type {mask.dtype}")
    if np.issubdtype(mask.dtype, np.floating) and not np.array_equal(mask, np.round(mask)):
        raise InputError(where, f"{label}: mask has non-integer values (is it an image?)")
    # Integral values within [0, 3] are valid labels; list the others only when there are any.
    outside = []
    if mask.min() < 0 or mask.max() > max(VALID_LABELS):
        outside = [v for v in np.unique(mask).tolist() if v not in VALID_LABELS]
    if outside:
        raise InputError(where, f"{label}: label values {outside[:5]} outside {{0, 1, 2, 3}}")
    if not 0 <= record.ed < mask.shape[0] or not 0 <= record.es < mask.shape[0]:
        raise InputError(where, f"{label}: ED={record.ed}/ES={record.es} outside the {mask.shape[0]} frames")
    if record.ed == record.es:
        raise InputError(where, f"{label}: ED and ES are the same frame ({record.ed})")
    if record.cycle not in ("full", "half"):
        raise InputError(where, f"{label}: cycle must be 'full' or 'half', got {record.cycle!r}")
    if record.cycle == "half" and record.ed > record.es:
        raise InputError(where, f"{label}: a half cycle runs from ED to ES, but ED={record.ed} comes after "
                                f"ES={record.es} (reverse a half cycle stored ES->ED)")
    if record.image is not None and np.asarray(record.image).shape != mask.shape:
        raise InputError(where, f"{label}: image shape {np.asarray(record.image).shape} != mask shape {mask.shape}")
    return mask.astype(np.uint8, copy=False)


def _write_dataset(group, name: str, data: np.ndarray) -> None:
    # One frame per chunk, gzip level 1: readable by any HDF5 tool, and fast to write
    # (higher levels cost 2-3x the time for a few percent on speckled images).
    group.create_dataset(name, data=data, chunks=(1,) + data.shape[1:], compression="gzip", compression_opts=1)


def _write_sequence(h5: h5py.File, record: SequenceRecord, mask: np.ndarray, image_size: int) -> dict:
    size = (image_size, image_size)
    group = h5.require_group(record.patient_id).create_group(record.view)
    _write_dataset(group, "mask_native", mask)
    _write_dataset(group, "mask", resize_masks_nearest(mask, size))
    if record.image is not None:
        # Images are kept on the model grid only; the native ones stay in the source files
        # (listed, with their SHA-256, in sequences.tsv and provenance.json).
        image = np.asarray(record.image)
        if not np.issubdtype(image.dtype, np.integer):
            image = image.astype(np.float32)
        _write_dataset(group, "image", resize_images_bilinear(image, size))
    n_frames, height, width = mask.shape
    group.create_dataset("frame_pos", data=frame_positions(n_frames, record.ed, record.es, record.cycle))
    model_spacing = (record.spacing[0] * height / image_size, record.spacing[1] * width / image_size)
    group.attrs.update({
        "spacing_native": np.asarray(record.spacing, dtype=np.float64),
        "spacing": np.asarray(model_spacing, dtype=np.float64),
        "ed": record.ed, "es": record.es, "cycle": record.cycle,
        "frame_rate": np.nan if record.frame_rate is None else float(record.frame_rate),
    })
    return {
        "patient_id": record.patient_id, "view": record.view, "cycle": record.cycle, "n_frames": n_frames,
        "ed": record.ed, "es": record.es, "height": height, "width": width,
        "spacing_h": record.spacing[0], "spacing_w": record.spacing[1],
        "model_spacing_h": model_spacing[0], "model_spacing_w": model_spacing[1],
        "frame_rate": np.nan if record.frame_rate is None else record.frame_rate,
        "has_image": record.image is not None, "image_quality": record.info.get("image_quality", ""),
        "source_files": ";".join(str(f) for f in record.files),
    }


def _new_shard(path: Path, shard: int, image_size: int) -> h5py.File:
    h5 = h5py.File(path, "w")
    h5.attrs.update({"format": SHARD_FORMAT, "version": SHARD_VERSION, "shard": shard, "image_size": image_size})
    return h5


_SHARD_NAME = re.compile(r"shard-(\d+)\.h5")


def _remove_stale_outputs(out_dir: Path, n_shards: int, *, truth: bool) -> None:
    """Delete what an earlier cohort left in ``out_dir`` that the current one does not overwrite.

    Shard files ``shard-{k}.h5`` (and ``truth/shard-{k}.h5``) with ``k >= n_shards`` would
    otherwise be read with the new ones and duplicate their patients; without truth, an
    earlier cohort's ``truth/`` folder would be evaluated against.
    """
    if not truth and (out_dir / "truth").is_dir():
        shutil.rmtree(out_dir / "truth")
    for folder in (out_dir, out_dir / "truth"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = _SHARD_NAME.fullmatch(path.name)
            if match and int(match.group(1)) >= n_shards and path.is_file():
                path.unlink()


def _qc_row(patient: str, view: str, err: InputError) -> dict:
    return {"patient_id": patient, "view": view, "file": err.path or "", "reason": err.reason}


def ingest_shard(source, plan: pd.DataFrame, shard: int, *, image_size: int, out_h5, out_sequences, out_qc,
                 out_inputs, on_bad_sequence: str = "error", truth_masks=None, out_truth_h5=None,
                 log=None) -> pd.DataFrame:
    """Read, check, resample and write the patients of one shard.

    Parameters
    ----------
    source : a cohort source
    plan : DataFrame
        The output of :func:`plan_cohort`.
    shard : int
    image_size : int
        Side of the model grid (masks nearest, images bilinear).
    out_h5, out_sequences, out_qc, out_inputs : path
        The shard file, its sequence table, its QC table and the table of input files
        with their SHA-256.
    on_bad_sequence : {"error", "skip"}
        ``error`` stops at the first bad sequence (nothing is written); ``skip`` lists
        it in the QC table and goes on. A problem with a whole patient (e.g. an empty
        CAMUS patient folder) is handled alike, with an empty view in the QC table.
    truth_masks : path, optional
        The simulator's ``truth/clean_masks.h5``; with ``out_truth_h5``, the clean masks
        of the shard's sequences are written there on the same grids.

    Returns
    -------
    DataFrame
        The shard's sequence table.

    Notes
    -----
    Outputs are written under temporary names and renamed at the end; temporary files
    that a killed earlier run of the same outputs left behind are removed first.
    """
    _check_shard_settings(image_size, on_bad_sequence)
    outputs = [Path(p) for p in (out_h5, out_sequences, out_qc, out_inputs)]
    if out_truth_h5 is not None:
        outputs.append(Path(out_truth_h5))
    for path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
    rows, qc_rows, hashes = [], [], {}
    global_inputs = {Path(p) for p in source.input_files()}
    patients = plan.loc[plan["shard"] == shard, "patient_id"].tolist()
    with atomic_paths(outputs) as tmps:
        with contextlib.ExitStack() as files:  # every HDF5 file closed, also on error
            h5 = files.enter_context(_new_shard(tmps[Path(out_h5)], shard, image_size))
            truth_h5 = files.enter_context(_new_shard(tmps[Path(out_truth_h5)], shard, image_size)) \
                if out_truth_h5 else None
            clean = files.enter_context(h5py.File(truth_masks, "r")) if truth_masks else None
            for number, patient in enumerate(patients, start=1):
                def skip(view, err, patient=patient):
                    qc_rows.append(_qc_row(patient, view, err))

                listed = len(qc_rows)
                try:
                    records = source.read_patient(patient, on_error=None if on_bad_sequence == "error" else skip)
                    if not records and len(qc_rows) == listed:
                        # Sources report an absent patient themselves; this keeps any other
                        # source from dropping one silently.
                        raise InputError(None, f"patient {patient}: the source holds no sequence of this patient")
                except InputError as err:
                    if on_bad_sequence == "error":
                        raise
                    # A patient-level problem (e.g. an empty patient folder): no view is read,
                    # and the QC row has an empty view.
                    qc_rows.append(_qc_row(patient, "", err))
                    records = []
                for record in records:
                    try:
                        mask = check_record(record)
                    except InputError as err:
                        if on_bad_sequence == "error":
                            raise
                        qc_rows.append(_qc_row(patient, record.view, err))
                        continue
                    row = _write_sequence(h5, record, mask, image_size)
                    row["shard"] = shard
                    rows.append(row)
                    if truth_h5 is not None:
                        _write_truth(truth_h5, clean, record, image_size, truth_masks)
                    for path in record.files:
                        path = Path(path)
                        if path not in global_inputs and str(path) not in hashes:
                            hashes[str(path)] = sha256_file(path)
                if log is not None and (number % 50 == 0 or number == len(patients)):
                    print(f"shard {shard}: {number}/{len(patients)} patients", file=log, flush=True)
        table = pd.DataFrame(rows, columns=SEQUENCE_COLUMNS)
        table.to_csv(tmps[Path(out_sequences)], sep="\t", index=False)
        pd.DataFrame(qc_rows, columns=QC_COLUMNS).to_csv(tmps[Path(out_qc)], sep="\t", index=False)
        pd.DataFrame(sorted(hashes.items()), columns=["file", "sha256"]).to_csv(
            tmps[Path(out_inputs)], sep="\t", index=False)
    return table


def _write_truth(truth_h5: h5py.File, clean: h5py.File, record: SequenceRecord, image_size: int, path) -> None:
    key = f"{record.patient_id}/{record.view}"
    if key not in clean:
        raise InputError(path, f"no clean masks for {key}")
    mask = clean[key]["mask"][()]
    if record.cycle == "half":
        # The observed record was cut ED..ES from the stored full cycle; cut the same frames.
        offset = int(record.info.get("cycle_offset", 0))
        mask = mask[offset:offset + np.asarray(record.mask).shape[0]]
    if mask.shape != np.asarray(record.mask).shape:
        raise InputError(path, f"clean masks of {key} have shape {mask.shape}, observed {np.asarray(record.mask).shape}")
    group = truth_h5.require_group(record.patient_id).create_group(record.view)
    _write_dataset(group, "mask_native", mask)
    _write_dataset(group, "mask", resize_masks_nearest(mask, (image_size, image_size)))


# --------------------------------------------------------------------------- step 3
def package_versions() -> dict:
    """Versions of Python and of the packages ingestion depends on."""
    versions = {"python": platform.python_version()}
    for name in ("echolatent", "numpy", "pandas", "h5py", "SimpleITK", "scipy", "snakemake"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def merge_cohort(plan: pd.DataFrame, sequence_tables, qc_tables, input_tables, *, out_dir, config: dict,
                 global_inputs=(), truth_dir=None) -> None:
    """Join per-shard tables into the cohort tables and provenance (see module docstring).

    ``global_inputs`` are files read by every shard (a sheet, a store), hashed here once.
    With ``truth_dir`` (a simulator store's ``truth/`` folder), its tables are copied into
    ``out_dir/truth/``; without it, a ``truth/`` folder left by an earlier cohort is removed.
    Shard files ``shard-{k}.h5`` (and ``truth/shard-{k}.h5``) with ``k`` at or above the
    number of shards (``len(sequence_tables)``) are left-overs of an earlier cohort with
    more shards, and are deleted.
    """
    out_dir = Path(out_dir)
    sequences = pd.concat([pd.read_csv(p, sep="\t") for p in sequence_tables], ignore_index=True)
    sequences = sequences.sort_values(["patient_id", "view"], kind="stable").reset_index(drop=True)
    qc = pd.concat([pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in qc_tables],
                   ignore_index=True)
    counts = sequences.groupby("patient_id").size()
    patients = plan[plan["patient_id"].isin(counts.index)].copy()
    patients["n_sequences"] = patients["patient_id"].map(counts).astype(int)
    inputs = {}
    for path in input_tables:
        table = pd.read_csv(path, sep="\t", dtype=str)
        inputs.update(zip(table["file"], table["sha256"]))
    for path in global_inputs:
        inputs[str(path)] = sha256_file(path)
    provenance = {
        "config": config,
        "versions": package_versions(),
        "n_patients": int(len(patients)),
        "n_sequences": int(len(sequences)),
        "n_skipped": int(len(qc)),
        "inputs": dict(sorted(inputs.items())),
    }
    outputs = {
        "patients.tsv": lambda p: patients.to_csv(p, sep="\t", index=False),
        "sequences.tsv": lambda p: sequences.to_csv(p, sep="\t", index=False),
        "qc.tsv": lambda p: qc.to_csv(p, sep="\t", index=False),
        "provenance.json": lambda p: Path(p).write_text(json.dumps(provenance, indent=2, default=str) + "\n"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, write in outputs.items():
        remove_stale_temporaries(out_dir / name)
        with atomic_path(out_dir / name) as tmp:
            write(tmp)
    _remove_stale_outputs(out_dir, len(sequence_tables), truth=truth_dir is not None)
    if truth_dir is not None:
        (out_dir / "truth").mkdir(exist_ok=True)
        for table in sorted(Path(truth_dir).glob("*.tsv")):
            remove_stale_temporaries(out_dir / "truth" / table.name)
            with atomic_path(out_dir / "truth" / table.name) as tmp:
                shutil.copyfile(table, tmp)


def _check_shard_settings(image_size, on_bad_sequence: str) -> None:
    """The settings of :func:`ingest_shard`, checked before anything is read."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 2:
        raise InputError(None, f"cohort.image_size must be an integer >= 2, got {image_size!r}")
    if on_bad_sequence not in ("error", "skip"):
        raise InputError(None, f"qc.on_bad_sequence must be 'error' or 'skip', got {on_bad_sequence!r}")


#: Name of ``ingest_cohort``'s build folder inside the output folder (``.tmp-<pid>-ingest``).
_BUILD = "ingest"


def ingest_cohort(source, out_dir, *, image_size: int, n_shards: int = 1, seed: int = 0,
                  fractions=None, split_source: str = "auto", covariates=None, on_bad_sequence: str = "error",
                  truth_dir=None, config=None) -> pd.DataFrame:
    """All three steps in one process (for the CLI, tests and small cohorts), all or nothing.

    The cohort is built in a temporary folder inside ``out_dir`` and its files are moved
    into ``out_dir`` only once every step has succeeded: a failed ingestion leaves
    ``out_dir`` as it was (an earlier cohort there stays intact; a folder created for
    the run is removed). A successful one replaces the earlier cohort's files, including
    its surplus shards, and removes the build folder of a killed earlier run.

    Returns the cohort's ``sequences.tsv`` table.
    """
    out_dir = Path(out_dir)
    _check_shard_settings(image_size, on_bad_sequence)
    fractions = fractions or {"train": 0.7, "val": 0.15, "test": 0.15}
    plan = plan_cohort(source, n_shards=n_shards, seed=seed, fractions=fractions, split_source=split_source,
                       covariates=covariates)
    n_shards = int(n_shards)
    created = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]  # deepest first
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir / _BUILD)
    build = temporary_path(out_dir / _BUILD)
    try:
        parts = build / "parts"
        for shard in range(n_shards):
            ingest_shard(source, plan, shard, image_size=image_size, out_h5=build / f"shard-{shard}.h5",
                         out_sequences=parts / f"sequences-{shard}.tsv", out_qc=parts / f"qc-{shard}.tsv",
                         out_inputs=parts / f"inputs-{shard}.tsv", on_bad_sequence=on_bad_sequence,
                         truth_masks=None if truth_dir is None else Path(truth_dir) / "clean_masks.h5",
                         out_truth_h5=None if truth_dir is None else build / "truth" / f"shard-{shard}.h5")
        merge_cohort(plan, [parts / f"sequences-{k}.tsv" for k in range(n_shards)],
                     [parts / f"qc-{k}.tsv" for k in range(n_shards)],
                     [parts / f"inputs-{k}.tsv" for k in range(n_shards)],
                     out_dir=build, config=config or {}, global_inputs=source.input_files(), truth_dir=truth_dir)
        shutil.rmtree(parts)
        _install(build, out_dir, n_shards, truth=truth_dir is not None)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        for folder in created:  # only folders made for this run, and only when empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(build, ignore_errors=True)
    return pd.read_csv(out_dir / "sequences.tsv", sep="\t")


def _install(build: Path, out_dir: Path, n_shards: int, *, truth: bool) -> None:
    """Move a finished cohort from its build folder into ``out_dir``; provenance.json last."""
    names = sorted((p.relative_to(build) for p in build.rglob("*") if p.is_file()),
                   key=lambda name: (str(name) == "provenance.json", str(name)))
    for name in names:
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        os.replace(build / name, target)
    _remove_stale_outputs(out_dir, n_shards, truth=truth)
    if (out_dir / "parts").is_dir():
        shutil.rmtree(out_dir / "parts")  # per-shard tables an earlier, failed ingestion left
