"""Agreement statistics against independent truth: published ICCs, hand computations, closed forms, coverage.

Truth here never comes from the module under test: the Shrout & Fleiss (1979) worked example,
ANOVA mean squares and CCCs computed by hand in the test, the population CCC of a bivariate
normal in closed form, and the planted bias, SD and proportional bias of simulated pairs.
Coverage simulations use fixed seeds; their bounds are about 3 binomial SEs around 0.95.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from echolatent.stats.agreement import (AGREEMENT_COLUMNS, EXCLUSION_COLUMNS, LOA_Z, agreement, agreement_table,
                                        bland_altman, icc, lin_ccc, pearson)

# Shrout & Fleiss (1979), Table 2: 6 targets (rows) rated by 4 judges (columns).
SHROUT_FLEISS = np.array([[9, 2, 5, 8],
                          [6, 1, 3, 2],
                          [8, 4, 6, 8],
                          [7, 1, 2, 6],
                          [10, 5, 6, 9],
                          [6, 2, 4, 7]], dtype=float)


def coverage_bounds(reps: int, level: float = 0.95) -> tuple[float, float]:
    """level +/- 3 binomial standard errors over ``reps`` draws."""
    se = np.sqrt(level * (1 - level) / reps)
    return level - 3 * se, level + 3 * se


# ---------------------------------------------------------------------------------------- ICC


def test_icc_reproduces_shrout_fleiss_table():
    result = icc(SHROUT_FLEISS)
    # Published values (Shrout & Fleiss 1979, Tables 3 and 4): ICC(2,1) = .29, ICC(3,1) = .71,
    # between-targets MS 11.24, between-judges MS 32.49, residual MS 1.02.
    assert round(result["icc_2_1"], 2) == 0.29
    assert round(result["icc_3_1"], 2) == 0.71
    assert round(result["ms_rows"], 2) == 11.24
    assert round(result["ms_cols"], 2) == 32.49
    assert round(result["ms_error"], 2) == 1.02
    for kind in ("2_1", "3_1"):
        assert result[f"icc_{kind}_ci_low"] < result[f"icc_{kind}"] < result[f"icc_{kind}_ci_high"]


def _mean_squares_by_hand(table: np.ndarray) -> tuple[float, float, float]:
    """Two-way ANOVA without replication, by explicit sums over cells."""
    n, k = table.shape
    grand = sum(sum(row) for row in table) / (n * k)
    row_means = [sum(table[i]) / k for i in range(n)]
    col_means = [sum(table[i][j] for i in range(n)) / n for j in range(k)]
    ss_rows = k * sum((r - grand) ** 2 for r in row_means)
    ss_cols = n * sum((c - grand) ** 2 for c in col_means)
    ss_error = sum((table[i][j] - row_means[i] - col_means[j] + grand) ** 2 for i in range(n) for j in range(k))
    return ss_rows / (n - 1), ss_cols / (k - 1), ss_error / ((n - 1) * (k - 1))


@pytest.mark.parametrize("judges", list(itertools.combinations(range(4), 2)))
def test_icc_two_rater_subsets_match_hand_computation(judges):
    table = SHROUT_FLEISS[:, list(judges)]
    n, k = table.shape
    msr, msc, mse = _mean_squares_by_hand(table)
    expected_2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    expected_3 = (msr - mse) / (msr + (k - 1) * mse)
    result = icc(table)
    assert result["icc_2_1"] == pytest.approx(expected_2, abs=1e-12)
    assert result["icc_3_1"] == pytest.approx(expected_3, abs=1e-12)
    assert (result["ms_rows"], result["ms_cols"], result["ms_error"]) == pytest.approx((msr, msc, mse), abs=1e-12)


def test_icc_cis_cover_the_model_value():
    """Two raters on 30 patients: ratings = patient + rater + error (SDs s_p, s_r, s_e).

    ICC(3,1) = s_p^2 / (s_p^2 + s_e^2) whatever the raters: its F interval is exact. ICC(2,1) =
    s_p^2 / (s_p^2 + s_r^2 + s_e^2); its Satterthwaite interval is nominal without rater variance
    and conservative when the two raters differ by a fixed bias c (rater variance c^2 / 2, the
    method-vs-reference case), so its coverage is checked in those two settings.
    """
    rng = np.random.default_rng(20240501)
    n, reps, s_p, s_e = 30, 800, 2.0, 1.0
    true_3 = s_p**2 / (s_p**2 + s_e**2)
    settings = {"random raters, s_r = 1": (1.0, None), "no rater variance": (0.0, None), "fixed bias 1": (0.0, 1.0)}
    coverage = {}
    for name, (s_r, bias) in settings.items():
        rater_variance = s_r**2 if bias is None else bias**2 / 2
        true_2 = s_p**2 / (s_p**2 + rater_variance + s_e**2)
        hits_2 = hits_3 = 0
        for _ in range(reps):
            raters = rng.normal(0, s_r, (1, 2)) if bias is None else np.array([[0.0, bias]])
            table = rng.normal(0, s_p, (n, 1)) + raters + rng.normal(0, s_e, (n, 2))
            result = icc(table)
            hits_2 += result["icc_2_1_ci_low"] <= true_2 <= result["icc_2_1_ci_high"]
            hits_3 += result["icc_3_1_ci_low"] <= true_3 <= result["icc_3_1_ci_high"]
        coverage[name] = (hits_2 / reps, hits_3 / reps)
    low, high = coverage_bounds(reps)
    for name, (_, icc_3) in coverage.items():
        assert low <= icc_3 <= high, (name, coverage)
    assert low <= coverage["no rater variance"][0] <= high, coverage
    assert coverage["fixed bias 1"][0] >= low, coverage


def test_icc_bad_tables():
    with pytest.raises(ValueError, match="n x k"):
        icc(np.ones((1, 2)))
    with pytest.raises(ValueError, match="complete"):
        icc(np.array([[1.0, np.nan], [2.0, 3.0]]))
    constant = icc(np.full((5, 2), 3.0))
    assert np.isnan(constant["icc_2_1"]) and np.isnan(constant["icc_3_1"])
    identical = icc(np.column_stack([np.arange(5.0), np.arange(5.0)]))
    assert identical["icc_2_1"] == pytest.approx(1) and identical["icc_3_1"] == pytest.approx(1)
    assert np.isnan(identical["icc_2_1_ci_low"])


# ---------------------------------------------------------------------------------------- CCC


def test_ccc_perfect_agreement_is_one():
    x = np.random.default_rng(1).normal(60, 10, 40)
    assert lin_ccc(x, x.copy())["ccc"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shift", [0.5, 3.0, -7.0])
def test_ccc_of_a_shift_matches_closed_form(shift):
    x = np.random.default_rng(2).normal(60, 10, 40)
    y = x + shift
    n = x.size
    s_xy = sum((a - x.mean()) * (b - y.mean()) for a, b in zip(x, y)) / n   # Lin: moment (1/n) estimators
    s_x2 = sum((a - x.mean()) ** 2 for a in x) / n
    s_y2 = sum((b - y.mean()) ** 2 for b in y) / n
    expected = 2 * s_xy / (s_x2 + s_y2 + shift**2)
    result = lin_ccc(x, y)
    assert result["ccc"] == pytest.approx(expected, rel=1e-12)
    assert result["ccc"] == pytest.approx(2 * s_x2 / (2 * s_x2 + shift**2), rel=1e-12)
    assert result["ci_low"] < result["ccc"] < result["ci_high"]


def test_ccc_ci_covers_the_population_value():
    rng = np.random.default_rng(20240502)
    n, reps = 60, 1500
    mu, sd, rho = np.array([50.0, 53.0]), np.array([10.0, 12.0]), 0.85
    cov = np.array([[sd[0] ** 2, rho * sd[0] * sd[1]], [rho * sd[0] * sd[1], sd[1] ** 2]])
    truth = 2 * rho * sd[0] * sd[1] / (sd[0] ** 2 + sd[1] ** 2 + (mu[0] - mu[1]) ** 2)
    hits, estimates = 0, []
    for _ in range(reps):
        x, y = rng.multivariate_normal(mu, cov, n).T
        result = lin_ccc(x, y)
        hits += result["ci_low"] <= truth <= result["ci_high"]
        estimates.append(result["ccc"])
    low, high = coverage_bounds(reps)
    assert low <= hits / reps <= high
    assert np.mean(estimates) == pytest.approx(truth, abs=0.01)


def test_ccc_degenerate_inputs():
    assert np.isnan(lin_ccc([2.0, 2.0, 2.0], [2.0, 2.0, 2.0])["ccc"])
    constant_reference = lin_ccc([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0])
    assert constant_reference["ccc"] == 0 and np.isnan(constant_reference["ci_low"])
    with pytest.raises(ValueError, match="length"):
        lin_ccc([1.0, 2.0], [1.0])


# ---------------------------------------------------------------------------------- Bland-Altman


def test_bland_altman_recovers_planted_bias_and_limits():
    rng = np.random.default_rng(3)
    bias, sd, n = 4.0, 3.0, 4000
    x = rng.normal(100, 20, n)
    y = x + bias + rng.normal(0, sd, n)
    result = bland_altman(y, x)   # method y minus reference x
    assert result["bias"] == pytest.approx(bias, abs=4 * sd / np.sqrt(n))
    assert result["sd_diff"] == pytest.approx(sd, rel=0.05)
    assert result["loa_low"] == pytest.approx(bias - 1.96 * sd, abs=0.3)
    assert result["loa_high"] == pytest.approx(bias + 1.96 * sd, abs=0.3)
    assert result["bias_ci_low"] < bias < result["bias_ci_high"]
    assert result["mae"] == pytest.approx(np.mean(np.abs(y - x)))
    assert result["cv_pct"] == pytest.approx(100 * np.std(y - x, ddof=1) / np.mean((x + y) / 2))
    # The sign convention: method minus reference.
    assert bland_altman(x, y)["bias"] == pytest.approx(-result["bias"])


def test_bland_altman_cis_cover_the_truth():
    rng = np.random.default_rng(20240503)
    bias, sd, n, reps = -2.0, 5.0, 25, 1500
    truth = {"bias": bias, "loa_low": bias - LOA_Z * sd, "loa_high": bias + LOA_Z * sd}
    hits = dict.fromkeys(truth, 0)
    for _ in range(reps):
        x = rng.normal(80, 15, n)
        y = x + bias + rng.normal(0, sd, n)
        result = bland_altman(y, x)
        for key, value in truth.items():
            hits[key] += result[f"{key}_ci_low"] <= value <= result[f"{key}_ci_high"]
    low, high = coverage_bounds(reps)
    for key in truth:
        assert low <= hits[key] / reps <= high, (key, hits[key] / reps)


def test_exact_loa_interval_beats_the_approximate_one_for_small_n():
    """At n = 8 Bland & Altman's symmetric LoA +/- t sqrt(3 s^2 / n) undercovers (the true upper limit
    falls above it too often); the exact non-central t interval keeps 95 %."""
    rng = np.random.default_rng(20240505)
    n, reps = 8, 1000
    exact_hits = approximate_hits = approximate_above = 0
    for _ in range(reps):
        d = rng.normal(0, 1, n)
        exact = bland_altman(d, np.zeros(n))
        approximate = bland_altman(d, np.zeros(n), loa_ci="approximate")
        exact_hits += exact["loa_high_ci_low"] <= LOA_Z <= exact["loa_high_ci_high"]
        approximate_hits += approximate["loa_high_ci_low"] <= LOA_Z <= approximate["loa_high_ci_high"]
        approximate_above += LOA_Z > approximate["loa_high_ci_high"]
    low, high = coverage_bounds(reps)
    assert low <= exact_hits / reps <= high
    assert approximate_hits / reps < low
    assert approximate_above / reps > 0.05


def test_proportional_bias_detected():
    rng = np.random.default_rng(4)
    x = rng.uniform(40, 200, 80)
    y = 1.1 * x + rng.normal(0, 2, 80)
    result = bland_altman(y, x)
    # d = 0.1 x, m = 1.05 x: slope 0.1 / 1.05.
    assert result["proportional_slope"] == pytest.approx(0.1 / 1.05, abs=0.01)
    assert result["proportional_p"] < 1e-6


def test_no_proportional_bias_without_one():
    rng = np.random.default_rng(20240504)
    reps, n = 800, 60
    rejections = 0
    for _ in range(reps):
        truth = rng.uniform(40, 200, n)
        x = truth + rng.normal(0, 5, n)          # both sources noisy: the null slope is exactly 0
        y = truth + 1.5 + rng.normal(0, 5, n)
        rejections += bland_altman(y, x)["proportional_p"] < 0.05
    low, high = 0.05 - 3 * np.sqrt(0.05 * 0.95 / reps), 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)
    assert low <= rejections / reps <= high
    # y = x + noise: not detected either (the slope artefact var(e) / 2 / var(m) is negligible here).
    x = rng.uniform(40, 200, n)
    assert bland_altman(x + rng.normal(0, 2, n), x)["proportional_p"] > 0.05


def test_bland_altman_small_and_degenerate_samples():
    few = bland_altman([1.0, 2.0], [1.5, 2.5])
    assert few["n"] == 2 and np.isnan(few["bias"]) and few["mean_method"] == 1.5
    shifted = bland_altman([2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0])
    assert shifted["bias"] == 1 and shifted["sd_diff"] == 0 and np.isnan(shifted["bias_ci_low"])
    with pytest.raises(ValueError, match="finite"):
        bland_altman([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="loa_ci"):
        bland_altman([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], loa_ci="bootstrap")


def test_pearson_matches_numpy():
    rng = np.random.default_rng(5)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    result = pearson(x, y)
    assert result["r"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert result["ci_low"] < result["r"] < result["ci_high"]
    assert np.isnan(pearson([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0])["r"])


# ------------------------------------------------------------------------------- the table


def cohort(n: int = 40, seed: int = 6):
    """Truth, input (biased, noisy) and a corrected method; a patients table with splits."""
    rng = np.random.default_rng(seed)
    ids = [f"patient{i:04d}" for i in range(n)]
    edv = rng.normal(110, 25, n)
    esv = edv * rng.uniform(0.3, 0.5, n)
    truth = pd.DataFrame({"patient_id": ids, "edv_ml": edv, "esv_ml": esv, "ef_pct": 100 * (edv - esv) / edv,
                          "la_volume_es_ml": rng.normal(60, 12, n)})
    noisy = {"edv_ml": edv + 5 + rng.normal(0, 6, n), "esv_ml": esv + 2 + rng.normal(0, 4, n),
             "la_volume_ml": truth["la_volume_es_ml"] + rng.normal(0, 3, n)}
    noisy["ef_pct"] = 100 * (noisy["edv_ml"] - noisy["esv_ml"]) / noisy["edv_ml"]
    inputs = pd.DataFrame({"patient_id": ids, **noisy})
    corrected = inputs.copy()
    corrected[["edv_ml", "esv_ml"]] = inputs[["edv_ml", "esv_ml"]] - [5, 2]
    patients = pd.DataFrame({"patient_id": ids, "split": np.array(["train", "val", "test", "test"])[np.arange(n) % 4]})
    return {"truth": truth, "input": inputs, "corrected": corrected}, patients


def test_agreement_table_rows_columns_and_values():
    pairs, patients = cohort()
    table, exclusions = agreement_table(pairs, indices=["edv_ml", "ef_pct", "la_volume_ml"],
                                        methods=["input", "corrected"], reference="truth", patients=patients,
                                        columns={"truth": {"la_volume_ml": "la_volume_es_ml"}})
    assert list(table.columns) == AGREEMENT_COLUMNS
    assert list(exclusions.columns) == EXCLUSION_COLUMNS and exclusions.empty
    assert len(table) == 2 * 3 * 4
    assert list(table["split"].unique()) == ["all", "test", "train", "val"]
    assert (table["note"] == "").all()
    row = table.query("method == 'input' and index == 'edv_ml' and split == 'all'").iloc[0]
    assert row["n"] == 40
    truth, inputs = pairs["truth"]["edv_ml"].to_numpy(), pairs["input"]["edv_ml"].to_numpy()
    assert row["bias"] == pytest.approx(np.mean(inputs - truth))   # method minus reference
    assert row["mean_method"] == pytest.approx(inputs.mean()) and row["mean_reference"] == pytest.approx(truth.mean())
    test_rows = table.query("method == 'input' and index == 'edv_ml' and split == 'test'").iloc[0]
    on_test = (patients["split"] == "test").to_numpy()
    assert test_rows["n"] == on_test.sum()
    assert test_rows["bias"] == pytest.approx(np.mean(inputs[on_test] - truth[on_test]))
    # The corrected method removes the planted bias of 5 mL.
    corrected = table.query("method == 'corrected' and index == 'edv_ml' and split == 'all'").iloc[0]
    assert corrected["bias_ci_low"] < 0 < corrected["bias_ci_high"]
    assert row["bias_ci_low"] > 0
    estimates = table[AGREEMENT_COLUMNS[4:-1]].to_numpy(dtype=float)
    assert np.isfinite(estimates).all()


def test_agreement_table_lists_mismatched_and_missing_patients():
    pairs, patients = cohort()
    pairs["input"] = pairs["input"].iloc[2:].reset_index(drop=True)                 # two patients without input
    pairs["truth"].loc[5, "ef_pct"] = np.nan                                          # one NaN in the truth
    pairs["input"] = pd.concat([pairs["input"], pd.DataFrame({"patient_id": ["stranger"], "edv_ml": [100.0],
                                                               "esv_ml": [40.0], "ef_pct": [60.0],
                                                               "la_volume_ml": [50.0]})])
    patients = patients[patients["patient_id"] != "patient0007"]                      # paired, no split
    table, exclusions = agreement_table(pairs, indices=["edv_ml", "ef_pct"], methods=["input"], reference="truth",
                                        patients=patients)
    listed = {(p, v) for p, v in zip(exclusions["patient_id"], exclusions["variable"])}
    for index in ("edv_ml", "ef_pct"):
        assert {("patient0000", index), ("patient0001", index), ("stranger", index)} <= listed
    assert ("patient0005", "ef_pct") in listed and ("patient0005", "edv_ml") not in listed
    assert ("patient0007", "split") in listed and ("stranger", "split") not in listed
    reasons = exclusions.set_index(["patient_id", "variable"])["reason"]
    assert "'input'" in reasons[("patient0000", "edv_ml")] and "'truth'" in reasons[("stranger", "edv_ml")]
    assert "NaN" in reasons[("patient0005", "ef_pct")]
    n = table.query("split == 'all'").set_index("index")["n"]
    assert n["edv_ml"] == 38 and n["ef_pct"] == 37
    by_split = table.query("index == 'edv_ml' and split != 'all'")["n"].sum()
    assert by_split == 37                                                              # patient0007 in 'all' only


def test_agreement_table_bad_input():
    pairs, patients = cohort(n=12)
    with pytest.raises(KeyError, match="ghost"):
        agreement_table(pairs, indices=["edv_ml"], methods=["ghost"], reference="truth")
    with pytest.raises(ValueError, match="lacks the index"):
        agreement_table(pairs, indices=["la_volume_ml"], methods=["input"], reference="truth")
    duplicated = {**pairs, "input": pd.concat([pairs["input"], pairs["input"].iloc[:1]])}
    with pytest.raises(ValueError, match="duplicated patient_id"):
        agreement_table(duplicated, indices=["edv_ml"], methods=["input"], reference="truth")
    with pytest.raises(ValueError, match="patient_id"):
        agreement_table({**pairs, "input": pairs["input"].drop(columns="patient_id")}, indices=["edv_ml"],
                        methods=["input"], reference="truth")
    # A constant index: NaN where undefined, with the reason.
    constant = {name: frame.assign(edv_ml=100.0) for name, frame in pairs.items()}
    table, _ = agreement_table(constant, indices=["edv_ml"], methods=["input"], reference="truth")
    row = table.iloc[0]
    assert row["bias"] == 0 and np.isnan(row["icc_2_1"]) and np.isnan(row["ccc"]) and np.isnan(row["pearson_r"])
    assert "constant" in row["note"] and "ICC undefined" in row["note"]
    # n < 3 in a split: NaN estimates and a note, not an error.
    few = patients.assign(split=["rare"] * 2 + ["common"] * 10)
    table, _ = agreement_table(pairs, indices=["edv_ml"], methods=["input"], reference="truth", patients=few)
    rare = table.set_index("split").loc["rare"]
    assert rare["n"] == 2 and np.isnan(rare["bias"]) and "fewer than 3" in rare["note"]
    assert table.set_index("split").loc["common", "note"] == ""


def test_agreement_row_equals_single_statistics():
    rng = np.random.default_rng(7)
    x = rng.normal(60, 8, 30)
    y = x + rng.normal(1, 3, 30)
    row, note = agreement(y, x)
    assert note == ""
    assert row["icc_2_1"] == icc(np.column_stack([y, x]))["icc_2_1"]
    assert row["ccc"] == lin_ccc(y, x)["ccc"]
    assert row["bias"] == bland_altman(y, x)["bias"]
