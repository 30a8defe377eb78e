"""Phase-resolved curves against known truth: the warp, planted windows, null calibration, bands, bad input.

The truth is independent of the implementation: hand-computed warp values, OLS fits by
statsmodels, brute-force refits of permuted data, the t distribution's coverage over repeated
draws, and cohorts whose curves are a known function of the cardiac phase with confounded
covariates (cases older and larger, as in the simulator).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from echolatent.stats.curves import (CURVE_COLUMNS, EXCLUSION_COLUMNS, INTERVAL_COLUMNS, TEST_COLUMNS,
                                     curve_statistics, mean_band, normalised_curves, permutation_max_t,
                                     significant_intervals)
from echolatent.stats.design import covariate_matrix

# ---------------------------------------------------------------------------------------------
# the warp, by hand
# ---------------------------------------------------------------------------------------------

#: A closed full cycle of 9 frames (period 8) starting mid-cycle: ED at frame 3, ES at frame 1
#: (before ED in index order, 6 steps after it). Frame 0 is frame 8 a beat earlier: its value
#: (999) must never appear.
FULL = [999.0, 1.0, 2.0, 10.0, 20.0, 30.0, 70.0, 50.0, 60.0]
#: A half cycle of 6 frames, ED at frame 1, ES at frame 5 (frame 0 precedes ED: not used).
HALF = [100.0, 10.0, 14.0, 20.0, 40.0, 41.0]


def one_sequence(values, cycle, ed, es, patient="A", view="4CH"):
    frames = pd.DataFrame({"patient_id": patient, "view": view, "frame": range(len(values)), "x": values})
    sequences = pd.DataFrame({"patient_id": [patient], "view": [view], "cycle": [cycle], "n_frames": [len(values)],
                              "ed": [ed], "es": [es]})
    return frames, sequences


def test_full_cycle_warp_hand_computed():
    # grid k/8 with ES anchored at 0.5: phase g <= 0.5 lies 6 g / 0.5 steps after ED (frame 3),
    # g > 0.5 lies 6 + 2 (g - 0.5) / 0.5 steps after it; the walk is 3, 4, 5, 6, 7, 8, 1, 2, 3
    frames, sequences = one_sequence(FULL, "full", ed=3, es=1)
    curve = normalised_curves(frames, sequences, ["x"], n_points=9, es_phase=0.5)
    expected = [10, 25, 70, 55, 1, 1.5, 2, 6, 10]  # e.g. g=1/8: 1.5 steps -> (20 + 30) / 2
    np.testing.assert_allclose(curve["x"], expected)
    assert curve["phase"].tolist() == pytest.approx(np.linspace(0, 1, 9))
    assert set(curve["cycle"]) == {"full"} and set(curve["es_phase"]) == {0.5}
    assert curve["phase_index"].tolist() == list(range(9))


def test_full_cycle_missing_frames_are_bracketed_periodically():
    values = list(FULL)
    values[5] = np.nan            # inside systole: bridged between frames 4 and 6
    values[3] = np.nan            # ED itself: bridged across the wrap (frame 2 before, frame 4 after)
    frames, sequences = one_sequence(values, "full", ed=3, es=1)
    curve = normalised_curves(frames, sequences, ["x"], n_points=9, es_phase=0.5)["x"].to_numpy()
    assert curve[0] == pytest.approx((2 + 20) / 2)   # ED: halfway between 1 step before and after
    assert curve[8] == pytest.approx((2 + 20) / 2)   # the next ED, the same
    assert curve[1] == pytest.approx(20 + 0.25 * (70 - 20))  # 1.5 steps between steps 1 (20) and 3 (70)
    assert curve[2] == pytest.approx(70)
    # a frame absent from the table counts as missing, the same way
    frames = frames[frames["frame"] != 5]
    again = normalised_curves(frames, sequences, ["x"], n_points=9, es_phase=0.5)["x"].to_numpy()
    np.testing.assert_allclose(again, curve)


def test_full_cycle_starting_at_ed_uses_its_last_frame_as_next_ed():
    # ED = frame 0: phase 1 is frame T-1 (the next ED, observed), not frame 0 again
    values = [5.0, 6.0, 7.0, 8.0, 9.0]
    frames, sequences = one_sequence(values, "full", ed=0, es=2)
    curve = normalised_curves(frames, sequences, ["x"], n_points=5, es_phase=0.5)["x"].to_numpy()
    np.testing.assert_allclose(curve, [5, 6, 7, 8, 9])
    values[0] = np.nan  # frame 0 missing: frame T-1 (same phase) stands in
    frames, sequences = one_sequence(values, "full", ed=0, es=2)
    curve = normalised_curves(frames, sequences, ["x"], n_points=5, es_phase=0.5)["x"].to_numpy()
    np.testing.assert_allclose(curve, [9, 6, 7, 8, 9])


def test_half_cycle_warp_and_unbracketed_ends():
    frames, sequences = one_sequence(HALF, "half", ed=1, es=5)
    curve = normalised_curves(frames, sequences, ["x"], n_points=9)
    # phase g is 4 g frames after ED (frame 1): g=1/8 -> frame 1.5 -> (10 + 14) / 2
    np.testing.assert_allclose(curve["x"], [10, 12, 14, 17, 20, 30, 40, 40.5, 41])
    assert set(curve["es_phase"]) == {1.0} and set(curve["cycle"]) == {"half"}
    values = list(HALF)
    values[1] = np.nan  # the ED frame: frame 0 lies before ED, so nothing brackets phases before frame 2
    frames, sequences = one_sequence(values, "half", ed=1, es=5)
    x = normalised_curves(frames, sequences, ["x"], n_points=9)["x"].to_numpy()
    assert np.isnan(x[:2]).all()
    np.testing.assert_allclose(x[2:], [14, 17, 20, 30, 40, 40.5, 41])


def test_median_es_anchor_is_rounded_to_the_grid_and_cycles_stay_apart():
    f1, s1 = one_sequence(FULL, "full", ed=3, es=1, patient="A")           # 6/8 = 0.75
    f2, s2 = one_sequence([1.0] * 11, "full", ed=0, es=3, patient="B")     # 3/10 = 0.30
    f3, s3 = one_sequence([1.0] * 11, "full", ed=2, es=6, patient="C")     # 4/10 = 0.40
    f4, s4 = one_sequence(HALF, "half", ed=1, es=5, patient="D")           # half: ignored by the anchor
    curve = normalised_curves(pd.concat([f1, f2, f3, f4]), pd.concat([s1, s2, s3, s4]), ["x"], n_points=64)
    anchors = curve.groupby("cycle")["es_phase"].unique()
    assert anchors["full"].tolist() == pytest.approx([25 / 63])  # median 0.40 -> nearest grid point 25/63
    assert anchors["half"].tolist() == [1.0]
    # each sequence's ES frame value lands on the ES grid point
    b = curve[(curve["patient_id"] == "A") & (curve["phase_index"] == 25)]
    assert b["x"].item() == pytest.approx(FULL[1])
    assert curve.groupby("patient_id")["cycle"].nunique().eq(1).all()


def test_warp_recovers_a_known_function_of_phase():
    """Sequences sampled from f(true phase), at any start phase and systolic fraction: the curve is f."""
    rng = np.random.default_rng(3)
    es_anchor = 22 / 63
    frames, sequences = simulate_frames(pd.DataFrame({"patient_id": [f"P{i}" for i in range(50)],
                                                      "case": False, "age": 55.0, "bsa": 1.85}),
                                        rng, es_anchor, noise=0.0, n_frames=40, effect=0.0, views=("4CH",),
                                        spread=0.0, on_frames=True)
    curve = normalised_curves(frames, sequences, ["y"], n_points=64, es_phase=es_anchor)
    truth = true_curve(curve["phase"].to_numpy(), es_anchor)
    # exact anchors: only the linear interpolation between frames errs, by at most h^2/8 max|f''|,
    # h the frame step in normalised phase (largest in the shortest systole), f'' = 10 (pi/es)^2
    fraction = ((sequences["es"] - sequences["ed"]) % 39 / 39).min()
    bound = (es_anchor / fraction / 39) ** 2 / 8 * 10 * (np.pi / es_anchor) ** 2
    error = np.abs(curve["y"].to_numpy() - truth)
    print(f"warp of a known curve: max error {error.max():.3f} (bound {bound:.3f}), mean {error.mean():.4f}")
    assert error.max() <= bound * (1 + 1e-9)
    assert error.mean() < bound / 4


def test_warp_is_vectorised_at_cohort_scale():
    rng = np.random.default_rng(0)
    n, T, C = 20_000, 20, 10
    sequences = pd.DataFrame({"patient_id": np.repeat(np.arange(n // 2), 2), "view": np.tile(["2CH", "4CH"], n // 2),
                              "cycle": "full", "n_frames": T, "ed": rng.integers(0, T - 1, n)})
    sequences["es"] = (sequences["ed"] + rng.integers(5, 9, n)) % (T - 1)
    frames = pd.DataFrame({"patient_id": np.repeat(sequences["patient_id"].to_numpy(), T),
                           "view": np.repeat(sequences["view"].to_numpy(), T), "frame": np.tile(np.arange(T), n)})
    columns = [f"c{k}" for k in range(C)]
    frames[columns] = rng.normal(size=(len(frames), C))
    start = time.perf_counter()
    curve = normalised_curves(frames, sequences, columns)
    elapsed = time.perf_counter() - start
    print(f"warp: {n} sequences x {T} frames x {C} columns -> 64 points in {elapsed:.2f} s")
    assert curve.shape == (n * 64, 6 + C) and np.isfinite(curve[columns].to_numpy()).all()
    assert elapsed < 20.0


# ---------------------------------------------------------------------------------------------
# synthetic cohorts: curves a known function of phase, confounded covariates
# ---------------------------------------------------------------------------------------------

WINDOW = (0.7, 0.9)     # late diastole (atrial filling): where the effect is planted
PLANTED = 6.0           # case minus control in the window, outcome units
AGE_SLOPE = 0.25        # outcome units per year, in systole only: cases are older (confounding)
BSA_SLOPE = 15.0        # outcome units per m^2, everywhere


def true_curve(phase, es_anchor):
    """A volume-like curve: ejection to ES (raised cosine), filling in diastole."""
    phase = np.asarray(phase, dtype=np.float64)
    systole = 40 - 20 * (1 - np.cos(np.pi * np.clip(phase / es_anchor, 0, 1))) / 2
    diastole = 20 + 20 * (1 - np.cos(np.pi * np.clip((phase - es_anchor) / (1 - es_anchor), 0, 1))) / 2
    return np.where(phase <= es_anchor, systole, diastole)


def window(phase):
    """1 on the planted window, cosine ramps of 0.05 either side, 0 elsewhere."""
    phase = np.asarray(phase, dtype=np.float64)
    lo, hi = WINDOW
    ramp_in = np.clip((phase - (lo - 0.05)) / 0.05, 0, 1)
    ramp_out = np.clip(((hi + 0.05) - phase) / 0.05, 0, 1)
    return (1 - np.cos(np.pi * np.minimum(ramp_in, ramp_out))) / 2


def systole_bump(phase, es_anchor):
    phase = np.asarray(phase, dtype=np.float64)
    return np.where(phase <= es_anchor, np.sin(np.pi * phase / es_anchor), 0.0)


def covariates(n, rng):
    """Cases ~8 years older and 0.15 m^2 larger (confounded), sex balanced: arrays."""
    case = np.arange(n) % 2 == 1
    male = rng.random(n) < 0.5
    return {"case": case, "age": rng.normal(55, 8, n) + 8 * case, "male": male,
            "bsa": rng.normal(1.85, 0.15, n) + 0.15 * case + 0.1 * male}


def cohort(n, rng):
    """The patients table of :func:`covariates`."""
    c = covariates(n, rng)
    return pd.DataFrame({"patient_id": [f"P{i:04d}" for i in range(n)],
                         "group": np.where(c["case"], "hypertensive", "control"), "case": c["case"],
                         "age": c["age"], "sex": np.where(c["male"], "M", "F"), "bsa": c["bsa"]})


def patient_curves(patients, phase, es_anchor, rng, effect, noise=1.0, spread=1.0):
    """(n, len(phase)) curves: truth + confounders + planted window effect + smooth patient deviations."""
    n = len(patients["age"])
    phase = np.asarray(phase)[None, :] if np.ndim(phase) == 1 else np.asarray(phase)
    age = np.asarray(patients["age"], dtype=np.float64)[:, None] - 55
    bsa = np.asarray(patients["bsa"], dtype=np.float64)[:, None] - 1.85
    case = np.asarray(patients["case"])[:, None]
    smooth = spread * (rng.normal(0, 2.0, (n, 1)) + rng.normal(0, 1.5, (n, 1)) * np.cos(2 * np.pi * phase)
                       + rng.normal(0, 1.5, (n, 1)) * np.sin(2 * np.pi * phase))
    return (true_curve(phase, es_anchor) + AGE_SLOPE * age * systole_bump(phase, es_anchor) + BSA_SLOPE * bsa
            + effect * case * window(phase) + smooth + rng.normal(0, noise, smooth.shape))


def simulate_frames(patients, rng, es_anchor, *, effect, noise=1.0, n_frames=20, views=("2CH", "4CH"),
                    spread=1.0, on_frames=False):
    """Closed full cycles starting anywhere in the cycle, each patient with its own systolic fraction.

    A frame at time tau (in cycles, 0 = true ED) has normalised phase tau / ts * es_anchor in
    systole and the matching linear map in diastole: the curve in normalised phase is the truth.
    ED and ES are the frames nearest the true ED and ES (quantised, as in measured data), or,
    with ``on_frames``, start phases and systolic fractions are whole frame steps (exact anchors).
    """
    rows, seqs = [], []
    step = 1.0 / (n_frames - 1)
    for view in views:
        n = len(patients)
        ts = rng.uniform(0.28, 0.45, n)[:, None]
        start = rng.uniform(0, 1, n)[:, None]
        if on_frames:
            ts, start = np.round(ts / step) * step, np.round(start / step) * step
        tau = (start + step * np.arange(n_frames)[None, :]) % 1.0
        phase = np.where(tau <= ts, tau / ts * es_anchor, es_anchor + (tau - ts) / (1 - ts) * (1 - es_anchor))
        y = patient_curves(patients, phase, es_anchor, rng, effect, noise, spread)
        # the distinct phases of the closed cycle are frames 0 .. T-2
        ed = np.argmin(np.minimum(tau[:, :-1], 1 - tau[:, :-1]), axis=1)
        es = np.argmin(np.abs(tau[:, :-1] - ts), axis=1)
        seqs.append(pd.DataFrame({"patient_id": patients["patient_id"], "view": view, "cycle": "full",
                                  "n_frames": n_frames, "ed": ed, "es": es}))
        rows.append(pd.DataFrame({"patient_id": np.repeat(patients["patient_id"].to_numpy(), n_frames),
                                  "view": view, "frame": np.tile(np.arange(n_frames), n), "y": y.ravel()}))
    return pd.concat(rows, ignore_index=True), pd.concat(seqs, ignore_index=True)


def test_planted_late_diastolic_effect_is_found_there_and_not_in_systole():
    rng = np.random.default_rng(11)
    patients = cohort(80, rng)
    # d ~ 2 at the window: found at its edges despite ED/ES quantisation (30 of 30 seeds tried)
    frames, sequences = simulate_frames(patients, rng, 22 / 63, effect=PLANTED)
    assert (sequences["es"] < sequences["ed"]).any()  # some cycles start after ES: the wrap is exercised
    curves = normalised_curves(frames, sequences, ["y"], es_phase=0.35)
    es_anchor = curves["es_phase"].iloc[0]
    assert es_anchor == pytest.approx(22 / 63)
    result = curve_statistics(curves, patients.drop(columns="case"), control="control", case="hypertensive",
                              covariates=["age", "sex", "bsa"], family="attributes", seed=7)
    tests = result.tests
    assert list(tests.columns) == TEST_COLUMNS and list(result.curves.columns) == CURVE_COLUMNS
    assert len(tests) == 2 * 64 and result.exclusions.empty
    in_window = tests["phase"].between(*WINDOW)
    systole = tests["phase"] <= es_anchor
    assert tests.loc[in_window, "significant"].all()
    assert not tests.loc[systole, "significant"].any()
    assert (tests.loc[in_window, "difference"] > 0).all()
    # the adjusted difference recovers the planted one at the window's centre
    centre = tests[tests["phase"].sub(0.8).abs() < 0.02]
    assert centre["difference"].mean() == pytest.approx(PLANTED, abs=1.0)
    intervals = result.intervals
    assert list(intervals.columns) == INTERVAL_COLUMNS
    assert len(intervals) == 2 and (intervals["direction"] == 1).all()
    assert (intervals["phase_start"] <= WINDOW[0]).all() and (intervals["phase_end"] >= WINDOW[1]).all()
    assert (intervals["phase_start"] > es_anchor).all()
    # the confounding is real: without the covariates, systole differs between the groups
    naive = curve_statistics(curves, patients.drop(columns="case"), control="control", case="hypertensive",
                             covariates=[], family="attributes", seed=7).tests
    assert naive.loc[systole & naive["phase"].between(0.1, 0.25), "significant"].all()


def test_pointwise_t_is_the_ols_t_and_permutations_are_freedman_lane():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(5)
    patients = cohort(30, rng)
    phase = np.linspace(0, 1, 16)
    y = patient_curves(patients, phase, 0.35, rng, effect=2.0)
    Z = covariate_matrix(patients, ["age", "sex", "bsa"]).to_numpy()
    case = patients["case"].to_numpy()
    result = permutation_max_t(y, case, Z, n_permutations=49, seed=3)
    X = np.column_stack([np.ones(30), case, Z])
    for j in (0, 7, 13):
        fit = sm.OLS(y[:, j], X).fit()
        assert result["difference"][j] == pytest.approx(fit.params[1], rel=1e-9)
        assert result["t"][j] == pytest.approx(fit.tvalues[1], rel=1e-9)
    # brute force: refit y* = covariate fit + residuals permuted between patients
    reduced = np.column_stack([np.ones(30), Z])
    beta = np.linalg.lstsq(reduced, y, rcond=None)[0]
    fitted, residual = reduced @ beta, y - reduced @ beta
    order = np.random.default_rng(3).permuted(np.tile(np.arange(30), (49, 1)), axis=1)
    for p in (0, 21, 48):
        y_star = fitted + residual[np.argsort(order[p])]
        t = [sm.OLS(y_star[:, j], X).fit().tvalues[1] for j in range(16)]
        assert result["maxima"][p, 0] == pytest.approx(np.abs(t).max(), rel=1e-8)
    # threshold and p_fwe agree: significant <=> p_fwe <= alpha
    np.testing.assert_array_equal(result["significant"], result["p_fwe"] <= 0.05)
    maxima = np.sort(result["maxima"][:, 0])[::-1]
    assert result["threshold"] == maxima[int(0.05 * 50) - 1]
    assert np.all((result["p_fwe"] >= 1 / 50) & (result["p_fwe"] <= 1))


def test_permutations_are_vectorised_at_cohort_scale():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(300, 50, 64)).cumsum(axis=2)  # 300 patients, 50 outcomes, 64 phase points
    case = np.arange(300) % 2 == 1
    Z = rng.normal(size=(300, 3))
    start = time.perf_counter()
    result = permutation_max_t(y, case, Z, n_permutations=999, seed=0)
    elapsed = time.perf_counter() - start
    print(f"permutation max-|t|: 999 x 64 points x 300 patients x 50 outcomes in {elapsed:.2f} s")
    assert result["t"].shape == (50, 64) and result["maxima"].shape == (999, 50)
    assert elapsed < 20.0


def test_null_cohorts_family_wise_rejection_rate():
    """No effect, confounded covariates: the adjusted max-|t| test rejects anywhere on the curve ~5 %.

    1,000 cohorts (SE of the rate 0.007) of 40 patients, 199 permutations each (exact level
    10/200 = 0.05 under exchangeability); the unadjusted test on the first 200 shows the bias the
    confounders would cause. The covariates enter raw (the test is invariant to their scaling).
    """
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(2024)
    phase = np.linspace(0, 1, 64)
    adjusted, naive = [], []
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):  # small products: threads only cost
        _null_cohorts(rng, phase, adjusted, naive)
    rate, naive_rate = np.mean(adjusted), np.mean(naive)
    print(f"null family-wise rejection: adjusted {rate:.3f} (1000 cohorts), unadjusted {naive_rate:.3f} (200)")
    assert 0.02 <= rate <= 0.08
    assert naive_rate > 0.3


def _null_cohorts(rng, phase, adjusted, naive):
    for c in range(1000):
        patients = covariates(40, rng)
        y = patient_curves(patients, phase, 0.35, rng, effect=0.0)
        Z = np.column_stack([patients["age"], patients["male"], patients["bsa"]])
        result = permutation_max_t(y, patients["case"], Z, n_permutations=199, seed=c)
        adjusted.append(result["significant"].any())
        if c < 200:
            naive.append(permutation_max_t(y, patients["case"], None, n_permutations=199,
                                           seed=c)["significant"].any())


# ---------------------------------------------------------------------------------------------
# bands
# ---------------------------------------------------------------------------------------------

def test_band_covers_the_true_mean_curve_95_percent():
    rng = np.random.default_rng(9)
    phase = np.linspace(0, 1, 64)
    n, draws = 12, 4000
    truth = true_curve(phase, 0.35)
    a = rng.normal(0, 2, (draws, n, 1))
    b = rng.normal(0, 1.5, (draws, n, 1))
    y = truth + a + b * np.cos(2 * np.pi * phase) + rng.normal(0, 1, (draws, n, 64))
    mean, low, high = mean_band(np.moveaxis(y, 1, 0))
    covered = (low <= truth) & (truth <= high)
    print(f"band coverage over {draws} draws of {n} patients: {covered.mean():.4f} "
          f"(pointwise {covered.mean(axis=0).min():.3f}-{covered.mean(axis=0).max():.3f})")
    assert covered.mean() == pytest.approx(0.95, abs=0.01)
    assert covered.mean(axis=0).min() > 0.93 and covered.mean(axis=0).max() < 0.97


def test_curve_table_band_is_the_t_interval_of_the_group_mean():
    rng = np.random.default_rng(4)
    patients = cohort(20, rng)
    frames, sequences = simulate_frames(patients, rng, 0.35, effect=0.0, views=("4CH",))
    curves = normalised_curves(frames, sequences, ["y"], n_points=16)
    result = curve_statistics(curves, patients, control="control", case="hypertensive", covariates=["age"],
                              family="latent", model="arvae", n_permutations=99, seed=0)
    row = result.curves[(result.curves["group"] == "hypertensive") & (result.curves["phase_index"] == 5)].iloc[0]
    values = curves.merge(patients[patients["case"]], on="patient_id").query("phase_index == 5")["y"]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert (row["n"], row["family"], row["model"]) == (10, "latent", "arvae")
    assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx((values.mean(), low, high))


# ---------------------------------------------------------------------------------------------
# reporting and bad input
# ---------------------------------------------------------------------------------------------

def small_study(rng, n=24):
    patients = cohort(n, rng)
    frames, sequences = simulate_frames(patients, rng, 0.35, effect=0.0, views=("4CH",))
    frames["z"] = frames["y"] * 0.5
    return patients.drop(columns="case"), frames, sequences


def test_patients_without_curves_are_listed_never_dropped():
    rng = np.random.default_rng(6)
    patients, frames, sequences = small_study(rng)
    frames.loc[frames["patient_id"] == "P0003", "y"] = np.nan          # NaN-only curve of y (z is fine)
    frames.loc[(frames["patient_id"] == "P0004") & (frames["frame"] == 0), "z"] = np.nan  # bracketed: kept
    sequences = sequences[sequences["patient_id"] != "P0005"]            # no sequence at all
    frames = frames[frames["patient_id"] != "P0005"]
    patients.loc[patients["patient_id"] == "P0006", "age"] = np.nan     # missing covariate
    extra = patients.iloc[[0]].assign(patient_id="P9999", group="other")  # not a compared group
    curves = normalised_curves(frames, sequences, ["y", "z"], n_points=16)
    result = curve_statistics(curves, pd.concat([patients, extra]), control="control", case="hypertensive",
                              family="attributes", n_permutations=99, seed=0)
    ex = result.exclusions
    assert list(ex.columns) == EXCLUSION_COLUMNS
    listed = {(r.patient_id, r.variable) for r in ex.itertuples()}
    assert listed == {("P0003", "attributes.y.4CH.full_curve"), ("P0005", "attributes.*.4CH.full_curve"),
                      ("P0006", "age"), ("P9999", "")}
    assert "NaN-only" in ex.set_index("patient_id").loc["P0003", "reason"]
    n = result.tests.groupby("outcome")[["n_control", "n_case"]].first().sum(axis=1)
    assert n.to_dict() == {"y": 21, "z": 22}  # 24 - P0005 - P0006, and P0003 for y only
    assert set(result.curves.groupby(["outcome", "group"])["n"].first()) <= {10, 11, 12}


def test_an_incomplete_curve_is_listed_with_its_missing_points():
    rng = np.random.default_rng(8)
    patients, frames, sequences = small_study(rng)
    curves = normalised_curves(frames, sequences, ["y"], n_points=16)
    curves.loc[(curves["patient_id"] == "P0002") & (curves["phase_index"] < 3), "y"] = np.nan
    result = curve_statistics(curves, patients, control="control", case="hypertensive", family="attributes",
                              n_permutations=99, seed=0)
    reason = result.exclusions.set_index("patient_id").loc["P0002", "reason"]
    assert "3 of 16 phase points" in reason


@pytest.mark.parametrize("change, field", [
    (lambda s: s.assign(ed=np.where(s.index == 1, np.nan, s["ed"])), "'ed'"),
    (lambda s: s.drop(columns="es"), "'es'"),
    (lambda s: s.assign(cycle=np.where(s.index == 2, "quarter", s["cycle"])), "'cycle'"),
    (lambda s: s.assign(es=s["ed"]), "'ed' and 'es'"),
    (lambda s: s.assign(cycle="half", es=0, ed=3), "'es' <= 'ed'"),
    (lambda s: s.assign(ed=s["n_frames"]), "'ed' outside"),
    (lambda s: pd.concat([s, s.iloc[[0]]]), "several rows per (patient_id, view)"),
])
def test_bad_sequences_name_the_field(change, field):
    rng = np.random.default_rng(0)
    _, frames, sequences = small_study(rng, n=6)
    with pytest.raises(ValueError, match=pytest_escape(field)):
        normalised_curves(frames, change(sequences.reset_index(drop=True)), ["y"])


def pytest_escape(text):
    import re
    return re.escape(text)


def test_bad_frames_and_options_are_clear_errors():
    rng = np.random.default_rng(0)
    _, frames, sequences = small_study(rng, n=6)
    with pytest.raises(ValueError, match="without a row in sequences"):
        normalised_curves(frames, sequences.iloc[1:], ["y"])
    with pytest.raises(ValueError, match="'frame'"):
        normalised_curves(frames.assign(frame=frames["frame"] + 5), sequences, ["y"])
    with pytest.raises(ValueError, match="frames table lacks"):
        normalised_curves(frames, sequences, ["lv_area_mm2"])
    with pytest.raises(ValueError, match="es_phase"):
        normalised_curves(frames, sequences, ["y"], es_phase=1.2)
    with pytest.raises(ValueError, match="n_permutations"):
        permutation_max_t(rng.normal(size=(10, 5)), np.arange(10) % 2 == 0, n_permutations=9)


def test_group_with_no_patient_and_unknown_cycle_are_clear_errors():
    rng = np.random.default_rng(0)
    patients, frames, sequences = small_study(rng, n=8)
    curves = normalised_curves(frames, sequences, ["y"], n_points=8)
    controls = patients[patients["group"] == "control"]
    with pytest.raises(ValueError, match="'group' column.*hypertensive"):
        curve_statistics(curves, controls, control="control", case="hypertensive", family="attributes", seed=0)
    with pytest.raises(ValueError, match="'cycle'"):
        curve_statistics(curves.assign(cycle="systole"), patients, control="control", case="hypertensive",
                         family="attributes", seed=0)
    with pytest.raises(ValueError, match="no curve of any"):
        curve_statistics(curves.assign(patient_id="X" + curves["patient_id"]), patients, control="control",
                         case="hypertensive", family="attributes", seed=0)
    with pytest.raises(ValueError, match="pass family="):
        curve_statistics(curves, patients, control="control", case="hypertensive", seed=0)
    with pytest.raises(ValueError, match="covariate 'bsa'"):
        curve_statistics(curves, patients.assign(bsa=1.9), control="control", case="hypertensive",
                         family="attributes", seed=0)


def test_stacked_models_share_the_tables():
    rng = np.random.default_rng(12)
    patients, frames, sequences = small_study(rng, n=16)
    curves = normalised_curves(frames, sequences, ["y"], n_points=8)
    stacked = pd.concat([curves.assign(family="latent", model=m) for m in ("arvae", "vae")], ignore_index=True)
    result = curve_statistics(stacked, patients, control="control", case="hypertensive", n_permutations=99, seed=1)
    assert result.tests.groupby("model").size().to_dict() == {"arvae": 8, "vae": 8}
    # the same curves and seed: the same statistics, whatever the model label
    a, b = (result.tests[result.tests["model"] == m].reset_index(drop=True) for m in ("arvae", "vae"))
    pd.testing.assert_frame_equal(a.drop(columns="model"), b.drop(columns="model"))


def test_significant_intervals_merge_through_ed_on_full_cycles():
    phase = np.linspace(0, 1, 8)
    sig = np.array([1, 1, 0, 0, 1, 0, 1, 1], bool)
    tests = pd.DataFrame({"family": "attributes", "model": "", "outcome": "y", "view": "4CH", "cycle": "full",
                          "phase_index": np.arange(8), "phase": phase, "difference": np.r_[1, 1, 0, 0, -1, 0, 1, 1],
                          "t": np.r_[5, 6, 0, 0, -5, 0, 4, 5], "p_fwe": np.where(sig, 0.01, 0.5), "significant": sig})
    full = significant_intervals(tests)
    assert full[["index_start", "index_end", "n_points", "direction"]].values.tolist() == [[6, 1, 4, 1], [4, 4, 1, -1]]
    half = significant_intervals(tests.assign(cycle="half"))
    assert half[["index_start", "index_end"]].values.tolist() == [[0, 1], [4, 4], [6, 7]]


def test_half_and_full_cycles_are_analysed_apart():
    rng = np.random.default_rng(13)
    patients, frames, sequences = small_study(rng, n=20)
    # a 2CH half cycle per patient: 10 frames ED (frame 1) -> ES (frame 9), case curves 3 units higher
    case = patients["group"].eq("hypertensive").to_numpy()
    half_values = (30 - 10 * np.linspace(0, 1, 9))[None, :] + 3.0 * case[:, None] + rng.normal(0, 1, (20, 9))
    half_frames = pd.DataFrame({"patient_id": np.repeat(patients["patient_id"].to_numpy(), 10), "view": "2CH",
                                "frame": np.tile(np.arange(10), 20),
                                "y": np.column_stack([np.full(20, 99.0), half_values]).ravel()})
    half_sequences = pd.DataFrame({"patient_id": patients["patient_id"], "view": "2CH", "cycle": "half",
                                   "n_frames": 10, "ed": 1, "es": 9})
    curves = normalised_curves(pd.concat([frames, half_frames]), pd.concat([sequences, half_sequences]), ["y"],
                               n_points=9)
    result = curve_statistics(curves, patients, control="control", case="hypertensive", covariates=["age"],
                              family="attributes", n_permutations=199, seed=2)
    assert result.tests.groupby(["view", "cycle"]).size().to_dict() == {("2CH", "half"): 9, ("4CH", "full"): 9}
    half = result.tests[result.tests["cycle"] == "half"]
    assert half["significant"].all() and half["difference"].between(1.5, 4.5).all()
    es = result.curves.groupby("cycle")["es_phase"].first()
    assert es["half"] == 1.0 and 0 < es["full"] < 1
    # half-cycle ED value is frame 1's (frame 0, before ED, never enters)
    control_ed = result.curves.query("cycle == 'half' and phase_index == 0 and group == 'control'")["mean"].item()
    assert control_ed == pytest.approx(half_values[~case, 0].mean())


def test_a_group_too_small_for_a_curve_gets_nan_statistics_and_a_warning(caplog):
    rng = np.random.default_rng(14)
    patients, frames, sequences = small_study(rng, n=10)
    cases = patients.loc[patients["group"] == "hypertensive", "patient_id"]
    frames.loc[frames["patient_id"].isin(cases.iloc[1:]), "y"] = np.nan  # one case left with a curve
    curves = normalised_curves(frames, sequences, ["y"], n_points=8)
    with caplog.at_level("WARNING"):
        result = curve_statistics(curves, patients, control="control", case="hypertensive", covariates=["age"],
                                  family="attributes", n_permutations=99, seed=0)
    assert result.tests["t"].isna().all() and not result.tests["significant"].any()
    assert (result.tests["n_case"] == 1).all() and "no test" in caplog.text
    assert len(result.exclusions) == 4 and result.intervals.empty
