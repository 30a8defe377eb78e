"""Step 2 of ingestion: the patients of one shard read, checked, resampled and written.

Writes ``shard-{k}.h5`` (the layout is in :mod:`echolatent.ingest`; read with
:func:`echolatent.io.shards.iter_shard`), the shard's sequence and QC tables, the SHA-256
of the files it read, and for synthetic cohorts the clean masks on the same grids.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from echolatent.io.atomic import atomic_paths, remove_stale_temporaries
from echolatent.io.errors import InputError
from echolatent.io.sources import SequenceRecord, sha256_file
from echolatent.labels import VALID_LABELS
from echolatent.progress import Progress
from echolatent.resample import resize_images_bilinear, resize_masks_nearest

__all__ = ["QC_COLUMNS", "SEQUENCE_COLUMNS", "SHARD_FORMAT", "SHARD_VERSION", "check_record",
           "check_shard_settings", "frame_positions", "ingest_shard"]

logger = logging.getLogger(__name__)

SHARD_FORMAT = "echolatent-cohort-shard"
SHARD_VERSION = 1
SEQUENCE_COLUMNS = [
    "patient_id", "view", "shard", "cycle", "n_frames", "ed", "es", "height", "width", "spacing_h", "spacing_w",
    "model_spacing_h", "model_spacing_w", "frame_rate", "has_image", "image_quality", "source_files",
]
QC_COLUMNS = ["patient_id", "view", "file", "reason"]


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


def _qc_row(patient: str, view: str, err: InputError) -> dict:
    return {"patient_id": patient, "view": view, "file": err.path or "", "reason": err.reason}


def ingest_shard(source, plan: pd.DataFrame, shard: int, *, image_size: int, out_h5, out_sequences, out_qc,
                 out_inputs, on_bad_sequence: str = "error", truth_masks=None, out_truth_h5=None) -> pd.DataFrame:
    """Read, check, resample and write the patients of one shard.

    Parameters
    ----------
    source : a cohort source
    plan : DataFrame
        The output of :func:`~echolatent.ingest.plan.plan_cohort`.
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
    check_shard_settings(image_size, on_bad_sequence)
    outputs = [Path(p) for p in (out_h5, out_sequences, out_qc, out_inputs)]
    if out_truth_h5 is not None:
        outputs.append(Path(out_truth_h5))
    for path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
    rows, qc_rows, hashes = [], [], {}
    global_inputs = {Path(p) for p in source.input_files()}
    patients = plan.loc[plan["shard"] == shard, "patient_id"].tolist()
    # counted in patients: how many sequences a patient holds is known once it is read
    progress = Progress(len(patients), "patients", f"ingesting shard {shard}", logger=logger)
    with atomic_paths(outputs) as tmps:
        with contextlib.ExitStack() as files:  # every HDF5 file closed, also on error
            h5 = files.enter_context(_new_shard(tmps[Path(out_h5)], shard, image_size))
            truth_h5 = files.enter_context(_new_shard(tmps[Path(out_truth_h5)], shard, image_size)) \
                if out_truth_h5 else None
            clean = files.enter_context(h5py.File(truth_masks, "r")) if truth_masks else None
            for patient in patients:
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
                progress.update(1)
        table = pd.DataFrame(rows, columns=SEQUENCE_COLUMNS)
        table.to_csv(tmps[Path(out_sequences)], sep="\t", index=False)
        pd.DataFrame(qc_rows, columns=QC_COLUMNS).to_csv(tmps[Path(out_qc)], sep="\t", index=False)
        pd.DataFrame(sorted(hashes.items()), columns=["file", "sha256"]).to_csv(
            tmps[Path(out_inputs)], sep="\t", index=False)
    logger.info(f"shard {shard}: {len(table)} sequences written")
    if qc_rows:
        logger.warning(f"shard {shard}: {len(qc_rows)} sequence(s) or patient(s) skipped, listed in {out_qc}")
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


def check_shard_settings(image_size, on_bad_sequence: str) -> None:
    """The settings of :func:`ingest_shard`, checked before anything is read."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 2:
        raise InputError(None, f"cohort.image_size must be an integer >= 2, got {image_size!r}")
    if on_bad_sequence not in ("error", "skip"):
        raise InputError(None, f"qc.on_bad_sequence must be 'error' or 'skip', got {on_bad_sequence!r}")
