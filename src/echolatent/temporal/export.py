"""Export of corrected sequences as NIfTI files a clinician can open (ITK-SNAP, 3D Slicer).

One file per sequence, on the native grid with the native pixel spacing (the time axis has
spacing 1), named after the CAMUS convention of the cohort::

    {out_dir}/{patient_id}/{patient_id}_{view}_{stem}_gt_{suffix}.nii.gz

``stem`` is ``sequence`` for full cycles and ``half_sequence`` for ED->ES half cycles (the
CAMUS 2023 names), so the corrected file sorts next to the original mask
(``..._{stem}_gt.nii.gz``) when copied into the cohort folder. Labels keep the cohort's
convention: 0 background, 1 LV, 2 MYO, 3 LA.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from echolatent.io.itk import write_sequence
from echolatent.io.shards import iter_shard

__all__ = ["corrected_file_name", "export_nifti"]


def corrected_file_name(patient_id: str, view: str, cycle: str = "full", suffix: str = "corrected") -> str:
    """File name of a corrected sequence (see the module docstring)."""
    stem = "half_sequence" if cycle == "half" else "sequence"
    return f"{patient_id}_{view}_{stem}_gt_{suffix}.nii.gz"


def export_nifti(mask_shard, out_dir, *, manifest=None, dataset: str = "mask_native", suffix: str = "corrected",
                 relative_to=None) -> pd.DataFrame:
    """Write every sequence of a mask shard as ``.nii.gz`` and return (and write) the manifest.

    Parameters
    ----------
    mask_shard : path
        A shard of the cohort layout (e.g. ``results/temporal/{model}/shard-{k}.h5``).
    out_dir : path
        Root of the export; one folder per patient.
    manifest : path, optional
        TSV listing ``patient_id, view, n_frames, file`` (written last, atomically).
    relative_to : path, optional
        Paths in the manifest are written relative to this folder (default: as given).
    """
    out_dir = Path(out_dir)
    rows = []
    for sequence in iter_shard(mask_shard, (dataset,)):
        masks = sequence.arrays[dataset]
        path = out_dir / sequence.patient_id / corrected_file_name(
            sequence.patient_id, sequence.view, str(sequence.attrs.get("cycle", "full")), suffix)
        write_sequence(path, masks, sequence.spacing(dataset))
        shown = os.path.relpath(path, relative_to) if relative_to is not None else str(path)
        rows.append({"patient_id": sequence.patient_id, "view": sequence.view, "n_frames": len(masks),
                     "file": shown})
    table = pd.DataFrame(rows, columns=["patient_id", "view", "n_frames", "file"])
    if manifest is not None:
        from echolatent.io.tables import write_table

        write_table(table, manifest)
    return table
