"""The statistics stage in the workflow: a clinical-plus-attributes analysis needs no model (real Snakemake runs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, snakemake
from echolatent.stats.effects import EFFECT_COLUMNS
from echolatent.stats.table_one import TABLE1_COLUMNS

pytestmark = pytest.mark.slow  # runs Snakemake for real (README: `pytest -m "not slow"` skips these)

TARGETS = ["results/stats/effects.tsv", "results/stats/table1.md"]


def configs(root, **population):
    (root / "population.yaml").write_text(yaml.safe_dump({"population": population}))
    return ["--configfile", str(REPO / "config/config.yaml"), str(REPO / ".test/config/config.yaml"),
            str(root / "population.yaml")]


def test_clinical_and_attribute_effects_need_no_trained_model(tmp_path):
    dry = snakemake("-n", "results/stats/effects.tsv", "--directory", str(tmp_path),
                    *configs(tmp_path, families=["clinical", "attributes"]))
    assert "stats_effects" in dry.stdout and "anatomical_metrics" in dry.stdout
    assert "train_vae" not in dry.stdout and "encode_latents" not in dry.stdout
    latent = snakemake("-n", "results/stats/effects.tsv", "--directory", str(tmp_path), *configs(tmp_path))  # default
    assert "train_vae" in latent.stdout and "encode_latents" in latent.stdout


def test_tiny_cohort_statistics_end_to_end(tmp_path):
    # the val split left out: its patients are listed as exclusions (3 + 3 patients remain)
    snakemake(*TARGETS, "--cores", "2", "--directory", str(tmp_path), *configs(tmp_path, splits=["train", "test"], families=["clinical", "attributes"]))
    stats = tmp_path / "results/stats"
    assert not (tmp_path / "results/models").exists()
    patients = pd.read_csv(stats / "patients.tsv", sep="\t")
    truth = pd.read_csv(tmp_path / "results/cohort/truth/patients.tsv", sep="\t")
    assert sorted(patients["patient_id"]) == sorted(truth["patient_id"])
    assert (patients.set_index("patient_id")["group"] == truth.set_index("patient_id")["group"]).all()
    assert (patients["analysed"] == (patients["split"] != "val")).all()
    exclusions = pd.read_csv(stats / "exclusions.tsv", sep="\t", keep_default_na=False)
    assert list(exclusions.columns) == ["patient_id", "variable", "reason"]
    left_out = exclusions[exclusions["variable"] == ""]
    assert sorted(left_out["patient_id"]) == sorted(patients.loc[patients["split"] == "val", "patient_id"])
    assert left_out["reason"].str.contains("not in population.splits").all()
    table1 = pd.read_csv(stats / "table1.tsv", sep="\t")
    assert list(table1.columns) == TABLE1_COLUMNS
    assert {"age", "bsa", "sex", "image_quality_4CH", "clinical.ef_pct"} <= set(table1["variable"])
    assert "| control (n = " in (stats / "table1.md").read_text()
    effects = pd.read_csv(stats / "effects.tsv", sep="\t", keep_default_na=False, na_values=[""])
    assert list(effects.columns) == EFFECT_COLUMNS
    assert set(effects["family"]) == {"clinical", "attributes"}
    # two rows (adjusted, unadjusted) per outcome column of the analysis table
    outcomes = [c for c in patients.columns if c.split(".")[0] in ("clinical", "attributes")]
    assert len(effects) == 2 * len(outcomes)
    assert effects.groupby(["family", "outcome"])["adjusted"].agg(lambda a: sorted(a) == [False, True]).all()
    # n = the analysed patients less those listed as excluded for that outcome (or a covariate)
    for column in ("clinical.ef_pct", "attributes.myo_area_mm2.4CH.ed", "attributes.atrium_area_mm2.2CH.change"):
        family, outcome = column.split(".", 1)
        missing = set(exclusions.loc[exclusions["variable"].isin([column, "age", "sex", "bsa"]), "patient_id"])
        n = effects.loc[(effects["family"] == family) & (effects["outcome"] == outcome), "n"]
        assert (n == patients["analysed"].sum() - len(missing)).all(), column


def test_bad_population_settings_are_refused_at_parse_time(tmp_path):
    one = snakemake("-n", "--directory", str(tmp_path), *configs(tmp_path, groups=["control"]), check=False)
    assert one.returncode != 0
    expected = "population.groups must name two different groups [control, case], got ['control']"
    assert expected in one.stdout + one.stderr
    family = snakemake("-n", "--directory", str(tmp_path), *configs(tmp_path, families=["shape"]), check=False)
    assert family.returncode != 0 and "'shape' is not one of" in family.stdout + family.stderr


def test_planted_cohort_end_to_end_recovers_planted_effects(tmp_path):
    """A 100-patient planted cohort through ingestion, anatomy, clinical indices and the statistics.

    The planted value comes from the simulator's truth alone: each patient's applied LA effect
    ``e`` (truth ``effect_la_volume``: the volume is the patient's base volume times ``1 + e``)
    gives its planted shift ``V e / (1 + e)``; the planted group effect is that shift's
    covariate-adjusted case-minus-control difference (statsmodels, fitted here).
    """
    import statsmodels.formula.api as smf

    cohort = tmp_path / "cohort.yaml"
    cohort.write_text(yaml.safe_dump({"cohort": {"synthetic": {"n_patients": 100, "seed": 5}}}))
    snakemake("results/stats/effects.tsv", "--cores", "2", "--directory", str(tmp_path),
              *configs(tmp_path, families=["clinical", "attributes"]), str(cohort))
    effects = pd.read_csv(tmp_path / "results/stats/effects.tsv", sep="\t", keep_default_na=False, na_values=[""])
    truth = pd.read_csv(tmp_path / "results/cohort/truth/patients.tsv", sep="\t")
    truth["planted_shift"] = truth["la_volume_es_ml"] * truth["effect_la_volume"] / (1 + truth["effect_la_volume"])
    truth["sex_m"] = (truth["sex"] == "M").astype(float)
    truth["case"] = (truth["group"] == "hypertensive").astype(float)
    planted = smf.ols("planted_shift ~ case + age + sex_m + bsa", data=truth).fit().params["case"]
    assert 3.0 < planted < 15.0  # 15 % of a ~50 mL atrium

    def row(outcome, adjusted=True):
        hit = effects[(effects["outcome"] == outcome) & (effects["adjusted"] == adjusted)]
        assert len(hit) == 1, outcome
        return hit.iloc[0]

    la = row("la_volume_ml")
    assert la["q"] < 0.05 and la["ci_low"] <= planted <= la["ci_high"], (planted, la.to_dict())
    # confounding: cases have a larger BSA, so the unadjusted effect overstates the planted one
    assert abs(row("la_volume_ml", adjusted=False)["beta"] - planted) > abs(la["beta"] - planted)
    # thicker walls (planted +20 %): a larger myocardium in both views, positive and significant
    for view in ("2CH", "4CH"):
        myo = row(f"myo_area_mm2.{view}.ed")
        assert myo["beta"] > 0 and myo["q"] < 0.05
    # the negative controls carry no planted effect: none passes the FDR
    adjusted = effects[effects["adjusted"]]
    controls = adjusted[adjusted["outcome"].str.match(r"(lv_base_width_mm|lv_orientation_deg)\.")]
    assert len(controls) == 16 and (controls["q"] >= 0.05).all()


def test_tiny_study_writes_every_statistics_table(tmp_path):
    """Default families (latent included): the latent analyses, decoded shapes, curves, classification and
    agreement of a tiny trained study, each table with its documented columns."""
    from echolatent.stats.agreement import AGREEMENT_COLUMNS
    from echolatent.stats.classification import CLASSIFICATION_COLUMNS
    from echolatent.stats.curves import CURVE_COLUMNS, TEST_COLUMNS

    targets = ["results/stats/curves.tsv", "results/stats/classification.tsv", "results/stats/agreement.tsv",
               "results/stats/latent/tiny/decoded.tsv"]
    # config.yaml's arvae and cvae stay in the study (configs merge): made as tiny, they make a three-model study
    tiny = {"training": {"device": "cpu", "epochs": 2, "batch_size": 32, "model": {"blocks": 2, "init_channels": 8}}}
    models = tmp_path / "models.yaml"
    models.write_text(yaml.safe_dump({"models": {"arvae": tiny, "cvae": tiny}}))
    snakemake(*targets, "--cores", "2", "--directory", str(tmp_path), *configs(tmp_path), str(models))
    stats = tmp_path / "results/stats"

    def read(name):
        return pd.read_csv(stats / name, sep="\t", keep_default_na=False, na_values=[""])

    curves, tests = read("curves.tsv"), read("curve_tests.tsv")
    assert list(curves.columns) == CURVE_COLUMNS and list(tests.columns) == TEST_COLUMNS
    assert set(curves["family"]) == {"attributes", "latent"}
    assert set(curves.loc[curves["family"] == "latent", "model"]) == {"arvae", "cvae", "tiny"}
    assert (tests["n_permutations"] == 99).all()  # the .test config's population.n_permutations
    classification = read("classification.tsv")
    assert list(classification.columns) == CLASSIFICATION_COLUMNS
    assert list(classification["features"]) == ["clinical", "latent.arvae", "clinical+latent.arvae", "latent.cvae",
                                                "clinical+latent.cvae", "latent.tiny", "clinical+latent.tiny"]
    agreement = read("agreement.tsv")
    assert list(agreement.columns) == AGREEMENT_COLUMNS
    assert set(agreement["method"]) == {"input", "reconstruction.arvae", "temporal.arvae", "reconstruction.cvae",
                                        "reconstruction.tiny", "temporal.tiny"}
    assert set(agreement["reference"]) == {"input", "truth"}
    codes, decoded = read("latent/tiny/codes.tsv"), read("latent/tiny/decoded.tsv")
    assert len(decoded) == len(codes) and set(decoded["kind"]) == {"mode", "group_mean", "direction"}
    import h5py

    with h5py.File(stats / "latent/tiny/decoded.h5") as h5:
        masks, spacing = h5["masks"][()], h5["masks"].attrs["spacing"]
    assert masks.shape == (len(codes), 32, 32)
    # each decoded shape's measured LV area is its LV pixels times the model-grid pixel area
    area = (masks == 1).sum(axis=(1, 2)) * spacing[:, 0] * spacing[:, 1]
    assert np.allclose(decoded["lv_area_mm2"].fillna(0), area)
    permutation = read("latent/tiny/permutation.tsv")
    assert permutation["p"].between(0.01, 1).all() and (permutation["n_permutations"] == 99).all()
