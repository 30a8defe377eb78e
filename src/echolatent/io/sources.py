"""Cohort sources: where the sequences of a cohort come from.

A source lists its patients (with the covariates it knows) and reads one patient's
sequences on demand, so ingestion can stream a cohort of any size patient by patient.
Every source yields :class:`SequenceRecord` objects in EchoLatent's conventions:
arrays ``(T, H, W)``, spacing ``(h, w)`` mm, 0-based ED/ES indices.

Sources
-------
``StoreSource``
    The simulator's ``store`` folder (``patients.tsv`` + ``sequences.h5``).
``CamusSource``
    A CAMUS 2023 NIfTI, CAMUS 2019 MHD or TED folder (:mod:`echolatent.io.camus`).
``SheetSource``
    Any NIfTI/MHD cohort described by a TSV sheet (:mod:`echolatent.io.sheet`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from echolatent import VIEWS
from echolatent.io import camus
from echolatent.io.errors import InputError
from echolatent.io.itk import data_files, read_sequence

#: Sequence kinds a source can be asked for.
CYCLES = ("full", "half")


@dataclass
class SequenceRecord:
    """One (patient, view) sequence as read from its source.

    Attributes
    ----------
    patient_id, view : str
    mask : ndarray (T, H, W) uint8
    image : ndarray (T, H, W) or None
    spacing : (float, float)
        ``(h, w)`` in mm.
    ed, es : int
        0-based frame indices of end-diastole and end-systole.
    cycle : {"full", "half"}
    frame_rate : float or None
    files : list of Path
        Every file the record was read from (for provenance hashes).
    info : dict
        Extra per-sequence fields from the source (e.g. image quality).
    """

    patient_id: str
    view: str
    mask: np.ndarray
    image: np.ndarray | None
    spacing: tuple[float, float]
    ed: int
    es: int
    cycle: str
    frame_rate: float | None = None
    files: list = field(default_factory=list)
    info: dict = field(default_factory=dict)


class SkipSequence(Exception):
    """Raised by a source for a sequence that is absent on purpose (e.g. one view missing)."""


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _check_cycle(cycle: str) -> str:
    if cycle not in CYCLES:
        raise InputError(None, f"cohort.cycle must be one of {CYCLES}, got {cycle!r}")
    return cycle


#: Patient ids become HDF5 group names and parts of file names downstream, so only plain
#: identifiers are accepted: no path separators, no ``..``, no whitespace, bounded length.
MAX_ID_LENGTH = 64
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
IDENTIFIER_RULE = ("a plain identifier (letters, digits, '_', '.', '-'; starting with a letter or digit; "
                   f"no '..'; at most {MAX_ID_LENGTH} characters)")


def is_plain_identifier(value) -> bool:
    """Whether ``value`` is a safe patient id (see :data:`IDENTIFIER_RULE`)."""
    return (isinstance(value, str) and len(value) <= MAX_ID_LENGTH and ".." not in value
            and _IDENTIFIER.fullmatch(value) is not None)


def check_identifiers(table: pd.DataFrame, path, column: str = "patient_id") -> None:
    """Raise an InputError naming ``path``, the row (header = row 1) and ``column`` at the first bad id."""
    bad = ~table[column].map(is_plain_identifier).to_numpy(dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(path, f"row {row + 2}: column '{column}' must be {IDENTIFIER_RULE}, "
                               f"got {table[column].iloc[row]!r}")


def read_tsv(path, what: str) -> pd.DataFrame:
    """Read a user TSV as strings (empty cells as NaN); every failure is an InputError naming the file.

    Parameters
    ----------
    path : path
    what : str
        What the file is, for the "not found" message (e.g. ``"cohort sheet"``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} not found")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes): expected a TSV with a header row")
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:  # only blank lines
        raise InputError(path, "empty file (no header row): expected a TSV with a header row") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(path, f"not a readable TSV ({err})") from None


class StoreSource:
    """The simulator's ``store`` output folder.

    Parameters
    ----------
    root : path
        Folder with ``patients.tsv`` and ``sequences.h5``.
    cycle : {"full", "half"}
        ``half`` keeps frames ED..ES of each full-cycle sequence, as CAMUS does.
    """

    name = "store"

    def __init__(self, root, *, cycle: str = "full"):
        self.root = Path(root)
        self.cycle = _check_cycle(cycle)
        self.h5_path = self.root / "sequences.h5"
        if not self.h5_path.is_file():
            raise InputError(self.h5_path, "simulator store has no sequences.h5")
        #: Where a dataset split would come from, for error messages: (file, field).
        self.split_origin = (self.root / "patients.tsv", " (column 'split')")

    def patients(self) -> pd.DataFrame:
        return read_patient_table(self.root / "patients.tsv")

    def read_patient(self, patient_id: str, on_error=None) -> list[SequenceRecord]:
        """Read a patient's views.

        With ``on_error(view, InputError)`` a bad view is reported and skipped; otherwise
        it raises. A patient without a group, or without any view, raises an InputError
        in both cases (a patient-level problem, see :func:`echolatent.ingest.shard.ingest_shard`).
        """
        records, views = [], []
        with h5py.File(self.h5_path, "r") as h5:
            if patient_id not in h5:
                raise InputError(self.h5_path, f"patient {patient_id} listed in patients.tsv has no group")
            views = [view for view in VIEWS if f"{patient_id}/{view}" in h5]
            for view in views:
                try:
                    records.append(self._read_view(h5, patient_id, view))
                except InputError as err:
                    if on_error is None:
                        raise
                    on_error(view, err)
        if not views:
            raise InputError(self.h5_path, f"patient {patient_id} has no {' nor '.join(VIEWS)} sequence")
        return records

    def _read_view(self, h5: h5py.File, patient_id: str, view: str) -> SequenceRecord:
        key = f"{patient_id}/{view}"
        group = h5[key]
        for name in ("mask", "spacing", "ed", "es"):
            if name not in group and name not in group.attrs:
                raise InputError(self.h5_path, f"/{key} lacks '{name}'")
        record = SequenceRecord(
            patient_id=patient_id,
            view=view,
            mask=group["mask"][()],
            image=group["image"][()] if "image" in group else None,
            spacing=tuple(float(s) for s in group.attrs["spacing"]),
            ed=int(group.attrs["ed"]),
            es=int(group.attrs["es"]),
            cycle="full",
            frame_rate=float(group.attrs["frame_rate"]) if "frame_rate" in group.attrs else None,
            files=[self.h5_path],
            info={"image_quality": str(group.attrs.get("image_quality", ""))},
        )
        return half_cycle(record) if self.cycle == "half" else record

    def input_files(self) -> list[Path]:
        return [self.root / "patients.tsv", self.h5_path]


def half_cycle(record: SequenceRecord) -> SequenceRecord:
    """Frames ED..ES of a full-cycle record (a CAMUS-like half sequence).

    A full cycle that holds ES before ED (a sequence starting mid-cycle) has no ED->ES run
    of frames: its systole straddles the start or the end of the sequence, and cutting it
    would need frames the sequence does not hold. It raises an InputError saying so.
    """
    if record.cycle == "half":
        return record
    where = record.files[0] if record.files else None
    n_frames = record.mask.shape[0]
    if not (0 <= record.ed < n_frames and 0 <= record.es < n_frames) or record.ed == record.es:
        raise InputError(where, f"{record.patient_id} {record.view}: cannot cut ED={record.ed}..ES={record.es} "
                                f"out of {n_frames} frames")
    if record.es < record.ed:
        raise InputError(where, f"{record.patient_id} {record.view}: cannot cut a half cycle: the sequence holds ES "
                                f"before ED (ED={record.ed}, ES={record.es}), so no ED->ES run of frames; "
                                "ingest it as a full cycle (cohort.cycle: full)")
    cut = slice(record.ed, record.es + 1)
    return SequenceRecord(
        patient_id=record.patient_id, view=record.view, mask=record.mask[cut],
        image=None if record.image is None else record.image[cut], spacing=record.spacing,
        ed=0, es=record.es - record.ed, cycle="half", frame_rate=record.frame_rate,
        files=record.files, info={**record.info, "cycle_offset": record.ed},
    )


#: Known covariate columns and their kinds, for patient tables and sheets.
COVARIATE_KINDS = {"age": "number", "bsa": "number", "severity": "number", "sex": "sex", "group": "text",
                   "split": "split"}
SPLITS = ("train", "val", "test")


def coerce_covariates(table: pd.DataFrame, path, *, locate=None) -> pd.DataFrame:
    """Check and convert the known covariate columns (:data:`COVARIATE_KINDS`).

    Parameters
    ----------
    table : DataFrame
    path : path
        The file the table was read from, named in errors with the row (header = row 1)
        and the column.
    locate : callable, optional
        ``locate(position, column) -> (file, field)`` for tables not read from one TSV
        (e.g. CAMUS cfg files): errors then name that file and field instead.

    Raises
    ------
    InputError
    """
    table = table.copy()

    def fail(mask: pd.Series, column: str, rule: str):
        position = int(np.flatnonzero(mask.to_numpy(dtype=bool))[0])
        value = table[column].iloc[position]
        if locate is None:
            raise InputError(path, f"column '{column}' must be {rule}; row {position + 2} has {value!r}")
        where, field_name = locate(position, column)
        raise InputError(where, f"{field_name} must be {rule}, got {value!r}")

    for column, kind in COVARIATE_KINDS.items():
        if column not in table:
            continue
        values = table[column]
        present = values.notna() & (values.astype(str).str.strip() != "")
        if kind == "number":
            numbers = pd.to_numeric(values.where(present), errors="coerce")
            bad = present & (numbers.isna() | ~np.isfinite(numbers.fillna(0)))
            if bad.any():
                fail(bad, column, "numeric")
            table[column] = numbers.astype(float)
        elif kind == "sex":
            text = values.where(present).astype("string").str.strip().str.upper()
            text = text.replace({"MALE": "M", "FEMALE": "F"})
            bad = present & ~text.isin(["M", "F"]).fillna(False)
            if bad.any():
                fail(bad, column, "M or F")
            table[column] = text.astype(object).where(present, None)
        elif kind == "split":
            text = values.where(present).astype("string").str.strip()
            bad = present & ~text.isin(SPLITS).fillna(False)
            if bad.any():
                fail(bad, column, f"one of {SPLITS}")
            table[column] = text.astype(object).where(present, None)
        else:
            table[column] = values.where(present, None).astype(object).map(
                lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip())
    return table


def read_patient_table(path) -> pd.DataFrame:
    """Read a per-patient TSV (``patient_id`` + covariates) with checked ids and types.

    Raises
    ------
    InputError
        Naming the file, and the row and column where there is one.
    """
    path = Path(path)
    table = read_tsv(path, "patient table")
    if "patient_id" not in table:
        raise InputError(path, "missing required column 'patient_id'")
    ids = table["patient_id"].astype(str).str.strip()
    empty = table["patient_id"].isna() | (ids == "")
    if empty.any():
        raise InputError(path, f"row {int(np.flatnonzero(empty.to_numpy())[0]) + 2}: empty 'patient_id'")
    table["patient_id"] = ids
    check_identifiers(table, path)
    duplicated = ids.duplicated(keep=False).to_numpy()
    if duplicated.any():
        first, second = np.flatnonzero(duplicated & (ids == ids[duplicated].iloc[0]).to_numpy())[:2]
        raise InputError(path, f"duplicate patient_id {ids.iloc[first]!r} (rows {first + 2} and {second + 2})")
    return coerce_covariates(table, path)


class CamusSource:
    """A CAMUS (2023 NIfTI or 2019 MHD) or TED folder.

    Parameters
    ----------
    root : path
    layout : {"auto", "camus-nifti", "camus-mhd", "ted"}
        ``auto`` recognises ``database_nifti/`` (2023) and otherwise looks at the
        files of the first patient folder.
    cycle : {"full", "half"}
        ``half`` reads the ED->ES half sequences; ``full`` the full-cycle sequences
        (TED, or the ``_sequence`` files beside a 2023-layout release).
    """

    name = "camus"

    def __init__(self, root, *, layout: str = "auto", cycle: str = "half"):
        self.root = Path(root)
        self.cycle = _check_cycle(cycle)
        if not self.root.is_dir():
            raise InputError(self.root, "CAMUS folder not found")
        self.layout = self._detect_layout() if layout == "auto" else layout
        if self.layout not in camus.LAYOUTS:
            raise InputError(None, f"unknown CAMUS layout {layout!r}; expected auto or one of {camus.LAYOUTS}")
        if self.layout == "camus-mhd" and cycle == "full":
            raise InputError(None, "the CAMUS 2019 layout holds half cycles only; use cycle: half, or the TED layout")
        # (TED sequences are full cycles; with cycle "half" their ED..ES frames are cut out.)
        #: Where the dataset's split comes from, for error messages: (file, field).
        self.split_origin = (self.root / "database_split", "")

    def _detect_layout(self) -> str:
        if (self.root / "database_nifti").is_dir():
            return "camus-nifti"
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("patient")):
            if any(folder.glob("*_info.cfg")):
                return "ted"
            if any(folder.glob("Info_*.cfg")):
                return "camus-mhd"
        raise InputError(self.root, "no CAMUS layout recognised (no database_nifti/ nor patient folders with cfg files)")

    def _patient_root(self) -> Path:
        return self.root / "database_nifti" if self.layout == "camus-nifti" else self.root

    def patients(self) -> pd.DataFrame:
        """One row per patient folder: ``patient_id``, ``age`` and ``sex`` from the cfg files, ``split``.

        Raises
        ------
        InputError
            A folder name that is not a plain identifier, a bad covariate in a cfg file
            (naming the file and the key), or split lists that are incomplete, list a
            patient twice or list a patient without a folder.
        """
        folders = sorted(p for p in self._patient_root().iterdir() if p.is_dir() and p.name.startswith("patient"))
        if not folders:
            raise InputError(self._patient_root(), "no patient folders found")
        for folder in folders:
            if not is_plain_identifier(folder.name):
                raise InputError(folder, f"patient folder name must be {IDENTIFIER_RULE}, got {folder.name!r}")
        rows, origin = [], {}
        for position, folder in enumerate(folders):
            row = {"patient_id": folder.name}
            for view in VIEWS:
                path = camus.cfg_file(self.root, folder.name, view, self.layout)
                if not path.is_file():
                    continue
                try:
                    cfg = camus.read_cfg(path)
                except InputError:
                    continue  # a broken cfg belongs to its view: reported when the view is read
                for key, column in (("Age", "age"), ("Sex", "sex")):
                    if key in cfg and column not in row:
                        row[column] = cfg[key]
                        origin[position, column] = (path, f"key '{key}'")
            rows.append(row)
        table = coerce_covariates(pd.DataFrame(rows).astype(object), self._patient_root(),
                                  locate=lambda position, column: origin[position, column])
        splits = camus.read_split_lists(self.root)
        if splits is not None:
            names = {folder.name for folder in folders}
            for patient, split in splits.items():
                if patient not in names:
                    raise InputError(camus.split_file(self.root, split),
                                     f"lists {patient}, which has no patient folder")
            table["split"] = table["patient_id"].map(splits)
        return table

    def input_files(self) -> list[Path]:
        return []

    def read_patient(self, patient_id: str, on_error=None) -> list[SequenceRecord]:
        """Read a patient's views.

        With ``on_error(view, InputError)`` a bad view is reported and skipped; otherwise
        it raises. A folder holding no view at all raises an InputError naming the folder
        in both cases (a patient-level problem, see :func:`echolatent.ingest.shard.ingest_shard`).
        """
        folder = camus.patient_dir(self.root, patient_id, self.layout)
        records, found = [], False
        for view in VIEWS:
            cfg_path = camus.cfg_file(self.root, patient_id, view, self.layout)
            try:
                if not cfg_path.is_file():
                    if not any(folder.glob(f"*_{view}_*")):
                        continue  # the view is absent (CAMUS patients may lack one)
                    found = True
                    raise InputError(cfg_path, "info file missing for a view that has image files")
                found = True
                records.append(self._read_view(patient_id, view, cfg_path))
            except InputError as err:
                if on_error is None:
                    raise
                on_error(view, err)
        if not found:
            expected = ", ".join(camus.cfg_file(self.root, patient_id, view, self.layout).name for view in VIEWS)
            raise InputError(folder, f"patient folder holds no view (none of {expected} nor their sequence files)")
        return records

    def _frame_keys(self, cfg: dict, cfg_path) -> tuple[str, str]:
        if self.layout == "camus-nifti" and self.cycle == "full":
            keys = ("ED_full", "ES_full")
        else:
            keys = ("ED", "ES")
        for key in keys + ("NbFrame",):
            if key not in cfg and not (key == "NbFrame" and self.cycle == "full"):
                raise InputError(cfg_path, f"missing key '{key}'")
            if key in cfg and not isinstance(cfg[key], int):
                raise InputError(cfg_path, f"key '{key}' must be an integer, got {cfg[key]!r}")
        return keys

    def _read_view(self, patient_id: str, view: str, cfg_path: Path) -> SequenceRecord:
        cfg = camus.read_cfg(cfg_path)
        ed_key, es_key = self._frame_keys(cfg, cfg_path)
        kind = "full" if (self.cycle == "full" or self.layout == "ted") else "half"
        mask_path = camus.sequence_file(self.root, patient_id, view, kind, self.layout, gt=True)
        image_path = camus.sequence_file(self.root, patient_id, view, kind, self.layout, gt=False)
        mask, spacing = read_sequence(mask_path, kind="mask")
        # The cfg against the mask first: a mask with the wrong frames is named as such,
        # rather than as an image that does not match it.
        ed, es = cfg[ed_key] - 1, cfg[es_key] - 1  # cfg indices are 1-based
        n_frames = mask.shape[0]
        if kind == "half" and "NbFrame" in cfg and cfg["NbFrame"] != n_frames:
            raise InputError(cfg_path, f"NbFrame={cfg['NbFrame']} but {mask_path.name} has {n_frames} frames")
        for key, index in ((ed_key, ed), (es_key, es)):
            if not 0 <= index < n_frames:
                raise InputError(cfg_path, f"{key}={index + 1} is outside the sequence of {n_frames} frames")
        if ed == es:
            raise InputError(cfg_path, f"{ed_key}={ed + 1} and {es_key}={es + 1} are the same frame")
        image = None
        files = [*data_files(mask_path), cfg_path]  # an MHD's .raw too: provenance hashes every file read
        if image_path.is_file():
            image, image_spacing = read_sequence(image_path, kind="image")
            files.extend(data_files(image_path))
            check_image_matches(mask_path, mask, spacing, image_path, image, image_spacing)
        if kind == "half" and ed > es:
            # The reference generator's rule: a half cycle stored ES->ED is reversed.
            mask = mask[::-1].copy()
            image = None if image is None else image[::-1].copy()
            ed, es = n_frames - 1 - ed, n_frames - 1 - es
        info = {"image_quality": str(cfg.get("ImageQuality", ""))}
        for key in ("LVedv", "LVesv", "LVef", "EF"):
            if key in cfg:
                info[key] = cfg[key]
        record = SequenceRecord(
            patient_id=patient_id, view=view, mask=mask, image=image, spacing=spacing, ed=ed, es=es,
            cycle=kind, frame_rate=float(cfg["FrameRate"]) if "FrameRate" in cfg else None,
            files=files, info=info,
        )
        if self.cycle == "half" and kind == "full":
            record = half_cycle(record)
        return record


def check_image_matches(mask_path, mask, mask_spacing, image_path, image, image_spacing) -> None:
    """Raise if an image and its mask do not share shape and spacing."""
    if image.shape != mask.shape:
        raise InputError(image_path, f"image shape {image.shape} does not match mask {Path(mask_path).name} "
                                     f"shape {mask.shape}")
    if not np.allclose(image_spacing, mask_spacing, rtol=1e-4):
        raise InputError(image_path, f"image spacing {image_spacing} does not match mask spacing {mask_spacing}")
