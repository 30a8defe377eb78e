"""The workflow on a real single-node SLURM cluster, through profiles/slurm with only its documented keys filled in.

The cluster (tests/slurm/start_cluster.sh: slurmctld, slurmd, slurmdbd with MariaDB for sacct,
two fake GPUs, a `cpu` partition whose QOS refuses GPUs and a `gpu` partition) is installed and
started by the test set-up; a machine where that cannot run (not root, no apt-get) skips these
tests with the script's reason. Which rule each SLURM job ran comes from the plugin's log folder
(logs/slurm/rule_{rule}/{wildcards}/{jobid}.log); what it was given, from sacct.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow

SCRIPTS = REPO / "tests" / "slurm"
TARGETS = ["results/temporal/tiny/summary.tsv", "results/models/tiny/checkpoint.pt"]
GPU_RULES = {"train_vae", "encode_latents", "latent_thresholds", "temporal_correction"}


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (tests/slurm/start_cluster.sh)")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.skip("snakemake-executor-plugin-slurm is not installed (make slurm)")
    # a cluster someone already runs here is used and left running; one started here is stopped after
    already_up = subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0 if _has("sinfo") else False
    started = subprocess.run(["bash", str(SCRIPTS / "start_cluster.sh")], capture_output=True, text=True)
    if started.returncode == 77:
        pytest.skip(f"no SLURM test cluster here: {started.stdout.strip()} {started.stderr.strip()}")
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    yield
    if not already_up:
        subprocess.run(["bash", str(SCRIPTS / "stop_cluster.sh")], capture_output=True, text=True)


def _has(command: str) -> bool:
    import shutil

    return shutil.which(command) is not None


def profile(root: Path) -> Path:
    """profiles/slurm with only its documented keys filled in (the test cluster's account)."""
    settings = yaml.safe_load((REPO / "profiles/slurm/config.v8+.yaml").read_text())
    settings["config"]["cluster"].update(cpu_partition="cpu", gpu_partition="gpu", account="echolatent")
    folder = root / "profile"
    folder.mkdir()
    (folder / "config.v8+.yaml").write_text(yaml.safe_dump(settings))
    return folder


def configs(root: Path, epochs: int) -> list[str]:
    # the tiny model with device auto: it declares a GPU (gpu=1) and falls back to the CPU in the job
    (root / "gpu.yaml").write_text(yaml.safe_dump({"models": {"tiny": {"training": {"device": "auto",
                                                                                     "epochs": epochs}}}}))
    return ["--configfile", str(REPO / ".test/config/config.yaml"), str(root / "gpu.yaml")]


def snakemake(root: Path, *args, timeout=900):
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                             "--directory", str(root), *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def slurm_jobs(run) -> pd.DataFrame:
    """One row per SLURM job of a Snakemake run (its run id names the jobs): rule (from the job comment
    the plugin writes, ``rule_{rule}[_wildcards_...]``), jobid, partition, GPUs allocated, state."""
    run_id = re.search(r"SLURM run ID: ([0-9a-f-]+)", run.stdout + run.stderr).group(1)
    out = subprocess.run(["sacct", "-X", "-n", "--parsable2", "--name", run_id, "--starttime", "now-1days",
                          "--format=JobID,Partition,AllocTRES,State,Comment"], capture_output=True, text=True,
                         check=True)
    jobs = pd.DataFrame([line.split("|") for line in out.stdout.strip().splitlines()],
                        columns=["jobid", "partition", "tres", "state", "comment"])
    jobs["rule"] = jobs["comment"].str.extract(r"^rule_(.+?)(?:_wildcards_.*)?$", expand=False)
    jobs["gpus"] = pd.to_numeric(jobs["tres"].str.extract(r"gres/gpu=(\d+)", expand=False)).fillna(0).astype(int)
    return jobs


def same_weights(a: Path, b: Path) -> bool:
    one = torch.load(a, map_location="cpu", weights_only=True)["model"]
    two = torch.load(b, map_location="cpu", weights_only=True)["model"]
    return one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)


def cancel_training_once(slurm: Path, cancelled: dict):
    """Wait for the training job to run a few epochs (last.pt written), then scancel it, once."""
    deadline = time.time() + 900
    log = slurm / "logs/train_vae/tiny.log"
    while time.time() < deadline:
        running = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True,
                                 text=True).stdout.split()
        ids = [line.split("|")[0] for line in running if line.split("|")[1].startswith("rule_train_vae")]
        if ids and log.exists() and len(re.findall(r"epoch \d+/", log.read_text())) >= 3:
            subprocess.run(["scancel", ids[0]], check=True)
            cancelled["jobid"] = ids[0]
            return
        time.sleep(1)


def test_the_tiny_study_on_slurm_gpu_jobs_retries_and_results(cluster, tmp_path):
    """One run through profiles/slurm, its training job cancelled on the cluster midway:

    every cluster job is a SLURM job of the run; exactly the GPU rules get a GPU, on the GPU
    partition (the CPU partition's QOS would refuse them); the cancelled training is retried by
    itself and resumes; tables and weights equal those of a local run of the same config."""
    slurm, local = tmp_path / "slurm", tmp_path / "local"
    slurm.mkdir()
    local.mkdir()
    epochs = 150  # long enough (tens of seconds) to be cancelled midway
    cancelled = {}
    watcher = threading.Thread(target=cancel_training_once, args=(slurm, cancelled))
    watcher.start()
    # the first status check after 5 s instead of 40 (a test-speed setting, not the profile's)
    run = snakemake(slurm, *TARGETS, "--workflow-profile", str(profile(slurm)),
                    "--slurm-init-seconds-before-status-checks", "5", *configs(slurm, epochs=epochs))
    watcher.join()
    jobs = slurm_jobs(run)
    assert jobs["rule"].notna().all(), jobs

    # every job Snakemake ran as a cluster job (not a `localrule`) is a SLURM job of the run
    remote = re.findall(r"^rule (\w+):", run.stdout + run.stderr, flags=re.M)
    assert sorted(jobs["rule"]) == sorted(remote) and len(remote) >= 9
    gpu = jobs[jobs["gpus"] > 0]
    assert set(gpu["rule"]) == GPU_RULES & set(remote) and (gpu["gpus"] == 1).all()
    assert (gpu["partition"] == "gpu").all() and (jobs.loc[jobs["gpus"] == 0, "partition"] == "cpu").all()

    # the cancelled training: attempt 1 CANCELLED, attempt 2 COMPLETED, resumed from last.pt, one log
    assert "jobid" in cancelled, "the training job was never seen running"
    training = jobs[jobs["rule"] == "train_vae"].sort_values("jobid", key=lambda ids: ids.astype(int))
    assert training["state"].str.startswith("CANCELLED").tolist() == [True, False]
    assert (jobs.drop(training.index[0])["state"] == "COMPLETED").all()
    log = (slurm / "logs/train_vae/tiny.log").read_text()
    assert log.index("=== attempt 1 ") < log.index("SIGTERM") < log.index("=== attempt 2 ")  # the trainer says it
    assert log.index("=== attempt 2 ") < log.index("resuming from")

    # the same config run locally, uninterrupted: the same tables and weights
    snakemake(local, *TARGETS, "--cores", "2", *configs(local, epochs=epochs))
    for table in ["results/temporal/tiny/summary.tsv", "results/temporal/tiny/shard-0.tsv",
                  "results/temporal/tiny/shard-1.tsv"]:
        pd.testing.assert_frame_equal(*(pd.read_csv(root / table, sep="\t") for root in (slurm, local)))
    history = [pd.read_csv(root / "results/models/tiny/history.tsv", sep="\t") for root in (slurm, local)]
    timing = [c for c in history[0].columns if "second" in c or c.endswith("_s") or "per_s" in c]
    pd.testing.assert_frame_equal(*(h.drop(columns=timing) for h in history))
    assert same_weights(slurm / "results/models/tiny/checkpoint.pt", local / "results/models/tiny/checkpoint.pt")
