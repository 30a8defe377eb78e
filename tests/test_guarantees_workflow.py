"""The anatomical guarantees run through Snakemake on the tiny cohort: densification, correction per shard,
the anatomy stage on the corrected shards, NIfTI export, and the order of the corrections."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, snakemake
from echolatent.io.shards import iter_shard

pytestmark = pytest.mark.slow  # runs Snakemake for real (README: `pytest -m "not slow"` skips these)

SHARDS = (0, 1)


def configs(root, **guarantees):
    """config.yaml, the tiny test config, and a cvae trained long enough to decode valid shapes."""
    settings = {"temporal_model": "tiny", "n_samples": 1500, **guarantees}
    cvae = {"device": "cpu", "epochs": 40, "batch_size": 32, "model": {"blocks": 2, "init_channels": 8}}
    extra = {"models": {"cvae": {"training": cvae}}, "guarantees": settings}
    (root / "guarantees.yaml").write_text(yaml.safe_dump(extra))
    return ["--configfile", str(REPO / "config/config.yaml"), str(REPO / ".test/config/config.yaml"),
            str(root / "guarantees.yaml")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("guarantees")
    targets = ["results/guarantees/cvae/summary.tsv"] + [
        f"results/{part}/shard-{k}.parquet" for k in SHARDS for part in ("anatomy/guaranteed/cvae", "anatomy/input")
    ] + [f"results/guarantees/cvae/nifti/shard-{k}" for k in SHARDS]
    snakemake(*targets, "--cores", "2", "--directory", str(root), *configs(root))
    return root


def test_every_frame_is_valid_untouched_corrected_or_reported(run):
    frames = pd.concat([pd.read_csv(run / f"results/guarantees/cvae/shard-{k}.tsv", sep="\t") for k in SHARDS])
    after = pd.concat([pd.read_parquet(run / f"results/anatomy/guaranteed/cvae/shard-{k}.parquet") for k in SHARDS])
    merged = frames.merge(after[["patient_id", "view", "frame", "anatomical_errors"]], validate="one_to_one")
    assert len(merged) == len(frames) == len(after)
    # the anatomy stage, measuring the corrected shards on its own, finds errors exactly on the reported frames
    np.testing.assert_array_equal(merged["anatomical_errors"].astype(bool), merged["status"] == "uncorrectable")
    assert (merged["status"] == "corrected").sum() > 0, "the test's cvae should correct some frames"
    # what was failing is what the table calls failing: criteria measured on the input of the step
    assert ((merged["criteria_failed"] > 0) == (merged["status"] != "valid")).all()
    assert set(merged["masks"]) == {"temporal/tiny"}
    assert set(merged["split"]) <= {"train", "val", "test"}

    # valid frames are the bytes of the temporally corrected masks they came from
    for k in SHARDS:
        given = {(s.patient_id, s.view): s.arrays["mask_native"]
                 for s in iter_shard(run / f"results/temporal/tiny/shard-{k}.h5")}
        for s in iter_shard(run / f"results/guarantees/cvae/shard-{k}.h5", ("mask_native", "status")):
            rows = frames[(frames["patient_id"] == s.patient_id) & (frames["view"] == s.view)].sort_values("frame")
            untouched = (rows["status"] != "corrected").to_numpy()
            original = given[(s.patient_id, s.view)]
            assert s.arrays["mask_native"][untouched].tobytes() == original[untouched].tobytes()
            changed = ~untouched
            assert (s.arrays["mask_native"][changed] != original[changed]).any(axis=(1, 2)).all()


def test_summary_densification_and_export(run):
    summary = pd.read_csv(run / "results/guarantees/cvae/summary.tsv", sep="\t").set_index("split")
    frames = pd.concat([pd.read_csv(run / f"results/guarantees/cvae/shard-{k}.tsv", sep="\t") for k in SHARDS])
    assert list(summary.index) == ["train", "val", "test", "all"]
    assert summary.loc["all", "frames"] == len(frames)
    assert summary.loc["all", "failing_after"] == (frames["status"] == "uncorrectable").sum()
    assert summary.loc[["train", "val", "test"], "corrected"].sum() == summary.loc["all", "corrected"]
    densified = json.loads((run / "results/guarantees/cvae/densification.json").read_text())
    assert densified["n_sampled"] == 1500 and densified["acceptance_rate"] == 1.0
    assert densified["splits"] == ["train"]
    with h5py.File(run / "results/guarantees/cvae/valid_codes.h5") as h5:
        assert h5["codes"].shape == (densified["n_valid"], 16)
    manifest = pd.read_csv(run / "results/guarantees/cvae/nifti/shard-0/manifest.tsv", sep="\t")
    assert len(manifest) and all((run / "results/guarantees/cvae/nifti/shard-0" / f).is_file()
                                 for f in manifest["file"])


def test_the_order_of_the_corrections_chains_their_inputs(run, tmp_path):
    # [anatomical, temporal]: the temporal correction reads the anatomically corrected shard
    dry = snakemake("-n", "-p", "--forceall", "results/temporal/tiny/shard-0.tsv", "--directory", str(run),
                    *configs(run, postprocess=["anatomical", "temporal"]))
    assert "results/guarantees/cvae/shard-0.h5" in dry.stdout
    # population.masks: final reads the attributes of the last step's masks
    extra = tmp_path / "final.yaml"
    extra.write_text(yaml.safe_dump({"population": {"masks": "final"}}))
    dry = snakemake("-n", "results/stats/patients.tsv", "--directory", str(run), *configs(run), str(extra))
    assert "results/attributes/guaranteed/cvae/shard-0.parquet" in dry.stdout
    assert "results/clinical/guaranteed/cvae/indices.tsv" in dry.stdout
