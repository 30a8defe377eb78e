"""The encoding and temporal stages run through Snakemake on a small synthetic cohort with a tiny model."""

from __future__ import annotations

import h5py
import pandas as pd
import pytest

from conftest import REPO, snakemake
from echolatent.io.itk import read_sequence

pytestmark = pytest.mark.slow  # runs Snakemake for real (README: `pytest -m "not slow"` skips these)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("temporal_stage")
    targets = ["results/temporal/tiny/summary.tsv", "results/temporal/detection.tsv"] + [
        f"results/{part}/shard-{k}.{ext}" for k in (0, 1)
        for part, ext in (("latents/tiny", "parquet"), ("latents/tiny", "h5"), ("temporal/tiny", "h5"))] + [
        f"results/temporal/tiny/nifti/shard-{k}" for k in (0, 1)]
    # Targets first: --configfile takes several files and would swallow them.
    snakemake(*targets, "--cores", "2", "--directory", str(root), "--configfile", str(REPO / "config/config.yaml"),
              str(REPO / ".test/config/config.yaml"))
    return root


def test_latents_one_row_per_frame_with_reconstructions(run):
    frames = pd.read_csv(run / "results/cohort/sequences.tsv", sep="\t")["n_frames"].sum()
    latents = pd.concat([pd.read_parquet(run / f"results/latents/tiny/shard-{k}.parquet") for k in (0, 1)])
    assert len(latents) == frames and {"mu_0", "mu_15", "logvar_15", "frame_pos", "dice_mean"} <= set(latents.columns)
    assert latents[["patient_id", "view", "frame"]].duplicated().sum() == 0
    with h5py.File(run / "results/latents/tiny/shard-0.h5") as h5:
        first = h5[next(iter(h5))]
        view = first[next(iter(first))]
        assert view["mask"].shape[1:] == (32, 32) and view["mask_native"].shape[1:] == (256, 256)


def test_temporal_tables_and_summary_agree(run):
    tables = pd.concat([pd.read_csv(run / f"results/temporal/tiny/shard-{k}.tsv", sep="\t") for k in (0, 1)])
    summary = pd.read_csv(run / "results/temporal/tiny/summary.tsv", sep="\t")
    assert summary["split"].tolist() == [s for s in ("train", "val", "test", "all") for _ in range(3)]
    assert tables["split"].isin(["train", "val", "test"]).all()
    per_split = summary[summary["sequences"] == "all"].set_index("split")["n_sequences"]
    assert per_split[["train", "val", "test"]].sum() == per_split["all"] == len(tables)
    summary = summary[summary["split"] == "all"].set_index("sequences")
    assert summary.loc["all", "n_sequences"] == len(tables) == 16
    assert summary.loc["all", "inconsistent_sequences_after"] == tables["sequence_inconsistent_after"].sum()
    assert set(tables["method"]) <= {"none", "repair", "smooth"}
    # every sequence with a flagged frame is corrected, the others are only pre-cleaned
    flagged = tables["sequence_inconsistent_before"] | (tables["anatomical_errors_before"] > 0)
    assert tables.loc[flagged, "corrected"].all() and (tables.loc[~tables["corrected"], "replaced_frames"] == 0).all()
    # spikes were injected and the synthetic truth gives Dice before/after
    assert tables["n_spikes"].sum() > 0 and tables["dice_after"].between(0, 1).all()
    detection = pd.read_csv(run / "results/temporal/detection.tsv", sep="\t")
    assert set(detection["split"]) == {"train", "val", "test", "all"}
    assert detection["detector"].drop_duplicates().tolist() == ["deviation", "spikes"]  # the configured one first
    detection = detection[(detection["split"] == "all") & (detection["detector"] == "deviation")].set_index("frames")
    assert detection.loc["spike", "n_frames"] > 0


def test_corrected_sequences_exported_as_nifti(run):
    folders = [run / f"results/temporal/tiny/nifti/shard-{k}" for k in (0, 1)]
    manifests = [pd.read_csv(folder / "manifest.tsv", sep="\t") for folder in folders]
    assert sum(len(m) for m in manifests) == 16
    # every file the rule wrote is inside its declared output folder and listed in its manifest
    for folder, manifest in zip(folders, manifests):
        written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.nii.gz"))
        assert written == sorted(manifest["file"])
    row = manifests[0].iloc[0]
    array, spacing = read_sequence(folders[0] / row["file"])
    with h5py.File(run / "results/temporal/tiny/shard-0.h5") as h5, \
            h5py.File(run / "results/temporal/tiny/shard-1.h5") as h5b:
        group = (h5 if row["patient_id"] in h5 else h5b)[row["patient_id"]][row["view"]]
        assert array.shape == group["mask_native"].shape and (array == group["mask_native"][()]).all()
    assert spacing[0] > 0
