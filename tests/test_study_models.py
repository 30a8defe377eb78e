"""A study of several models: each entry given only its kind trains, encodes and is summarised (issue 13)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from conftest import REPO, snakemake

pytestmark = pytest.mark.slow


def test_two_models_given_only_their_kind_train_encode_and_are_compared(tmp_path):
    # the tiny cohort of the workflow tests; its own model entry is left out of the targets
    (tmp_path / "models.yaml").write_text(yaml.safe_dump({"models": {"plain": {"kind": "vae"},
                                                                     "attr": {"kind": "ar-vae"}}}))
    snakemake("results/models/quality.tsv", "--cores", "2", "--directory", str(tmp_path), "--configfile",
              str(REPO / ".test/config/config.yaml"), str(tmp_path / "models.yaml"))
    quality = pd.read_csv(tmp_path / "results/models/quality.tsv", sep="\t")
    # the tiny config's own model (tiny) is configured too: the study compares all three
    assert sorted(quality["model"].unique()) == ["attr", "plain", "tiny"]
    assert quality.groupby("model")["split"].apply(list).map(sorted).tolist() == [
        sorted(["train", "val", "test", "all"])] * 3
    frames = pd.read_csv(tmp_path / "results/cohort/sequences.tsv", sep="\t")["n_frames"].sum()
    for name, kind in (("plain", "vae"), ("attr", "ar-vae")):
        config = json.loads((tmp_path / f"results/models/{name}/config.json").read_text())
        assert config["loss"]["kind"] == kind
        assert config["model"]["input_size"] == 32                      # cohort.image_size of the tiny config
        assert config["epochs"] == 20 and config["model"]["latent_dim"] == 16   # the defaults, not tiny's
        latents = pd.concat([pd.read_parquet(tmp_path / f"results/latents/{name}/shard-{k}.parquet") for k in (0, 1)])
        assert len(latents) == frames
        row = quality[(quality["model"] == name) & (quality["split"] == "all")].iloc[0]
        assert row["n_frames"] == frames
    # the HTML report packages the study's tables with their captions
    snakemake("results/models/quality.tsv", "--report", str(tmp_path / "report.html"), "--directory", str(tmp_path),
              "--configfile",
              str(REPO / ".test/config/config.yaml"), str(tmp_path / "models.yaml"))
    assert (tmp_path / "report.html").stat().st_size > 10_000
    summary = json.loads((tmp_path / "results/models/attr/summary.json").read_text())
    plain = json.loads((tmp_path / "results/models/plain/summary.json").read_text())
    assert "spearman" in json.dumps(summary).lower() and "spearman" not in json.dumps(plain).lower()
