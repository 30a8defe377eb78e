"""The anatomy stage on a small synthetic cohort run through Snakemake, checked against the simulator's truth."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from echolatent.stages.shape import cohort_clinical_indices
from conftest import REPO, snakemake

pytestmark = pytest.mark.slow  # runs Snakemake for real (README: `pytest -m "not slow"` skips these)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("anatomy_stage")
    config = {
        "cohort": {"source": "synthetic", "image_size": 64, "shards": 2, "cycle": "full",
                   "synthetic": {"n_patients": 8, "seed": 5, "frames": 16,
                                 "observation": {"defect_rates": {"hole": 0.05, "island": 0.05, "myo_gap": 0.05,
                                                                  "lv_bg_contact": 0.05, "spike": 0.05}}}},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/{t}/{s}/shard-{k}.parquet" for t in ("anatomy", "attributes") for s in ("input", "truth")
               for k in (0, 1)] + ["results/clinical/indices.tsv", "results/cohort/truth/frames.tsv",
                                   "results/cohort/truth/patients.tsv"]
    # Targets first: --configfile takes several files and would swallow them.
    snakemake(*targets, "--cores", "2", "--directory", str(root), "--configfile", str(REPO / "config/config.yaml"),
              str(root / "config.yaml"))
    return root


def frames_table(root, table, source):
    return pd.concat([pd.read_parquet(root / f"results/{table}/{source}/shard-{k}.parquet") for k in (0, 1)])


def test_criteria_fire_exactly_on_injected_defects(run):
    truth = pd.read_csv(run / "results/cohort/truth/frames.tsv", sep="\t")
    clean = frames_table(run, "anatomy", "truth")
    observed = frames_table(run, "anatomy", "input")
    assert len(clean) == len(observed) == len(truth) == 8 * 2 * 16
    assert not clean["anatomical_errors"].any()
    merged = observed.merge(truth, on=["patient_id", "view", "frame"])
    flags = ["defect_hole", "defect_island", "defect_myo_gap", "defect_lv_bg_contact"]
    anatomical_defects = merged[flags].any(axis=1)
    assert anatomical_defects.sum() >= 10 and merged["defect_spike"].sum() >= 3
    # Every injected anatomical defect is caught, and nothing else is (spikes are temporal, not anatomical).
    assert (merged["anatomical_errors"] == anatomical_defects).all()
    lv_bg = merged[merged["defect_lv_bg_contact"] == 1]
    assert (lv_bg["frontier_ratio_between_lv_and_bg"] > 0.4).all()


def test_attribute_tables_carry_ids_and_mm_variants(run):
    attributes = frames_table(run, "attributes", "input")
    assert {"patient_id", "view", "frame", "frame_pos", "lv_area", "lv_area_mm2", "epi_center_y_mm"} <= set(attributes)
    assert attributes["frame_pos"].between(0, 1).all() and (attributes["lv_area"] > 0).all()


def test_simpson_on_clean_masks_matches_the_imaged_geometry(run):
    shards = [run / f"results/cohort/truth/shard-{k}.h5" for k in (0, 1)]
    meta = [run / f"results/cohort/shard-{k}.h5" for k in (0, 1)]
    measured = cohort_clinical_indices(shards, attrs_from=meta)
    truth = pd.read_csv(run / "results/cohort/truth/patients.tsv", sep="\t")
    merged = measured.merge(truth, on="patient_id", suffixes=("", "_truth"))
    # The two views sample the cycle at their own instants: the truth is the analytic volume
    # of the imaged ED/ES frames, averaged over the two views.
    for phase in ("edv", "esv"):
        imaged = (merged[f"{phase}_frame_2ch_ml"] + merged[f"{phase}_frame_4ch_ml"]) / 2
        assert ((merged[f"{phase}_ml"] - imaged).abs() / imaged).max() < 0.02
    ef = 100 * (1 - (merged["esv_frame_2ch_ml"] + merged["esv_frame_4ch_ml"])
                / (merged["edv_frame_2ch_ml"] + merged["edv_frame_4ch_ml"]))
    assert (merged["ef_pct"] - ef).abs().max() < 1.0
    observed = pd.read_csv(run / "results/clinical/indices.tsv", sep="\t")
    assert len(observed) == 8 and observed["ef_pct"].between(40, 80).all()
