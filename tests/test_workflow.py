"""The workflow itself: real Snakemake runs (dry run, lint, and small end-to-end runs)."""

from __future__ import annotations


import h5py
import pandas as pd
import pytest
import yaml

from conftest import REPO, sheet_cohort, snakemake, write_config, write_sheet

pytestmark = pytest.mark.slow  # runs Snakemake for real (README: `pytest -m "not slow"` skips these)

def test_default_config_dry_run_and_lint_are_clean(tmp_path):
    dry = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(REPO / "config/config.yaml"))
    assert "simulate_cohort" in dry.stdout and "ingest_shard" in dry.stdout
    lint = snakemake("--lint", "--directory", str(tmp_path), "--configfile", str(REPO / "config/config.yaml"))
    assert "Congratulations" in lint.stdout + lint.stderr


def test_bad_config_is_refused_at_parse_time(tmp_path):
    config = write_config(tmp_path / "bad.yaml", {"source": "camus", "shards": 0})
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(config), check=False)
    assert result.returncode != 0 and "shards" in result.stdout + result.stderr


def test_sheet_cohort_end_to_end_with_skip(tmp_path):
    rows = sheet_cohort(tmp_path, n=5)
    (tmp_path / rows[3]["mask"]).write_bytes(b"broken")
    sheet = write_sheet(tmp_path, rows)
    config = write_config(tmp_path / "cfg.yaml", {"source": "sheet", "path": str(sheet), "image_size": 32,
                                                  "shards": 2}, qc={"on_bad_sequence": "skip"})
    # The cohort stage only (targets first: --configfile would swallow them).
    targets = ["results/cohort/sequences.tsv", "results/cohort/qc.tsv", "results/cohort/patients.tsv"]
    snakemake(*targets, "--cores", "2", "--directory", str(tmp_path), "--configfile", str(config))
    cohort = tmp_path / "results/cohort"
    sequences = pd.read_csv(cohort / "sequences.tsv", sep="\t")
    assert len(sequences) == 9
    qc = pd.read_csv(cohort / "qc.tsv", sep="\t")
    assert qc[["patient_id", "view"]].values.tolist() == [["P01", "4CH"]]
    for shard in (0, 1):
        with h5py.File(cohort / f"shard-{shard}.h5", "r") as h5:
            assert h5.attrs["image_size"] == 32
            assert all(h5[f"{p}/{v}/mask"].shape[1:] == (32, 32)
                       for p, v in sequences.loc[sequences["shard"] == shard, ["patient_id", "view"]].values)
    again = snakemake(*targets, "--cores", "2", "--directory", str(tmp_path), "--configfile", str(config))
    assert "Nothing to be done" in again.stdout + again.stderr


def test_sheet_cohort_error_mode_names_the_file_and_leaves_no_shard(tmp_path):
    rows = sheet_cohort(tmp_path, n=3)
    (tmp_path / rows[2]["mask"]).write_bytes(b"broken")
    config = write_config(tmp_path / "cfg.yaml", {"source": "sheet", "path": str(write_sheet(tmp_path, rows)),
                                                  "image_size": 32, "shards": 1})
    result = snakemake("results/cohort/sequences.tsv", "--cores", "1", "--directory", str(tmp_path),
                       "--configfile", str(config), check=False)
    assert result.returncode != 0
    log = (tmp_path / "logs/ingest_shard/0.log").read_text()
    assert "p1_2CH_gt.nii.gz: unreadable or truncated image" in log
    assert not (tmp_path / "results/cohort/shard-0.h5").exists()


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    # Issue 11 defect 6: Snakemake said "Config file is not valid JSON or YAML", naming neither.
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text("cohort:\n  source: synthetic\n  shards: [2\nmodel:\n  name: x\n")
    result = snakemake("-n", "--directory", str(tmp_path), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config/config.yaml: YAML syntax error at line 4, column 6: expected ',' or ']', but got ':' " \
        "(while parsing a flow sequence started at line 3)" in output, output[-2000:]


def test_split_fractions_and_model_name_are_checked_at_parse_time(tmp_path):
    config = write_config(tmp_path / "fractions.yaml", {"split": {"train": 0.7, "val": 0.2, "test": 0.2}})
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(config), check=False)
    assert result.returncode != 0 and "cohort.split fractions must be >= 0 and sum to 1" in result.stdout + result.stderr
    # Issue 11 defect 4: ".." put the model's outputs in results/ itself, two stages wrote one file
    for name in ("..", ".", "a/b", ".hidden"):
        config = write_config(tmp_path / "name.yaml", {}, models={name: {"kind": "vae"}})
        result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(config), check=False)
        assert result.returncode != 0 and "does not match" in result.stdout + result.stderr, name


BROKEN_CONFIGS = {
    # name: (config sections, text the parse-time error must contain)
    "unknown source": ({"cohort": {"source": "dicom"}}, "'dicom' is not one of"),
    "grid too small": ({"cohort": {"image_size": 8}}, "8 is less than the minimum of 16"),
    "camus without path": ({"cohort": {"source": "camus"}}, "cohort.path is required when cohort.source is 'camus'"),
    "camus folder missing": ({"cohort": {"source": "camus", "path": "nowhere"}}, "nowhere: CAMUS folder not found"),
    "unknown top-level key": ({"cohort": {}, "modle": {}}, "Additional properties are not allowed ('modle'"),
    "unknown training key": ({"cohort": {}, "models": {"m": {"kind": "vae", "training": {"epoch": 3}}}},
                             "models.m.training: training config: unknown key(s) ['epoch']"),
    "zero epochs": ({"cohort": {}, "models": {"m": {"kind": "vae", "training": {"epochs": 0}}}},
                    "TrainConfig.epochs must be a positive integer, got 0"),
    "zero threads": ({"cohort": {}, "models": {"m": {"kind": "vae", "training": {"num_threads": 0}}}},
                     "0 is less than the minimum of 1"),
    "no models": ({"cohort": {}, "models": {}}, "should be non-empty"),
    "model without kind": ({"cohort": {}, "models": {"m": {"attributes": ["lv_area"]}}}, "'kind' is a required property"),
    "unknown model kind": ({"cohort": {}, "models": {"m": {"kind": "gan"}}}, "'gan' is not one of"),
    "loss kind twice": ({"cohort": {}, "models": {"m": {"kind": "vae", "training": {"loss": {"kind": "ar-vae"}}}}},
                        "models.m.training.loss.kind: the loss is the entry's kind"),
    "model grid twice": ({"cohort": {}, "models": {"m": {"kind": "vae", "training": {"model": {"input_size": 32}}}}},
                         "models.m.training.model.input_size: the model grid is cohort.image_size"),
    "old temporal key": ({"cohort": {}, "temporal": {"weight": 4.0}}, "Additional properties are not allowed ('weight'"),
    "bad qc mode": ({"cohort": {}, "qc": {"on_bad_sequence": "ignore"}}, "'ignore' is not one of ['error', 'skip']"),
    "bad simulator size": ({"cohort": {"synthetic": {"n_patients": -1}}}, "n_patients"),
}


@pytest.mark.parametrize("name", list(BROKEN_CONFIGS))
def test_broken_config_is_refused_at_parse_time_naming_the_key(tmp_path, name):
    sections, expected = BROKEN_CONFIGS[name]
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump(sections))
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(config), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and expected in output, output[-1500:]
    assert not (tmp_path / "results").exists()  # nothing written
