"""Group classification (echolatent.stats.classification), validated against independent truths.

DeLong against the Mann-Whitney U, a hand-computed variance, the quadratic-time definition and
the bootstrap; the cross-validated AUC against the Bayes AUC Phi(Delta / sqrt 2) of two Gaussian
classes and against the AUC implied by the simulator's planted effects.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from echolatent.stats.classification import (
    CALIBRATION_COLUMNS, CLASSIFICATION_COLUMNS, COMPARISON_COLUMNS, EXCLUSION_COLUMNS, ROC_COLUMNS,
    bootstrap_auc, calibration_fit, classify_groups, clinical_baseline_columns, default_feature_sets,
    delong_auc, delong_components, delong_test, latent_columns, reliability_points,
)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------

def gaussian_classes(n: int, dims: int, delta: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian classes (n/2 each) with a shared correlated covariance and Mahalanobis distance ``delta``."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dims, dims))
    cov = a @ a.T + 0.5 * np.eye(dims)  # correlated features of unequal scales
    direction = rng.normal(size=dims)
    shift = direction * delta / math.sqrt(direction @ np.linalg.solve(cov, direction))
    assert math.isclose(math.sqrt(shift @ np.linalg.solve(cov, shift)), delta)
    y = np.arange(n) % 2 == 1
    x = rng.normal(size=(n, dims)) @ np.linalg.cholesky(cov).T + np.outer(y, shift)
    return x, y


def as_table(x: np.ndarray, y: np.ndarray, prefix: str = "f", extra: dict | None = None) -> pd.DataFrame:
    table = pd.DataFrame(x, columns=[f"{prefix}{i}" for i in range(x.shape[1])])
    for name, values in (extra or {}).items():
        table[name] = values
    table.insert(0, "group", np.where(y, "case", "control"))
    table.insert(0, "patient_id", [f"patient{i + 1:04d}" for i in range(len(y))])
    return table


def columns(prefix: str, k: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(k)]


def bayes_auc(delta: float) -> float:
    return float(stats.norm.cdf(delta / math.sqrt(2.0)))


FAST = dict(control="control", case="case", n_bootstrap=300)


# ------------------------------------------------------------------------------------------
# DeLong
# ------------------------------------------------------------------------------------------

def test_delong_auc_is_mann_whitney_u_over_n1_n0():
    rng = np.random.default_rng(0)
    y = rng.random(301) < 0.4
    score = np.round(rng.normal(size=301) + 0.7 * y, 1)  # rounding makes ties
    auc, v10, v01 = delong_components(y.astype(int), score)
    u = stats.mannwhitneyu(score[y], score[~y]).statistic
    assert auc[0] == pytest.approx(u / (y.sum() * (~y).sum()), abs=1e-12)
    assert v10.mean() == pytest.approx(auc[0]) and v01.mean() == pytest.approx(auc[0])


def test_delong_variance_on_a_hand_computed_example():
    # cases 0.9, 0.8, 0.4; controls 0.7, 0.4, 0.2, 0.1 (one case-control tie at 0.4)
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    score = np.array([0.9, 0.8, 0.4, 0.7, 0.4, 0.2, 0.1])
    # V10: fraction of the 4 controls below each case (tie = 1/2): 4/4, 4/4, (2 + 1/2)/4
    v10_hand = np.array([1.0, 1.0, 0.625])
    # V01: fraction of the 3 cases above each control: 2/3, (2 + 1/2)/3, 3/3, 3/3
    v01_hand = np.array([2 / 3, 5 / 6, 1.0, 1.0])
    auc, v10, v01 = delong_components(y, score)
    np.testing.assert_allclose(v10[0], v10_hand)
    np.testing.assert_allclose(v01[0], v01_hand)
    assert auc[0] == pytest.approx(7 / 8)
    # S10 = sum((v10 - 7/8)^2) / 2 = (1/64 + 1/64 + 1/16) / 2 = 3/64; S10 / m = 1/64
    # S01 = sum((v01 - 7/8)^2) / 3 = (25 + 1 + 9 + 9) / 576 / 3 = 11/432; S01 / n = 11/1728
    # var = 1/64 + 11/1728 = 38/1728 = 19/864
    result = delong_auc(y, score)
    assert result["auc"] == pytest.approx(7 / 8)
    assert result["variance"] == pytest.approx(19 / 864, rel=1e-12)
    assert result["se"] == pytest.approx(math.sqrt(19 / 864))


def test_delong_covariance_matches_the_quadratic_definition():
    rng = np.random.default_rng(1)
    y = rng.random(60) < 0.5
    a = np.round(rng.normal(size=60) + y, 1)
    b = np.round(a + rng.normal(size=60), 1)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)

    def psi(s):  # pairwise kernel: 1 if case above control, 1/2 on ties
        d = s[pos][:, None] - s[neg][None, :]
        return (d > 0) + 0.5 * (d == 0)

    comps = [(psi(s).mean(axis=1), psi(s).mean(axis=0)) for s in (a, b)]
    m, n = len(pos), len(neg)
    cov = np.cov(np.vstack([c[0] for c in comps])) / m + np.cov(np.vstack([c[1] for c in comps])) / n
    test = delong_test(y, a, b)
    assert test["auc_a"] == pytest.approx(psi(a).mean()) and test["auc_b"] == pytest.approx(psi(b).mean())
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    assert test["se"] == pytest.approx(math.sqrt(var), rel=1e-10)
    assert test["z"] == pytest.approx((psi(b).mean() - psi(a).mean()) / math.sqrt(var), rel=1e-10)
    assert delong_auc(y, a)["variance"] == pytest.approx(cov[0, 0], rel=1e-10)


def test_delong_paired_identical_scores_give_z_zero():
    rng = np.random.default_rng(2)
    y = rng.random(200) < 0.5
    s = rng.normal(size=200) + y
    test = delong_test(y, s, s.copy())
    assert test["z"] == 0.0 and test["p"] == 1.0 and test["delta_auc"] == 0.0 and test["se"] == 0.0
    # a monotone transform of the same score has the same ranks: same AUC, no difference
    assert delong_test(y, s, np.exp(s))["z"] == 0.0


def test_delong_se_close_to_bootstrap_se_on_a_large_sample():
    rng = np.random.default_rng(3)
    n = 3000
    y = np.arange(n) % 2 == 1
    a = rng.normal(size=n) + 0.8 * y
    b = 0.6 * a + rng.normal(size=n) * 0.8 + 0.3 * y
    boot = bootstrap_auc(y, a, n_bootstrap=2000, seed=4)
    se_delong = delong_auc(y, a)["se"]
    assert boot.std(ddof=1) == pytest.approx(se_delong, rel=0.08)
    assert np.mean(boot) == pytest.approx(delong_auc(y, a)["auc"], abs=0.005)
    # the paired difference: a patient bootstrap written here, independently of the module
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    idx = np.concatenate([rng.choice(pos, (1000, len(pos))), rng.choice(neg, (1000, len(neg)))], axis=1)

    def resampled_u(score):  # Mann-Whitney U of each resample from the rank sum of its cases
        return stats.rankdata(score[idx], axis=1)[:, :len(pos)].sum(axis=1) - len(pos) * (len(pos) + 1) / 2

    se_boot = np.std(resampled_u(b) - resampled_u(a), ddof=1) / (len(pos) * len(neg))
    assert se_boot == pytest.approx(delong_test(y, a, b)["se"], rel=0.1)


def test_bootstrap_auc_is_seeded_and_keeps_both_classes():
    y = np.array([0] * 5 + [1] * 5)
    s = np.arange(10.0)
    np.testing.assert_array_equal(bootstrap_auc(y, s, 50, seed=1), bootstrap_auc(y, s, 50, seed=1))
    assert np.all(bootstrap_auc(y, s, 50, seed=1) == 1.0)  # perfectly separated in every stratified resample
    with pytest.raises(ValueError, match="single class"):
        delong_auc(np.ones(5), np.arange(5.0))


# ------------------------------------------------------------------------------------------
# calibration
# ------------------------------------------------------------------------------------------

def test_calibration_fit_recovers_a_known_miscalibration():
    rng = np.random.default_rng(5)
    p = rng.uniform(0.02, 0.98, 40000)
    lp = np.log(p / (1 - p))
    y = rng.random(len(p)) < 1 / (1 + np.exp(-(0.4 + lp)))  # slope 1, intercept 0.4
    intercept, slope = calibration_fit(y, p)
    assert intercept == pytest.approx(0.4, abs=0.05) and slope == pytest.approx(1.0, abs=0.05)
    y = rng.random(len(p)) < 1 / (1 + np.exp(-(0.6 * lp)))  # too-extreme predictions: slope 0.6
    intercept, slope = calibration_fit(y, p)
    assert slope == pytest.approx(0.6, abs=0.05) and intercept == pytest.approx(0.0, abs=0.05)


def test_reliability_points_by_hand():
    points = reliability_points([0, 1, 1, 1, 0], [0.05, 0.05, 0.95, 0.95, 0.42], n_bins=10)
    assert points["bin"].tolist() == [0, 4, 9]
    assert points["n"].tolist() == [2, 1, 2]
    np.testing.assert_allclose(points["observed"], [0.5, 0.0, 1.0])
    np.testing.assert_allclose(points["predicted"], [0.05, 0.42, 0.95])
    assert (points["observed_ci_low"] <= points["observed"]).all()
    assert (points["observed"] <= points["observed_ci_high"]).all()


# ------------------------------------------------------------------------------------------
# cross-validated classification
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("delta", [0.5, 1.0, 1.5])
def test_cv_auc_matches_the_bayes_auc_of_two_gaussians(delta):
    x, y = gaussian_classes(2000, 5, delta, seed=10 + int(10 * delta))
    result = classify_groups(as_table(x, y), {"gauss": columns("f", 5)}, seed=0, **FAST)
    row = result.classification.iloc[0]
    assert abs(row["auc"] - bayes_auc(delta)) < 0.05, (row["auc"], bayes_auc(delta))
    assert row["auc_ci_low"] < bayes_auc(delta) < row["auc_ci_high"]
    assert row["auc_delong_ci_low"] < bayes_auc(delta) < row["auc_delong_ci_high"]
    # well specified (equal covariances: the log-odds are linear), so well calibrated
    assert abs(row["calibration_slope"] - 1) < 0.15 and abs(row["calibration_intercept"]) < 0.15
    assert row["auc_sd_repeats"] < 0.02
    # Bayes rule at p = 0.5 with equal priors: sensitivity = specificity = Phi(delta / 2)
    assert abs(row["balanced_accuracy"] - stats.norm.cdf(delta / 2)) < 0.05


def test_uninformative_noise_and_informative_pairs():
    # One null draw. The CV AUC of a null feature set varies more than the DeLong / bootstrap SE
    # says (the intervals hold the fitted models fixed): over 200 null cohorts of 200 patients the
    # intervals cover 0.5 in about 80 % of draws, not 95 % (the permutation p-value is the valid
    # null test, see test_permutation_p_value). This draw is one of those covered.
    x, y = gaussian_classes(400, 3, 1.0, seed=21)
    noise = np.random.default_rng(23).normal(size=(400, 4))
    table = as_table(x, y, extra={f"n{i}": noise[:, i] for i in range(4)})
    sets = {"signal": columns("f", 3), "noise": columns("n", 4), "signal+noise": columns("f", 3) + columns("n", 4)}
    result = classify_groups(table, sets, seed=1, **FAST)
    rows = result.classification.set_index("features")
    assert rows.loc["noise", "auc_ci_low"] < 0.5 < rows.loc["noise", "auc_ci_high"]
    assert rows.loc["noise", "auc_delong_ci_low"] < 0.5 < rows.loc["noise", "auc_delong_ci_high"]
    assert rows.loc["signal", "auc_ci_low"] > 0.5
    comp = result.comparisons.set_index(["features_a", "features_b"])
    added_noise = comp.loc[("signal", "signal+noise")]
    assert added_noise["p"] > 0.05 and added_noise["ci_low"] < 0 < added_noise["ci_high"]
    informative = comp.loc[("signal", "noise")]
    assert informative["p"] < 1e-4 and informative["delta_auc"] < 0 and informative["ci_high"] < 0
    assert comp.loc[("noise", "signal+noise"), "delta_auc"] > 0
    assert (result.comparisons["n"] == 400).all()
    # the delta of a pair is the difference of the two rows' AUCs (same patients here)
    assert informative["delta_auc"] == pytest.approx(rows.loc["noise", "auc"] - rows.loc["signal", "auc"])


def test_permutation_p_value():
    x, y = gaussian_classes(120, 2, 1.0, seed=24)
    noise = np.random.default_rng(25).normal(size=(120, 2))
    table = as_table(x, y, extra={"n0": noise[:, 0], "n1": noise[:, 1]})
    result = classify_groups(table, {"signal": ["f0", "f1"], "noise": ["n0", "n1"]}, seed=3, n_repeats=2,
                             n_permutations=39, **FAST)
    rows = result.classification.set_index("features")
    assert (rows["n_permutations"] == 39).all()
    assert rows.loc["signal", "p_permutation"] == pytest.approx(1 / 40)  # no permutation reaches the real AUC
    assert rows.loc["noise", "p_permutation"] > 0.05
    assert math.isnan(classify_groups(table, {"signal": ["f0"]}, seed=3, n_repeats=1, **FAST)
                      .classification.iloc[0]["p_permutation"])


def test_tables_columns_and_roc():
    x, y = gaussian_classes(300, 3, 1.0, seed=30)
    result = classify_groups(as_table(x, y), {"a": ["f0"], "b": columns("f", 3)}, seed=2, **FAST)
    assert list(result.classification.columns) == CLASSIFICATION_COLUMNS
    assert list(result.comparisons.columns) == COMPARISON_COLUMNS
    assert list(result.roc.columns) == ROC_COLUMNS
    assert list(result.calibration.columns) == CALIBRATION_COLUMNS
    assert list(result.exclusions.columns) == EXCLUSION_COLUMNS and result.exclusions.empty
    for name, roc in result.roc.groupby("features"):
        assert (roc["fpr"].iloc[0], roc["tpr"].iloc[0]) == (0, 0)
        assert (roc["fpr"].iloc[-1], roc["tpr"].iloc[-1]) == (1, 1)
        assert (np.diff(roc["fpr"]) >= 0).all() and (np.diff(roc["tpr"]) >= 0).all()
        auc = result.classification.set_index("features").loc[name, "auc"]
        assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(auc)
    assert result.calibration.groupby("features")["n"].sum().tolist() == [300, 300]
    # each patient's probability is out of fold: every repeat put it in exactly one test fold
    folds = result.folds["b"]
    assert folds.shape == (5, 300) and folds.min() == 0 and folds.max() == 4
    preds = result.predictions[result.predictions["features"] == "b"]
    assert len(preds) == 300 and preds["probability"].between(0, 1).all()


def test_same_seed_same_tables():
    x, y = gaussian_classes(200, 2, 1.0, seed=40)
    table = as_table(x, y)
    sets = {"one": ["f0"], "two": ["f0", "f1"]}
    a = classify_groups(table, sets, seed=7, **FAST)
    b = classify_groups(table, sets, seed=7, **FAST)
    for name in ("classification", "comparisons", "roc", "calibration", "predictions", "exclusions"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    c = classify_groups(table, sets, seed=8, **FAST)
    assert not np.allclose(a.predictions["probability"], c.predictions["probability"])
    # adding a feature set leaves the others' rows unchanged (per-set seeds)
    d = classify_groups(table, {**sets, "three": ["f1"]}, seed=7, **FAST)
    pd.testing.assert_frame_equal(d.classification.iloc[:2], a.classification)


def test_nan_features_leave_the_patient_out_of_that_set_only_and_list_it():
    x, y = gaussian_classes(200, 2, 1.0, seed=50)
    table = as_table(x, y)
    table.loc[[3, 10], "f1"] = np.nan
    table.loc[[200 - 1], "group"] = "other"
    table.loc[[200 - 3], "group"] = None
    result = classify_groups(table, {"one": ["f0"], "two": ["f0", "f1"]}, seed=0, **FAST)
    rows = result.classification.set_index("features")
    assert rows.loc["one", "n"] == 198 and rows.loc["two", "n_excluded"] == 2
    ex = result.exclusions
    nan_rows = ex[ex["features"] == "two"]
    assert sorted(nan_rows["patient_id"]) == ["patient0004", "patient0011"]
    assert (nan_rows["variable"] == "f1").all() and nan_rows["reason"].str.contains("NaN").all()
    other = ex[ex["variable"] == "group"].set_index("patient_id")["reason"]
    assert sorted(other.index) == ["patient0198", "patient0200"]
    assert "'other'" in other["patient0200"] and "missing group" in other["patient0198"]
    # the paired test uses the patients of both sets
    assert rows.loc["two", "n"] == 196 and result.comparisons.iloc[0]["n"] == 196


def test_bad_input_gives_clear_errors():
    x, y = gaussian_classes(40, 2, 1.0, seed=60)
    table = as_table(x, y)
    with pytest.raises(ValueError, match=r"group: .*both groups 'control' and 'case'"):
        classify_groups(table[table["group"] == "case"], {"a": ["f0"]}, seed=0, **FAST)
    with pytest.raises(ValueError, match=r"feature set 'a'.*\['f9'\]"):
        classify_groups(table, {"a": ["f0", "f9"]}, seed=0, **FAST)
    with pytest.raises(ValueError, match=r"n_splits = 5"):
        classify_groups(table.iloc[:8], {"a": ["f0"]}, seed=0, **FAST)
    with pytest.raises(ValueError, match=r"n_splits = 5"):  # too few after the NaN exclusions
        nan = table.copy()
        nan.loc[nan.index[:34], "f1"] = np.nan
        classify_groups(nan, {"a": ["f0", "f1"]}, seed=0, **FAST)
    with pytest.raises(ValueError, match=r"patient_id: duplicated"):
        classify_groups(pd.concat([table, table.iloc[:1]]), {"a": ["f0"]}, seed=0, **FAST)
    with pytest.raises(ValueError, match=r"'label'.*not numeric"):
        classify_groups(table.assign(label="x"), {"a": ["label"]}, seed=0, **FAST)
    with pytest.raises(ValueError, match=r"no 'group' column"):
        classify_groups(table.drop(columns="group"), {"a": ["f0"]}, seed=0, **FAST)
    with pytest.raises(ValueError, match="non-empty"):
        classify_groups(table, {"a": []}, seed=0, **FAST)


def test_feature_set_helpers_on_analysis_table_columns():
    cols = ["patient_id", "group", "clinical.edv_ml", "clinical.esv_ml", "clinical.ef_pct", "clinical.la_volume_ml",
            "clinical.lv_length_4ch_ed_mm", "attributes.myo_area_mm2.2CH.ed", "attributes.myo_area_mm2.2CH.es",
            "attributes.myo_area_mm2.4CH.ed", "latent.arvae.mu_0.4CH.ed", "latent.arvae.mu_0.4CH.mean",
            "latent.arvae.mu_1.2CH.ed", "latent.other.mu_0.4CH.ed"]
    table = pd.DataFrame(columns=cols)
    baseline = clinical_baseline_columns(table)
    assert baseline == ["clinical.ef_pct", "clinical.edv_ml", "clinical.esv_ml", "clinical.la_volume_ml",
                        "attributes.myo_area_mm2.2CH.ed", "attributes.myo_area_mm2.4CH.ed"]
    assert clinical_baseline_columns(table, views=["4CH"])[-1] == "attributes.myo_area_mm2.4CH.ed"
    assert latent_columns(table, "arvae") == ["latent.arvae.mu_0.4CH.ed", "latent.arvae.mu_0.4CH.mean",
                                              "latent.arvae.mu_1.2CH.ed"]
    assert latent_columns(table, "arvae", summaries=["ed"], views=["4CH"]) == ["latent.arvae.mu_0.4CH.ed"]
    sets = default_feature_sets(table, ["arvae"], summaries=["ed"])
    assert list(sets) == ["clinical", "latent.arvae", "clinical+latent.arvae"]
    assert sets["clinical+latent.arvae"] == sets["clinical"] + sets["latent.arvae"]
    with pytest.raises(ValueError, match=r"clinical.la_volume_ml"):
        clinical_baseline_columns(table.drop(columns="clinical.la_volume_ml"))
    with pytest.raises(ValueError, match=r"latent.nope.*\['arvae', 'other'\]"):
        latent_columns(table, "nope")


# ------------------------------------------------------------------------------------------
# planted effect of the project's simulator
# ------------------------------------------------------------------------------------------

def simulated_patients(n: int, seed: int, effects: dict) -> pd.DataFrame:
    """The simulator's patients (truth), without the deliberate age/BSA confounding."""
    from echolatent.simulate.config import SimulationConfig
    from echolatent.simulate.population import draw_patient, patient_seed_sequence

    config = SimulationConfig.from_dict({"seed": seed, "effects": effects,
                                         "population": {"age_mean": [56.0, 56.0], "bsa_case_shift": 0.0}})
    rows = [draw_patient(config, i, np.random.default_rng(patient_seed_sequence(seed, i).spawn(3)[0])).as_dict()
            for i in range(n)]
    return pd.DataFrame(rows)


def implied_auc(effects: dict, n_huge: int, seed: int) -> tuple[float, float]:
    """Phi(Delta / sqrt 2), Delta from the planted effects and the pooled within-group covariance.

    The group differences are the planted relative effects times the mean counterfactual
    (effect-free) value, ``E[z | case] - E[z | control] = 1`` by the simulator's design;
    the covariance is estimated on a huge sample. No classifier is involved.
    """
    big = simulated_patients(n_huge, seed, effects)
    big = big[~big["thickness_clamped"]]
    feats = ["wall_thickness_mm", "la_volume_max_ml"]
    thickness0 = big["wall_thickness_mm"] / (1 + big["effect_wall_thickness"])  # effect-free values
    la0 = big["la_volume_max_ml"] / (1 + big["effect_la_volume"])
    shift = np.array([effects["wall_thickness"] * thickness0.mean(), effects["la_volume"] * la0.mean()])
    case = big["is_case"].to_numpy(bool)
    pooled = (np.cov(big.loc[case, feats].to_numpy().T) + np.cov(big.loc[~case, feats].to_numpy().T)) / 2
    delta = math.sqrt(shift @ np.linalg.solve(pooled, shift))
    return bayes_auc(delta), delta


def test_planted_simulator_effect_gives_the_implied_auc():
    effects = {"wall_thickness": 0.08, "la_volume": 0.10}
    expected, delta = implied_auc(effects, n_huge=8000, seed=101)
    patients = simulated_patients(1200, seed=7, effects=effects)
    result = classify_groups(patients, {"truth": ["wall_thickness_mm", "la_volume_max_ml"]}, control="control",
                             case="hypertensive", seed=0, n_bootstrap=300)
    auc = result.classification.iloc[0]["auc"]
    assert 0.6 < expected < 0.8, delta
    assert abs(auc - expected) < 0.05, (auc, expected, delta)


@pytest.mark.slow
def test_planted_simulator_default_effects_give_the_implied_auc():
    effects = {"wall_thickness": 0.20, "la_volume": 0.15}  # the simulator's defaults
    expected, delta = implied_auc(effects, n_huge=30000, seed=202)
    patients = simulated_patients(4000, seed=8, effects=effects)
    result = classify_groups(patients, {"truth": ["wall_thickness_mm", "la_volume_max_ml"]}, control="control",
                             case="hypertensive", seed=0, n_bootstrap=1000)
    row = result.classification.iloc[0]
    assert abs(row["auc"] - expected) < 0.05, (row["auc"], expected, delta)
    assert row["auc_ci_low"] - 0.01 < expected < row["auc_ci_high"] + 0.01
