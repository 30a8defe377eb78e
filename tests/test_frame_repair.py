"""Repair of flagged frames through the latent space (echolatent.temporal.frame_repair, method="repair")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echolatent.temporal.frame_repair import (REGIONS, compose_regions, interpolate_codes, region_sdf,
                                              repair_frames, select_culprits, trusted_neighbours)
from echolatent.temporal.pipeline import CorrectionConfig, correct_sequences, dice_scores
from echolatent.temporal.preclean import preclean
from test_temporal_pipeline import KnownModel, clean_scales, image_arrays, image_thresholds, render, sequence

LV, MYO, LA = 1, 2, 3


# --------------------------------------------------------------------------- pure helpers
def test_trusted_neighbours_interpolate_inside_and_extrapolate_at_the_ends():
    trusted = np.array([0, 1, 1, 0, 1, 0, 0], bool)
    first, second, a = trusted_neighbours(trusted)
    z = np.arange(7, dtype=float)[:, None] * 2.0 + 1.0      # a linear trajectory is reproduced exactly
    np.testing.assert_allclose(interpolate_codes(z, trusted), z)
    assert (first[3], second[3], a[3]) == (2, 4, 0.5)
    assert a[0] < 0 and a[6] > 1                             # linear extrapolation beyond the trusted frames
    np.testing.assert_array_equal(a[trusted], 1.0)
    single = trusted_neighbours(np.array([0, 1, 0], bool))
    np.testing.assert_array_equal(single[0], 1)              # one trusted frame: copied
    with pytest.raises(ValueError, match="no trusted frame"):
        trusted_neighbours(np.zeros(3, bool))


def test_select_culprits_takes_the_spike_not_its_neighbours():
    attribute_regions = np.array([[True, False, False], [True, True, False]])   # lv_area-like, myo_area-like
    ratio = np.zeros((9, 2))
    ratio[3:6, 1] = [1.6, 3.1, 1.5]   # a spike at 4: its neighbours deviate by about half, flagged too
    repaired = np.zeros((9, 3), bool)
    add = select_culprits(ratio, repaired, attribute_regions)
    np.testing.assert_array_equal(np.flatnonzero(add.any(axis=1)), [4])
    np.testing.assert_array_equal(add[4], [True, True, False])
    # Frame 4 repaired but still flagged: the neighbour with the larger ratio takes the repair.
    repaired[4] = add[4]
    add = select_culprits(ratio, repaired, attribute_regions)
    np.testing.assert_array_equal(np.flatnonzero(add.any(axis=1)), [3])
    # An unmeasurable attribute counts as flagged.
    ratio = np.zeros((5, 2))
    ratio[2, 0] = np.nan
    assert select_culprits(ratio, np.zeros((5, 3), bool), attribute_regions)[2, 0]


def test_regions_round_trip_through_signed_distances():
    frame = render(1.0)
    maps = {r: region_sdf(frame, r) for r in REGIONS}
    np.testing.assert_array_equal(compose_regions(maps), frame)
    # Nesting is enforced: an LV outside the EPI region still gets a myocardium-free LV inside EPI.
    maps["lv"] = region_sdf(render(1.2), "lv")
    out = compose_regions(maps)
    assert np.all(out[render(1.2) == LV] == LV) and not np.any((out == 0) & (frame == MYO) & (render(1.2) == LV))


def test_repair_frames_cancels_a_decoder_bias():
    """A decoder that shifts every map by 2 columns: the repaired frame does not inherit the shift."""
    scales = clean_scales(9)
    clean = sequence(scales)
    base = clean.copy()
    base[4] = render(scales[4] * 1.12)          # the spike
    decoded_mu = np.roll(sequence(scales), 2, axis=2)
    decoded_z = {4: np.roll(render(scales[4]), 2, axis=1)}
    regions = np.zeros((9, 3), bool)
    regions[4] = True
    out = repair_frames(base, decoded_mu, decoded_z, regions)
    np.testing.assert_array_equal(np.delete(out, 4, axis=0), np.delete(base, 4, axis=0))
    repaired = dice_scores(out[4:5], clean[4:5])[0]
    assert np.all(repaired > 0.9) and repaired[0] > dice_scores(base[4:5], clean[4:5])[0, 0] + 0.05
    uncalibrated = dice_scores(decoded_z[4][None], clean[4:5])[0]
    assert repaired[0] > uncalibrated[0] + 0.05


# --------------------------------------------------------------------------- the method in correct_sequences
@pytest.fixture(scope="module")
def case():
    references = [sequence(clean_scales(20, phase)) for phase in (0.0, 0.3, 0.6, 0.9)]
    thresholds = image_arrays(image_thresholds(references))
    scales = clean_scales(20, 0.45)
    return thresholds, scales


def test_repair_fixes_the_spiked_frame_and_keeps_the_others(case):
    thresholds, scales = case
    clean = sequence(scales)
    spiked_scales = scales.copy()
    spiked_scales[8] *= 1.12
    spiked = sequence(spiked_scales)
    results = correct_sequences(KnownModel(), [clean, spiked], constraint=None, spacings=[(1.0, 1.0)] * 2,
                                image=thresholds)
    untouched, repaired = results
    assert untouched["method"] == "none" and not untouched["corrected"]
    np.testing.assert_array_equal(untouched["masks"], preclean(clean))
    assert repaired["check_before"]["sequence_inconsistent"] and repaired["method"] == "repair"
    assert not repaired["check_after"]["sequence_inconsistent"]
    np.testing.assert_array_equal(np.flatnonzero(repaired["replaced"]), [8])
    np.testing.assert_array_equal(np.delete(repaired["masks"], 8, 0), np.delete(spiked, 8, 0))
    before, after = (dice_scores(m, clean).mean() for m in (spiked, repaired["masks"]))
    assert after > before
    assert dice_scores(repaired["masks"][8:9], clean[8:9])[0, 0] > 0.97
    # the code of the repaired frame is the interpolation of its neighbours' codes
    np.testing.assert_allclose(repaired["z"][8], (repaired["mu"][7] + repaired["mu"][9]) / 2)


def test_an_anatomically_invalid_frame_is_repaired_too(case):
    thresholds, scales = case
    clean = sequence(scales)
    broken = clean.copy()
    rows, cols = np.nonzero(clean[5] == LA)
    broken[5][(clean[5] == LA) & (np.arange(48)[:, None] < rows.min() + 3)] = 0   # LA detached from the LV base
    result = correct_sequences(KnownModel(), [broken], constraint=None, spacings=[(1.0, 1.0)],
                               image=thresholds)[0]
    assert result["replaced"][5] and result["repaired_regions"][5, REGIONS.index("heart")]
    assert dice_scores(result["masks"][5:6], clean[5:6])[0, 2] > dice_scores(broken[5:6], clean[5:6])[0, 2]


def test_fallback_to_smoothing_when_the_repair_leaves_a_sequence_inconsistent(case):
    thresholds, scales = case
    spiked_scales = scales.copy()
    spiked_scales[[6, 7]] *= [1.10, 0.88]     # two opposite spikes side by side: one round repairs one of them
    spiked = sequence(spiked_scales)
    common = dict(constraint=None, spacings=[(1.0, 1.0)], image=thresholds)
    left = correct_sequences(KnownModel(), [spiked], config=CorrectionConfig(repair_rounds=1, fallback="none"),
                             **common)[0]
    assert left["method"] == "repair" and left["check_after"]["sequence_inconsistent"]
    redone = correct_sequences(KnownModel(), [spiked], config=CorrectionConfig(repair_rounds=1, weight=4.0,
                                                                               max_rounds=6), **common)[0]
    assert redone["method"] == "smooth" and not redone["check_after"]["sequence_inconsistent"]
    # more rounds let the repair reach the neighbours (two spikes side by side take four)
    fixed = correct_sequences(KnownModel(), [spiked], config=CorrectionConfig(repair_rounds=4), **common)[0]
    assert fixed["method"] == "repair" and not fixed["check_after"]["sequence_inconsistent"]
    assert fixed["replaced"][[6, 7]].all() and fixed["replaced"].sum() <= 6


def test_repair_configuration_is_checked():
    with pytest.raises(ValueError, match="method"):
        CorrectionConfig(method="magic")
    with pytest.raises(ValueError, match="fallback"):
        CorrectionConfig(fallback="pray")
    with pytest.raises(ValueError, match="decoder_weights"):
        CorrectionConfig(decoder_weights=(1.5,))
    torch.manual_seed(0)  # nothing random in the repair; keeps the module import-order independent
