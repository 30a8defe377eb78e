"""Ingestion: readers, checks, splits, shards and the output contract."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import apical_masks, images_for, sheet_cohort, write_camus_patient, write_sheet
from echolatent.ingest.cohort import ingest_cohort
from echolatent.ingest.plan import assign_splits, plan_cohort
from echolatent.ingest.shard import frame_positions
from echolatent.stages.ingest import open_source
from echolatent.io import InputError, camus
from echolatent.io.itk import read_sequence, write_sequence
from echolatent.resample import resize_images_bilinear, resize_masks_nearest


def read_group(path, patient, view):
    with h5py.File(path, "r") as h5:
        group = h5[f"{patient}/{view}"]
        return {name: group[name][()] for name in group} | {"attrs": dict(group.attrs)}


# ----------------------------------------------------------------------------- readers
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mhd"])
def test_itk_round_trip_keeps_orientation_and_anisotropic_spacing(tmp_path, suffix):
    masks = apical_masks(5, height=40, width=32)
    assert not np.array_equal(masks, masks[:, :, ::-1]) and masks.shape[1] != masks.shape[2]
    write_sequence(tmp_path / f"seq{suffix}", masks, (0.3, 0.15))
    back, spacing = read_sequence(tmp_path / f"seq{suffix}")
    assert back.shape == (5, 40, 32)
    np.testing.assert_array_equal(back, masks)
    assert spacing == pytest.approx((0.3, 0.15))
    assert not list(tmp_path.glob(".tmp*"))


def test_camus_nifti_ingestion_round_trip(camus_nifti, tmp_path):
    root, data = camus_nifti
    out = tmp_path / "cohort"
    table = ingest_cohort(open_source("camus", root, cycle="half"), out, image_size=16, n_shards=2)
    assert len(table) == 12 and set(table["view"]) == {"2CH", "4CH"}
    patients = pd.read_csv(out / "patients.tsv", sep="\t")
    # The dataset's own split files are used; covariates come from the cfg files.
    assert dict(zip(patients["patient_id"], patients["split"]))["patient0005"] == "val"
    assert dict(zip(patients["patient_id"], patients["age"]))["patient0003"] == 53
    assert dict(zip(patients["patient_id"], patients["sex"]))["patient0002"] == "M"
    assert set(patients["shard"]) == {0, 1}
    for _, row in table.iterrows():
        masks, images = data[row["patient_id"]][row["view"]]
        group = read_group(out / f"shard-{row['shard']}.h5", row["patient_id"], row["view"])
        np.testing.assert_array_equal(group["mask_native"], masks)
        np.testing.assert_array_equal(group["image"], resize_images_bilinear(images, (16, 16)))
        np.testing.assert_array_equal(group["mask"], resize_masks_nearest(masks, (16, 16)))
        assert group["mask"].dtype == np.uint8 and group["image"].dtype == np.uint8
        assert tuple(group["attrs"]["spacing_native"]) == pytest.approx((0.3, 0.15))
        assert tuple(group["attrs"]["spacing"]) == pytest.approx((0.3 * 40 / 16, 0.15 * 32 / 16))
        assert (group["attrs"]["ed"], group["attrs"]["es"]) == (0, 5)
        np.testing.assert_allclose(group["frame_pos"], np.linspace(0, 1, 6), atol=1e-6)
    provenance = json.loads((out / "provenance.json").read_text())
    assert len(provenance["inputs"]) == 6 * 2 * 3  # cfg + mask + image per view
    some = next(iter(provenance["inputs"]))
    import hashlib
    assert provenance["inputs"][some] == hashlib.sha256(open(some, "rb").read()).hexdigest()


def test_camus_mhd_and_ted_layouts(tmp_path):
    root = tmp_path / "camus2019"
    data = write_camus_patient(root, "patient0001", "camus-mhd", spacing=(0.25, 0.5))
    assert (root / "patient0001" / "patient0001_4CH_sequence_gt.raw").is_file()
    source = open_source("camus", root, cycle="half")
    assert source.layout == "camus-mhd"
    records = {r.view: r for r in source.read_patient("patient0001")}
    np.testing.assert_array_equal(records["4CH"].mask, data["4CH"][0])
    assert records["2CH"].spacing == pytest.approx((0.25, 0.5))
    ted = tmp_path / "ted"
    data = write_camus_patient(ted, "patient001", "ted", views=("4CH",), n_frames=8)
    source = open_source("camus", ted, cycle="full")
    assert source.layout == "ted"
    (record,) = source.read_patient("patient001")
    assert (record.ed, record.es, record.cycle) == (0, 3, "full")
    half = open_source("camus", ted, cycle="half").read_patient("patient001")[0]
    np.testing.assert_array_equal(half.mask, data["4CH"][0][:4])


def test_camus_half_sequence_stored_es_to_ed_is_reversed(tmp_path):
    root = tmp_path / "c"
    data = write_camus_patient(root, "patient0001", "camus-nifti", views=("4CH",))
    camus.write_cfg(camus.cfg_file(root, "patient0001", "4CH", "camus-nifti"),
                    {"ED": 6, "ES": 1, "NbFrame": 6, "Sex": "M", "Age": 40})
    (record,) = open_source("camus", root, cycle="half").read_patient("patient0001")
    assert (record.ed, record.es) == (0, 5)
    np.testing.assert_array_equal(record.mask, data["4CH"][0][::-1])


def test_sheet_ingestion_full_and_half_cycles(tmp_path):
    path = write_sheet(tmp_path, sheet_cohort(tmp_path))
    out = tmp_path / "out"
    table = ingest_cohort(open_source("sheet", path, cycle="full"), out, image_size=32, n_shards=3, seed=1)
    assert len(table) == 12 and (table["n_frames"] == 8).all()
    patients = pd.read_csv(out / "patients.tsv", sep="\t")
    assert list(patients.columns[:2]) == ["patient_id", "age"]
    assert set(patients["smoker"]) == {"yes"} and set(patients["group"]) == {"control", "case"}
    group = read_group(out / f"shard-{table['shard'][0]}.h5", table["patient_id"][0], table["view"][0])
    # ED = 0, ES = 4 of 8 frames: 4 frames of systole up to 1, 4 of diastole back towards 0
    np.testing.assert_allclose(group["frame_pos"], [0, .25, .5, .75, 1, .75, .5, .25], atol=1e-6)
    half = ingest_cohort(open_source("sheet", path, cycle="half"), tmp_path / "half", image_size=32)
    assert (half["n_frames"] == 5).all() and (half["es"] == 4).all()
    group = read_group(tmp_path / "half" / f"shard-{half['shard'][0]}.h5", half["patient_id"][0], half["view"][0])
    np.testing.assert_allclose(group["frame_pos"], [0, .25, .5, .75, 1], atol=1e-6)


def test_frame_positions_full_cycle_is_periodic():
    np.testing.assert_allclose(frame_positions(8, 0, 4, "full"), [0, .25, .5, .75, 1, .75, .5, .25])
    # ED in the middle of the sequence: frames before ED belong to the previous diastole.
    np.testing.assert_allclose(frame_positions(6, 2, 4, "full"), [0.5, 0.25, 0, 0.5, 1, 0.75])
    np.testing.assert_allclose(frame_positions(5, 0, 4, "half"), np.linspace(0, 1, 5))


def test_resampling_keeps_labels_and_image_range():
    masks = apical_masks(3)
    small = resize_masks_nearest(masks, (20, 16))
    assert small.shape == (3, 20, 16) and set(np.unique(small)) <= set(np.unique(masks))
    np.testing.assert_array_equal(resize_masks_nearest(masks, masks.shape[1:]), masks)
    images = images_for(masks)
    np.testing.assert_array_equal(resize_images_bilinear(images, images.shape[1:]), images)
    ramp = np.tile(np.arange(8, dtype=np.float32), (1, 4, 1))
    np.testing.assert_allclose(resize_images_bilinear(ramp, (4, 16))[0, 0, 1:-1],
                               (np.arange(16) + 0.5)[1:-1] / 2 - 0.5, atol=1e-6)


# ----------------------------------------------------------------------------- splits
def test_split_is_by_patient_stratified_and_deterministic():
    patients = pd.DataFrame({"patient_id": [f"p{i:03d}" for i in range(100)],
                             "group": ["a"] * 60 + ["b"] * 40})
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    split = assign_splits(patients, fractions, seed=3)
    assert split.equals(assign_splits(patients.sample(frac=1, random_state=0).sort_index(), fractions, seed=3))
    counts = pd.crosstab(patients["group"], split)
    assert counts.loc["a"].to_dict() == {"test": 9, "train": 42, "val": 9}
    assert counts.loc["b"].to_dict() == {"test": 6, "train": 28, "val": 6}
    assert not split.equals(assign_splits(patients, fractions, seed=4))


def test_plan_deals_shards_and_keeps_sequences_of_a_patient_together(tmp_path):
    path = write_sheet(tmp_path, sheet_cohort(tmp_path, n=6))
    source = open_source("sheet", path)
    plan = plan_cohort(source, n_shards=2, seed=0, fractions={"train": 0.5, "val": 0.25, "test": 0.25})
    assert plan["patient_id"].is_unique and sorted(plan["shard"].value_counts()) == [3, 3]
    table = ingest_cohort(source, tmp_path / "out", image_size=16, n_shards=2)
    assert (table.groupby("patient_id")["shard"].nunique() == 1).all()


# ----------------------------------------------------------------------------- bad input
def expect_error(tmp_path, source, match, **kw):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=match):
        ingest_cohort(source, out, image_size=16, **kw)
    leftovers = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert leftovers == [], f"partial output left behind: {leftovers}"


def test_truncated_nifti_is_named(camus_nifti, tmp_path):
    root, _ = camus_nifti
    path = camus.sequence_file(root, "patient0003", "2CH", "half", "camus-nifti", gt=True)
    path.write_bytes(path.read_bytes()[:200])
    expect_error(tmp_path, open_source("camus", root, cycle="half"), r"patient0003_2CH_half_sequence_gt.*unreadable")


def test_missing_cfg_and_missing_key(camus_nifti, tmp_path):
    root, _ = camus_nifti
    cfg = camus.cfg_file(root, "patient0002", "4CH", "camus-nifti")
    cfg.write_text("ED: 1\nNbFrame: 6\n")
    expect_error(tmp_path, open_source("camus", root, cycle="half"), r"Info_4CH.cfg: missing key 'ES'")
    cfg.unlink()
    expect_error(tmp_path, open_source("camus", root, cycle="half"), r"Info_4CH.cfg: info file missing")


def test_label_values_outside_range(camus_nifti, tmp_path):
    root, data = camus_nifti
    masks = data["patient0004"]["2CH"][0].copy()
    masks[2, 5, 5] = 7
    write_sequence(camus.sequence_file(root, "patient0004", "2CH", "half", "camus-nifti", gt=True), masks, (0.3, 0.15))
    expect_error(tmp_path, open_source("camus", root, cycle="half"), r"patient0004_2CH.*label values \[7\]")


def test_image_mask_shape_mismatch(camus_nifti, tmp_path):
    root, data = camus_nifti
    write_sequence(camus.sequence_file(root, "patient0001", "4CH", "half", "camus-nifti", gt=False),
                   np.zeros((6, 40, 30), np.uint8), (0.3, 0.15))
    expect_error(tmp_path, open_source("camus", root, cycle="half"), r"patient0001_4CH_half_sequence.nii.gz: image shape")


def test_ed_es_outside_sequence(camus_nifti, tmp_path):
    root, _ = camus_nifti
    camus.write_cfg(camus.cfg_file(root, "patient0006", "2CH", "camus-nifti"),
                    {"ED": 1, "ES": 9, "NbFrame": 6, "Sex": "M", "Age": 3})
    expect_error(tmp_path, open_source("camus", root, cycle="half"), r"ES=9 is outside the sequence of 6 frames")


def test_duplicate_patient_ids_and_bad_sheets(tmp_path):
    rows = sheet_cohort(tmp_path, n=2)
    rows.append(dict(rows[0]))
    with pytest.raises(InputError, match=r"cohort.tsv: row 6: duplicate \(patient_id, view\) = \(P00, 2CH\)"):
        open_source("sheet", write_sheet(tmp_path, rows))
    rows = sheet_cohort(tmp_path, n=2)
    rows[1]["age"] = "sixty"
    with pytest.raises(InputError, match=r"column 'age' must be numeric; row 3 has 'sixty'"):
        open_source("sheet", write_sheet(tmp_path, rows))
    rows = sheet_cohort(tmp_path, n=2)
    rows[2]["view"] = "PLAX"
    with pytest.raises(InputError, match=r"row 4: column 'view' must be one of"):
        open_source("sheet", write_sheet(tmp_path, rows))
    rows = sheet_cohort(tmp_path, n=2)
    rows[0]["group"] = "other"
    with pytest.raises(InputError, match=r"covariate 'group' differs between the rows of patient P00"):
        open_source("sheet", write_sheet(tmp_path, rows))
    rows = [{k: v for k, v in r.items() if k != "es"} for r in sheet_cohort(tmp_path, n=1)]
    with pytest.raises(InputError, match=r"missing required column\(s\) \['es'\]"):
        open_source("sheet", write_sheet(tmp_path, rows))
    covariates = tmp_path / "cov.tsv"
    covariates.write_text("patient_id\tage\nP00\t50\nP00\t51\n")
    with pytest.raises(InputError, match=r"cov.tsv: duplicate patient_id 'P00'"):
        plan_cohort(open_source("sheet", write_sheet(tmp_path, sheet_cohort(tmp_path, n=1))), n_shards=1, seed=0,
                    fractions={"train": 1, "val": 0, "test": 0}, covariates=covariates)


def test_skip_mode_lists_bad_sequences_and_goes_on(camus_nifti, tmp_path):
    root, _ = camus_nifti
    path = camus.sequence_file(root, "patient0003", "2CH", "half", "camus-nifti", gt=True)
    path.write_bytes(b"not a nifti")
    out = tmp_path / "out"
    table = ingest_cohort(open_source("camus", root, cycle="half"), out, image_size=16, on_bad_sequence="skip")
    assert len(table) == 11
    qc = pd.read_csv(out / "qc.tsv", sep="\t")
    assert qc[["patient_id", "view"]].values.tolist() == [["patient0003", "2CH"]]
    assert "unreadable" in qc["reason"][0] and qc["file"][0].endswith("patient0003_2CH_half_sequence_gt.nii.gz")
    patients = pd.read_csv(out / "patients.tsv", sep="\t")
    assert dict(zip(patients["patient_id"], patients["n_sequences"]))["patient0003"] == 1
