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
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from echolatent import VIEWS
from echolatent.io import camus
from echolatent.io.errors import InputError
from echolatent.io.itk import read_sequence

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
        raise ValueError(f"cycle must be one of {CYCLES}, got {cycle!r}")
    return cycle


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

    def patients(self) -> pd.DataFrame:
        return read_patient_table(self.root / "patients.tsv")

    def read_patient(self, patient_id: str, on_error=None) -> list[SequenceRecord]:
        records = []
        with h5py.File(self.h5_path, "r") as h5:
            if patient_id not in h5:
                raise InputError(self.h5_path, f"patient {patient_id} listed in patients.tsv has no group")
            for view in VIEWS:
                key = f"{patient_id}/{view}"
                if key not in h5:
                    continue
                group = h5[key]
                for name in ("mask", "spacing", "ed", "es"):
                    if name not in group and name not in group.attrs:
                        raise InputError(self.h5_path, f"/{key} lacks '{name}'")
                mask = group["mask"][()]
                image = group["image"][()] if "image" in group else None
                ed, es = int(group.attrs["ed"]), int(group.attrs["es"])
                record = SequenceRecord(
                    patient_id=patient_id,
                    view=view,
                    mask=mask,
                    image=image,
                    spacing=tuple(float(s) for s in group.attrs["spacing"]),
                    ed=ed,
                    es=es,
                    cycle="full",
                    frame_rate=float(group.attrs["frame_rate"]) if "frame_rate" in group.attrs else None,
                    files=[self.h5_path],
                    info={"image_quality": str(group.attrs.get("image_quality", ""))},
                )
                records.append(half_cycle(record) if self.cycle == "half" else record)
        return records

    def input_files(self) -> list[Path]:
        return [self.root / "patients.tsv", self.h5_path]


def half_cycle(record: SequenceRecord) -> SequenceRecord:
    """Frames ED..ES of a full-cycle record (a CAMUS-like half sequence)."""
    if record.cycle == "half":
        return record
    if not 0 <= record.ed < record.es < record.mask.shape[0]:
        raise InputError(record.files[0] if record.files else None,
                         f"{record.patient_id} {record.view}: cannot cut ED={record.ed}..ES={record.es} "
                         f"out of {record.mask.shape[0]} frames")
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


def coerce_covariates(table: pd.DataFrame, path) -> pd.DataFrame:
    """Check and convert the known covariate columns; errors name file, row and column."""
    table = table.copy()
    for column, kind in COVARIATE_KINDS.items():
        if column not in table:
            continue
        values = table[column]
        present = values.notna() & (values.astype(str).str.strip() != "")
        if kind == "number":
            numbers = pd.to_numeric(values.where(present), errors="coerce")
            bad = present & numbers.isna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise InputError(path, f"column '{column}' must be numeric; row {row + 2} has {values.iloc[row]!r}")
            table[column] = numbers.astype(float)
        elif kind == "sex":
            text = values.where(present).astype("string").str.strip().str.upper()
            text = text.replace({"MALE": "M", "FEMALE": "F"})
            bad = present & ~text.isin(["M", "F"]).fillna(False)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise InputError(path, f"column 'sex' must be M or F; row {row + 2} has {values.iloc[row]!r}")
            table[column] = text.astype(object).where(present, None)
        elif kind == "split":
            text = values.where(present).astype("string").str.strip()
            bad = present & ~text.isin(SPLITS).fillna(False)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise InputError(path, f"column 'split' must be one of {SPLITS}; row {row + 2} has {values.iloc[row]!r}")
            table[column] = text.astype(object).where(present, None)
        else:
            table[column] = values.where(present, None).astype(object).map(
                lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip())
    return table


def read_patient_table(path) -> pd.DataFrame:
    """Read a per-patient TSV (``patient_id`` + covariates) with checked types."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "patient table not found")
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(path, f"not a readable TSV ({err})") from None
    if "patient_id" not in table:
        raise InputError(path, "missing required column 'patient_id'")
    ids = table["patient_id"].astype(str).str.strip()
    if (table["patient_id"].isna() | (ids == "")).any():
        raise InputError(path, "empty patient_id")
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise InputError(path, f"duplicate patient_id {duplicated.iloc[0]!r}")
    table["patient_id"] = ids
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
            raise ValueError(f"unknown CAMUS layout {layout!r}; expected auto or one of {camus.LAYOUTS}")
        if self.layout == "camus-mhd" and cycle == "full":
            raise ValueError("the CAMUS 2019 layout holds half cycles only; use cycle: half, or the TED layout")
        if self.layout == "ted" and cycle == "half":
            # TED sequences are full cycles; their half cycle is cut from ED..ES.
            pass

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
        folders = sorted(p.name for p in self._patient_root().iterdir()
                         if p.is_dir() and p.name.startswith("patient"))
        if not folders:
            raise InputError(self._patient_root(), "no patient folders found")
        rows = []
        for patient in folders:
            row = {"patient_id": patient}
            for view in VIEWS:
                path = camus.cfg_file(self.root, patient, view, self.layout)
                if path.is_file():
                    cfg = camus.read_cfg(path)
                    for key, column in (("Age", "age"), ("Sex", "sex")):
                        if key in cfg and column not in row:
                            row[column] = cfg[key]
            rows.append(row)
        table = pd.DataFrame(rows)
        table = coerce_covariates(table.astype(object), self._patient_root())
        splits = camus.read_split_lists(self.root)
        if splits is not None:
            table["split"] = table["patient_id"].map(splits)
        return table

    def input_files(self) -> list[Path]:
        return []

    def read_patient(self, patient_id: str, on_error=None) -> list[SequenceRecord]:
        """Read a patient's views; with ``on_error(view, InputError)`` a bad view is reported and skipped."""
        records = []
        for view in VIEWS:
            cfg_path = camus.cfg_file(self.root, patient_id, view, self.layout)
            try:
                if not cfg_path.is_file():
                    if any(camus.patient_dir(self.root, patient_id, self.layout).glob(f"*_{view}_*")):
                        raise InputError(cfg_path, "info file missing for a view that has image files")
                    continue
                records.append(self._read_view(patient_id, view, cfg_path))
            except InputError as err:
                if on_error is None:
                    raise
                on_error(view, err)
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
        mask, spacing = read_sequence(mask_path)
        image = None
        files = [mask_path, cfg_path]
        if image_path.is_file():
            image, image_spacing = read_sequence(image_path)
            files.append(image_path)
            check_image_matches(mask_path, mask, spacing, image_path, image, image_spacing)
        ed, es = cfg[ed_key] - 1, cfg[es_key] - 1  # cfg indices are 1-based
        n_frames = mask.shape[0]
        if kind == "half" and "NbFrame" in cfg and cfg["NbFrame"] != n_frames:
            raise InputError(cfg_path, f"NbFrame={cfg['NbFrame']} but {mask_path.name} has {n_frames} frames")
        for key, index in ((ed_key, ed), (es_key, es)):
            if not 0 <= index < n_frames:
                raise InputError(cfg_path, f"{key}={index + 1} is outside the sequence of {n_frames} frames")
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
