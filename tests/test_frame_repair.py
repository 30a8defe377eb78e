"""Repair of flagged frames through the latent space (echolatent.temporal.correction, method="repair")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echolatent.models.quality import dice_scores
from echolatent.temporal.config import CorrectionConfig
from echolatent.temporal.correction.interpolation import interpolate_codes, trusted_neighbours
from echolatent.temporal.correction.planning import plan_repairs
from echolatent.temporal.correction.rebuild import repair_frames
from echolatent.temporal.correction.regions import ATTRIBUTE_REGIONS, REGIONS, compose_regions, region_sdf
from echolatent.temporal.correction.sequences import correct_sequences
from echolatent.temporal.metric import temporal_consistency
from echolatent.temporal.preclean import preclean
from conftest import KnownModel, clean_scales, image_arrays, image_thresholds, render, sequence

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


def test_smooth_interpolation_continues_the_curvature():
    """The smooth fill minimises the metric's squared deviations: it reproduces cubic trajectories
    exactly, where a straight line between the trusted frames leaves a kink at each of them."""
    t = np.arange(12, dtype=float)
    cubic = np.stack([0.02 * t ** 3 - 0.3 * t ** 2 + t, 1.0 - 0.5 * t + 0.1 * t ** 2], axis=1)
    trusted = np.ones(12, bool)
    trusted[[3, 6, 7]] = False
    np.testing.assert_allclose(interpolate_codes(cubic, trusted), cubic, atol=1e-4)
    assert np.abs(interpolate_codes(cubic, trusted, method="linear") - cubic).max() > 0.05
    cycle = np.sin(np.linspace(0, np.pi, 20))[:, None]       # one systolic-diastolic sweep
    trusted = np.ones(20, bool)
    trusted[8:11] = False
    deviation = {m: np.abs(-0.5 * np.diff(interpolate_codes(cycle, trusted, method=m), 2, axis=0)).max()
                 for m in ("smooth", "linear")}
    assert deviation["smooth"] < 0.6 * deviation["linear"]
    with pytest.raises(ValueError, match="interpolation"):
        interpolate_codes(cycle, trusted, method="spline")


NAMES = ("lv_area", "myo_area")
AREA_REGIONS = np.array([[r in ATTRIBUTE_REGIONS[n] for r in REGIONS] for n in NAMES])


def smooth_curves(n=16):
    t = np.linspace(0, np.pi, n)
    return np.stack([0.5 + 0.3 * np.sin(t), 0.4 + 0.1 * np.cos(t)], axis=1)


def flagged_frames(curves, tau):
    return np.flatnonzero(temporal_consistency(curves, np.zeros(2), np.ones(2), tau)["frame_inconsistent"])


def test_plan_repairs_takes_the_spike_not_its_neighbours():
    curves = smooth_curves()
    tau = np.full(2, 0.02)
    assert not len(flagged_frames(curves, tau))
    spiked = curves.copy()
    spiked[6, 0] += 0.08                 # lv_area spike: frames 5, 6 and 7 are flagged
    np.testing.assert_array_equal(flagged_frames(spiked, tau), [5, 6, 7])
    add = plan_repairs(spiked, np.zeros(2), np.ones(2), tau, np.zeros((16, 3), bool), AREA_REGIONS)
    np.testing.assert_array_equal(np.flatnonzero(add.any(axis=1)), [6])
    np.testing.assert_array_equal(add[6], [True, False, False])        # lv_area moves the LV only
    # Two opposite spikes side by side are two culprits; a spike's myo_area adds the EPI outline.
    spiked[7, 1] -= 0.08
    add = plan_repairs(spiked, np.zeros(2), np.ones(2), tau, np.zeros((16, 3), bool), AREA_REGIONS)
    np.testing.assert_array_equal(np.flatnonzero(add.any(axis=1)), [6, 7])
    assert add[7, REGIONS.index("epi")]
    # Nothing to do on consistent curves; an unmeasurable value is flagged and re-estimated.
    assert not plan_repairs(curves, np.zeros(2), np.ones(2), tau, np.zeros((16, 3), bool), AREA_REGIONS).any()
    missing = curves.copy()
    missing[9, 0] = np.nan
    add = plan_repairs(missing, np.zeros(2), np.ones(2), tau, np.zeros((16, 3), bool), AREA_REGIONS)
    np.testing.assert_array_equal(np.flatnonzero(add.any(axis=1)), [9])


def test_plan_repairs_never_extrapolates_an_end_frame_and_widens_a_stuck_block():
    curves = smooth_curves()
    tau = np.full(2, 0.02)
    bent = curves.copy()
    bent[1, 0] += 0.08                   # frame 1 deviates; re-estimating frame 0 would extrapolate
    add = plan_repairs(bent, np.zeros(2), np.ones(2), tau, np.zeros((16, 3), bool), AREA_REGIONS)
    np.testing.assert_array_equal(np.flatnonzero(add.any(axis=1)), [1])
    # Frame 8 already repaired (LV) and still flagged: no single frame helps, so the block
    # [8] is widened by its trusted neighbours 7 and 9, with the regions it needs.
    repaired = np.zeros((16, 3), bool)
    repaired[8, 0] = True
    stuck = curves.copy()
    stuck[8, 0] += 0.08
    assert not plan_repairs(stuck, np.zeros(2), np.ones(2), tau, repaired, AREA_REGIONS, widen=False).any()
    add = plan_repairs(stuck, np.zeros(2), np.ones(2), tau, repaired, AREA_REGIONS)
    np.testing.assert_array_equal(np.flatnonzero(add.any(axis=1)), [7, 9])
    np.testing.assert_array_equal(add[[7, 9]], [[True, False, False]] * 2)
    # ... but not onto an end frame.
    repaired[:, :] = False
    repaired[1, 0] = True
    stuck = curves.copy()
    stuck[1, 0] += 0.08
    add = plan_repairs(stuck, np.zeros(2), np.ones(2), tau, repaired, AREA_REGIONS)
    np.testing.assert_array_equal(np.flatnonzero(add.any(axis=1)), [2])


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
    assert untouched.method == "none" and not untouched.corrected
    np.testing.assert_array_equal(untouched.masks, preclean(clean))
    assert repaired.check_before["sequence_inconsistent"] and repaired.method == "repair"
    assert not repaired.check_after["sequence_inconsistent"]
    np.testing.assert_array_equal(np.flatnonzero(repaired.replaced), [8])
    np.testing.assert_array_equal(np.delete(repaired.masks, 8, 0), np.delete(spiked, 8, 0))
    before, after = (dice_scores(m, clean).mean() for m in (spiked, repaired.masks))
    assert after > before
    assert dice_scores(repaired.masks[8:9], clean[8:9])[0, 0] > 0.97
    # the code of the repaired frame is re-estimated from the trusted codes (smooth fill), which
    # follows the curved cycle better than the straight line between its two neighbours
    np.testing.assert_allclose(repaired.z, interpolate_codes(repaired.mu, ~repaired.replaced))
    linear = (repaired.mu[7, 0] + repaired.mu[9, 0]) / 2
    assert abs(repaired.z[8, 0] - scales[8]) < 0.2 * abs(linear - scales[8])


def test_an_anatomically_invalid_frame_is_repaired_too(case):
    thresholds, scales = case
    clean = sequence(scales)
    broken = clean.copy()
    rows, cols = np.nonzero(clean[5] == LA)
    broken[5][(clean[5] == LA) & (np.arange(48)[:, None] < rows.min() + 3)] = 0   # LA detached from the LV base
    result = correct_sequences(KnownModel(), [broken], constraint=None, spacings=[(1.0, 1.0)],
                               image=thresholds)[0]
    assert result.replaced[5] and result.repaired_regions[5, REGIONS.index("heart")]
    assert dice_scores(result.masks[5:6], clean[5:6])[0, 2] > dice_scores(broken[5:6], clean[5:6])[0, 2]


def test_an_anatomical_error_takes_the_smallest_valid_edit(case):
    """A cut through the wall: the epicardium is rebuilt, the LV keeps the input."""
    thresholds, scales = case
    clean = sequence(scales)
    broken = clean.copy()
    rows, cols = np.mgrid[0:48, 0:48]
    broken[5][(clean[5] == MYO) & (rows >= 20) & (rows <= 21) & (cols < 24)] = 0
    base = preclean(broken)
    assert (base[5] != broken[5]).sum() > 6          # the largest-blob rule dropped the wall piece below the cut
    result = correct_sequences(KnownModel(), [broken], constraint=None, spacings=[(1.0, 1.0)], image=thresholds)[0]
    np.testing.assert_array_equal(np.flatnonzero(result.replaced), [5])
    assert not result.repaired_regions[5, REGIONS.index("lv")] and result.repaired_regions[5, REGIONS.index("epi")]
    np.testing.assert_array_equal(result.masks[5] == LV, broken[5] == LV)
    assert dice_scores(result.masks[5:6], clean[5:6])[0, 1] > dice_scores(base[5:6], clean[5:6])[0, 1] + 0.03


def test_a_rebuilt_lv_leaves_the_atrium_its_neighbours_agree_on():
    scales = clean_scales(9)
    base = sequence(scales)
    regions = np.zeros((9, 3), bool)
    regions[4, REGIONS.index("lv")] = True
    decoded_z = {4: render(scales[4] * 1.3)}                 # a decoder LV that reaches into the atrium
    out = repair_frames(base, base, decoded_z, regions)
    agreed = (base[3] == LA) & (base[4] == LA) & (base[5] == LA)
    assert agreed.sum() > 50 and np.all(out[4][agreed] == LA)
    assert (out[4] == LV).sum() > (base[4] == LV).sum()        # the LV did grow, elsewhere
    regions[4] = True                                          # the heart outline repaired too: no such rule
    assert np.any(repair_frames(base, base, decoded_z, regions)[4][agreed] != LA)


def test_fallback_to_smoothing_when_the_repair_leaves_a_sequence_inconsistent(case):
    thresholds, scales = case
    clean = sequence(scales)
    spiked = sequence(np.where(np.arange(20) == 12, scales * 1.12, scales))
    rows = np.nonzero(clean[5] == LA)[0]
    spiked[5][(clean[5] == LA) & (np.arange(48)[:, None] < rows.min() + 3)] = 0   # LA detached at frame 5
    common = dict(constraint=None, spacings=[(1.0, 1.0)], image=thresholds)
    # One round only makes the frames valid (anatomical errors come first): the spike is left.
    left = correct_sequences(KnownModel(), [spiked], config=CorrectionConfig(repair_rounds=1, fallback="none"),
                             **common)[0]
    assert left.method == "repair" and left.check_after["sequence_inconsistent"]
    redone = correct_sequences(KnownModel(), [spiked], config=CorrectionConfig(repair_rounds=1), **common)[0]
    assert redone.method == "smooth" and not redone.check_after["sequence_inconsistent"]
    fixed = correct_sequences(KnownModel(), [spiked], **common)[0]
    assert fixed.method == "repair" and not fixed.check_after["sequence_inconsistent"]
    np.testing.assert_array_equal(np.flatnonzero(fixed.replaced), [5, 12])


def test_repair_configuration_is_checked():
    with pytest.raises(ValueError, match="method"):
        CorrectionConfig(method="magic")
    with pytest.raises(ValueError, match="fallback"):
        CorrectionConfig(fallback="pray")
    with pytest.raises(ValueError, match="decoder_weights"):
        CorrectionConfig(decoder_weights=(1.5,))
    with pytest.raises(ValueError, match="interpolation"):
        CorrectionConfig(interpolation="cubic")
    torch.manual_seed(0)  # nothing random in the repair; keeps the module import-order independent


def test_a_model_without_the_atrium_and_atrium_drop_leaves_no_atrium(case):
    """Defect: with a 3-class model and ``atrium="drop"`` the rebuilt frames got LA back (the input's
    heart outline minus a smaller rebuilt epicardium was composed as atrium), and the validity check of
    the smallest edit then met a label it does not measure."""
    thresholds, scales = case
    clean = sequence(scales)
    spiked = sequence(np.where(np.arange(20) == 8, scales * 1.12, scales))
    rows, cols = np.mgrid[0:48, 0:48]
    spiked[5][(clean[5] == MYO) & (rows >= 20) & (rows <= 21) & (cols < 24)] = 0     # a cut through the wall
    result = correct_sequences(KnownModel(n_classes=3), [spiked], constraint=None, spacings=[(1.0, 1.0)],
                               image=thresholds, config=CorrectionConfig(atrium="drop"))[0]
    assert result.method == "repair" and result.replaced[5] and result.replaced[8]
    assert not np.any(result.masks == LA)
    dropped = np.where(preclean(spiked) == LA, 0, preclean(spiked))
    np.testing.assert_array_equal(result.masks[~result.replaced], dropped[~result.replaced])
