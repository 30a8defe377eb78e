"""The SLURM profiles: no conda needed, retries, and every GPU rule (only those) on the GPU partition.

The partition of each job is read from a real dry run of the workflow with the profile's own
`cluster:` keys; the GPU rules are those whose jobs ask for a GPU in the same dry run.
"""

from __future__ import annotations

import os
import re

import pytest
import yaml

from conftest import REPO, snakemake

PROFILES = {name: yaml.safe_load((REPO / "profiles" / name / "config.v8+.yaml").read_text())
            for name in ("slurm", "slurm-conda")}


def test_profiles_need_conda_only_when_they_say_so():
    assert "software-deployment-method" not in PROFILES["slurm"]
    assert PROFILES["slurm-conda"]["software-deployment-method"] == "conda"
    for profile in PROFILES.values():
        assert profile["executor"] == "slurm" and profile["retries"] >= 1
        assert set(profile["config"]["cluster"]) == {"cpu_partition", "gpu_partition", "account"}
        # the partitions are the workflow's business, not a list of rules to keep in sync
        assert "set-resources" not in profile and "slurm_partition" not in profile.get("default-resources", {})


def jobs_of(dry_run: str) -> list[tuple[str, dict]]:
    """(rule, resources) of every job of a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run):
        header = re.match(r"(?:local)?rule (\w+):", block)
        found = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        if header and found:
            pairs = (item.split("=", 1) for item in found.group(1).split(", "))
            jobs.append((header.group(1), {key: value for key, value in pairs}))
    return jobs


@pytest.mark.slow
def test_gpu_jobs_and_only_those_go_to_the_gpu_partition(tmp_path):
    cluster = {"cluster": {"cpu_partition": "short", "gpu_partition": "accel", "account": "lab42"}}
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    # planned as on a machine with a GPU (a cluster run keeps the tokens whatever the login node has)
    with_gpu = dict(os.environ, ECHOLATENT_GPUS="0")
    dry = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(REPO / "config/config.yaml"),
                    str(tmp_path / "cluster.yaml"), env=with_gpu)
    jobs = jobs_of(dry.stdout)
    assert len(jobs) > 50
    gpu_rules = {rule for rule, res in jobs if res.get("gpu") == "1"}
    assert gpu_rules == {"train_vae", "encode_latents", "latent_thresholds", "temporal_correction",
                         "stats_latent_decode", "densify_latent_space", "anatomical_correction"}
    for rule, res in jobs:
        assert res["slurm_partition"] == ("accel" if rule in gpu_rules else "short"), (rule, res)
        assert res["slurm_account"] == "lab42" and res["attempt"] == "1"
    # without cluster keys (a local run) no partition or account is set
    local = jobs_of(snakemake("-n", "--directory", str(tmp_path), "--configfile",
                              str(REPO / "config/config.yaml"), env=with_gpu).stdout)
    assert local and not [res for _, res in local if "slurm_partition" in res or "slurm_account" in res]
    assert {rule for rule, res in local if res.get("gpu") == "1"} == gpu_rules
    # a local run on a machine without GPU: `device: auto` runs on the CPU, so no job takes a
    # GPU token and `--resources gpu=1` does not run the network jobs one at a time
    no_gpu = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    no_gpu.pop("ECHOLATENT_GPUS", None)
    cpu_only = jobs_of(snakemake("-n", "--directory", str(tmp_path), "--configfile",
                                 str(REPO / "config/config.yaml"), env=no_gpu).stdout)
    assert {rule for rule, _ in cpu_only} == {rule for rule, _ in local}
    assert not [rule for rule, res in cpu_only if res.get("gpu", "0") != "0"]
