"""Issue 12: single- and two-frame spikes, on end frames and next to them, found by the spike search.

Curves are written by hand (a quadratic, on which both stencils are exact; a closed sinusoid
for full cycles, a half cosine with zero slope at both ends for half cycles) with spikes of a
chosen height on chosen frames. Expected values are hand computations: the stencils' readings
(``h`` on the defect's own window, ``-2/3 h``, ``1/6 h``, ``-3/4 h`` ... around it), the
sinusoid's residual bound (``0.3 * |1 - 4/3 cos w + 1/3 cos 2w|`` for the single stencil), and
the frames that carry the spike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echolatent.models.quality import dice_scores
from echolatent.shape.attributes import TEMPORAL_ATTRIBUTES, shape_attributes
from echolatent.temporal.config import CorrectionConfig
from echolatent.temporal.correction.planning import plan_flagged_repairs
from echolatent.temporal.correction.regions import ATTRIBUTE_REGIONS, REGIONS
from echolatent.temporal.correction.sequences import correct_sequences
from echolatent.temporal.detection import (Detector, detect_spikes, resolve_detector, stencil_statistics,
                                           stencil_thresholds, stencil_windows)
from echolatent.temporal.evaluation import detection_rates
from echolatent.temporal.metric import temporal_consistency
from echolatent.temporal.thresholds import derive_thresholds_table, published_thresholds
from conftest import KnownModel, sequence

T = 20
H = 0.1                                       # spike height (normalised units)
TAU = {"tau_single": 0.02, "tau_pair": 0.02}  # hand-set thresholds of both stencils
ZERO, ONE = np.zeros(1), np.ones(1)


def quadratic(n=T):
    t = np.arange(n, dtype=float)
    return (0.2 + 0.01 * t - 0.002 * t ** 2)[:, None]


def closed(n=T, amplitude=0.3):
    """A closed cycle: frame k at phase k / (n - 1), so frame n - 1 is frame 0 one beat later."""
    return (0.5 + amplitude * np.cos(2 * np.pi * np.arange(n) / (n - 1)))[:, None]


def half(n=12):
    """ED -> ES: zero slope at both ends (the mirror rule's assumption)."""
    return (0.5 + 0.3 * np.cos(np.pi * np.arange(n) / (n - 1)))[:, None]


def spiked(curve, frames, h=H):
    out = curve.copy()
    out[list(frames)] += h
    return out


def flagged(curve, cycle, thresholds=TAU):
    return np.flatnonzero(detect_spikes(curve, ZERO, ONE, thresholds, cycle=cycle)["frame_inconsistent"]).tolist()


# --------------------------------------------------------------------------- the stencils, by hand
def test_stencils_answer_a_spike_with_its_height_on_a_quadratic():
    single = {w: v for w, v in zip(stencil_windows(T, "single").own[:, 0],
                                   stencil_statistics(spiked(quadratic(), [9]), "single")[0][:, 0])}
    expected = {9: H, 8: -2 / 3 * H, 10: -2 / 3 * H, 7: H / 6, 11: H / 6}
    for w, value in single.items():
        assert value == pytest.approx(expected.get(w, 0.0), abs=1e-12), w
    pair_windows = [tuple(o) for o in stencil_windows(T, "pair").own]
    pairs = dict(zip(pair_windows, stencil_statistics(spiked(quadratic(), [9]), "pair")[0][:, 0]))
    expected = {(8, 9): H / 2, (9, 10): H / 2, (7, 8): -0.75 * H, (10, 11): -0.75 * H, (6, 7): H / 4, (11, 12): H / 4}
    for w, value in pairs.items():
        assert value == pytest.approx(expected.get(w, 0.0), abs=1e-12), w
    # a two-frame spike: the pair stencil answers h, the single one h/3 on it and -h/2 on its flanks,
    # the TMI 2022 deviation h/2 on it (half a single spike's response)
    two = spiked(quadratic(), [9, 10])
    assert dict(zip(pair_windows, stencil_statistics(two, "pair")[0][:, 0]))[9, 10] == pytest.approx(H, abs=1e-12)
    readings = dict(zip(stencil_windows(T, "single").own[:, 0], stencil_statistics(two, "single")[0][:, 0]))
    assert readings[9] == pytest.approx(H / 3, abs=1e-12) and readings[8] == pytest.approx(-H / 2, abs=1e-12)
    deviation = temporal_consistency(two, ZERO, ONE, [1.0])["deviation"][:, 0]
    assert deviation[9] == pytest.approx(H / 2 + 0.002, abs=1e-12)          # h/2 + the quadratic's -a''/2


def test_window_neighbours_at_the_ends():
    # full cycle: periodic with period T - 1; frame T - 1 (frame 0 a beat later) is no neighbour of frame 0
    windows = stencil_windows(T, "single", "full")
    assert windows.index[0].tolist() == [0, T - 2, T - 3, 1, 2]
    assert windows.index[T - 1].tolist() == [T - 1, T - 2, T - 3, 1, 2]
    np.testing.assert_allclose(windows.weight[0], [1, -2 / 3, 1 / 6, -2 / 3, 1 / 6])
    assert windows.end.tolist() == [True, True] + [False] * (T - 4) + [True, True]
    pairs = stencil_windows(T, "pair", "full")
    assert pairs.index[T - 2].tolist() == [T - 2, T - 1, T - 3, T - 4, 1, 2]
    np.testing.assert_allclose(pairs.weight[T - 2], [0.5, 0.5, -0.75, 0.25, -0.75, 0.25])
    # half cycle: mirror at ED and ES, never onto the window's own frames; unit response to the
    # window's own defect, and exact on a curve with zero slope at the end (c + b t^2)
    n = 12
    even = (3.0 + 0.5 * np.arange(n) ** 2)[:, None]
    for stencil, width in (("single", 1), ("pair", 2)):
        w = stencil_windows(n, stencil, "half")
        assert w.index[0, :width].tolist() == list(range(width)) and not set(w.index[0, width:]) & set(range(width))
        np.testing.assert_allclose(w.weight[:, :width].sum(axis=1), 1.0)
        np.testing.assert_allclose(-w.weight[:, width:].sum(axis=1), 1.0)     # a constant reads 0
        front = w.own[:, -1] < n // 2                                           # windows mirrored at frame 0
        np.testing.assert_allclose(stencil_statistics(even, stencil, "half")[0][front, 0], 0.0, atol=1e-9)
    # cycle=None (the reference's ends): the first and last frames are never a window's own
    assert 0 not in stencil_windows(T, "single").own and T - 1 not in stencil_windows(T, "pair").own


# --------------------------------------------------------------------------- the search flags the spiked frames
@pytest.mark.parametrize("frames", [[9], [0], [T - 1], [1], [T - 2], [9, 10], [0, 1], [T - 2, T - 1], [1, 2],
                                    [T - 3, T - 2], [4, 13], [3, 4, 12]],
                         ids=lambda f: "-".join(map(str, f)))
def test_full_cycle_spikes_are_flagged_on_their_frames_only(frames):
    curve = spiked(closed(), frames)
    out = detect_spikes(curve, ZERO, ONE, TAU, cycle="full")
    assert np.flatnonzero(out["frame_inconsistent"]).tolist() == frames
    # the removed defect is the spike: h, up to the sinusoid's residual (< 0.002 on either stencil)
    np.testing.assert_allclose(out["estimate"][frames, 0], H, atol=0.002)
    assert np.all(out["estimate"][np.setdiff1d(np.arange(T), frames)] == 0)


@pytest.mark.parametrize("frames", [[5], [0], [11], [1], [0, 1], [10, 11], [5, 6], [1, 2]],
                         ids=lambda f: "-".join(map(str, f)))
def test_half_cycle_spikes_are_flagged_on_their_frames_only(frames):
    curve = spiked(half(), frames)
    assert flagged(curve, "half") == frames


def test_clean_curves_flag_nothing():
    # w = 2 pi / 19: the single stencil leaves 0.3 |1 - 4/3 cos w + 1/3 cos 2w| = 0.00059 of the
    # sinusoid, the pair stencil 0.3 |cos(w/2) - 3/2 cos(3w/2) + 1/2 cos(5w/2)| = 0.0017
    for stencil, bound in (("single", 0.0006), ("pair", 0.0018)):
        assert np.abs(stencil_statistics(closed(), stencil, "full")[0]).max() < bound
    # (the half cosine's mirrored windows at ED and ES read at most 0.0024)
    for cycle, curve in (("full", closed()), ("half", half()), (None, quadratic())):
        out = detect_spikes(curve, ZERO, ONE, {"tau_single": 0.003, "tau_pair": 0.003}, cycle=cycle)
        assert not out["sequence_inconsistent"] and not out["estimate"].any()


def test_a_pair_the_deviation_misses_at_half_height():
    # a pair of height h: |d| <= h/2 + 0.3 (1 - cos w) = 0.066 on every frame (its frames, its flanks),
    # so a deviation threshold of 0.07 sees nothing; the pair stencil reads h = 0.1 > 0.07
    curve = spiked(closed(), [4, 5])
    assert not temporal_consistency(curve, ZERO, ONE, [0.07], cycle="full")["sequence_inconsistent"]
    assert flagged(curve, "full", {"tau_single": 0.07, "tau_pair": 0.07}) == [4, 5]


def test_missing_values_are_flagged_and_the_neighbours_still_checked():
    curve = spiked(closed(), [12])
    curve[5] = np.nan
    out = detect_spikes(curve, ZERO, ONE, TAU, cycle="full")
    assert np.flatnonzero(out["frame_inconsistent"]).tolist() == [5, 12]
    assert not detect_spikes(curve, ZERO, ONE, TAU, cycle="full", nan_inconsistent=False)["frame_inconsistent"][5]


def test_sequences_are_searched_together_as_one_by_one():
    curves = np.stack([spiked(closed(), f) for f in ([3], [7, 8], [0], [])])
    together = detect_spikes(curves, ZERO, ONE, TAU, cycle="full")
    for n in range(len(curves)):
        alone = detect_spikes(curves[n], ZERO, ONE, TAU, cycle="full")
        for key in ("inconsistent", "estimate", "error_to_threshold"):
            np.testing.assert_array_equal(together[key][n], alone[key])


# --------------------------------------------------------------------------- thresholds from references
def test_thresholds_by_hand():
    bump = quadratic()
    bump[9] += 0.01
    # max rule: the largest reading of the reference windows; a bump e reads e on its single window
    # and -3/4 e on the pair windows beside it
    tau = stencil_thresholds([bump], ZERO, ONE)
    assert tau["tau_single"][0] == pytest.approx(0.01, abs=1e-12)
    assert tau["tau_pair"][0] == pytest.approx(0.0075, abs=1e-12)
    assert tau["tau_single_end"][0] == tau["tau_single"][0]          # one value for all windows
    # robust rule: alternating noise +-e reads (1 + 4/3 + 1/3) e = 8/3 e on every interior single
    # window; a spike of 100 e in one of four references does not move the median, while the max
    # rule takes it (minus the noise's -8/3 e on that odd frame)
    e = 0.001
    noisy = [quadratic() + e * (-1.0) ** np.arange(T)[:, None] for _ in range(4)]
    noisy[2][9] += 100 * e
    robust = stencil_thresholds(noisy, ZERO, ONE, rule="robust", robust_k=4.0)
    assert robust["tau_single"][0] == pytest.approx(4 * 1.4826 * 8 / 3 * e, rel=1e-9)
    assert stencil_thresholds(noisy, ZERO, ONE)["tau_single"][0] == pytest.approx(100 * e - 8 / 3 * e, rel=1e-9)


def test_thresholds_table_carries_the_stencil_columns():
    rows = []
    for n, phase in enumerate((0.0, 0.1, 0.2)):
        t = np.arange(T)
        rows.append(pd.DataFrame({"patient_id": f"P{n}", "view": "4CH", "frame": t,
                                  "a": np.cos(2 * np.pi * (t / (T - 1) + phase)) + 0.01 * (t == 7)}))
    table = derive_thresholds_table(pd.concat(rows), ["a"], cycle="full")
    lo, hi = table[["lo", "hi"]].to_numpy()[0]
    expected = stencil_thresholds([r[["a"]].to_numpy() for r in rows], [lo], [hi], cycle="full")
    for column, value in expected.items():
        assert table.loc[0, column] == pytest.approx(value[0], rel=1e-12)
    with pytest.raises(ValueError, match="detector: deviation"):
        Detector.from_table(published_thresholds(), "spikes")
    assert Detector.from_table(published_thresholds(), "deviation").kind == "deviation"


def test_auto_detector():
    assert resolve_detector("auto", "full") == "spikes"
    assert resolve_detector("auto", "half") == resolve_detector("auto", None) == "deviation"
    assert resolve_detector("deviation", "full") == "deviation"
    with pytest.raises(ValueError, match="detector"):
        resolve_detector("peaks", "full")


# --------------------------------------------------------------------------- rates by position
def test_detection_rates_by_position_with_each_detector():
    curve = spiked(closed(), [0, 9, 10])                      # an end-frame spike and a two-frame pair
    attributes = pd.DataFrame({"patient_id": "P1", "view": "4CH", "frame": np.arange(T), "a": curve[:, 0]})
    spike = np.isin(np.arange(T), [0, 9, 10])
    defects = pd.DataFrame({"patient_id": "P1", "view": "4CH", "frame": np.arange(T),
                            "defect": np.where(spike, "spike_up", "none"), "spike": spike, "defective": spike})
    thresholds = pd.DataFrame({"name": ["a"], "lo": [0.0], "hi": [1.0], "tau": [0.07], "tau_end": [0.07],
                               "tau_single": [0.05], "tau_pair": [0.05]})
    rates = {d: detection_rates(attributes, defects, thresholds, cycle="full", detector=d)[0].set_index("frames")
             for d in ("deviation", "spikes")}
    # the deviation: the end spike reads h = 0.1 > 0.07, the pair h/2 +- 0.016 < 0.07, and the end
    # spike's neighbours (T - 2 and 1) -h/2; the search: the three spiked frames and nothing else
    assert rates["deviation"].loc[["spike_end", "spike_pair", "spike_neighbour"], "flagged"].tolist() == [1.0, 0.0, 0.0]
    assert rates["spikes"].loc[["spike_end", "spike_pair", "spike_single", "spike_neighbour", "clean_window"],
                               "flagged"].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    # clean windows: all but the spiked frames and their deviation's neighbours (18, 1; 8, 11)
    assert rates["spikes"].loc["spike_pair", "n_frames"] == 2 and rates["spikes"].loc["clean_window", "n_frames"] == 13


# --------------------------------------------------------------------------- the repair takes what the search flags
NAMES = ("lv_area", "myo_area")
AREA_REGIONS = np.array([[r in ATTRIBUTE_REGIONS[n] for r in REGIONS] for n in NAMES])


def test_plan_takes_the_flagged_frames_with_their_attributes_regions():
    curves = np.hstack([closed(), closed(amplitude=0.1)])
    curves[[9, 10], 0] += H                                    # a pair on lv_area only
    detector = Detector(["lv_area", "myo_area"], np.zeros(2), np.ones(2), np.ones(2),
                        stencils={"tau_single": np.full(2, 0.02), "tau_pair": np.full(2, 0.02)})
    add = plan_flagged_repairs(curves, detector, np.zeros((T, 3), bool), AREA_REGIONS, cycle="full")
    assert np.flatnonzero(add.any(axis=1)).tolist() == [9, 10]
    assert add[9].tolist() == add[10].tolist() == [True, False, False]        # the LV region only
    # the same pair already repaired but still flagged: its block is widened by one frame each side
    repaired = np.zeros((T, 3), bool)
    repaired[[9, 10], 0] = True
    widened = plan_flagged_repairs(curves, detector, repaired, AREA_REGIONS, cycle="full")
    assert np.flatnonzero(widened.any(axis=1)).tolist() == [8, 11]


def closed_scales(n=T, phase=0.45):
    return 1.0 - 0.2 * np.sin(np.pi * np.arange(n) / (n - 1) + phase) ** 2


@pytest.mark.parametrize("pair", [(9, 10), (0, 1)], ids=["interior", "end"])
def test_repair_rebuilds_both_frames_of_a_detected_pair(pair):
    references = [sequence(closed_scales(T, p)) for p in (0.0, 0.3, 0.6, 0.9)]
    rows = []
    for n, masks in enumerate(references):
        table = shape_attributes(masks, (1.0, 1.0))
        rows.append(table.assign(patient_id=f"P{n}", view="4CH", frame=np.arange(T)))
    thresholds = derive_thresholds_table(pd.concat(rows), list(TEMPORAL_ATTRIBUTES), cycle="full")
    scales = closed_scales()
    bad = scales.copy()
    bad[list(pair)] *= 1.1
    clean, masks = sequence(scales), sequence(bad)
    # margin 0.25: four references give the max rule little room, and this sequence's own pixel
    # staircase reads up to 1.08 x the thresholds on clean frames; the pair reads 3.5 x or more
    result = correct_sequences(KnownModel(), [masks], constraint=None, spacings=[(1.0, 1.0)], image=thresholds,
                               config=CorrectionConfig(detector="spikes", margin=0.25), cycle="full")[0]
    assert np.flatnonzero(result.check_before["frame_inconsistent"]).tolist() == list(pair)
    assert result.method == "repair" and not result.check_after["sequence_inconsistent"]
    assert np.flatnonzero(result.replaced).tolist() == list(pair)
    for t in pair:
        before, after = (dice_scores(m[t:t + 1], clean[t:t + 1])[0, 0] for m in (masks, result.masks))
        assert after > before + 0.02 and after > 0.97
    np.testing.assert_array_equal(np.delete(result.masks, pair, 0), np.delete(masks, pair, 0))


# --------------------------------------------------------------------------- three-frame runs, look-ahead, mixing
TAU3 = {**TAU, "tau_triple": 0.02}


def test_triple_stencil_by_hand():
    # the quadratic through t-2, t-1 and t+3, t+4, averaged over t..t+2: 5/6 on the near frames,
    # -1/3 on the far ones (centred on t+1: c0 + 2/3 c2 with c2 = (m3 - m2) / 5, c0 = (9 m2 - 4 m3) / 5)
    windows = stencil_windows(T, "triple")
    row = list(windows.own[:, 0]).index(5)
    weights = dict(zip(windows.index[row].tolist(), windows.weight[row]))
    expected = {5: 1 / 3, 6: 1 / 3, 7: 1 / 3, 4: -5 / 6, 8: -5 / 6, 3: 1 / 3, 9: 1 / 3}
    assert weights == pytest.approx(expected, abs=1e-12)
    readings = dict(zip(windows.own[:, 0], stencil_statistics(spiked(quadratic(), [9]), "triple")[0][:, 0]))
    hand = {7: H / 3, 8: H / 3, 9: H / 3, 10: -5 / 6 * H, 6: -5 / 6 * H, 11: H / 3, 5: H / 3}
    for start, value in readings.items():
        assert value == pytest.approx(hand.get(start, 0.0), abs=1e-12), start
    # a three-frame spike reads h on its own window
    three = stencil_statistics(spiked(quadratic(), [8, 9, 10]), "triple")[0][:, 0]
    assert dict(zip(windows.own[:, 0], three))[8] == pytest.approx(H, abs=1e-12)


@pytest.mark.parametrize("frames", [[8, 9, 10], [T - 3, T - 2, T - 1], [4, 5, 8], [3, 4, 5, 12], [9, 10, 14, 15]],
                         ids=lambda f: "-".join(map(str, f)))
def test_runs_and_neighbouring_spikes_are_flagged_on_their_frames_only(frames):
    curve = spiked(closed(), frames)
    out = detect_spikes(curve, ZERO, ONE, TAU3, cycle="full")
    assert np.flatnonzero(out["frame_inconsistent"]).tolist() == frames
    # the triple stencil leaves 0.3 |(1 + 2 cos w)/3 - 5/3 cos 2w + 2/3 cos 3w| = 0.0040 of the sinusoid
    np.testing.assert_allclose(out["estimate"][frames, 0], H, atol=0.005)


def test_the_look_ahead_keeps_a_pair_and_a_spike_apart(monkeypatch):
    # a pair on 4, 5 and a spike on 8: the pair's window and the spike's read h, but the window of
    # frames 5-7 reads h/3 (its frame 5) - 5/6 (h + h) (frames 4 and 8) = -4/3 h, the largest, so the
    # plain greedy search starts there and flags frames that carry nothing; weighing each
    # candidate's whole explanation finds the three spiked frames
    curve = spiked(closed(), [4, 5, 8])
    readings = {name: dict(zip([tuple(o) for o in stencil_windows(T, name, "full").own],
                               stencil_statistics(curve, name, "full")[0][:, 0])) for name in ("single", "pair", "triple")}
    assert readings["triple"][5, 6, 7] == pytest.approx(-4 / 3 * H, abs=0.005)
    assert readings["pair"][4, 5] == pytest.approx(H, abs=0.002) and readings["single"][8,] == pytest.approx(H, abs=0.002)
    assert flagged(curve, "full", TAU3) == [4, 5, 8]
    import echolatent.temporal.detection as detection
    monkeypatch.setattr(detection, "LOOKAHEAD", 1)
    assert flagged(curve, "full", TAU3) != [4, 5, 8]


def shared_noise_references(n, rng, noise=0.01, own=0.0005):
    """Two attributes carrying the same noise; the first one also a small noise of its own."""
    out = []
    for _ in range(n):
        shared = noise * rng.standard_normal(T)
        out.append(np.hstack([closed() + (shared + own * rng.standard_normal(T))[:, None],
                              closed(amplitude=0.1) + shared[:, None]]))
    return out


def test_mixing_cancels_the_noise_the_attributes_share():
    rng = np.random.default_rng(3)
    references = shared_noise_references(40, rng)
    lo, hi = np.zeros(2), np.ones(2)
    mixed = stencil_thresholds(references, lo, hi, cycle="full")
    alone = stencil_thresholds([r[:, :1] for r in references], ZERO, ONE, cycle="full")
    assert "mix_single" not in alone                                       # one attribute: nothing to mix
    # unmixed, the first attribute's threshold is the shared noise's (1.39 x 0.01 x some 3 SDs);
    # mixed, its statistic is its reading minus the second one's, and what is left is its own noise
    assert alone["tau_single"][0] > 0.03
    assert mixed["tau_single"][0] < 0.005
    matrix = np.stack([np.array(v.split(), float) for v in mixed["mix_single"]], axis=1)
    assert matrix[0, 0] == matrix[1, 1] == 1.0                             # a defect on one attribute reads h
    assert matrix[1, 0] == pytest.approx(-1.0, abs=0.01)                   # the first one's minus the second's
    # a 0.02 spike on the first attribute: below the shared noise, above the first attribute's own
    curve = shared_noise_references(1, rng)[0]
    curve[9, 0] += 0.02
    out = detect_spikes(curve, lo, hi, mixed, cycle="full")
    assert np.flatnonzero(out["frame_inconsistent"]).tolist() == [9]
    # (the second attribute's statistic, its reading minus the first one's, reads -0.02 there too)
    assert out["inconsistent"][9, 0]
    # the estimate is the removed reading of each attribute: the shared noise is in both, so their
    # difference is the spike (up to the first attribute's own noise and the sinusoids' residuals)
    assert out["estimate"][9, 0] - out["estimate"][9, 1] == pytest.approx(0.02, abs=0.003)


def test_mixing_travels_with_the_thresholds_table(tmp_path):
    from echolatent.temporal.thresholds import read_thresholds, write_thresholds

    rng = np.random.default_rng(5)
    rows = [pd.DataFrame({"patient_id": f"P{n}", "view": "4CH", "frame": np.arange(T), "a": r[:, 0], "b": r[:, 1]})
            for n, r in enumerate(shared_noise_references(30, rng))]
    table = derive_thresholds_table(pd.concat(rows), ["a", "b"], cycle="full")
    write_thresholds(table, tmp_path / "t.tsv")
    back = read_thresholds(tmp_path / "t.tsv")
    curve = shared_noise_references(1, rng)[0]
    curve[[6, 7], 0] += 0.02
    lo, hi = table["lo"].to_numpy(float), table["hi"].to_numpy(float)
    direct = detect_spikes(curve, lo, hi, {c: table[c].to_numpy() for c in table.columns if c.startswith(("tau_", "mix_"))},
                           cycle="full")
    via_table = Detector.from_table(back).check(curve, cycle="full")
    assert np.flatnonzero(via_table["frame_inconsistent"]).tolist() == [6, 7]
    for key in ("inconsistent", "estimate", "error_to_threshold"):
        np.testing.assert_array_equal(via_table[key], direct[key])
    # the mixing is tied to the order of the rows it was derived with
    with pytest.raises(ValueError, match="derive the thresholds again"):
        Detector.from_table(back.iloc[::-1].reset_index(drop=True))
    # half cycles: neither the mixing nor the three-frame stencil
    half_tau = stencil_thresholds([r[["a", "b"]].to_numpy()[:12] for r in rows], lo, hi, cycle="half")
    assert not any(k.startswith("mix_") or "triple" in k for k in half_tau)
