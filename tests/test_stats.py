"""Population statistics against known truth: planted effects, confounding, negative controls, null cohorts.

The cohorts here are analysis tables drawn directly (no Snakemake): cases are older and larger
(confounding on purpose, as in the simulator), the outcomes depend on age and BSA, one outcome
carries a planted group effect and one none (the negative control).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from echolatent.stats.analysis_table import analysis_table, sequence_summaries
from echolatent.stats.design import check_group_sizes, covariate_matrix, resolve_groups
from echolatent.stats.effects import EFFECT_COLUMNS, group_effects
from echolatent.stats.table_one import TABLE1_COLUMNS, smd, table_one

PLANTED = 5.0     # case minus control, outcome units
AGE_SLOPE = 0.4   # outcome units per year
BSA_SLOPE = 20.0  # outcome units per m^2
NOISE = 4.0


def cohort(n: int, rng, effect: float = PLANTED) -> pd.DataFrame:
    """A confounded cohort: cases ~8 years older and 0.15 m^2 larger; ``clinical.y`` carries ``effect``,
    ``clinical.negative`` none; both depend on age and BSA."""
    case = np.arange(n) % 2 == 1
    age = rng.normal(55, 8, n) + 8 * case
    sex = rng.choice(["F", "M"], n)
    bsa = rng.normal(1.85, 0.15, n) + 0.15 * case + 0.1 * (sex == "M")
    confounding = AGE_SLOPE * (age - 55) + BSA_SLOPE * (bsa - 1.85)
    return pd.DataFrame({
        "patient_id": [f"P{i:04d}" for i in range(n)], "group": np.where(case, "hypertensive", "control"),
        "age": age, "sex": sex, "bsa": bsa, "analysed": True,
        "clinical.y": 50 + effect * case + confounding + rng.normal(0, NOISE, n),
        "clinical.negative": 20 + confounding + rng.normal(0, NOISE, n),
    })


def effects_of(table, **kwargs):
    return group_effects(table, ["clinical"], ["age", "sex", "bsa"], "control", "hypertensive", **kwargs)


def row(effects, outcome, adjusted):
    return effects[(effects["outcome"] == outcome) & (effects["adjusted"] == adjusted)].iloc[0]


# --------------------------------------------------------------------------- known truth
def test_adjusted_effect_covers_the_planted_value_and_unadjusted_shows_the_confounding():
    effects = effects_of(cohort(400, np.random.default_rng(1)))
    assert list(effects.columns) == EFFECT_COLUMNS and len(effects) == 4
    adjusted, unadjusted = row(effects, "y", True), row(effects, "y", False)
    assert adjusted["ci_low"] < PLANTED < adjusted["ci_high"] and adjusted["beta"] > 0 and adjusted["q"] < 0.05
    # confounding bias: cases are 8 years older and 0.15 m^2 larger -> + 0.4 * 8 + 20 * 0.15 = +6.2
    bias = unadjusted["beta"] - PLANTED
    assert 4.0 < bias < 8.5, bias
    assert not unadjusted["ci_low"] < PLANTED < unadjusted["ci_high"]
    # standardised: beta over the outcome's SD over the fitted patients
    table = cohort(400, np.random.default_rng(1))
    assert adjusted["std_beta"] == pytest.approx(adjusted["beta"] / table["clinical.y"].std(ddof=1))
    assert adjusted["std_ci_low"] == pytest.approx(adjusted["ci_low"] / table["clinical.y"].std(ddof=1))
    # the negative control is confounded unadjusted, not significant adjusted after FDR
    assert row(effects, "negative", True)["q"] > 0.05
    assert row(effects, "negative", False)["p"] < 0.05


def test_coverage_of_the_planted_effect_over_repeated_cohorts():
    rng = np.random.default_rng(7)
    covered = [(r := row(effects_of(cohort(120, rng)), "y", True))["ci_low"] < PLANTED < r["ci_high"]
               for _ in range(100)]
    assert 0.90 <= np.mean(covered) <= 0.99, np.mean(covered)


def test_null_rejection_rate_is_nominal_adjusted_and_inflated_unadjusted():
    rng = np.random.default_rng(2026)
    adjusted, unadjusted = [], []
    for _ in range(250):
        effects = effects_of(cohort(60, rng, effect=0.0))
        adjusted.append(row(effects, "y", True)["p"] < 0.05)
        unadjusted.append(row(effects, "y", False)["p"] < 0.05)
    assert 0.02 <= np.mean(adjusted) <= 0.08, np.mean(adjusted)
    assert np.mean(unadjusted) > 0.3, np.mean(unadjusted)


# --------------------------------------------------------------------------- Table 1
def test_smd_and_welch_p_match_hand_computed_values():
    case, control = np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 6])
    # means 2.5 and 4, variances 5/3 and 4: pooled SD sqrt((5/3 + 4) / 2)
    assert smd(case, control) == pytest.approx(-1.5 / np.sqrt((5 / 3 + 4) / 2))
    table = pd.DataFrame({"group": ["hypertensive"] * 4 + ["control"] * 3 + ["control"],
                          "x": [*case, *control, np.nan], "sex": ["M", "F", "M", "M", "F", "F", "M", None]})
    table1 = table_one(table, "control", "hypertensive", ["x"], ["sex"])
    assert list(table1.columns) == TABLE1_COLUMNS
    x = table1[table1["variable"] == "x"].iloc[0]
    se2 = 5 / 3 / 4 + 4 / 3
    t = -1.5 / np.sqrt(se2)
    df = se2 ** 2 / ((5 / 3 / 4) ** 2 / 3 + (4 / 3) ** 2 / 2)
    assert x["p"] == pytest.approx(2 * stats.t.sf(abs(t), df))
    assert x["smd"] == pytest.approx(-0.8911, abs=1e-4)
    assert (x["control"], x["case"]) == ("4.0 ± 2.0", "2.5 ± 1.3")
    assert (x["missing_control"], x["missing_case"], x["missing_overall"], x["n_control"]) == (1, 0, 1, 3)
    male = table1[(table1["variable"] == "sex") & (table1["level"] == "M")].iloc[0]
    assert male["case"] == "3 (75.0 %)" and male["control"] == "1 (33.3 %)" and male["missing_control"] == 1
    p1, p0 = 0.75, 1 / 3  # sample variances of the 0/1 indicators (ddof 1)
    assert male["smd"] == pytest.approx((p1 - p0) / np.sqrt((p1 * (1 - p1) * 4 / 3 + p0 * (1 - p0) * 3 / 2) / 2))
    assert male["p"] == pytest.approx(stats.chi2_contingency([[2, 1], [1, 3]]).pvalue)


def test_skewed_variables_as_median_iqr_with_mann_whitney():
    table = pd.DataFrame({"group": ["control"] * 5 + ["case"] * 5, "x": [1, 2, 3, 4, 100, 5, 6, 7, 8, 9]})
    x = table_one(table, "control", "case", ["x"], skewed=["x"]).iloc[0]
    assert x["statistic"] == "median_iqr" and x["control"] == "3.0 [2.0, 4.0]" and x["test"] == "mann-whitney"
    assert x["p"] == pytest.approx(stats.mannwhitneyu([5, 6, 7, 8, 9], [1, 2, 3, 4, 100]).pvalue)


# --------------------------------------------------------------------------- bad input: errors or listed exclusions
def test_single_group_and_small_group_are_errors():
    with pytest.raises(ValueError, match=r"1 group\(s\) \[.control.\]: a group comparison needs two"):
        resolve_groups(["control"] * 5)
    with pytest.raises(ValueError, match="0 group"):
        resolve_groups(pd.Series(dtype=object))  # no group column at all
    with pytest.raises(ValueError, match="population.groups"):
        resolve_groups(["a", "b"])  # neither is 'control': which is the case?
    with pytest.raises(ValueError, match="not a group of the cohort"):
        resolve_groups(["control", "case"], ["control", "hypertensive"])
    assert resolve_groups(["control", "hypertensive", None]) == ("control", "hypertensive")
    with pytest.raises(ValueError, match="min_group_size = 10"):
        check_group_sizes(["control"] * 12 + ["case"] * 9, "control", "case", 10)


def test_constant_or_absent_covariate_is_an_error():
    table = cohort(40, np.random.default_rng(0))
    table["bsa"] = 1.9
    with pytest.raises(ValueError, match="'bsa' is constant"):
        effects_of(table)
    with pytest.raises(ValueError, match="'height', which the cohort does not have"):
        covariate_matrix(table, ["height"])
    coded = covariate_matrix(cohort(40, np.random.default_rng(0)), ["age", "sex"])
    assert set(coded["sex"]) == {0.0, 1.0} and coded["age"].std() == pytest.approx(1.0)


def frame_tables(n_patients=6, n_frames=5):
    rows, sequences = [], []
    for i in range(n_patients):
        for view in ("2CH", "4CH"):
            ed, es = 1, 3
            sequences.append({"patient_id": f"P{i}", "view": view, "ed": ed, "es": es, "n_frames": n_frames,
                              "frame_rate": 20.0})
            for f in range(n_frames):
                rows.append({"patient_id": f"P{i}", "view": view, "frame": f, "lv_area_mm2": 100.0 * i + 10 * f,
                             "anatomical_errors": f == 0 and i == 0})
    return pd.DataFrame(rows), pd.DataFrame(sequences)


def test_sequence_summaries_are_ed_es_change_and_cycle_mean():
    frames, sequences = frame_tables()
    summary = sequence_summaries(frames, sequences, ["lv_area_mm2"], "attributes")
    p2 = summary.loc["P2"]
    assert p2["attributes.lv_area_mm2.4CH.ed"] == 210 and p2["attributes.lv_area_mm2.4CH.es"] == 230
    assert p2["attributes.lv_area_mm2.2CH.change"] == 20 and p2["attributes.lv_area_mm2.2CH.mean"] == 220


def test_analysis_table_lists_every_exclusion():
    frames, sequences = frame_tables()
    frames.loc[(frames["patient_id"] == "P1") & (frames["view"] == "4CH") & (frames["frame"] == 3),
               "lv_area_mm2"] = np.nan
    frames = frames[~((frames["patient_id"] == "P4") & (frames["view"] == "2CH"))]
    sequences = sequences[~((sequences["patient_id"] == "P4") & (sequences["view"] == "2CH"))]
    patients = pd.DataFrame({"patient_id": [f"P{i}" for i in range(6)],
                             "group": ["control", "case", "control", "case", "control", "other"],
                             "age": [50, 60, np.nan, 55, 52, 58], "sex": list("MFMFMF"), "bsa": 1.9,
                             "split": ["train", "train", "train", "test", "train", "train"]})
    clinical = pd.DataFrame({"patient_id": [f"P{i}" for i in range(6)], "ef_pct": [60, 55, np.nan, 58, 61, 62],
                             "foreshortening": False})
    table, exclusions = analysis_table(patients, sequences, clinical, frames, frames, attribute_columns=["lv_area_mm2"],
                                       control="control", case="case", splits=["train"], covariates=["age", "sex"])
    assert len(table) == 6 and table["analysed"].tolist() == [True, True, True, False, True, False]
    assert table.loc[0, "qc.anatomical_error_frames"] == 2 and table.loc[1, "qc.frames"] == 10
    reasons = {(p, v): r for p, v, r in exclusions.itertuples(index=False)}
    assert "not in population.splits" in reasons[("P3", "")]
    assert "neither the control" in reasons[("P5", "")]
    assert "missing covariate" in reasons[("P2", "age")]
    assert "NaN clinical index" in reasons[("P2", "clinical.ef_pct")]
    assert "NaN es value" in reasons[("P1", "attributes.lv_area_mm2.4CH.es")]
    assert "NaN change value" in reasons[("P1", "attributes.lv_area_mm2.4CH.change")]
    assert "no 2CH sequence" in reasons[("P4", "attributes.lv_area_mm2.2CH.mean")]
    assert ("P1", "attributes.lv_area_mm2.4CH.mean") not in reasons  # the mean leaves the NaN frame out
    assert not [p for p, _ in reasons if p in ("P3", "P5") and _]   # no value rows for unanalysed patients


def test_nan_outcomes_are_left_out_of_that_outcome_only():
    table = cohort(80, np.random.default_rng(3))
    table.loc[:9, "clinical.y"] = np.nan
    effects = effects_of(table)
    assert row(effects, "y", True)["n"] == 70 and row(effects, "negative", True)["n"] == 80
    assert row(effects, "y", False)["n"] == 70  # unadjusted on the same patients


def test_a_fit_without_enough_patients_gives_nan_not_an_error():
    table = cohort(80, np.random.default_rng(3))
    table.loc[4:, "clinical.y"] = np.nan   # 4 patients, 5 parameters
    effects = effects_of(table)
    assert np.isnan(row(effects, "y", True)["beta"]) and row(effects, "y", True)["n"] == 4
    assert np.isfinite(row(effects, "negative", True)["beta"])


# --------------------------------------------------------------------------- the stage functions, on files
def test_stages_write_the_documented_tables(tmp_path):
    from echolatent.io.tables import read_table, write_table
    from echolatent.stages.stats import effects_stage, patients_stage, table1_stage

    n = 12
    rng = np.random.default_rng(4)
    table = cohort(n, rng).assign(patient_id=[f"P{i}" for i in range(n)])
    frames, sequences = frame_tables(n)
    frames["myo_area_mm2"] = frames["lv_area_mm2"] * 0.5 + rng.normal(0, 1, len(frames))
    for name in ("lv_base_width_mm", "lv_length_mm", "atrium_area_mm2", "epi_center_x_mm", "epi_center_y_mm",
                 "lv_orientation_deg"):
        frames[name] = rng.normal(10, 1, len(frames))
    patients = table[["patient_id", "group", "age", "sex", "bsa"]].assign(split="train", shard=0, n_sequences=2)
    clinical = pd.DataFrame({"patient_id": table["patient_id"], "views": "2CH+4CH", "method": "biplane",
                             "ef_pct": table["clinical.y"], "foreshortening": False})
    latents = frames[["patient_id", "view", "frame"]].assign(mu_0=rng.normal(size=len(frames)),
                                                              mu_1=rng.normal(size=len(frames)))
    paths = {"patients": tmp_path / "patients.tsv", "sequences": tmp_path / "sequences.tsv",
             "clinical": tmp_path / "indices.tsv", "attributes": tmp_path / "attributes.parquet",
             "anatomy": tmp_path / "anatomy.parquet", "latent": tmp_path / "latents" / "m1" / "shard-0.parquet"}
    for key, frame in (("patients", patients), ("sequences", sequences), ("clinical", clinical),
                       ("attributes", frames), ("anatomy", frames), ("latent", latents)):
        write_table(frame, paths[key])
    out = tmp_path / "stats"
    table, exclusions = patients_stage(paths["patients"], paths["sequences"], paths["clinical"], [paths["attributes"]],
                                       [paths["anatomy"]], [paths["latent"]], min_group_size=5,
                                       out_table=out / "patients.tsv", out_exclusions=out / "exclusions.tsv")
    written = read_table(out / "patients.tsv")
    assert len(written) == n and written["analysed"].all()
    assert {"clinical.ef_pct", "attributes.myo_area_mm2.4CH.change", "latent.m1.mu_1.2CH.mean",
            "qc.anatomical_error_frames", "qc.foreshortening"} <= set(written.columns)
    assert list(read_table(out / "exclusions.tsv").columns) == ["patient_id", "variable", "reason"]
    assert exclusions.empty and not written.filter(like=".").isna().any().any()
    table1 = table1_stage(out / "patients.tsv", min_group_size=5, out_tsv=out / "table1.tsv", out_md=out / "table1.md")
    assert "| Variable | Overall (n = 12) | control (n = 6) | hypertensive (n = 6) |" in (out / "table1.md").read_text()
    assert "clinical.ef_pct" in set(table1["variable"])
    effects = effects_stage(out / "patients.tsv", families=["clinical", "attributes", "latent"], min_group_size=5,
                            out=out / "effects.tsv")
    assert list(read_table(out / "effects.tsv").columns) == EFFECT_COLUMNS
    latent = effects[effects["family"] == "latent"]
    assert set(latent["model"]) == {"m1"} and len(latent) == 2 * 2 * 4 * 2   # dims x views x summaries x adjusted
    assert set(latent["outcome"]) >= {"mu_0.2CH.ed", "mu_1.4CH.mean"}
    assert len(effects[effects["family"] == "attributes"]) == 8 * 2 * 4 * 2
    constant = effects["outcome"].str.startswith("lv_area_mm2.") & effects["outcome"].str.endswith(".change")
    assert effects.loc[constant, "beta"].isna().all() and (effects.loc[constant, "n"] == n).all()  # ES - ED = 20
    assert effects.loc[~constant, "beta"].notna().all() and effects.loc[~constant, "q"].between(0, 1).all()
    with pytest.raises(ValueError, match="min_group_size = 7"):
        effects_stage(out / "patients.tsv", min_group_size=7, out=out / "effects.tsv")
    with pytest.raises(ValueError, match="no latent.* column"):
        group_effects(written.drop(columns=[c for c in written if c.startswith("latent.")]), ["latent"], [],
                      "control", "hypertensive")


def test_correction_flags_sum_both_views_per_patient():
    from echolatent.stats.analysis_table import correction_flags

    temporal = pd.DataFrame({
        "patient_id": ["A", "A", "B"], "view": ["2CH", "4CH", "4CH"],
        "inconsistent_frames_before": [3, 1, 0], "inconsistent_frames_after": [1, 0, 0],
        "anatomical_errors_after": [0, 2, 5]})
    flags = correction_flags(temporal, "m1")
    assert flags.loc["A"].tolist() == [4, 1, 2] and flags.loc["B"].tolist() == [0, 0, 5]
    assert list(flags.columns) == ["qc.m1.inconsistent_frames_before", "qc.m1.inconsistent_frames_after",
                                   "qc.m1.anatomical_error_frames_after"]
    with pytest.raises(ValueError, match="missing columns"):
        correction_flags(temporal.drop(columns="anatomical_errors_after"), "m1")
