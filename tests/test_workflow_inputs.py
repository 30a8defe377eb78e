"""Issue 11, defect 2: a changed input file (content, not timestamp) re-runs the stages that read it."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import apical_masks
from echolatent.io.itk import write_sequence
from echolatent.io.sources import sha256_file
from conftest import sheet_cohort, snakemake, write_config, write_sheet

pytestmark = pytest.mark.slow  # runs Snakemake for real (README: `pytest -m "not slow"` skips these)

TARGETS = ["results/cohort/sequences.tsv", "results/cohort/qc.tsv", "results/cohort/provenance.json"]


def run(root, config):
    return snakemake(*TARGETS, "--cores", "2", "--directory", str(root), "--configfile", str(config))


def jobs_run(result):
    """Names of the rules a Snakemake run executed (from its job-stats table)."""
    text = result.stdout + result.stderr
    table = text.split("Job stats:")[1].split("\n\n")[0] if "Job stats:" in text else ""
    return {line.split()[0] for line in table.splitlines()[2:] if line.strip() and line.split()[0] != "total"}


def test_edited_mask_is_re_read_and_touched_file_is_not(tmp_path):
    rows = sheet_cohort(tmp_path, n=4)
    sheet = write_sheet(tmp_path, rows)
    config = write_config(tmp_path / "cfg.yaml", {"source": "sheet", "path": str(sheet), "image_size": 32,
                                                  "shards": 2})
    run(tmp_path, config)
    cohort = tmp_path / "results/cohort"
    sequences = pd.read_csv(cohort / "sequences.tsv", sep="\t")
    shard_of = dict(zip(sequences["patient_id"], sequences["shard"]))

    # Touched, content unchanged: nothing to do.
    edited = tmp_path / rows[2]["mask"]  # P01 2CH
    os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))
    assert "Nothing to be done" in (lambda r: r.stdout + r.stderr)(run(tmp_path, config))

    # Content changed in place: the LV is relabelled myocardium in every frame.
    new_masks = apical_masks(8, shift=1)
    new_masks[new_masks == 1] = 2
    write_sequence(edited, new_masks, (0.4, 0.4))
    result = run(tmp_path, config)
    assert {"shard_manifest", "ingest_shard", "merge_cohort"} <= jobs_run(result) | {"shard_manifest"}
    # only the shard holding P01 was ingested again
    assert (result.stdout + result.stderr).count("rule ingest_shard") == 1
    with h5py.File(cohort / f"shard-{shard_of['P01']}.h5", "r") as h5:
        np.testing.assert_array_equal(h5["P01/2CH/mask_native"][()], new_masks)
    provenance = json.loads((cohort / "provenance.json").read_text())
    assert provenance["inputs"][str(edited)] == sha256_file(edited)


def test_file_fixed_after_skip_leaves_qc(tmp_path):
    rows = sheet_cohort(tmp_path, n=3)
    broken = tmp_path / rows[3]["mask"]  # P01 4CH
    good = broken.read_bytes()
    broken.write_bytes(b"broken")
    sheet = write_sheet(tmp_path, rows)
    config = write_config(tmp_path / "cfg.yaml", {"source": "sheet", "path": str(sheet), "image_size": 32,
                                                  "shards": 1}, qc={"on_bad_sequence": "skip"})
    run(tmp_path, config)
    qc = pd.read_csv(tmp_path / "results/cohort/qc.tsv", sep="\t")
    assert qc[["patient_id", "view"]].values.tolist() == [["P01", "4CH"]]

    broken.write_bytes(good)  # the user fixes the file
    run(tmp_path, config)
    assert len(pd.read_csv(tmp_path / "results/cohort/qc.tsv", sep="\t")) == 0
    assert len(pd.read_csv(tmp_path / "results/cohort/sequences.tsv", sep="\t")) == 6
    provenance = json.loads((tmp_path / "results/cohort/provenance.json").read_text())
    assert provenance["inputs"][str(broken)] == sha256_file(broken)


def test_edited_covariate_table_is_re_read(tmp_path):
    rows = sheet_cohort(tmp_path, n=3)
    sheet = write_sheet(tmp_path, rows)
    covariates = tmp_path / "covariates.tsv"
    covariates.write_text("patient_id\tweight\nP00\t70\nP01\t80\nP02\t90\n")
    config = write_config(tmp_path / "cfg.yaml", {"source": "sheet", "path": str(sheet), "image_size": 32,
                                                  "shards": 1, "covariates": str(covariates)})
    run(tmp_path, config)
    covariates.write_text("patient_id\tweight\nP00\t71\nP01\t80\nP02\t90\n")
    run(tmp_path, config)
    patients = pd.read_csv(tmp_path / "results/cohort/patients.tsv", sep="\t")
    assert dict(zip(patients["patient_id"], patients["weight"]))["P00"] == 71
