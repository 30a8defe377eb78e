"""Temporal pipeline: pre-cleaning, correction with a known (hand-made) model, thresholds, shards, export."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import KnownModel, clean_scales, image_arrays, image_thresholds, render, sequence
from echolatent.shape.attributes import TEMPORAL_ATTRIBUTES
from echolatent.temporal.metric import temporal_consistency
from echolatent.temporal.config import CorrectionConfig
from echolatent.models.inference import model_input
from echolatent.models.quality import dice_scores
from echolatent.temporal.correction.consistency import LatentConstraint
from echolatent.temporal.correction.displacement import transfer_displacement
from echolatent.temporal.correction.sequences import correct_sequences
from echolatent.temporal.preclean import fill_holes, largest_component, preclean
from echolatent.temporal.thresholds import (derive_thresholds_table, published_thresholds, read_thresholds,
                                            write_thresholds)

BG, LV, MYO, LA = 0, 1, 2, 3
# the TMI 2022 reference: smooth and decode every frame, snake weight 50, one round
REFERENCE = dict(method="smooth", weight=50.0, max_rounds=1)
SMOOTH = CorrectionConfig(**REFERENCE)


# --------------------------------------------------------------------------- pre-cleaning
def test_preclean_largest_blob_holes_and_gaps():
    clean = render(1.0)[None].repeat(3, axis=0)
    noisy = clean.copy()
    noisy[0, 2:5, 2:5] = LV                     # LV island
    noisy[1, 20, 22:24] = BG                    # hole inside the LV
    ys, xs = np.nonzero(clean[2] == MYO)
    noisy[2, ys[len(ys) // 2], xs[len(xs) // 2]] = BG  # hole inside the MYO (a single pixel of the wall)
    out = preclean(noisy)
    np.testing.assert_array_equal(out, clean)
    # A gap between LV and MYO (background ring) becomes MYO.
    gap = clean[0].copy()
    inner = (gap == LV) & ~(np.roll(gap == LV, 1, 0) & np.roll(gap == LV, -1, 0) & np.roll(gap == LV, 1, 1)
                            & np.roll(gap == LV, -1, 1))
    upper = inner & (np.arange(48)[:, None] < 14)
    gap[upper] = BG
    fixed = preclean(gap)
    assert np.all(fixed[upper] == MYO)


def test_preclean_closed_myocardium_keeps_its_cavity_and_drops_unknown_labels():
    frame = np.zeros((20, 20), np.uint8)
    frame[3:17, 3:17] = MYO
    frame[6:14, 6:14] = LV
    frame[9:11, 9:11] = BG   # hole in the LV, inside a closed MYO
    frame[17:19, 5:15] = LA
    out = preclean(frame)
    assert (out == LV).sum() == 64 and (out == MYO).sum() == 14 * 14 - 64
    no_la = preclean(frame, keep_atrium=False)
    assert not np.any(no_la == LA) and np.array_equal(no_la[:17], out[:17])


def test_component_helpers_work_per_frame():
    stack = np.zeros((2, 10, 10), bool)
    stack[0, 1:3, 1:3] = True
    stack[0, 5:9, 5:9] = True
    stack[1, 1:3, 1:3] = True
    stack[1, 4, 4] = True
    kept = largest_component(stack)
    assert kept[0].sum() == 16 and kept[1].sum() == 4 and kept[1, 1, 1]
    ring = np.zeros((1, 7, 7), bool)
    ring[0, 1:6, 1:6] = True
    ring[0, 2:5, 2:5] = False
    assert fill_holes(ring).sum() == 9
    border = np.zeros((1, 5, 5), bool)
    border[0, :, 2] = True
    assert fill_holes(border).sum() == 0


# --------------------------------------------------------------------------- correction with the known model
@pytest.fixture(scope="module")
def spiked_case():
    references = [sequence(clean_scales(20, phase)) for phase in (0.0, 0.3, 0.6, 0.9)]
    thresholds = image_thresholds(references)
    scales = clean_scales(20, 0.45)
    spiked = scales.copy()
    spiked[8] *= 1.12
    return thresholds, sequence(scales), sequence(spiked)


def constraint_for(model, references):
    mus = [model.encode(torch.nn.functional.one_hot(torch.from_numpy(r).long(), 4).permute(0, 3, 1, 2).float())[0]
           .numpy()[:, :1] for r in references]
    table = pd.concat([pd.DataFrame({"patient_id": f"P{n}", "view": "4CH", "frame": np.arange(len(m)),
                                     "mu_0": m[:, 0]}) for n, m in enumerate(mus)])
    derived = derive_thresholds_table(table, ["mu_0"], names=["lv_area"], space="latent", dims=[0],
                                      bounds=([0.5], [1.5]))
    return LatentConstraint.from_table(derived)


def test_reference_correction_removes_a_spike(spiked_case):
    thresholds, clean, spiked = spiked_case
    model = KnownModel()
    references = [sequence(clean_scales(20, phase)) for phase in (0.0, 0.3, 0.6, 0.9)]
    constraint = constraint_for(model, references)
    result = correct_sequences(model, [spiked], constraint=constraint, spacings=[(1.0, 1.0)],
                               image=image_arrays(thresholds), config=SMOOTH)[0]
    assert result.check_before["sequence_inconsistent"] and result.check_before["frame_inconsistent"][8]
    assert not result.check_after["sequence_inconsistent"] and result.replaced.all()
    # The spike is gone: the corrected frame is much closer to the clean one than the spiked input.
    assert dice_scores(result.masks[8:9], clean[8:9])[0, 0] > dice_scores(spiked[8:9], clean[8:9])[0, 0] + 0.02
    # The constrained dim got the smallest feasible weight; the free one the snake weight.
    assert result.weights[1] == 50.0 and 0 < result.weights[0] <= 128
    z = result.z[:, :1]
    assert not temporal_consistency(z, constraint.lo, constraint.hi, constraint.tau)["sequence_inconsistent"]


def test_scopes_leave_sound_sequences_and_frames_alone(spiked_case):
    thresholds, clean, spiked = spiked_case
    model = KnownModel()
    image = image_arrays(thresholds)
    results = correct_sequences(model, [clean, spiked], constraint=None, spacings=[(1.0, 1.0)] * 2, image=image,
                                config=CorrectionConfig(**{**REFERENCE, "scope": "inconsistent", "max_rounds": 3}))
    assert [r.corrected for r in results] == [False, True]
    assert np.array_equal(results[0].masks, clean)
    assert not results[1].check_after["sequence_inconsistent"]
    references = [sequence(clean_scales(20, phase)) for phase in (0.0, 0.3, 0.6, 0.9)]
    frames = correct_sequences(model, [spiked], constraint=constraint_for(model, references), spacings=[(1.0, 1.0)],
                               image=image, config=CorrectionConfig(**{**REFERENCE, "scope": "frames", "max_rounds": 5}))[0]
    replaced = frames.replaced
    assert replaced[8] and 0 < replaced.sum() <= 8
    np.testing.assert_array_equal(frames.masks[~replaced], preclean(spiked)[~replaced])
    assert not frames.check_after["sequence_inconsistent"]
    with pytest.raises(ValueError, match="image-space thresholds"):
        correct_sequences(model, [clean], constraint=None, config=CorrectionConfig(**{**REFERENCE,
                                                                                      "scope": "inconsistent"}))
    with pytest.raises(ValueError, match="image-space thresholds"):
        correct_sequences(model, [clean], constraint=None)  # the default method, repair, needs them too


def test_displacement_transfer_cancels_the_decoder_error():
    base = sequence([1.0, 1.0])
    decoded = np.roll(base, 2, axis=2)        # a decoder that shifts everything by 2 columns
    smaller = np.roll(sequence([1.0, 0.9]), 2, axis=2)
    out = transfer_displacement(base, decoded, smaller)
    np.testing.assert_array_equal(out[0], base[0])   # nothing asked to change: the input stays
    target = render(0.9)
    dice = dice_scores(out[1:], target[None], (1, 2, 3))[0]
    assert dice[0] > 0.93 and np.all(dice > 0.85) and dice_scores(base[1:], target[None])[0, 0] < dice[0] - 0.05


def test_three_class_model_keeps_the_input_atrium_where_free(spiked_case):
    _, clean, _ = spiked_case
    big = np.repeat(np.repeat(clean, 2, axis=1), 2, axis=2)  # native grid 96 -> model grid 48 and back
    model = KnownModel(n_classes=3)
    assert not np.any(model_input(big, model) == LA) and model_input(big, model).shape == (20, 48, 48)
    kept = correct_sequences(model, [big], constraint=None, config=SMOOTH)[0].masks
    dropped = correct_sequences(model, [big], constraint=None, config=CorrectionConfig(**REFERENCE, atrium="drop"))[
        0].masks
    assert kept.shape == big.shape and not np.any(dropped == LA)
    assert np.all(kept[big == LA] != BG)                 # LA pixels stay (LA, or LV/MYO where those claim them)
    np.testing.assert_array_equal(kept[kept != LA], dropped[kept != LA])
    assert dice_scores(kept, big)[:, 2].mean() > 0.9


# --------------------------------------------------------------------------- thresholds tables
def test_thresholds_round_trip_published_file_and_exclusion(tmp_path):
    from pathlib import Path

    shipped = read_thresholds(Path(__file__).resolve().parents[1] / "resources" / "temporal_thresholds.tsv")
    pd.testing.assert_frame_equal(shipped, read_thresholds_roundtrip(published_thresholds(), tmp_path))
    t = np.arange(12, dtype=float)
    table = pd.DataFrame({"patient_id": "P", "view": "2CH", "frame": np.arange(12), "a": np.sin(t / 3),
                          "bad": False})
    table.loc[5, "a"] += 3.0
    with_spike = derive_thresholds_table(table, ["a"])
    table.loc[5, "bad"] = True
    without = derive_thresholds_table(table, ["a"], exclude="bad")
    assert without["tau"].iloc[0] < 0.2 * with_spike["tau"].iloc[0]
    assert without["hi"].iloc[0] < 1.01
    with pytest.raises(ValueError, match="do not vary"):
        derive_thresholds_table(table.assign(a=1.0), ["a"])


def read_thresholds_roundtrip(table, tmp_path):
    write_thresholds(table, tmp_path / "t.tsv")
    return read_thresholds(tmp_path / "t.tsv")


# --------------------------------------------------------------------------- the stages on a small synthetic cohort
def test_stages_end_to_end_on_a_tiny_cohort(tiny_cohort):
    from echolatent.io.itk import read_sequence
    from echolatent.io.shards import iter_shard
    from echolatent.temporal.export import export_nifti
    from echolatent.stages.encode import encode_stage
    from echolatent.stages.temporal import (correction_stage, detection_stage, image_thresholds_stage,
                                            latent_thresholds_stage, summary_stage)

    root = tiny_cohort
    cohort, model = root / "cohort", root / "model"
    frames = cohort / "truth" / "frames.tsv"
    image = image_thresholds_stage([root / "attributes-input.parquet"], cohort / "patients.tsv", reference="observed",
                                   splits=["train"], names=TEMPORAL_ATTRIBUTES, frames=frames,
                                   out=root / "t" / "thresholds.tsv")
    assert image["name"].tolist() == list(TEMPORAL_ATTRIBUTES) and (image["tau"] > 0).all()
    # held out: thresholds from the train split, rates on the patients they never saw
    rates = detection_stage([root / "attributes-input.parquet"], frames, root / "t" / "thresholds.tsv",
                            patients=cohort / "patients.tsv")
    assert rates["split"].drop_duplicates().tolist() == ["train", "val", "test", "all"]
    rates = rates[rates["detector"] == "deviation"]  # the configured detector (the table has both)
    held_out = rates[rates["split"].isin(["val", "test"])].set_index(["split", "frames"])["flagged"]
    checked = [split for split in ("val", "test") if np.isfinite(held_out.get((split, "spike"), np.nan))]
    assert checked  # the held-out patients carry spikes
    for split in checked:  # the metric tells spikes from clean frames it was not tuned on
        assert held_out[(split, "spike")] > held_out[(split, "clean_window")]
    for mode in ("image", "derived"):
        latent = latent_thresholds_stage(model / "checkpoint.pt", model / "latent_bounds.tsv",
                                         root / "t" / "thresholds.tsv", mode=mode, reference="truth",
                                         reference_shards=[cohort / "truth" / "shard-0.h5"],
                                         cohort_shards=[cohort / "shard-0.h5"], patients=cohort / "patients.tsv",
                                         splits=["train"], device="cpu", out=root / "t" / f"latent-{mode}.tsv")
        assert latent["dim"].tolist() == list(range(7)) and (latent["hi"] > latent["lo"]).all()
    table = encode_stage(model / "checkpoint.pt", cohort / "shard-0.h5", out_table=root / "t" / "latents.parquet",
                         out_h5=root / "t" / "latents.h5", device="cpu")
    assert {"mu_9", "logvar_0", "dice_la", "frame_pos"} <= set(table.columns) and len(table) == 12 * 10
    assert pd.read_parquet(root / "t" / "latents.parquet").shape == table.shape
    recon = next(iter_shard(root / "t" / "latents.h5", ("mask", "mask_native")))
    assert recon.arrays["mask"].shape == (10, 32, 32) and recon.arrays["mask_native"].shape == (10, 80, 72)
    result = correction_stage(model / "checkpoint.pt", cohort / "shard-0.h5", root / "t" / "thresholds.tsv",
                              root / "t" / "latent-derived.tsv", settings={"max_rounds": 3},
                              truth_shard=cohort / "truth" / "shard-0.h5", frames=frames,
                              out_table=root / "t" / "correction.tsv", out_h5=root / "t" / "corrected.h5", device="cpu")
    assert len(result) == 12 and result["n_spikes"].sum() > 0
    # the repair touches the sequences with an inconsistent or invalid frame only
    flagged = result[result["sequence_inconsistent_before"]]
    assert len(flagged) and flagged["corrected"].all() and set(result["method"]) <= {"none", "repair", "smooth"}
    untouched = result[~result["corrected"]]
    assert (untouched["replaced_frames"] == 0).all() and not untouched["sequence_inconsistent_after"].any()
    for column in ("inconsistent_lv_area_before", "inconsistent_frames_after", "anatomical_errors_after",
                   "dice_lv_before", "dice_after", "latent_inconsistent_frames_after", "mean_constrained_weight"):
        assert column in result.columns
    summary = summary_stage([root / "t" / "correction.tsv"], out=root / "t" / "summary.tsv")
    assert summary["sequences"].tolist() == ["all", "spiked", "not_spiked"]
    corrected = {(s.patient_id, s.view): s
                 for s in iter_shard(root / "t" / "corrected.h5", ("mask_native", "mask"))}
    assert len(corrected) == 12
    manifest = export_nifti(root / "t" / "corrected.h5", root / "nifti", manifest=root / "t" / "nifti.tsv",
                            relative_to=root / "nifti")
    first = manifest.iloc[0]
    assert first["file"] == f"{first['patient_id']}/{first['patient_id']}_{first['view']}_sequence_gt_corrected.nii.gz"
    array, spacing = read_sequence(root / "nifti" / first["file"])
    sequence = corrected[(first["patient_id"], first["view"])]
    np.testing.assert_array_equal(array, sequence.arrays["mask_native"])
    assert spacing == pytest.approx(sequence.spacing("mask_native"))


def test_workflow_settings_and_paths():
    from echolatent.temporal import workflow

    settings = workflow.settings({})
    assert settings["thresholds"]["reference"] == "auto" and settings["correction"]["method"] == "repair"
    assert workflow.reference(settings, synthetic=True) == "observed"
    assert workflow.reference(settings, synthetic=False) == "input"
    # auto: the published max rule for clean references, the robust rule for truth-free ones
    assert workflow.threshold_rule(settings, synthetic=True) == "max"
    assert workflow.threshold_rule(settings, synthetic=False) == "robust"
    truth_free = workflow.settings({"temporal": {"thresholds": {"reference": "input"}}})
    assert workflow.threshold_rule(truth_free, synthetic=True) == "robust"
    assert workflow.image_thresholds(workflow.settings({"temporal": {"thresholds": {"source": "published"}}})) == \
        "resources/temporal_thresholds.tsv"
    inputs = workflow.correction_inputs("arvae", 1, settings, synthetic=True)
    assert inputs["truth"] == "results/cohort/truth/shard-1.h5" and inputs["image"] == "results/temporal/thresholds.tsv"
    assert "results/temporal/detection.tsv" in workflow.temporal_outputs("arvae", settings, True, [0, 1])
    with pytest.raises(ValueError, match=r"temporal\.smooth: Additional properties .*'wieght'"):
        workflow.settings({"temporal": {"smooth": {"wieght": 3}}})
    with pytest.raises(ValueError, match=r"temporal\.smooth\.scope: 'some' is not one of"):
        workflow.settings({"temporal": {"smooth": {"scope": "some"}}})
    with pytest.raises(ValueError, match="synthetic"):
        workflow.reference(workflow.settings({"temporal": {"thresholds": {"reference": "truth"}}}), synthetic=False)


def test_upsampling_places_model_pixels_where_they_were_sampled():
    from echolatent.models.inference import decode_masks, sampled_positions

    np.testing.assert_array_equal(sampled_positions(256, 64), 4 * np.arange(64) + 2)
    np.testing.assert_array_equal(sampled_positions(256, 64, grid=128), 4 * np.arange(64) + 3)
    model = KnownModel()
    z = np.array([[1.0, 0.0]])
    native = np.repeat(np.repeat(render(1.0)[None], 2, axis=1), 2, axis=2)  # 96 x 96, read back at 2i + 1
    decoded = decode_masks(model, z, size=(96, 96))
    assert dice_scores(decoded, native).min() > 0.85
    # at the native pixels the model grid was read from, the decoding is the model's own argmax
    np.testing.assert_array_equal(model_input(decoded, model)[0], render(1.0))
    on_grid = decode_masks(model, z, size=(128, 128), grid=96)  # through a cohort grid, as in training
    np.testing.assert_array_equal(model_input(on_grid, model, grid=96)[0], render(1.0))
    assert np.array_equal(decode_masks(model, z)[0], render(1.0))


def test_native_decoding_helpers_match_their_plain_versions():
    from echolatent.models.inference import _argmax_channels, _linear_weights, sampled_positions

    logits = torch.randn(3, 4, 7, 9)
    logits[0, 2] = logits[0, 1]                # ties: the first maximum wins, as in argmax
    np.testing.assert_array_equal(_argmax_channels(logits).numpy(), logits.argmax(1).numpy())
    weights = _linear_weights(sampled_positions(256, 64), 256).numpy()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    assert ((weights > 0).sum(axis=1) <= 2).all()
    # a linear ramp on the model grid stays linear between the sampled positions
    positions = sampled_positions(256, 64)
    ramp = weights @ np.arange(64, dtype=np.float32)
    inside = slice(positions[0], positions[-1] + 1)
    assert np.all(np.diff(ramp[inside]) >= 0) and abs(ramp[positions[10]] - 10) < 1e-5


def test_native_argmax_of_the_boundary_band_equals_the_upsampled_logits_argmax():
    """The band-limited native argmax is the argmax of the upsampled logits: equal to the
    exact (float64) one wherever the two best classes differ by more than float32 rounding,
    and a nearly tied class where they do not; exact ties go to the first class, as argmax.
    On smooth fields with boundaries, ties, a flat region, a near-tie, unequal native sizes
    and a cohort grid."""
    from echolatent.models.inference import (_SAFE_MARGIN, _argmax_channels, _linear_taps,
                                             _linear_weights, _upsampled_argmax, sampled_positions)

    gen = torch.Generator().manual_seed(3)
    s = 16
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32),
                            indexing="ij")
    fields = []
    for _ in range(6):  # classes as smooth bumps around random centres: curved boundaries
        centres = torch.rand(4, 2, generator=gen) * s
        widths = 2 + 4 * torch.rand(4, generator=gen)
        fields.append(torch.stack([-((yy - cy) ** 2 + (xx - cx) ** 2) / w for (cy, cx), w in zip(centres, widths)]))
    logits = torch.stack(fields)
    logits[0, 2] = logits[0, 1]                 # exact ties everywhere between two classes
    logits[1] = 0.0                             # a flat decoding: all classes tie
    logits[2, :, :4, :4] = torch.tensor([5.0, 5.0 + 5e-7, 0.0, 0.0])[:, None, None]  # a near-tie
    top = _argmax_channels(logits)
    for native, grid in (((64, 64), None), ((70, 50), None), ((96, 120), 40)):
        rows = sampled_positions(native[0], s, grid)
        cols = sampled_positions(native[1], s, grid)
        band = _upsampled_argmax(logits, top, _linear_taps(rows, native[0]), _linear_taps(cols, native[1])).numpy()
        assert band.shape == (6, *native) and band.dtype == np.uint8
        exact = (_linear_weights(rows, native[0]).double() @ logits.double()
                 @ _linear_weights(cols, native[1]).double().T).numpy()
        best = exact.max(axis=1)
        ordered = np.sort(exact, axis=1)
        clear = ordered[:, -1] - ordered[:, -2] > _SAFE_MARGIN * np.abs(logits.numpy()).max()
        assert clear.mean() > 0.6
        np.testing.assert_array_equal(band[clear], exact.argmax(axis=1)[clear])
        chosen = np.take_along_axis(exact, band[:, None].astype(np.int64), axis=1)[:, 0]
        assert np.all(best - chosen <= _SAFE_MARGIN * np.abs(logits.numpy()).max())  # near-ties: a tied class
        assert not np.any(band[0] == 2) and np.all(band[1] == 0)  # exact ties: the first class
        # and the plain float32 matrix products agree wherever the decision is clear
        plain = _argmax_channels(_linear_weights(rows, native[0]) @ logits @ _linear_weights(cols, native[1]).T)
        np.testing.assert_array_equal(band[clear], plain.numpy()[clear])


def test_an_empty_shard_is_an_error_and_leaves_no_output(tmp_path):
    from echolatent.models.shard_encoding import encode_shard

    empty = tmp_path / "shard-0.h5"
    h5py.File(empty, "w").close()
    out = tmp_path / "out" / "shard-0.h5"
    with pytest.raises(ValueError, match="holds no sequences"):
        encode_shard(empty, KnownModel(), out_h5=out)
    assert not out.exists() and not list(out.parent.glob(".tmp-*"))
