"""Seeded fuzz test of ingestion: a small cohort damaged in one way per case.

Three tiny cohorts (CAMUS 2023 NIfTI layout with split lists, CAMUS 2019 MHD layout, and a
sheet of NIfTI files) are built once with the real writers; each case copies one, damages
it in one way and checks, with ``on_bad_sequence="error"``, that ingestion (package API
and ``echolatent ingest``) stops with an error naming the damaged file (or the setting)
and the problem, leaving the output folder without a single file; and, for damage to one
sequence, that with ``"skip"`` the QC table lists exactly that (patient, view), with the
file and a reason, while every other sequence is ingested.

The random parts of the damage (garbage bytes, which voxel) come from a generator seeded
with :data:`SEED` and the case id, so every run replays the same cases.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import apical_masks, images_for, write_camus_patient
from echolatent.cli import main as cli_main
from echolatent.ingest.cohort import ingest_cohort
from echolatent.stages.ingest import open_source
from echolatent.io import InputError, camus
from echolatent.io.itk import write_sequence
from conftest import sheet_cohort, write_sheet

SEED = 11
N_FRAMES = 6
PATIENTS = ("patient0001", "patient0002", "patient0003")
#: The sequence that per-sequence damage hits: CAMUS patient0002 4CH, sheet P01 4CH (row 5).
VICTIM = ("patient0002", "4CH")
SHEET_VICTIM = ("P01", "4CH")


# ----------------------------------------------------------------------------- cohorts
@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """Pristine cohorts, copied by each case: {layout: root}."""
    base = tmp_path_factory.mktemp("fuzz-templates")
    roots = {}
    for layout in ("camus-nifti", "camus-mhd"):
        root = base / layout
        for number, patient in enumerate(PATIENTS, start=1):
            write_camus_patient(root, patient, layout, n_frames=N_FRAMES, age=50 + number, sex="MF"[number % 2])
        if layout == "camus-nifti":
            camus.write_split_lists(root, dict(zip(PATIENTS, ("train", "val", "test"))))
        roots[layout] = root
    roots["sheet"] = base / "sheet"
    roots["sheet"].mkdir()
    write_sheet(roots["sheet"], sheet_cohort(roots["sheet"], n=3))
    return roots


@dataclass
class Cohort:
    """A damaged copy of a template cohort."""

    root: Path
    layout: str
    rng: np.random.Generator

    # CAMUS paths
    def seq(self, gt=True, patient=VICTIM[0], view=VICTIM[1]) -> Path:
        return camus.sequence_file(self.root, patient, view, "half", self.layout, gt=gt)

    def raw(self, gt=True) -> Path:
        return self.seq(gt).with_suffix(".raw")

    def data(self, gt=True) -> Path:
        """The file holding the victim's voxels (the .raw of an MHD)."""
        return self.raw(gt) if self.layout == "camus-mhd" else self.seq(gt)

    def cfg(self, patient=VICTIM[0], view=VICTIM[1]) -> Path:
        return camus.cfg_file(self.root, patient, view, self.layout)

    def write_cfg(self, **changes) -> None:
        values = {"ED": 1, "ES": N_FRAMES, "NbFrame": N_FRAMES, "Sex": "M", "Age": 52, "ImageQuality": "Good"}
        values.update(changes)
        camus.write_cfg(self.cfg(), {k: v for k, v in values.items() if v is not None})

    def write_victim(self, array, gt=True, spacing=(0.3, 0.15)) -> None:
        write_sequence(self.seq(gt), array, spacing, compress=self.layout == "camus-nifti")

    # sheet
    @property
    def sheet(self) -> Path:
        return self.root / "cohort.tsv"

    def rows(self) -> list[dict]:
        return pd.read_csv(self.sheet, sep="\t", dtype=str, keep_default_na=False).to_dict("records")

    def write_rows(self, rows) -> None:
        write_sheet(self.root, rows)

    def sheet_file(self, gt=True) -> Path:
        return self.root / "data" / f"p1_4CH{'_gt' if gt else ''}.nii.gz"


@dataclass
class Expect:
    """What a case must give.

    ``file``: the damaged file's name, or the setting, that the error must name;
    ``problem``: the field or problem it must state; ``qc``: for damage to one sequence,
    the (patient, view) of the single QC row, whose file must end with ``qc_file``
    (default ``file``); ``kwargs``: settings for the ingestion; ``cli``: whether the
    command line can express them.
    """

    file: str
    problem: str
    qc: tuple | None = None
    qc_file: str | None = None
    kwargs: dict = field(default_factory=dict)
    cli: bool = True


CASES = {}


def damage(name, *layouts):
    def register(function):
        for layout in layouts:
            CASES[f"{layout}:{name}"] = (layout, function)
        return function
    return register


def victim_masks():
    return apical_masks(N_FRAMES, shift=1)  # as write_camus_patient wrote the 4CH view


def garbage(c: Cohort, path: Path, n: int) -> None:
    path.write_bytes(c.rng.integers(0, 256, n, dtype=np.uint8).tobytes())


def patch_nifti_pixdim(path: Path, index: int, value: float) -> None:
    """Set ``pixdim[index]`` of a gzipped NIfTI-1 file, leaving the rest as written."""
    blob = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<f", blob, 76 + 4 * index, value)
    path.write_bytes(gzip.compress(bytes(blob)))


def patch_mhd(path: Path, key: str, value: str) -> None:
    lines = [f"{key} = {value}" if line.split("=")[0].strip() == key else line
             for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- damage to one sequence
@damage("mask-truncated", "camus-nifti", "camus-mhd")
def _(c):
    data = c.data().read_bytes()
    c.data().write_bytes(data[: len(data) // 2])
    return Expect(c.data().name, "truncated", qc=VICTIM)


@damage("mask-garbage", "camus-nifti", "camus-mhd")
def _(c):
    garbage(c, c.seq(), 400)
    return Expect(c.seq().name, "unreadable" if c.layout == "camus-nifti" else "ElementDataFile", qc=VICTIM)


@damage("mask-zero-bytes", "camus-nifti", "camus-mhd")
def _(c):
    c.seq().write_bytes(b"")
    return Expect(c.seq().name, "unreadable" if c.layout == "camus-nifti" else "ElementDataFile", qc=VICTIM)


@damage("mask-missing", "camus-nifti", "camus-mhd")
def _(c):
    c.seq().unlink()
    return Expect(c.seq().name, "file not found", qc=VICTIM)


@damage("image-truncated", "camus-nifti", "camus-mhd")
def _(c):
    data = c.data(gt=False).read_bytes()
    c.data(gt=False).write_bytes(data[: len(data) // 3])
    return Expect(c.data(gt=False).name, "truncated", qc=VICTIM)


@damage("image-garbage", "camus-nifti")
def _(c):
    garbage(c, c.seq(gt=False), 5000)
    return Expect(c.seq(gt=False).name, "unreadable", qc=VICTIM)


@damage("mask-nan", "camus-nifti", "camus-mhd")
def _(c):
    masks = victim_masks().astype(np.float32)
    masks[tuple(c.rng.integers(0, s) for s in masks.shape)] = np.nan
    c.write_victim(masks)
    return Expect(c.seq().name, "1 NaN value", qc=VICTIM)


@damage("mask-non-integer", "camus-nifti", "camus-mhd")
def _(c):
    masks = victim_masks().astype(np.float32)
    masks[2, 10, 10] = 1.5
    c.write_victim(masks)
    return Expect(c.seq().name, "non-integer value", qc=VICTIM)


@damage("mask-label-out-of-range", "camus-nifti", "camus-mhd")
def _(c):
    masks = victim_masks()
    masks[3, 5, 5] = 7
    c.write_victim(masks)
    return Expect(c.seq().name, "label values [7] outside {0, 1, 2, 3}", qc=VICTIM)


@damage("mask-label-negative", "camus-nifti")
def _(c):
    masks = victim_masks().astype(np.int16)
    masks[0, 0, 0] = -1
    c.write_victim(masks)
    return Expect(c.seq().name, "label values [-1]", qc=VICTIM)


@damage("mask-4d", "camus-nifti", "camus-mhd")
def _(c):
    image = sitk.GetImageFromArray(np.stack([victim_masks()] * 2), isVector=False)
    sitk.WriteImage(image, str(c.seq()), c.layout == "camus-nifti")
    return Expect(c.seq().name, "got 4 dimensions", qc=VICTIM)


@damage("mask-single-frame", "camus-nifti", "camus-mhd")
def _(c):
    c.write_victim(victim_masks()[0])
    return Expect(c.seq().name, f"NbFrame={N_FRAMES} but", qc=VICTIM, qc_file=c.cfg().name)


@damage("image-shape-mismatch", "camus-nifti", "camus-mhd")
def _(c):
    c.write_victim(images_for(apical_masks(N_FRAMES, width=30)), gt=False)
    return Expect(c.seq(gt=False).name, "image shape (6, 40, 30) does not match", qc=VICTIM)


@damage("image-spacing-mismatch", "camus-nifti")
def _(c):
    c.write_victim(images_for(victim_masks()), gt=False, spacing=(0.5, 0.5))
    return Expect(c.seq(gt=False).name, "image spacing", qc=VICTIM)


@damage("mask-spacing-zero", "camus-nifti", "camus-mhd")
def _(c):
    if c.layout == "camus-nifti":
        patch_nifti_pixdim(c.seq(), 1, 0.0)
        return Expect(c.seq().name, "pixdim", qc=VICTIM)
    patch_mhd(c.seq(), "ElementSpacing", "0 0.3 1")
    return Expect(c.seq().name, "ElementSpacing = 0 0.3 1", qc=VICTIM)


@damage("mask-spacing-negative", "camus-nifti", "camus-mhd")
def _(c):
    if c.layout == "camus-nifti":
        patch_nifti_pixdim(c.seq(), 2, -0.3)
        return Expect(c.seq().name, "pixdim", qc=VICTIM)
    patch_mhd(c.seq(), "ElementSpacing", "0.15 -0.3 1")
    return Expect(c.seq().name, "ElementSpacing = 0.15 -0.3 1", qc=VICTIM)


@damage("mhd-datafile-outside-folder", "camus-mhd")
def _(c):
    shutil.copyfile(c.raw(), c.root / "elsewhere.raw")
    patch_mhd(c.seq(), "ElementDataFile", "../elsewhere.raw")
    return Expect(c.seq().name, "outside the header's folder", qc=VICTIM)


@damage("mhd-raw-missing", "camus-mhd")
def _(c):
    c.raw().unlink()
    return Expect(c.seq().name, f"data file {c.raw()} is missing", qc=VICTIM)


@damage("mhd-dimsize-too-large", "camus-mhd")
def _(c):
    patch_mhd(c.seq(), "DimSize", "32 40 60")
    return Expect(c.raw().name, "data file truncated", qc=VICTIM)


@damage("cfg-missing", "camus-nifti", "camus-mhd")
def _(c):
    c.cfg().unlink()
    return Expect(c.cfg().name, "info file missing for a view that has image files", qc=VICTIM)


@damage("cfg-garbled", "camus-nifti", "camus-mhd")
def _(c):
    c.cfg().write_bytes(b"\x00\xff\xfe not a key value line\n" + c.rng.integers(0, 256, 64, dtype=np.uint8).tobytes())
    return Expect(c.cfg().name, "line 1 is not 'Key: value'", qc=VICTIM)


@damage("cfg-zero-bytes", "camus-nifti", "camus-mhd")
def _(c):
    c.cfg().write_bytes(b"")
    return Expect(c.cfg().name, "missing key 'ED'", qc=VICTIM)


@damage("cfg-es-out-of-range", "camus-nifti", "camus-mhd")
def _(c):
    c.write_cfg(ES=9)
    return Expect(c.cfg().name, "ES=9 is outside the sequence of 6 frames", qc=VICTIM)


@damage("cfg-ed-zero", "camus-nifti")
def _(c):
    c.write_cfg(ED=0)
    return Expect(c.cfg().name, "ED=0 is outside the sequence", qc=VICTIM)


@damage("cfg-ed-equals-es", "camus-nifti", "camus-mhd")
def _(c):
    c.write_cfg(ED=3, ES=3)
    return Expect(c.cfg().name, "ED=3 and ES=3 are the same frame", qc=VICTIM)


@damage("cfg-ed-not-integer", "camus-nifti", "camus-mhd")
def _(c):
    c.write_cfg(ED=1.5)
    return Expect(c.cfg().name, "key 'ED' must be an integer, got 1.5", qc=VICTIM)


@damage("cfg-missing-key", "camus-nifti")
def _(c):
    c.write_cfg(ES=None)
    return Expect(c.cfg().name, "missing key 'ES'", qc=VICTIM)


@damage("cfg-nbframe-mismatch", "camus-nifti")
def _(c):
    c.write_cfg(NbFrame=7)
    return Expect(c.cfg().name, "NbFrame=7 but", qc=VICTIM)


# ----------------------------------------------------------------------------- damage to a patient or the cohort
@damage("empty-patient-folder", "camus-nifti", "camus-mhd")
def _(c):
    shutil.rmtree(c.root / "database_split", ignore_errors=True)
    folder = camus.patient_dir(c.root, "patient0004", c.layout)
    folder.mkdir()
    return Expect(str(folder), "patient folder holds no view", qc=("patient0004", ""))


@damage("patient-folder-name", "camus-nifti", "camus-mhd")
def _(c):
    folder = camus.patient_dir(c.root, "patient0002", c.layout)
    folder.rename(folder.with_name("patient 0002"))
    return Expect("patient 0002", "patient folder name must be a plain identifier")


@damage("cfg-age-text", "camus-nifti", "camus-mhd")
def _(c):
    camus.write_cfg(c.cfg(view="2CH"), {"ED": 1, "ES": N_FRAMES, "NbFrame": N_FRAMES, "Sex": "M", "Age": "sixty"})
    return Expect(c.cfg(view="2CH").name, "key 'Age' must be numeric, got 'sixty'")


@damage("cfg-sex-x", "camus-nifti")
def _(c):
    camus.write_cfg(c.cfg(view="2CH"), {"ED": 1, "ES": N_FRAMES, "NbFrame": N_FRAMES, "Sex": "X", "Age": 52})
    return Expect(c.cfg(view="2CH").name, "key 'Sex' must be M or F, got 'X'")


@damage("split-list-missing", "camus-nifti")
def _(c):
    camus.split_file(c.root, "test").unlink()
    return Expect("subgroup_testing.txt", "split list missing")


@damage("split-list-two-splits", "camus-nifti")
def _(c):
    camus.split_file(c.root, "val").write_text("patient0001\npatient0002\n")
    return Expect("subgroup_validation.txt", "patient patient0001 is listed in two splits")


@damage("split-list-twice", "camus-nifti")
def _(c):
    camus.split_file(c.root, "train").write_text("patient0001\npatient0001\n")
    return Expect("subgroup_training.txt", "patient patient0001 is listed twice")


@damage("split-list-omits-patient", "camus-nifti")
def _(c):
    camus.split_file(c.root, "test").write_text("")
    return Expect("database_split", "does not list 1 patient(s), e.g. patient0003")


@damage("split-list-unknown-patient", "camus-nifti")
def _(c):
    camus.split_file(c.root, "test").write_text("patient0003\npatient0042\n")
    return Expect("subgroup_testing.txt", "lists patient0042, which has no patient folder")


@damage("too-many-shards", "camus-nifti", "sheet")
def _(c):
    return Expect("cohort.shards=5", "use at most 3 shards", kwargs={"n_shards": 5})


@damage("fractions-not-summing-to-one", "camus-mhd")
def _(c):
    return Expect("cohort.split fractions", "sum to 1, got train=0.7, val=0.2, test=0.2",
                  kwargs={"fractions": {"train": 0.7, "val": 0.2, "test": 0.2}}, cli=False)


@damage("val-fraction-zero", "sheet")
def _(c):
    return Expect("cohort.split.val=0", "training needs val patients",
                  kwargs={"fractions": {"train": 0.8, "val": 0.0, "test": 0.2}}, cli=False)


# ----------------------------------------------------------------------------- damage to a sheet
def edit_row5(c, **changes):
    rows = c.rows()
    rows[3].update(changes)  # row 5 of the sheet (header = row 1): P01 4CH
    c.write_rows(rows)


@damage("sheet-zero-bytes", "sheet")
def _(c):
    c.sheet.write_bytes(b"")
    return Expect("cohort.tsv", "empty file (0 bytes)")


@damage("sheet-missing-column", "sheet")
def _(c):
    c.write_rows([{k: v for k, v in row.items() if k != "mask"} for row in c.rows()])
    return Expect("cohort.tsv", "missing required column(s) ['mask']")


@damage("sheet-id-with-dots", "sheet")
def _(c):
    rows = c.rows()
    rows[2]["patient_id"] = rows[3]["patient_id"] = "../P01"
    c.write_rows(rows)
    return Expect("cohort.tsv", "row 4: column 'patient_id' must be a plain identifier")


@damage("sheet-id-with-space", "sheet")
def _(c):
    rows = c.rows()
    rows[2]["patient_id"] = rows[3]["patient_id"] = "P 01"
    c.write_rows(rows)
    return Expect("cohort.tsv", "row 4: column 'patient_id' must be a plain identifier")


@damage("sheet-duplicate-row", "sheet")
def _(c):
    rows = c.rows()
    c.write_rows(rows + [dict(rows[3])])
    return Expect("cohort.tsv", "row 8: duplicate (patient_id, view) = (P01, 4CH), first at row 5")


@damage("sheet-bad-view", "sheet")
def _(c):
    edit_row5(c, view="PLAX")
    return Expect("cohort.tsv", "row 5: column 'view' must be one of")


@damage("sheet-ed-text", "sheet")
def _(c):
    edit_row5(c, ed="first")
    return Expect("cohort.tsv", "row 5: column 'ed' must be a 0-based frame index, got 'first'")


@damage("sheet-es-negative", "sheet")
def _(c):
    edit_row5(c, es="-1")
    return Expect("cohort.tsv", "row 5: column 'es' must be a 0-based frame index, got '-1'")


@damage("sheet-ed-equals-es", "sheet")
def _(c):
    edit_row5(c, ed="4")
    return Expect("cohort.tsv", "row 5: columns 'ed' and 'es' are the same frame (4)")


@damage("sheet-es-beyond-sequence", "sheet")
def _(c):
    edit_row5(c, es="20")
    return Expect("cohort.tsv", "row 5 (P01 4CH): column 'es'=20 is outside p1_4CH_gt.nii.gz (8 frames)",
                  qc=SHEET_VICTIM)


@damage("sheet-age-text", "sheet")
def _(c):
    edit_row5(c, age="sixty")
    return Expect("cohort.tsv", "column 'age' must be numeric; row 5 has 'sixty'")


@damage("sheet-sex-x", "sheet")
def _(c):
    edit_row5(c, sex="X")
    return Expect("cohort.tsv", "column 'sex' must be M or F; row 5 has 'X'")


@damage("sheet-split-foo", "sheet")
def _(c):
    rows = c.rows()
    for row, split in zip(rows, ["train", "train", "val", "foo", "test", "test"]):
        row["split"] = split
    c.write_rows(rows)
    return Expect("cohort.tsv", "column 'split' must be one of ('train', 'val', 'test'); row 5 has 'foo'")


@damage("sheet-split-without-val", "sheet")
def _(c):
    rows = c.rows()
    for row, split in zip(rows, ["train", "train", "test", "test", "train", "train"]):
        row["split"] = split
    c.write_rows(rows)
    return Expect("cohort.tsv", "the dataset's split (column 'split') puts no patient in 'val'")


@damage("sheet-conflicting-covariates", "sheet")
def _(c):
    edit_row5(c, group="other")
    return Expect("cohort.tsv", "covariate 'group' differs between the rows of patient P01 "
                                "(row 4 has 'case', row 5 has 'other')")


@damage("sheet-bad-cycle", "sheet")
def _(c):
    rows = c.rows()
    for row in rows:
        row["cycle"] = "full"
    rows[3]["cycle"] = "quarter"
    c.write_rows(rows)
    return Expect("cohort.tsv", "row 5: column 'cycle' must be one of ('full', 'half'), got 'quarter'")


@damage("sheet-half-cycle-in-full-cohort", "sheet")
def _(c):
    rows = c.rows()
    for row in rows:
        row["cycle"] = "full"
    rows[3]["cycle"] = "half"
    c.write_rows(rows)
    return Expect("cohort.tsv", "row 5: column 'cycle' is 'half' in a cohort ingested as full cycles")


@damage("sheet-frame-rate-negative", "sheet")
def _(c):
    rows = c.rows()
    for row in rows:
        row["frame_rate"] = "50"
    rows[3]["frame_rate"] = "-5"
    c.write_rows(rows)
    return Expect("cohort.tsv", "row 5: column 'frame_rate' must be a positive number, got '-5'")


@damage("sheet-mask-missing", "sheet")
def _(c):
    c.sheet_file().unlink()
    return Expect(c.sheet_file().name, "file not found", qc=SHEET_VICTIM)


@damage("sheet-mask-nan", "sheet")
def _(c):
    masks = apical_masks(8, shift=1).astype(np.float64)
    masks[tuple(c.rng.integers(0, s) for s in masks.shape)] = np.nan
    write_sequence(c.sheet_file(), masks, (0.4, 0.4))
    return Expect(c.sheet_file().name, "1 NaN value", qc=SHEET_VICTIM)


@damage("sheet-image-garbage", "sheet")
def _(c):
    garbage(c, c.sheet_file(gt=False), 3000)
    return Expect(c.sheet_file(gt=False).name, "unreadable", qc=SHEET_VICTIM)


@damage("covariates-zero-bytes", "sheet")
def _(c):
    (c.root / "cov.tsv").write_bytes(b"")
    return Expect("cov.tsv", "empty file (0 bytes)", kwargs={"covariates": c.root / "cov.tsv"})


@damage("covariates-bad-id", "sheet")
def _(c):
    (c.root / "cov.tsv").write_text("patient_id\tbsa\nP00\t1.9\nP/01\t2.0\n")
    return Expect("cov.tsv", "row 3: column 'patient_id' must be a plain identifier",
                  kwargs={"covariates": c.root / "cov.tsv"})


@damage("covariates-unknown-patient", "sheet")
def _(c):
    (c.root / "cov.tsv").write_text("patient_id\tbsa\nP00\t1.9\nP07\t2.0\n")
    return Expect("cov.tsv", "1 patient(s) not in the cohort, e.g. P07", kwargs={"covariates": c.root / "cov.tsv"})


@damage("covariates-sex-x", "sheet")
def _(c):
    (c.root / "cov.tsv").write_text("patient_id\tsex\nP00\tF\nP01\tX\n")
    return Expect("cov.tsv", "column 'sex' must be M or F; row 3 has 'X'", kwargs={"covariates": c.root / "cov.tsv"})


# ----------------------------------------------------------------------------- the checks
def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def cli_args(layout: str, root: Path, out: Path, kwargs: dict) -> list[str]:
    kind = "sheet" if layout == "sheet" else "camus"
    args = ["ingest", kind, str(root / "cohort.tsv" if kind == "sheet" else root), "--out", str(out),
            "--image-size", "16"]
    if "n_shards" in kwargs:
        args += ["--shards", str(kwargs["n_shards"])]
    if "covariates" in kwargs:
        args += ["--covariates", str(kwargs["covariates"])]
    return args


def source_for(layout: str, root: Path):
    if layout == "sheet":
        return open_source("sheet", root / "cohort.tsv", cycle="full")
    return open_source("camus", root, cycle="half")


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_cohort(case, templates, tmp_path, capsys):
    layout, apply = CASES[case]
    root = tmp_path / "cohort"
    shutil.copytree(templates[layout], root)
    expect = apply(Cohort(root, layout, np.random.default_rng([SEED, zlib.crc32(case.encode())])))
    out = tmp_path / "out"

    # error mode, package API (two shards: a failure in the second must not leave the first):
    # the error names the file and the problem, and nothing is left in the output folder
    with pytest.raises(InputError) as err:
        ingest_cohort(source_for(layout, root), out, image_size=16, **({"n_shards": 2} | expect.kwargs))
    message = str(err.value)
    assert expect.file in message and expect.problem in message, message
    assert files_under(out) == [], f"partial output: {files_under(out)}"
    assert not list(tmp_path.rglob(".tmp*")), "temporary files left"

    # error mode, command line (one shard): exit status 2 and the same message on stderr, no output
    if expect.cli:
        capsys.readouterr()
        assert cli_main(cli_args(layout, root, out, expect.kwargs)) == 2
        stderr = capsys.readouterr().err
        assert expect.file in stderr and expect.problem in stderr, stderr
        assert files_under(out) == [] and not list(tmp_path.rglob(".tmp*"))

    if expect.qc is None:
        return
    # skip mode: exactly the damaged (patient, view) is listed, with its file and the reason
    table = ingest_cohort(source_for(layout, root), out, image_size=16, on_bad_sequence="skip", **expect.kwargs)
    qc = pd.read_csv(out / "qc.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert qc[["patient_id", "view"]].values.tolist() == [list(expect.qc)]
    assert qc["file"][0].endswith(expect.qc_file or expect.file)
    assert expect.problem in qc["reason"][0]
    patients = ("P00", "P01", "P02") if layout == "sheet" else PATIENTS
    every = {(patient, view) for patient in patients for view in ("2CH", "4CH")}
    assert set(zip(table["patient_id"], table["view"])) == every - {tuple(expect.qc)}
    assert not list(tmp_path.rglob(".tmp*"))


def test_enough_kinds_of_damage():
    names = {case.split(":", 1)[1] for case in CASES}
    assert len(names) >= 30, sorted(names)
