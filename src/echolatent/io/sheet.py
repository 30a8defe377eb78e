"""A cohort described by a TSV sheet: any NIfTI/MHD cohort.

One row per (patient, view) sequence. Columns:

``patient_id`` (required)
    The user's id, kept as given; it names HDF5 groups and files, so it must be a plain
    identifier (:data:`echolatent.io.sources.IDENTIFIER_RULE`).
``view`` (required)
    ``2CH`` or ``4CH``.
``mask`` (required)
    Path of the label-map sequence (``.nii``, ``.nii.gz`` or ``.mhd``), relative to the
    sheet's folder or absolute.
``image`` (optional)
    Path of the matching image sequence.
``ed``, ``es`` (required)
    0-based frame indices of end-diastole and end-systole in that sequence; different
    frames, and ``ed < es`` for a half cycle. A full cycle may hold them in either order
    (a sequence that starts mid-cycle holds ES before ED); such a sequence has no ED->ES
    run of frames, so it cannot be ingested as a half cycle (``cohort.cycle: half``).
``cycle`` (optional)
    ``full`` (ED->ES->ED) or ``half`` (ED->ES); default ``full``.
``frame_rate`` (optional)
    Frames per second.
covariates (optional)
    ``age``, ``sex`` (M/F), ``bsa``, ``group``, ``severity``, ``split`` (train/val/test)
    are checked for type; any other column is carried along as a patient covariate.
    Covariates are per patient: they must agree across a patient's rows.

The JSON schema ``workflow/schemas/sheet.schema.yaml`` describes the same columns for
Snakemake's ``validate``; this module repeats the checks so the package can be used
without Snakemake, with errors that name the sheet, the row and the column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from echolatent import VIEWS
from echolatent.io.errors import InputError
from echolatent.io.itk import data_files, read_sequence
from echolatent.io.sources import (
    CYCLES,
    SequenceRecord,
    _check_cycle,
    check_identifiers,
    check_image_matches,
    coerce_covariates,
    half_cycle,
    read_tsv,
)

REQUIRED_COLUMNS = ("patient_id", "view", "mask", "ed", "es")
SEQUENCE_COLUMNS = ("view", "mask", "image", "ed", "es", "cycle", "frame_rate")
#: Largest frame index a sheet may give (a guard against absurd values, e.g. 1e30).
MAX_FRAME_INDEX = 2**31 - 1


def read_sheet(path) -> pd.DataFrame:
    """Read and check a cohort sheet.

    Raises
    ------
    InputError
        Naming the sheet, the row (1-based, header = row 1) and the column.
    """
    path = Path(path)
    sheet = read_tsv(path, "cohort sheet")
    missing = [c for c in REQUIRED_COLUMNS if c not in sheet]
    if missing:
        raise InputError(path, f"missing required column(s) {missing}")
    if sheet.empty:
        raise InputError(path, "the sheet has no rows")
    for column in ("patient_id", "view", "mask", "ed", "es"):
        empty = sheet[column].isna() | (sheet[column].astype(str).str.strip() == "")
        if empty.any():
            raise InputError(path, f"row {int(np.flatnonzero(empty.to_numpy())[0]) + 2}: empty '{column}'")
    sheet["patient_id"] = sheet["patient_id"].astype(str).str.strip()
    check_identifiers(sheet, path)
    sheet["view"] = sheet["view"].astype(str).str.strip().str.upper()
    bad_view = ~sheet["view"].isin(VIEWS)
    if bad_view.any():
        row = int(np.flatnonzero(bad_view.to_numpy())[0])
        raise InputError(path, f"row {row + 2}: column 'view' must be one of {VIEWS}, got {sheet['view'].iloc[row]!r}")
    for column in ("ed", "es"):
        numbers = pd.to_numeric(sheet[column], errors="coerce")
        bad = numbers.isna() | (numbers < 0) | (numbers != np.floor(numbers)) | (numbers > MAX_FRAME_INDEX)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(path, f"row {row + 2}: column '{column}' must be a 0-based frame index, "
                                   f"got {sheet[column].iloc[row]!r}")
        sheet[column] = numbers.astype(int)
    same = (sheet["ed"] == sheet["es"]).to_numpy()
    if same.any():
        row = int(np.flatnonzero(same)[0])
        raise InputError(path, f"row {row + 2}: columns 'ed' and 'es' are the same frame ({sheet['ed'].iloc[row]})")
    if "cycle" in sheet:
        sheet["cycle"] = sheet["cycle"].fillna("full").astype(str).str.strip()
        bad = ~sheet["cycle"].isin(CYCLES)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(path, f"row {row + 2}: column 'cycle' must be one of {CYCLES}, "
                                   f"got {sheet['cycle'].iloc[row]!r}")
        backwards = ((sheet["cycle"] == "half") & (sheet["ed"] > sheet["es"])).to_numpy()
        if backwards.any():
            row = int(np.flatnonzero(backwards)[0])
            raise InputError(path, f"row {row + 2}: a half cycle needs ed < es, got ed={sheet['ed'].iloc[row]}, "
                                   f"es={sheet['es'].iloc[row]}")
    if "frame_rate" in sheet:
        rate = pd.to_numeric(sheet["frame_rate"], errors="coerce")
        bad = sheet["frame_rate"].notna() & (rate.isna() | ~(rate > 0) | ~np.isfinite(rate.fillna(0)))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(path, f"row {row + 2}: column 'frame_rate' must be a positive number, "
                                   f"got {sheet['frame_rate'].iloc[row]!r}")
        sheet["frame_rate"] = rate
    duplicated = sheet.duplicated(["patient_id", "view"])
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        patient, view = sheet["patient_id"].iloc[row], sheet["view"].iloc[row]
        first = int(np.flatnonzero(((sheet["patient_id"] == patient) & (sheet["view"] == view)).to_numpy())[0])
        raise InputError(path, f"row {row + 2}: duplicate (patient_id, view) = ({patient}, {view}), "
                               f"first at row {first + 2}")
    sheet = coerce_covariates(sheet, path)
    covariates = [c for c in sheet.columns if c not in SEQUENCE_COLUMNS and c != "patient_id"]
    for column in covariates:
        per_patient = sheet.groupby("patient_id", sort=False)[column].nunique(dropna=False)
        conflicting = per_patient[per_patient > 1]
        if len(conflicting):
            patient = conflicting.index[0]
            values = sheet.loc[sheet["patient_id"] == patient, column]
            first = values.index[0]
            other = next(i for i, v in values.items() if _shown(v) != _shown(values[first]))
            raise InputError(path, f"covariate '{column}' differs between the rows of patient {patient} "
                                   f"(row {first + 2} has {_shown(values[first])}, row {other + 2} has "
                                   f"{_shown(values[other])})")
    return sheet


def _shown(value) -> str:
    """A cell as shown in messages (empty cells as ``no value``)."""
    return "no value" if value is None or (isinstance(value, float) and np.isnan(value)) else repr(value)


class SheetSource:
    """Any NIfTI/MHD cohort listed in a sheet (see module docstring)."""

    name = "sheet"

    def __init__(self, path, *, cycle: str = "full"):
        self.path = Path(path)
        self.cycle = _check_cycle(cycle)
        self.sheet = read_sheet(self.path)
        self.base = self.path.parent
        #: Where the dataset's split comes from, for error messages: (file, field).
        self.split_origin = (self.path, " (column 'split')")
        if self.cycle == "full" and "cycle" in self.sheet:
            half = (self.sheet["cycle"] == "half").to_numpy()
            if half.any():
                raise InputError(self.path, f"row {int(np.flatnonzero(half)[0]) + 2}: column 'cycle' is 'half' in a "
                                            "cohort ingested as full cycles (set cohort.cycle: half)")

    def patients(self) -> pd.DataFrame:
        covariates = [c for c in self.sheet.columns if c not in SEQUENCE_COLUMNS]
        return self.sheet[covariates].drop_duplicates("patient_id").reset_index(drop=True)

    def input_files(self) -> list[Path]:
        return [self.path]

    def _resolve(self, value) -> Path:
        path = Path(str(value).strip())
        return path if path.is_absolute() else self.base / path

    def read_patient(self, patient_id: str, on_error=None) -> list[SequenceRecord]:
        """Read a patient's rows; with ``on_error(view, InputError)`` a bad row is reported and skipped."""
        rows = self.sheet[self.sheet["patient_id"] == patient_id]
        records = []
        for _, row in rows.iterrows():
            try:
                records.append(self._read_row(patient_id, row))
            except InputError as err:
                if on_error is None:
                    raise
                on_error(row["view"], err)
        return records

    def _read_row(self, patient_id: str, row) -> SequenceRecord:
        where = f"row {row.name + 2} ({patient_id} {row['view']})"  # the sheet's index is its row order
        mask_path = self._resolve(row["mask"])
        mask, spacing = read_sequence(mask_path, kind="mask")
        files = data_files(mask_path)  # an MHD's .raw too: provenance hashes every file read
        image = None
        if "image" in row and isinstance(row["image"], str) and row["image"].strip():
            image_path = self._resolve(row["image"])
            image, image_spacing = read_sequence(image_path, kind="image")
            files.extend(data_files(image_path))
            check_image_matches(mask_path, mask, spacing, image_path, image, image_spacing)
        ed, es = int(row["ed"]), int(row["es"])
        for key, index in (("ed", ed), ("es", es)):
            if index >= mask.shape[0]:
                raise InputError(self.path, f"{where}: column '{key}'={index} is outside {mask_path.name} "
                                            f"({mask.shape[0]} frames)")
        cycle = row["cycle"] if "cycle" in row else "full"
        rate = row.get("frame_rate")
        record = SequenceRecord(
            patient_id=patient_id, view=row["view"], mask=mask, image=image, spacing=spacing, ed=ed, es=es,
            cycle=cycle, frame_rate=None if rate is None or pd.isna(rate) else float(rate), files=files,
        )
        return half_cycle(record) if self.cycle == "half" and cycle == "full" else record
