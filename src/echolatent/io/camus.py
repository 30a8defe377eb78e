"""CAMUS and TED file layouts: file names, ``Info_*.cfg`` files and split lists.

Three layouts are supported (see ``shared`` reference notes on CAMUS):

``camus-nifti`` (CAMUS 2023 public release)
    ``database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_{half_sequence,ED,ES}[_gt].nii.gz``,
    ``Info_{2CH,4CH}.cfg`` and ``database_split/subgroup_{training,validation,testing}.txt``.
    EchoLatent also reads (and its simulator writes) a full-cycle
    ``patientXXXX_{view}_sequence[_gt].nii.gz`` beside them when present.
``camus-mhd`` (CAMUS 2019 challenge release)
    ``patientXXXX/patientXXXX_{view}_{sequence,ED,ES}[_gt].mhd`` (+ ``.raw``) and
    ``Info_{view}.cfg``; there ``_sequence`` is the ED->ES half cycle.
``ted`` (full cycles, TMI 2022)
    ``patientNNN/patientNNN_{view}_sequence[_gt].mhd`` and ``patientNNN_{view}_info.cfg``
    with ``ED``, ``ES`` (and ``NbFrame``).

cfg frame indices are 1-based, as in the releases; EchoLatent uses 0-based indices
everywhere else, and converts here.
"""

from __future__ import annotations

from pathlib import Path

from echolatent.io.atomic import atomic_path
from echolatent.io.errors import InputError

LAYOUTS = ("camus-nifti", "camus-mhd", "ted")
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "testing"}


def patient_dir(root, patient: str, layout: str) -> Path:
    """Folder holding one patient's files."""
    root = Path(root)
    if layout == "camus-nifti":
        return root / "database_nifti" / patient
    if layout in ("camus-mhd", "ted"):
        return root / patient
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")


def sequence_file(root, patient: str, view: str, kind: str, layout: str, *, gt: bool) -> Path:
    """Path of one image/mask file.

    Parameters
    ----------
    kind : {"half", "full", "ED", "ES"}
        ``half`` is the ED->ES half cycle, ``full`` the full cycle.
    gt : bool
        The mask (``_gt``) rather than the image.
    """
    suffix = "_gt" if gt else ""
    if layout == "camus-nifti":
        stem = {"half": "half_sequence", "full": "sequence", "ED": "ED", "ES": "ES"}[kind]
        ext = ".nii.gz"
    elif layout == "camus-mhd":
        stem = {"half": "sequence", "ED": "ED", "ES": "ES"}.get(kind)
        if stem is None:
            raise ValueError("the CAMUS 2019 layout has no full-cycle sequence; use 'ted'")
        ext = ".mhd"
    elif layout == "ted":
        if kind != "full":
            raise ValueError("the TED layout holds full-cycle sequences only")
        stem, ext = "sequence", ".mhd"
    else:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    return patient_dir(root, patient, layout) / f"{patient}_{view}_{stem}{suffix}{ext}"


def cfg_file(root, patient: str, view: str, layout: str) -> Path:
    """Path of the per-view info file."""
    if layout == "ted":
        return patient_dir(root, patient, layout) / f"{patient}_{view}_info.cfg"
    return patient_dir(root, patient, layout) / f"Info_{view}.cfg"


def split_file(root, split: str) -> Path:
    """Path of a CAMUS 2023 split list (``split`` in train/val/test)."""
    return Path(root) / "database_split" / f"subgroup_{SPLIT_NAMES[split]}.txt"


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def read_cfg(path) -> dict:
    """Parse a ``Key: value`` cfg file; numbers come back as int/float.

    Raises
    ------
    InputError
        Missing file, or a line that is not ``Key: value``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "info file not found")
    values = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise InputError(path, f"line {number} is not 'Key: value': {line!r}")
        values[key.strip()] = _parse_value(value.strip())
    return values


def write_cfg(path, values: dict) -> None:
    """Write a ``Key: value`` cfg file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{key}: {value}\n" for key, value in values.items()))


def read_split_lists(root) -> dict[str, str] | None:
    """Patient -> split from ``database_split/``, or None when the folder is absent."""
    if not (Path(root) / "database_split").is_dir():
        return None
    split_of = {}
    for split in SPLIT_NAMES:
        path = split_file(root, split)
        if not path.is_file():
            raise InputError(path, "split list missing (database_split/ is incomplete)")
        for line in path.read_text(errors="replace").split():
            if split_of.get(line) == split:
                raise InputError(path, f"patient {line} is listed twice")
            if line in split_of:
                raise InputError(path, f"patient {line} is listed in two splits "
                                       f"({split_file(root, split_of[line]).name} and {path.name})")
            split_of[line] = split
    return split_of


def write_split_lists(root, split_of: dict[str, str]) -> None:
    """Write ``database_split/subgroup_*.txt`` from patient -> split."""
    for split in SPLIT_NAMES:
        path = split_file(root, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        ids = sorted(p for p, s in split_of.items() if s == split)
        path.write_text("".join(f"{p}\n" for p in ids))
