"""Scale (issue 18): the workflow's size follows its shards, not its patients."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import yaml

from conftest import snakemake


def _planned_jobs(root, n_patients: int, shards: int) -> tuple[int, float]:
    """Jobs of the default study's DAG for a synthetic cohort (dry run) and the seconds it took."""
    config = root / f"config-{n_patients}-{shards}.yaml"
    config.write_text(yaml.safe_dump({"cohort": {"shards": shards, "synthetic": {"n_patients": n_patients}}}))
    start = time.perf_counter()
    result = snakemake("--dry-run", "--directory", str(root), "--configfile", str(config))
    seconds = time.perf_counter() - start
    totals = re.findall(r"^total\s+(\d+)\s*$", result.stdout, flags=re.MULTILINE)
    assert totals, f"no job count in the dry run's output:\n{result.stdout[-2000:]}"
    return int(totals[-1]), seconds


def test_the_job_count_grows_with_shards_not_patients(tmp_path):
    small, _ = _planned_jobs(tmp_path, 200, 8)
    large, _ = _planned_jobs(tmp_path, 2000, 8)
    assert large == small
    # 10,000 patients: the same DAG, planned in well under the 15 s
    cohort, seconds = _planned_jobs(tmp_path, 10_000, 8)
    assert cohort == small and seconds < 15
    # and the count does follow the shards (per-shard rules of every stage), so the equality above can fail
    fewer, _ = _planned_jobs(tmp_path, 200, 4)
    assert fewer < small


def test_one_decoder_pass_gives_both_grids():
    """:func:`decode_masks_both` equals the two separate decodings it replaces."""
    import torch

    from echolatent.models import MaskVAE, VAEConfig
    from echolatent.models.inference import decode_masks, decode_masks_both

    torch.manual_seed(0)
    model = MaskVAE(VAEConfig(input_size=32, blocks=2, init_channels=4, latent_dim=6))
    with torch.no_grad():  # random weights draw every class (a fresh decoder draws one)
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    codes = np.random.default_rng(1).normal(size=(70, 6)).astype(np.float32)
    small, large = decode_masks_both(model, codes, size=(83, 61), grid=48, batch_size=32)
    np.testing.assert_array_equal(small, decode_masks(model, codes, batch_size=32))
    np.testing.assert_array_equal(large, decode_masks(model, codes, size=(83, 61), grid=48, batch_size=32))
    assert small.shape == (70, 32, 32) and large.shape == (70, 83, 61)
    assert len(np.unique(small)) == 4 and len(np.unique(large)) == 4


def test_gathering_reads_only_the_columns_asked_for_in_shard_order(tmp_path):
    import pandas as pd

    from echolatent.io.tables import read_tables, write_table

    write_table(pd.DataFrame({"patient_id": ["b", "a"], "frame": [0, 1], "mu_0": [0.5, 1.5], "logvar_0": [9.0, 9.0]}),
                tmp_path / "shard-0.parquet")
    write_table(pd.DataFrame({"patient_id": ["c"], "frame": [2], "mu_0": [2.5], "logvar_0": [9.0]}),
                tmp_path / "shard-1.parquet")
    shards = [tmp_path / "shard-0.parquet", tmp_path / "shard-1.parquet"]
    codes = read_tables(shards, lambda c: c == "patient_id" or c.startswith("mu_"))
    assert codes.columns.tolist() == ["patient_id", "mu_0"]
    assert codes["patient_id"].tolist() == ["b", "a", "c"] and codes["mu_0"].tolist() == [0.5, 1.5, 2.5]
    assert read_tables(shards[::-1], ["frame"])["frame"].tolist() == [2, 0, 1]
    assert read_tables(shards).shape == (3, 4)
