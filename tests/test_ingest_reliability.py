"""Ingestion reliability (issue 11): each test reproduces one defect found in review.

Every expected value comes from the hand-built inputs (ids, rows, file names, counts),
never from the code under test.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import apical_masks, write_camus_patient
from echolatent.cli import main as cli_main
from echolatent.ingest.cohort import ingest_cohort, merge_cohort
from echolatent.ingest.plan import plan_cohort
from echolatent.ingest.shard import ingest_shard
from echolatent.stages.ingest import open_source
from echolatent.io import InputError, camus
from echolatent.io.sources import read_patient_table
from conftest import sheet_cohort, write_sheet

SPLIT_3 = {"train": 0.5, "val": 0.25, "test": 0.25}


def files_under(folder):
    """Every file (hidden ones included) under ``folder``, as sorted relative paths."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def digest_tree(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in files_under(folder)}


def dead_pid():
    """The pid of a process that has exited (what a SIGKILLed job leaves in its temporary names)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def camus_cohort(root, n=4, layout="camus-nifti", split=True):
    for i in range(1, n + 1):
        write_camus_patient(root, f"patient{i:04d}", layout, age=50 + i, sex="MF"[i % 2])
    if split:
        names = [f"patient{i:04d}" for i in range(1, n + 1)]
        camus.write_split_lists(root, dict(zip(names, ["train"] * (n - 2) + ["val", "test"])))
    return root


def write_store(root, patients: dict):
    """A hand-built simulator store: ``{patient: [views]}`` with 6-frame 40x32 masks."""
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"patient_id": list(patients), "age": 50}).to_csv(root / "patients.tsv", sep="\t", index=False)
    with h5py.File(root / "sequences.h5", "w") as h5:
        for patient, views in patients.items():
            h5.create_group(patient)
            for view in views:
                group = h5.create_group(f"{patient}/{view}")
                group.create_dataset("mask", data=apical_masks(6))
                group.attrs.update({"spacing": [0.3, 0.3], "ed": 0, "es": 3})
    return root


# --------------------------------------------------------------------------- 1. identifiers
BAD_IDS = ["../evil", "a/b", "P 01", "..", "-x", "x" * 65, "P..1", ".hidden"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_sheet_patient_id_must_be_a_plain_identifier(tmp_path, bad):
    rows = sheet_cohort(tmp_path, n=2)
    rows[2]["patient_id"] = rows[3]["patient_id"] = bad  # rows 4 and 5 of the sheet (header = row 1)
    with pytest.raises(InputError) as err:
        open_source("sheet", write_sheet(tmp_path, rows))
    assert err.value.path == str(tmp_path / "cohort.tsv")
    assert err.value.reason.startswith("row 4: column 'patient_id' must be a plain identifier")
    assert err.value.reason.endswith(f"got {bad!r}")


def test_good_identifiers_are_accepted(tmp_path):
    rows = sheet_cohort(tmp_path, n=2)
    for row, new in zip(rows, ["S-1.a", "S-1.a", "007_b", "007_b"]):
        row["patient_id"] = new
    assert sorted(open_source("sheet", write_sheet(tmp_path, rows)).patients()["patient_id"]) == ["007_b", "S-1.a"]


def test_covariate_table_and_store_ids_are_checked(tmp_path):
    table = tmp_path / "cov.tsv"
    table.write_text("patient_id\tage\nP00\t50\nP/01\t51\n")
    with pytest.raises(InputError, match=r"cov.tsv: row 3: column 'patient_id' must be a plain identifier.*'P/01'"):
        read_patient_table(table)
    store = write_store(tmp_path / "store", {"p1": ["4CH"]})
    (store / "patients.tsv").write_text("patient_id\tage\np1\t50\nfoo bar\t60\n")
    with pytest.raises(InputError, match=r"patients.tsv: row 3: column 'patient_id' must be a plain identifier"):
        open_source("store", store).patients()


def test_camus_folder_name_must_be_a_plain_identifier(tmp_path):
    root = camus_cohort(tmp_path / "c", n=3, split=False)
    (root / "database_nifti" / "patient0001").rename(root / "database_nifti" / "patient 0001")
    with pytest.raises(InputError) as err:
        open_source("camus", root, cycle="half").patients()
    assert err.value.path == str(root / "database_nifti" / "patient 0001")
    assert "patient folder name must be a plain identifier" in err.value.reason
    assert err.value.reason.endswith("got 'patient 0001'")


# --------------------------------------------------------------------------- 2. patients that vanish
def test_empty_camus_patient_folder_is_an_error(tmp_path):
    root = camus_cohort(tmp_path / "c", n=3, split=False)
    (root / "database_nifti" / "patient0004").mkdir()
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        ingest_cohort(open_source("camus", root, cycle="half"), out, image_size=16)
    assert err.value.path == str(root / "database_nifti" / "patient0004")
    assert "patient folder holds no view" in err.value.reason
    assert files_under(out) == []


def test_empty_camus_patient_folder_is_listed_in_qc(tmp_path):
    root = camus_cohort(tmp_path / "c", n=3, split=False)
    (root / "database_nifti" / "patient0004").mkdir()
    out = tmp_path / "out"
    table = ingest_cohort(open_source("camus", root, cycle="half"), out, image_size=16, on_bad_sequence="skip")
    assert len(table) == 6
    qc = pd.read_csv(out / "qc.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert qc.values.tolist() == [["patient0004", "", str(root / "database_nifti" / "patient0004"),
                                   qc["reason"][0]]]
    assert "patient folder holds no view" in qc["reason"][0]


def test_store_patient_without_views_is_not_dropped(tmp_path):
    store = write_store(tmp_path / "store", {"p1": ["2CH", "4CH"], "p2": ["4CH"], "p3": ["4CH"], "p4": []})
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"sequences.h5: patient p4 has no 2CH nor 4CH sequence"):
        ingest_cohort(open_source("store", store), out, image_size=16, fractions=SPLIT_3)
    assert files_under(out) == []
    ingest_cohort(open_source("store", store), out, image_size=16, fractions=SPLIT_3, on_bad_sequence="skip")
    qc = pd.read_csv(out / "qc.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert qc[["patient_id", "view", "file"]].values.tolist() == [["p4", "", str(store / "sequences.h5")]]


def test_store_view_problems_are_skipped_per_view(tmp_path):
    store = write_store(tmp_path / "store", {"p1": ["2CH", "4CH"], "p2": ["4CH"], "p3": ["4CH"], "p4": ["4CH"]})
    with h5py.File(store / "sequences.h5", "a") as h5:
        del h5["p4/4CH"].attrs["ed"]
    out = tmp_path / "out"
    table = ingest_cohort(open_source("store", store), out, image_size=16, fractions=SPLIT_3, on_bad_sequence="skip")
    assert sorted(zip(table["patient_id"], table["view"])) == [("p1", "2CH"), ("p1", "4CH"), ("p2", "4CH"),
                                                               ("p3", "4CH")]
    qc = pd.read_csv(out / "qc.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert qc.values.tolist() == [["p4", "4CH", str(store / "sequences.h5"), "/p4/4CH lacks 'ed'"]]
    assert "p4" not in set(pd.read_csv(out / "patients.tsv", sep="\t")["patient_id"])


def test_patient_with_every_view_skipped_leaves_qc_rows(tmp_path):
    rows = sheet_cohort(tmp_path, n=4)
    for row in rows[2:4]:  # both views of P01
        (tmp_path / row["mask"]).write_bytes(b"broken")
    out = tmp_path / "out"
    table = ingest_cohort(open_source("sheet", write_sheet(tmp_path, rows)), out, image_size=16,
                          on_bad_sequence="skip", fractions=SPLIT_3)
    assert "P01" not in set(table["patient_id"]) and len(table) == 6
    qc = pd.read_csv(out / "qc.tsv", sep="\t")
    assert qc[["patient_id", "view"]].values.tolist() == [["P01", "2CH"], ["P01", "4CH"]]
    assert [f.rsplit("/", 1)[-1] for f in qc["file"]] == ["p1_2CH_gt.nii.gz", "p1_4CH_gt.nii.gz"]


# --------------------------------------------------------------------------- 3. empty tables
def test_empty_sheet_is_named(tmp_path):
    (tmp_path / "cohort.tsv").write_bytes(b"")
    with pytest.raises(InputError, match=r"cohort.tsv: empty file \(0 bytes\)"):
        open_source("sheet", tmp_path / "cohort.tsv")


def test_empty_patient_tables_are_named(tmp_path):
    (tmp_path / "cov.tsv").write_bytes(b"")
    with pytest.raises(InputError, match=r"cov.tsv: empty file \(0 bytes\)"):
        read_patient_table(tmp_path / "cov.tsv")
    source = open_source("sheet", write_sheet(tmp_path, sheet_cohort(tmp_path, n=3)))
    with pytest.raises(InputError, match=r"cov.tsv: empty file \(0 bytes\)"):
        ingest_cohort(source, tmp_path / "out", image_size=16, covariates=tmp_path / "cov.tsv", fractions=SPLIT_3)
    store = write_store(tmp_path / "store", {"p1": ["4CH"]})
    (store / "patients.tsv").write_bytes(b"")
    with pytest.raises(InputError, match=r"store/patients.tsv: empty file \(0 bytes\)"):
        open_source("store", store).patients()


# --------------------------------------------------------------------------- 4. planning
def sheet_source(tmp_path, n):
    return open_source("sheet", write_sheet(tmp_path, sheet_cohort(tmp_path, n=n)))


def test_more_shards_than_patients_is_refused_at_planning(tmp_path):
    with pytest.raises(InputError, match=r"^cohort.shards=5 but the cohort has 3 patients: use at most 3 shards$"):
        plan_cohort(sheet_source(tmp_path, 3), n_shards=5, seed=0, fractions=SPLIT_3)


def test_split_fractions_must_sum_to_one_even_with_a_dataset_split(tmp_path):
    root = camus_cohort(tmp_path / "c", n=3)
    with pytest.raises(InputError, match=r"cohort.split fractions must be >= 0 and sum to 1, "
                                         r"got train=0.7, val=0.2, test=0.2 \(sum 1.1\)"):
        plan_cohort(open_source("camus", root, cycle="half"), n_shards=1, seed=0,
                    fractions={"train": 0.7, "val": 0.2, "test": 0.2})


@pytest.mark.parametrize("split", ["train", "val"])
def test_training_splits_cannot_have_a_zero_fraction(tmp_path, split):
    fractions = {"train": 0.5, "val": 0.5, "test": 0.0} | {split: 0.0, "test": 0.5}
    with pytest.raises(InputError, match=rf"cohort.split.{split}=0: training needs {split} patients"):
        plan_cohort(sheet_source(tmp_path, 4), n_shards=1, seed=0, fractions=fractions)


def test_every_split_gets_a_patient_when_rounding_gives_none(tmp_path):
    # 5 patients, 3 controls + 2 cases: per-group rounding of 0.15 gives 0 val and 0 test patients.
    plan = plan_cohort(sheet_source(tmp_path, 5), n_shards=1, seed=0,
                       fractions={"train": 0.7, "val": 0.15, "test": 0.15})
    assert plan["split"].value_counts().to_dict() == {"train": 3, "val": 1, "test": 1}
    no_test = plan_cohort(sheet_source(tmp_path, 5), n_shards=1, seed=0,
                          fractions={"train": 0.85, "val": 0.15, "test": 0.0})
    assert no_test["split"].value_counts().to_dict() == {"train": 4, "val": 1}


def test_too_small_a_cohort_for_the_splits_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"cohort.split: the cohort has 2 patients, too few for the 3 splits "
                                         r"with a fraction > 0 \(train, val, test\)"):
        plan_cohort(sheet_source(tmp_path, 2), n_shards=1, seed=0, fractions=SPLIT_3)


def test_dataset_split_without_val_is_refused_at_planning(tmp_path):
    rows = sheet_cohort(tmp_path, n=3)
    for row, split in zip(rows, ["train", "train", "train", "train", "test", "test"]):
        row["split"] = split
    source = open_source("sheet", write_sheet(tmp_path, rows))
    with pytest.raises(InputError) as err:
        plan_cohort(source, n_shards=1, seed=0, fractions=SPLIT_3)
    assert err.value.path == str(tmp_path / "cohort.tsv")
    assert err.value.reason.startswith("the dataset's split (column 'split') puts no patient in 'val'")


def test_dataset_split_missing_a_patient_names_the_split_lists(tmp_path):
    root = camus_cohort(tmp_path / "c", n=3)
    camus.split_file(root, "val").write_text("")
    with pytest.raises(InputError) as err:
        plan_cohort(open_source("camus", root, cycle="half"), n_shards=1, seed=0, fractions=SPLIT_3)
    assert err.value.path == str(root / "database_split")
    assert "does not list 1 patient(s), e.g. patient0002" in err.value.reason


def test_split_list_naming_an_unknown_patient_is_refused(tmp_path):
    root = camus_cohort(tmp_path / "c", n=3)
    camus.split_file(root, "test").write_text("patient0003\npatient0009\n")
    with pytest.raises(InputError) as err:
        open_source("camus", root, cycle="half").patients()
    assert err.value.path == str(camus.split_file(root, "test"))
    assert err.value.reason == "lists patient0009, which has no patient folder"


# --------------------------------------------------------------------------- 5. leftovers
def test_failed_multi_shard_ingest_leaves_nothing(tmp_path):
    rows = sheet_cohort(tmp_path, n=4)
    source = open_source("sheet", write_sheet(tmp_path, rows))
    plan = plan_cohort(source, n_shards=2, seed=0, fractions=SPLIT_3)
    victim = plan.loc[plan["shard"] == 1, "patient_id"].iloc[0]
    number = int(victim[1:])
    (tmp_path / f"data/p{number}_4CH_gt.nii.gz").write_bytes(b"broken")
    out = tmp_path / "out"
    with pytest.raises(InputError, match=rf"p{number}_4CH_gt.nii.gz: unreadable"):
        ingest_cohort(source, out, image_size=16, n_shards=2, fractions=SPLIT_3)
    assert files_under(out) == [] and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    assert cli_main(["ingest", "sheet", str(tmp_path / "cohort.tsv"), "--out", str(out), "--shards", "2"]) == 2
    assert files_under(out) == []


def test_failed_ingest_keeps_the_previous_cohort_intact(tmp_path):
    rows = sheet_cohort(tmp_path, n=4)
    source = open_source("sheet", write_sheet(tmp_path, rows))
    out = tmp_path / "out"
    ingest_cohort(source, out, image_size=16, n_shards=2, fractions=SPLIT_3)
    before = digest_tree(out)
    assert set(before) == {"shard-0.h5", "shard-1.h5", "patients.tsv", "sequences.tsv", "qc.tsv", "provenance.json"}
    (tmp_path / "data/p3_2CH_gt.nii.gz").write_bytes(b"broken")
    with pytest.raises(InputError, match=r"p3_2CH_gt.nii.gz: unreadable"):
        ingest_cohort(source, out, image_size=24, n_shards=2, fractions=SPLIT_3)
    assert digest_tree(out) == before


def test_ingest_shard_removes_stale_temporaries_of_its_outputs(tmp_path):
    source = sheet_source(tmp_path, 3)
    plan = plan_cohort(source, n_shards=1, seed=0, fractions=SPLIT_3)
    out, parts = tmp_path / "cohort", tmp_path / "cohort" / "parts"
    parts.mkdir(parents=True)
    dead = dead_pid()
    stale = [out / f".tmp-{dead}-shard-0.h5", parts / f".tmp-{dead}-sequences-0.tsv",
             parts / f".tmp-{dead}-qc-0.tsv", parts / f".tmp-{dead}-inputs-0.tsv"]
    for path in stale:
        path.write_bytes(b"left by a killed job")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        try:
            running = out / f".tmp-{alive.pid}-shard-0.h5"  # another job's file (still running): kept
            other = out / f".tmp-{dead}-shard-1.h5"  # another shard's output: not ours to remove
            running.write_bytes(b"")
            other.write_bytes(b"")
            ingest_shard(source, plan, 0, image_size=16, out_h5=out / "shard-0.h5",
                         out_sequences=parts / "sequences-0.tsv", out_qc=parts / "qc-0.tsv",
                         out_inputs=parts / "inputs-0.tsv")
        finally:
            alive.kill()
    assert files_under(out) == sorted([f".tmp-{alive.pid}-shard-0.h5", f".tmp-{dead}-shard-1.h5", "parts/inputs-0.tsv",
                                       "parts/qc-0.tsv", "parts/sequences-0.tsv", "shard-0.h5"])


def test_ingest_cohort_removes_a_killed_build(tmp_path):
    source = sheet_source(tmp_path, 3)
    out = tmp_path / "out"
    dead = dead_pid()
    (out / f".tmp-{dead}-ingest" / "parts").mkdir(parents=True)
    (out / f".tmp-{dead}-ingest" / "shard-0.h5").write_bytes(b"")
    (out / f".tmp-{dead}-patients.tsv").write_bytes(b"")
    ingest_cohort(source, out, image_size=16, fractions=SPLIT_3)
    assert files_under(out) == ["patients.tsv", "provenance.json", "qc.tsv", "sequences.tsv", "shard-0.h5"]


def shard_patients(path):
    with h5py.File(path, "r") as h5:
        return set(h5.keys())


def test_reingest_with_fewer_shards_removes_stale_shards(tmp_path):
    source = sheet_source(tmp_path, 4)
    out = tmp_path / "out"
    ingest_cohort(source, out, image_size=16, n_shards=3, fractions=SPLIT_3)
    assert (out / "shard-2.h5").is_file()
    (out / "truth").mkdir()
    (out / "truth" / "shard-2.h5").write_bytes(b"")  # as a synthetic cohort would have left
    ingest_cohort(source, out, image_size=16, n_shards=2, fractions=SPLIT_3)
    assert files_under(out) == ["patients.tsv", "provenance.json", "qc.tsv", "sequences.tsv", "shard-0.h5",
                                "shard-1.h5"]
    first, second = shard_patients(out / "shard-0.h5"), shard_patients(out / "shard-1.h5")
    assert not first & second and first | second == {"P00", "P01", "P02", "P03"}


def test_merge_cohort_removes_stale_shards_of_the_workflow(tmp_path):
    source = sheet_source(tmp_path, 4)
    plan = plan_cohort(source, n_shards=2, seed=0, fractions=SPLIT_3)
    out = tmp_path / "results" / "cohort"
    (out / "truth").mkdir(parents=True)
    for stale in ("shard-2.h5", "shard-10.h5", "truth/shard-2.h5", "truth/patients.tsv"):
        (out / stale).write_bytes(b"from an earlier run with more shards")
    (out / "shard-notes.h5").write_bytes(b"not a cohort shard")
    for k in range(2):
        ingest_shard(source, plan, k, image_size=16, out_h5=out / f"shard-{k}.h5",
                     out_sequences=out / "parts" / f"sequences-{k}.tsv", out_qc=out / "parts" / f"qc-{k}.tsv",
                     out_inputs=out / "parts" / f"inputs-{k}.tsv")
    merge_cohort(plan, [out / "parts" / f"sequences-{k}.tsv" for k in range(2)],
                 [out / "parts" / f"qc-{k}.tsv" for k in range(2)],
                 [out / "parts" / f"inputs-{k}.tsv" for k in range(2)], out_dir=out, config={})
    assert [name for name in files_under(out) if not name.startswith("parts/")] == [
        "patients.tsv", "provenance.json", "qc.tsv", "sequences.tsv", "shard-0.h5", "shard-1.h5", "shard-notes.h5"]


# --------------------------------------------------------------------------- 6. provenance
def test_provenance_hashes_the_raw_data_of_mhd_files(tmp_path):
    root = camus_cohort(tmp_path / "c", n=3, layout="camus-mhd", split=False)
    out = tmp_path / "out"
    ingest_cohort(open_source("camus", root, cycle="half"), out, image_size=16)
    inputs = json.loads((out / "provenance.json").read_text())["inputs"]
    expected = {}
    for i in range(1, 4):
        folder = root / f"patient{i:04d}"
        for view in ("2CH", "4CH"):
            names = [f"Info_{view}.cfg"] + [f"patient{i:04d}_{view}_sequence{gt}.{ext}"
                                            for gt in ("", "_gt") for ext in ("mhd", "raw")]
            for name in names:
                expected[str(folder / name)] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert inputs == expected
    assert os.path.getsize(next(p for p in expected if p.endswith("_gt.raw"))) == 6 * 40 * 32
