"""Issue 12, item 4: the first and last frames and two-frame spikes.

The metric measures the end frames (periodic neighbours on a closed full cycle, mirror on a
half cycle), the repair re-estimates them, the simulator places spikes there and on two
consecutive frames, and the evaluation reports the rates by position. Expected values come
from hand computations on hand-written curves and from the documented drawing rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echolatent.models.quality import dice_scores
from echolatent.shape.attributes import TEMPORAL_ATTRIBUTES, shape_attributes
from echolatent.simulate import DEFECT_TYPES, ConfigError, SimulationConfig, simulate_patient
from echolatent.simulate.observation import draw_defects, spike_targets
from echolatent.temporal.evaluation import FRAME_CLASSES, detection_rates, frame_classes
from echolatent.temporal.correction.interpolation import interpolate_codes, trusted_neighbours
from echolatent.temporal.correction.planning import plan_repairs
from echolatent.temporal.correction.regions import ATTRIBUTE_REGIONS, REGIONS, attribute_regions_of
from echolatent.temporal.correction.sequences import correct_sequences
from echolatent.temporal.metric import (consistency_deviation, derive_thresholds, deviation_stencil, neighbour_frames,
                                        temporal_consistency)
from conftest import KnownModel, sequence

ZERO, ONE = np.zeros(2), np.ones(2)
NAMES = ("lv_area", "myo_area")
AREA_REGIONS = np.array([[r in ATTRIBUTE_REGIONS[n] for r in REGIONS] for n in NAMES])


def closed_cycle(T=20, phase=0.0):
    """Two attribute curves over a closed cycle: frame k at phase k / (T - 1), frame T - 1 = frame 0."""
    u = 2 * np.pi * (np.arange(T) / (T - 1) + phase)
    return np.stack([0.5 + 0.3 * np.cos(u), 0.4 + 0.05 * np.sin(u)], axis=1)


def half_cycle(T=20):
    """ED -> ES: zero slope at both ends, as the ejection profile (1 - cos(pi tau / Ts)) / 2."""
    u = np.linspace(0, np.pi, T)
    return np.stack([0.5 + 0.3 * np.cos(u), 0.4 + 0.05 * np.cos(u) ** 2], axis=1)


def flagged(curves, tau, cycle):
    return np.flatnonzero(temporal_consistency(curves, ZERO, ONE, tau, cycle=cycle)["frame_inconsistent"]).tolist()


def planned(curves, tau, cycle):
    add = plan_repairs(curves, ZERO, ONE, tau, np.zeros((len(curves), 3), bool), AREA_REGIONS, cycle=cycle)
    return np.flatnonzero(add.any(axis=1)).tolist()


# --------------------------------------------------------------------------- the metric, by hand
def test_end_deviations_by_hand():
    curve = np.array([[0.0], [1.0], [4.0], [9.0], [10.0]])     # normalised by (0, 10): 0, .1, .4, .9, 1
    d = {c: consistency_deviation(curve, [0.0], [10.0], cycle=c)[:, 0] for c in (None, "half", "full")}
    interior = [0.1 - 0.2, 0.4 - 0.5, 0.9 - 0.7]
    np.testing.assert_allclose(d[None], [0, *interior, 0])               # the reference: d = 0 at the ends
    np.testing.assert_allclose(d["half"], [0 - 0.1, *interior, 1 - 0.9])  # mirror: a_-1 = a_1, a_T = a_T-2
    # closed cycle of T - 1 = 4 phases: frame 0's neighbours are frames 3 and 1, frame 4's too
    np.testing.assert_allclose(d["full"], [0 - (0.9 + 0.1) / 2, *interior, 1 - (0.9 + 0.1) / 2])
    with pytest.raises(ValueError, match="cycle"):
        consistency_deviation(curve, [0.0], [10.0], cycle="closed")


def test_sampled_cosine_over_a_full_cycle_is_consistent_at_its_ends():
    """On a closed cosine the periodic end deviation is the interior one: a_t (1 - cos step) / 2."""
    T = 20
    step = 2 * np.pi / (T - 1)
    a = np.cos(step * np.arange(T))[:, None]                           # frame T - 1 = frame 0 one beat later
    d = consistency_deviation(a, [-1.0], [1.0], cycle="full")[:, 0]
    np.testing.assert_allclose(d, a[:, 0] * (1 - np.cos(step)) / 2, atol=1e-12)
    assert max(abs(d[0]), abs(d[-1])) <= (1 - np.cos(step)) / 2 + 1e-12  # the cosine's curvature, no more
    tau = derive_thresholds([a], [-1.0], [1.0], cycle="full")
    assert not temporal_consistency(a, [-1.0], [1.0], tau, cycle="full")["sequence_inconsistent"]
    # Read as an open sequence (the reference), nothing is measured at the ends.
    assert consistency_deviation(a, [-1.0], [1.0])[[0, -1], 0].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("cycle, make", [("full", closed_cycle), ("half", half_cycle)])
def test_end_frame_spikes_are_flagged_and_deviate_by_the_spike(cycle, make):
    clean = make()
    T = len(clean)
    tau = derive_thresholds([clean], ZERO, ONE, cycle=cycle) + 0.01
    assert flagged(clean, tau, cycle) == []
    d0 = consistency_deviation(clean, ZERO, ONE, cycle=cycle)
    for end in (0, T - 1):
        spiked = clean.copy()
        spiked[end, 1] += 0.04
        d = consistency_deviation(spiked, ZERO, ONE, cycle=cycle)
        inner = 1 if end == 0 else T - 2
        np.testing.assert_allclose(d[end, 1] - d0[end, 1], 0.04)       # a full-size response, as inside
        # the inner neighbour: half the spike (mirror: the end frame counts twice in its stencil)
        np.testing.assert_allclose(d[inner, 1] - d0[inner, 1], -0.02)
        assert end in flagged(spiked, tau, cycle)
        assert flagged(spiked, tau, None) != [end] and end not in flagged(spiked, tau, None)   # the reference is blind


def test_a_two_frame_spike_gives_half_a_spike_on_four_frames():
    flat = np.full((12, 2), 0.5)
    spiked = flat.copy()
    spiked[[5, 6], 0] += 0.06
    d = consistency_deviation(spiked, ZERO, ONE, cycle="full")[:, 0]
    np.testing.assert_allclose(d[3:9], [0, -0.03, 0.03, 0.03, -0.03, 0], atol=1e-12)
    tau = np.full(2, 0.02)
    assert flagged(spiked, tau, "full") == [4, 5, 6, 7]
    assert planned(spiked, tau, "full") == [5, 6]                      # the pair, not its flanks


def test_stencil_neighbours_and_missing_values():
    index, weight = deviation_stencil(8, "full")
    assert index[0].tolist() == [0, 6, 1] and index[7].tolist() == [7, 6, 1]
    np.testing.assert_allclose(weight.sum(axis=1), 0)
    near = neighbour_frames(8, "full")
    assert (near == near.T).all() and near[0].nonzero()[0].tolist() == [1, 6]
    assert neighbour_frames(8, None)[0].nonzero()[0].tolist() == [1]
    assert neighbour_frames(8, "half")[7].nonzero()[0].tolist() == [6]
    curve = closed_cycle(8)
    curve[6, 0] = np.nan                                               # frame T - 2 not measurable
    d = consistency_deviation(curve, ZERO, ONE, cycle="full")[:, 0]
    assert np.isnan(d[[0, 5, 6, 7]]).all() and np.isfinite(d[[1, 2, 3, 4]]).all()
    assert np.isfinite(consistency_deviation(curve, ZERO, ONE)[[0, 7], 0]).all()   # reference: 0 whatever


def test_thresholds_with_an_end_rule_keep_their_references_consistent():
    rng = np.random.default_rng(3)
    refs = [closed_cycle(20, p) + rng.normal(0, 0.003, (20, 2)) for p in np.linspace(0, 1, 6)]
    for cycle in (None, "half", "full"):
        tau = derive_thresholds(refs, ZERO, ONE, cycle=cycle)
        assert not any(temporal_consistency(r, ZERO, ONE, tau, cycle=cycle)["sequence_inconsistent"] for r in refs)


# --------------------------------------------------------------------------- planning the repair
@pytest.mark.parametrize("cycle, make", [("full", lambda: closed_cycle(20, 0.05)), ("half", half_cycle)])
def test_plan_repairs_takes_end_spikes_and_end_pairs(cycle, make):
    clean = make()
    T = len(clean)
    tau = derive_thresholds([clean], ZERO, ONE, cycle=cycle) + 0.01
    for frames in ([0], [T - 1], [0, 1], [T - 2, T - 1], [6, 7]):
        spiked = clean.copy()
        spiked[frames, 0] += 0.05
        assert planned(spiked, tau, cycle) == frames, frames
    assert planned(clean, tau, cycle) == []


def test_the_reference_ends_are_never_repaired():
    clean = closed_cycle(20, 0.05)
    tau = derive_thresholds([clean], ZERO, ONE) + 0.01
    spiked = clean.copy()
    spiked[0, 0] += 0.05
    assert 0 not in planned(spiked, tau, None)


def test_trusted_neighbours_of_the_end_frames():
    trusted = np.ones(10, bool)
    trusted[[0, 1]] = False
    first, second, a = trusted_neighbours(trusted, "full")          # closed cycle of 9 phases
    assert (first[0], second[0], a[0]) == (8, 2, 2 / 3)              # frame 8, 1 step back; frame 2, 2 ahead
    assert (first[1], second[1], a[1]) == (9, 2, 0.5)                # frame 9 is phase 0 too, one step back
    first, second, a = trusted_neighbours(trusted, "half")          # mirror: the nearest trusted frame
    assert (first[0], second[0], a[0]) == (2, 2, 1.0)
    first, second, a = trusted_neighbours(trusted)                  # reference: linear extrapolation
    assert (first[0], second[0], a[0]) == (3, 2, -2.0)             # 3 z_2 - 2 z_3
    trusted = np.ones(10, bool)
    trusted[9] = False
    first, second, a = trusted_neighbours(trusted, "full")
    assert (first[9], second[9], a[9]) == (8, 1, 0.5)


def test_smooth_fill_of_an_end_frame_follows_the_closed_cycle():
    z = closed_cycle(20, 0.1)
    for end in (0, 19):
        trusted = np.ones(20, bool)
        trusted[end] = False
        periodic = interpolate_codes(z, trusted, cycle="full")[end]
        extrapolated = interpolate_codes(z, trusted)[end]
        shifted = closed_cycle(20, 0.1 - 5 / 19)                     # the same phase, on interior frame 5
        inside = np.ones(20, bool)
        inside[5] = False
        interior_error = np.abs(interpolate_codes(shifted, inside)[5] - shifted[5]).max()
        error = np.abs(periodic - z[end]).max()
        # exactly as good as the fill of an interior frame at the same phase (the end frame enters
        # three deviations, frames 0 and T - 1 being two observations of one phase)
        assert error < 0.1 * np.abs(extrapolated - z[end]).max() and error <= interior_error + 1e-9
    half = half_cycle()
    trusted = np.ones(20, bool)
    trusted[0] = False
    filled = interpolate_codes(half, trusted, cycle="half", regularisation=0.0)[0]
    np.testing.assert_allclose(filled, 1.2 * half[1] - 0.2 * half[2], atol=1e-9)


# --------------------------------------------------------------------------- repairing an end frame with a known model
def closed_scales(T=20, phase=0.45):
    return 1.0 - 0.2 * np.sin(np.pi * np.arange(T) / (T - 1) + phase) ** 2


def image_check(references, cycle):
    names = list(TEMPORAL_ATTRIBUTES)
    curves = [shape_attributes(r, (1.0, 1.0))[names].to_numpy(float) for r in references]
    values = np.concatenate(curves)
    lo, hi = values.min(axis=0), values.max(axis=0)
    return names, lo, hi, derive_thresholds(curves, lo, hi, cycle=cycle)


@pytest.mark.parametrize("cycle, end", [("full", 0), ("half", -1)])
def test_repair_re_estimates_a_spiked_end_frame(cycle, end):
    if cycle == "full":
        references = [sequence(closed_scales(20, p)) for p in (0.0, 0.3, 0.6, 0.9)]
        scales = closed_scales(20, 0.45)
    else:  # ED (largest) -> ES (smallest), zero slope at both ends
        references = [sequence(1.0 - a * np.sin(np.linspace(0, np.pi / 2, 12)) ** 2) for a in (0.16, 0.2, 0.24)]
        scales = 1.0 - 0.18 * np.sin(np.linspace(0, np.pi / 2, 12)) ** 2
    image = image_check(references, cycle)
    clean = sequence(scales)
    spiked_scales = scales.copy()
    spiked_scales[end] *= 1.1
    spiked = sequence(spiked_scales)
    T = len(scales)
    reference_ends = correct_sequences(KnownModel(), [spiked], constraint=None, spacings=[(1.0, 1.0)],
                                       image=image_check(references, None))[0]
    assert not reference_ends.check_before["frame_inconsistent"][end]   # d = 0 there: never seen
    result = correct_sequences(KnownModel(), [spiked], constraint=None, spacings=[(1.0, 1.0)], image=image,
                               cycle=cycle)[0]
    assert result.check_before["frame_inconsistent"][end] and result.method == "repair"
    assert not result.check_after["sequence_inconsistent"]
    np.testing.assert_array_equal(np.flatnonzero(result.replaced), [end % T])
    before, after = (dice_scores(m[end:][:1], clean[end:][:1])[0, 0] for m in (spiked, result.masks))
    assert after > before + 0.02 and after > 0.97
    np.testing.assert_array_equal(np.delete(result.masks, end % T, 0), np.delete(spiked, end % T, 0))


def test_repair_knows_the_regions_of_physical_attribute_columns():
    assert attribute_regions_of("lv_area_mm2") == ATTRIBUTE_REGIONS["lv_area"]
    assert attribute_regions_of("lv_orientation_deg") == ATTRIBUTE_REGIONS["lv_orientation"]
    with pytest.raises(KeyError):
        attribute_regions_of("la_area_mm2")


# --------------------------------------------------------------------------- the simulator
RATES = {**{name: 0.025 for name in DEFECT_TYPES}, "spike": 0.1}


def covered_chain(T, r, p):
    """P(frame t is covered by a two-frame spike started at t - 1), by the documented rule."""
    c = np.zeros(T)
    for t in range(1, T):
        c[t] = (1 - c[t - 1]) * r * p
    return c


def expected_end_and_pairs(T, r, p):
    """Expected spiked first frame, spiked last frame and adjacent spiked pairs (t, t + 1) per sequence."""
    c = covered_chain(T, r, p)
    last = c[T - 1] + (1 - c[T - 1]) * r
    pairs = 0.0
    for t in range(T - 1):
        started = (1 - c[t]) * r * p                                  # t starts a pair (covers t + 1)
        spiked_otherwise = c[t] + (1 - c[t]) * r * (1 - p)            # t spiked, t + 1 drawn on its own
        pairs += started + spiked_otherwise * r
        if t == T - 2:                                                # a pair started at the last frame covers T - 2
            pairs += (1 - c[t]) * (1 - r) * r * p
    return r, last, pairs


def spiked_runs(types):
    spike = np.array([k == "spike" for k in types])
    return spike, int((spike[:-1] & spike[1:]).sum())


def test_spike_draws_follow_the_configured_rates():
    T, r, p, n = 20, RATES["spike"], 0.3, 6000
    rng = np.random.default_rng(11)
    first = last = pairs = 0
    others = np.zeros(len(DEFECT_TYPES) - 1)
    for _ in range(n):
        spike, adjacent = spiked_runs(types := draw_defects(rng, T, RATES, placement="uniform", pair_rate=p))
        first += spike[0]
        last += spike[-1]
        pairs += adjacent
        others += [types.count(name) for name in DEFECT_TYPES[:-1]]
    e_first, e_last, e_pairs = expected_end_and_pairs(T, r, p)
    for observed, probability in ((first, e_first), (last, e_last)):
        assert abs(observed - n * probability) < 4 * np.sqrt(n * probability * (1 - probability))
    assert abs(pairs - n * e_pairs) < 4 * np.sqrt(n * e_pairs)
    # the other defects keep their rate on the frames no spike covers
    covered = covered_chain(T, r, p).sum()
    expected_other = n * (T - covered) * 0.025
    assert np.all(np.abs(others - expected_other) < 4 * np.sqrt(expected_other))


def test_interior_placement_is_the_former_rule_bit_for_bit():
    def former(rng, n_frames, rates):
        u = rng.random(n_frames)
        edges = np.cumsum([rates[name] for name in DEFECT_TYPES])
        types = []
        for t in range(n_frames):
            k = int(np.searchsorted(edges, u[t], side="right"))
            kind = DEFECT_TYPES[k] if k < len(DEFECT_TYPES) else ""
            if kind == "spike" and (t == 0 or t == n_frames - 1 or (types and types[-1] == "spike")):
                kind = ""
            types.append(kind)
        return types

    rates = {**RATES, "spike": 0.3}
    for seed in range(300):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        assert draw_defects(a, 20, rates, placement="interior", pair_rate=0.0) == former(b, 20, rates)
        assert a.random() == b.random()                               # the same randomness consumed
        spike, _ = spiked_runs(draw_defects(np.random.default_rng(seed), 20, rates, placement="interior",
                                            pair_rate=0.5))
        assert not spike[0] and not spike[-1]
    with pytest.raises(ValueError, match="placement"):
        draw_defects(np.random.default_rng(0), 20, rates, placement="edges")


def test_spike_targets_share_the_sign_of_a_run_and_keep_the_former_draws():
    types = ["", "spike", "", "spike", "spike", "", "spike"]
    targets = spike_targets(np.random.default_rng(4), types, (0.05, 0.10))
    assert np.count_nonzero(targets) == 4 and np.sign(targets[3]) == np.sign(targets[4])
    assert np.all((np.abs(targets[targets != 0]) >= 0.055) & (np.abs(targets[targets != 0]) <= 0.095))
    rng, former = np.random.default_rng(9), []                          # isolated spikes: the former draws
    for _ in (1, 3):
        sign = 1.0 if rng.random() < 0.5 else -1.0
        former.append(sign * rng.uniform(0.055, 0.095))
    np.testing.assert_array_equal(spike_targets(np.random.default_rng(9), ["", "spike", "", "spike"],
                                                (0.05, 0.10))[[1, 3]], former)


def test_spike_options_are_checked():
    default = SimulationConfig()
    assert default.observation.spike_placement == "uniform" and default.observation.spike_pair_rate == 0.2
    assert default.defect_rates["spike_placement"] == "uniform"
    for bad, field in (({"spike_placement": "edges"}, "observation.spike_placement"),
                       ({"spike_pair_rate": 1.5}, "observation.spike_pair_rate"),
                       ({"spike_pair_rate": "often"}, "observation.spike_pair_rate")):
        with pytest.raises(ConfigError, match=field):
            SimulationConfig.from_dict({"observation": bad})


@pytest.fixture(scope="module")
def cohort_frames():
    """40 small patients x 2 views x 20 frames, spike rate 0.1, 30 % pairs: the truth tables."""
    config = SimulationConfig.from_dict({
        "n_patients": 40, "seed": 21, "frames": 20,
        "image": {"rows": 80, "cols": 72, "spacing": [2.4, 2.6], "images": False},
        "observation": {"defect_rates": RATES, "spike_pair_rate": 0.3}})
    return [pd.DataFrame(v.frames) for i in range(config.n_patients)
            for v in simulate_patient(config, i).views.values()]


def test_seeded_cohort_spikes_end_frames_and_pairs_at_the_configured_rates(cohort_frames):
    n = len(cohort_frames)
    e_first, e_last, e_pairs = expected_end_and_pairs(20, RATES["spike"], 0.3)
    spikes = [f["defect"].str.startswith("spike").to_numpy() for f in cohort_frames]
    ends = sum(int(s[0]) + int(s[-1]) for s in spikes)
    pairs = sum(int((s[:-1] & s[1:]).sum()) for s in spikes)
    expected_ends = n * (e_first + e_last)
    assert abs(ends - expected_ends) < 4 * np.sqrt(expected_ends) and ends > 0
    assert abs(pairs - n * e_pairs) < 4 * np.sqrt(n * e_pairs) and pairs > 0
    # the truth table records every spiked frame, end frames and both frames of a pair included
    for frames, spike in zip(cohort_frames, spikes):
        np.testing.assert_array_equal(frames["defect_spike"].to_numpy() == 1, spike)
        assert np.all(np.abs(frames.loc[spike, "spike_area_change"]) >= 0.02)   # as rasterised, 2.5 mm pixels
        assert np.all(frames.loc[~spike, "spike_area_change"] == 0)


# --------------------------------------------------------------------------- evaluation by position
def test_frame_classes_and_detection_rates_by_position():
    T = 12
    spike = np.zeros(T, bool)
    spike[[0, 5, 6, 10]] = True
    defects = pd.DataFrame({"patient_id": "P1", "view": "4CH", "frame": np.arange(T),
                            "defect": np.where(spike, "spike_up", "none"), "spike": spike, "defective": spike})
    classes = frame_classes(defects, cycle="full").set_index("frame")
    assert classes.index[classes["spike_end"]].tolist() == [0]
    assert classes.index[classes["spike_pair"]].tolist() == [5, 6]
    assert classes.index[classes["spike_single"]].tolist() == [0, 10]
    assert classes.index[classes["spike_interior"]].tolist() == [5, 6, 10]
    # frame 0's deviation involves frames 10 (= T - 2) and 1; frame 11's involves 10 and 1
    assert classes.index[classes["spike_neighbour"]].tolist() == [1, 4, 7, 9, 11]
    assert classes.index[classes["clean_window"]].tolist() == [2, 3, 8]
    assert not classes["clean_end"].any()
    reference = frame_classes(defects).set_index("frame")
    assert reference.index[reference["spike_neighbour"]].tolist() == [1, 4, 7, 9, 11]
    curve = 100.0 + 20.0 * np.where(spike, 1.0, 0.0)                 # one attribute, flat with the spikes
    attributes = pd.DataFrame({"patient_id": "P1", "view": "4CH", "frame": np.arange(T), "lv_area": curve})
    thresholds = pd.DataFrame({"name": ["lv_area"], "lo": [0.0], "hi": [200.0], "tau": [0.02]})
    rates = {c: detection_rates(attributes, defects, thresholds, cycle=c)[0].set_index("frames")["flagged"]
             for c in (None, "full")}
    assert list(rates["full"].index) == list(FRAME_CLASSES)
    assert rates[None]["spike_end"] == 0.0 and rates["full"]["spike_end"] == 1.0
    assert rates["full"]["spike_pair"] == 1.0 and rates["full"]["clean_window"] == 0.0   # pair: 0.05 > 0.02


# --------------------------------------------------------------------------- the ends' own thresholds
def test_end_thresholds_calibrate_the_ends_on_the_references():
    """References with more noise at the ends (the wrap of a full cycle): one threshold for all
    frames is set by the ends; interior and end thresholds keep every reference consistent and
    flag an interior spike the shared one misses."""
    rng = np.random.default_rng(5)
    refs = []
    for phase in np.linspace(0, 1, 8, endpoint=False):
        c = closed_cycle(20, phase) + rng.normal(0, 0.001, (20, 2))
        c[[0, -1]] += rng.normal(0, 0.012, (2, 2))                    # noisier end frames
        refs.append(c)
    shared = derive_thresholds(refs, ZERO, ONE, cycle="full")
    inner = derive_thresholds(refs, ZERO, ONE, cycle="full", frames="interior")
    ends = derive_thresholds(refs, ZERO, ONE, cycle="full", frames="ends")
    np.testing.assert_allclose(shared, np.maximum(inner, ends))
    assert np.all(ends > inner)
    for r in refs:
        assert not temporal_consistency(r, ZERO, ONE, inner, cycle="full", end_thresholds=ends)["sequence_inconsistent"]
    spiked = refs[0].copy()                                            # d_9 between the two thresholds
    spiked[9, 1] = (spiked[8, 1] + spiked[10, 1]) / 2 + (inner[1] + shared[1]) / 2
    own = temporal_consistency(spiked, ZERO, ONE, inner, cycle="full", end_thresholds=ends)
    assert own["frame_inconsistent"][9] and not temporal_consistency(spiked, ZERO, ONE, shared,
                                                                      cycle="full")["frame_inconsistent"][9]
    np.testing.assert_allclose(own["error_to_threshold"][[0, -1]],
                               np.abs(consistency_deviation(spiked, ZERO, ONE, cycle="full")[[0, -1]]) / ends)
    # the reference's ends: d = 0 there, a zero end threshold gives a zero ratio (not NaN)
    check = temporal_consistency(refs[0], ZERO, ONE, inner, end_thresholds=np.zeros(2))
    assert np.all(check["error_to_threshold"][[0, -1]] == 0) and not check["frame_inconsistent"][[0, -1]].any()
    with pytest.raises(ValueError, match="frames"):
        derive_thresholds(refs, ZERO, ONE, frames="middle")
