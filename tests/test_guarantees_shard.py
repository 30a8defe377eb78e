"""The anatomical-correction stage on a shard: per-frame table, corrected shard, summary, chain of corrections.

The model is ``KnownModel`` (conftest): it decodes code z0 to ``render(z0)``, so which frames are
valid, and what a corrected frame must be, follow from the criteria measured here on the rendered
hearts themselves.
"""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import KnownModel, render
from echolatent.guarantees import valid_maps
from echolatent import postprocess as chain_paths
from echolatent.guarantees.shard import STATUS_CODES, correct_shard
from echolatent.io.shards import iter_shard
from echolatent.stages.guarantees import summary_stage

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 48
GRID = "auto"
SCALES = {("p1", "2CH"): [1.0, 0.35, 1.1, 0.4, 0.9], ("p2", "4CH"): [0.9, 1.0, 1.1, 1.05]}
VALID_CODES = np.array([[0.8, 0.0], [1.3, 0.0], [1.0, 0.0]])


def known_model():
    """KnownModel whose encoder reads scales down to 0.3, so that small (invalid) hearts encode as themselves."""
    model = KnownModel(size=SIZE)
    model.scales = np.linspace(0.3, 1.5, 241)
    model.areas = np.array([(render(s, SIZE) == 1).sum() for s in model.scales])
    return model


def write_shard(path, scales_of, *, kind="echolatent-cohort-shard"):
    with h5py.File(path, "w") as h5:
        h5.attrs.update({"format": kind, "version": 1, "image_size": SIZE})
        for (patient, view), scales in scales_of.items():
            masks = np.stack([render(s, SIZE) for s in scales])
            group = h5.require_group(patient).create_group(view)
            group.create_dataset("mask_native", data=masks)
            group.create_dataset("mask", data=masks)
            group.create_dataset("frame_pos", data=np.linspace(0, 1, len(scales), dtype=np.float32))
            group.attrs.update({"spacing": [1.0, 1.0], "spacing_native": [1.0, 1.0], "cycle": "full", "ed": 0,
                                "es": 2, "frame_rate": 20.0})
    return path


def test_invalid_frames_are_corrected_and_valid_ones_kept_byte_for_byte(tmp_path):
    shard = write_shard(tmp_path / "shard-0.h5", SCALES)
    clean = {key: [1.0] * len(s) for key, s in SCALES.items()}
    truth = write_shard(tmp_path / "truth.h5", clean)
    out = tmp_path / "out" / "shard-0.h5"
    table = correct_shard(shard, known_model(), VALID_CODES, truth_shard=truth, grid=GRID, n_bisections=10,
                          out_h5=out, model_name="known")
    first = table[table["patient_id"] == "p1"]
    # truth: the criteria on the rendered hearts (0.35 and 0.4 are too small to be valid)
    expected_valid = valid_maps(np.stack([render(s, SIZE) for s in SCALES[("p1", "2CH")]]), (1.0, 1.0), grid=GRID)
    assert expected_valid.tolist() == [True, False, True, False, True]
    assert first["status"].tolist() == ["valid", "corrected", "valid", "corrected", "valid"]
    assert (first["criteria_failed"].to_numpy() > 0).tolist() == (~expected_valid).tolist()
    assert (table[table["patient_id"] == "p2"]["status"] == "valid").all()
    written = {(s.patient_id, s.view): s for s in iter_shard(out, ("mask_native", "mask", "status", "frame_pos"))}
    with h5py.File(out) as h5:
        assert h5.attrs["source"] == "guaranteed" and h5.attrs["model"] == "known"
    for key, scales in SCALES.items():
        given = np.stack([render(s, SIZE) for s in scales])
        got = written[key].arrays["mask_native"]
        status = table[(table["patient_id"] == key[0])]["status"].to_numpy()
        for f, state in enumerate(status):
            if state == "valid":
                assert got[f].tobytes() == given[f].tobytes()
            else:
                assert not np.array_equal(got[f], given[f])
        assert valid_maps(got, (1.0, 1.0), grid=GRID).all()
        np.testing.assert_array_equal(written[key].arrays["status"], [STATUS_CODES[s] for s in status])
        np.testing.assert_array_equal(written[key].arrays["mask"], got)  # model grid = native grid here
        assert written[key].attrs["es"] == 2  # the cohort's group attributes travel with the masks
    # corrected frames: t in (0, 1], the distance moved no more than the nearest valid code's
    fixed = table[table["status"] == "corrected"]
    assert ((fixed["t"] > 0) & (fixed["t"] <= 1)).all()
    assert (fixed["distance"] <= fixed["nearest_distance"] + 1e-12).all()
    np.testing.assert_allclose(fixed["nearest_distance"], [0.8 - 0.35, 0.8 - 0.4], atol=0.01)  # encoded scale
    # both cross the same validity boundary: the corrected hearts are the smallest valid scale on the way to 0.8
    assert abs((1 - fixed["t"].iloc[0]) * 0.35 + fixed["t"].iloc[0] * 0.8
               - ((1 - fixed["t"].iloc[1]) * 0.4 + fixed["t"].iloc[1] * 0.8)) < 0.01
    # Dice to the clean truth, against a direct count
    f = 1
    before, after, ref = render(0.35, SIZE), written[("p1", "2CH")].arrays["mask_native"][f], render(1.0, SIZE)
    dice = [2 * ((a == k) & (ref == k)).sum() / ((a == k).sum() + (ref == k).sum()) for a in (before, after)
            for k in (1, 2, 3)]
    row = first.iloc[f]
    assert row["dice_truth_before"] == pytest.approx(np.mean(dice[:3]))
    assert row["dice_truth_after"] == pytest.approx(np.mean(dice[3:]))
    assert row["changed_pixels"] == int((before != after).sum())

    table["split"] = np.where(table["patient_id"] == "p1", "train", "test")
    table.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    summary = summary_stage([tmp_path / "t.tsv"], model="known").set_index("split")
    assert summary.loc["all", "frames"] == 9 and summary.loc["all", "failing_before"] == 2
    assert summary.loc["all", "corrected"] == 2 and summary.loc["all", "failing_after"] == 0
    assert summary.loc["test", "failing_before"] == 0 and np.isnan(summary.loc["test", "distance"])
    assert summary.loc["train", "dice_truth_after"] == pytest.approx(fixed["dice_truth_after"].mean())


def test_a_frame_out_of_reach_is_reported_uncorrectable_and_kept(tmp_path):
    shard = write_shard(tmp_path / "shard-0.h5", {("p1", "2CH"): [1.0, 0.35, 1.1]})
    out = tmp_path / "out.h5"
    table = correct_shard(shard, known_model(), VALID_CODES, grid=GRID, max_distance=0.1, out_h5=out)
    assert table["status"].tolist() == ["valid", "uncorrectable", "valid"]
    got = next(iter_shard(out, ("mask_native", "status")))
    assert got.arrays["mask_native"][1].tobytes() == render(0.35, SIZE).tobytes()
    assert got.arrays["status"].tolist() == [0, 2, 0]
    assert np.isnan(table["t"].iloc[1]) and table["failed"].iloc[1] != ""
    table["split"] = "test"
    table.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    summary = summary_stage([tmp_path / "t.tsv"]).set_index("split")
    assert summary.loc["test", "failing_after"] == 1 and summary.loc["test", "corrected"] == 0


def test_a_failed_correction_leaves_no_partial_shard(tmp_path):
    shard = write_shard(tmp_path / "shard-0.h5", {("p1", "2CH"): [1.0, 0.35]})
    out = tmp_path / "out" / "shard-0.h5"
    with pytest.raises(ValueError, match="latent dimensions"):
        correct_shard(shard, known_model(), np.zeros((3, 5)), grid=GRID, out_h5=out)  # wrong code width
    assert not out.exists()


def test_without_any_valid_code_every_failing_frame_is_reported(tmp_path):
    shard = write_shard(tmp_path / "shard-0.h5", {("p1", "2CH"): [1.0, 0.35, 0.4]})
    table = correct_shard(shard, known_model(), np.zeros((0, 2)), grid=GRID, out_h5=tmp_path / "out.h5")
    assert table["status"].tolist() == ["valid", "uncorrectable", "uncorrectable"]
    got = next(iter_shard(tmp_path / "out.h5", ("mask_native",)))
    np.testing.assert_array_equal(got.arrays["mask_native"], np.stack([render(s, SIZE) for s in [1.0, 0.35, 0.4]]))


# ----------------------------------------------------------------------------- the chain of corrections
MODELS = {"ar": {"kind": "ar-vae"}, "ar2": {"kind": "ar-vae"}, "c": {"kind": "cvae"}}


@pytest.mark.parametrize("order, anatomical_reads, temporal_reads, final", [
    (["temporal", "anatomical"], ("results/temporal/ar/shard-3.h5", "temporal/ar"), "results/cohort/shard-3.h5",
     ("guaranteed", "c")),
    (["anatomical", "temporal"], ("results/cohort/shard-3.h5", "input"), "results/guarantees/c/shard-3.h5",
     ("temporal", "ar")),
    (["anatomical"], ("results/cohort/shard-3.h5", "input"), "results/cohort/shard-3.h5", ("guaranteed", "c")),
])
def test_each_step_reads_the_masks_of_the_step_before(order, anatomical_reads, temporal_reads, final):
    chain = chain_paths.postprocess_chain({"model": "c", "postprocess": order}, MODELS, ["ar", "ar2"])
    assert chain_paths.anatomical_input(chain, "c", 3) == anatomical_reads
    assert chain_paths.temporal_input(chain, "ar", 3) == temporal_reads
    assert chain_paths.temporal_input(chain, "ar2", 3) == "results/cohort/shard-3.h5"  # not chained
    assert chain_paths.final_masks(chain) == final


def test_the_chain_names_only_configured_models():
    assert chain_paths.postprocess_chain({"model": "", "postprocess": ["temporal", "anatomical"]}, MODELS,
                                         ["ar"]) == [("temporal", "ar")]
    assert chain_paths.postprocess_chain({"model": "c", "temporal_model": "ar2"}, MODELS,
                                         ["ar", "ar2"]) == [("temporal", "ar2"), ("guaranteed", "c")]
    with pytest.raises(ValueError, match="guarantees.model 'nope' is not configured"):
        chain_paths.postprocess_chain({"model": "nope"}, MODELS, ["ar"])
    with pytest.raises(ValueError, match="temporal_model 'c' is not an AR-VAE"):
        chain_paths.postprocess_chain({"model": "c", "temporal_model": "c"}, MODELS, ["ar"])
