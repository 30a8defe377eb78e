"""Issue 11: a workflow killed at any moment re-runs to the results of an uninterrupted run.

Real Snakemake on a small synthetic cohort. One working directory is interrupted four times
(SIGKILL during ingestion, Ctrl-C (SIGINT to the process group) during training before its
best epoch, SIGKILL during training after the best epoch, Ctrl-C during encoding), re-run
after each, then forced to re-run training (``-R train_vae``, which deletes its outputs).
It runs with ``--cores 1``; the uninterrupted reference runs with ``--cores 2``, so the
comparison also shows that results do not depend on the core count (defect 8).
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, snakemake

pytestmark = pytest.mark.slow  # runs Snakemake for real (README: `pytest -m "not slow"` skips these)

EPOCHS = 7
CONFIG = {
    "cohort": {"source": "synthetic", "image_size": 32, "shards": 2,
               "synthetic": {"n_patients": 10, "seed": 5, "frames": 12,
                             "image": {"rows": 128, "cols": 128, "spacing": [1.5, 1.5]}}},
    "models": {"tiny": {"kind": "ar-vae",
                        "training": {"device": "cpu", "epochs": EPOCHS, "batch_size": 16, "lr": 0.02,
                                     "lr_schedule": "constant",
                                     "model": {"blocks": 2, "init_channels": 8, "latent_dim": 8}}}},
    # one frame per network call: the encoding of a shard lasts long enough to be interrupted
    # (in one batch the tiny shards are encoded faster than a loaded machine polls for it)
    "encoding": {"batch_size": 1},
}
TARGETS = [f"results/latents/tiny/shard-{k}.parquet" for k in (0, 1)] + [
    "results/cohort/sequences.tsv", "results/cohort/provenance.json"]


def args(root, cores):
    return [*TARGETS, "--cores", str(cores), "--directory", str(root),
            "--configfile", str(REPO / "config/config.yaml"), str(root / "config.yaml")]


def _as_foreground_job():
    # A shell gives its foreground job the default SIGINT. pytest started as a background job of
    # a non-interactive shell (``cmd &``, as CI runners may) has SIGINT ignored, and an ignored
    # signal stays ignored across exec: Snakemake and the encoding would never see the Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(root, cores=1):
    """Snakemake in its own process group, as a terminal would run it."""
    return subprocess.Popen([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                             *args(root, cores)], cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_as_foreground_job)


def interrupt_when(root, ready, sig, timeout=240):
    """Start a run, send ``sig`` to its whole process group once ``ready()`` holds, wait."""
    proc = start(root)
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError("the run ended before the moment of the interruption")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("the moment of the interruption never came")
        time.sleep(0.005)
    os.killpg(proc.pid, sig)
    proc.wait(timeout=120)
    if sig == signal.SIGKILL:
        # what a user does after a killed run: the lock stays behind
        snakemake("--unlock", *args(root, 1))
    return proc.returncode


def epochs_logged(root):
    """The last epoch the training log reports finished (the log restarts with each run)."""
    log = root / "logs/train_vae/tiny.log"
    lines = log.read_text().splitlines() if log.exists() else []
    # the training's epoch lines: "<time> INFO echolatent.models.training: epoch 3/6 train ..."
    return max([int(m.group(1)) for m in map(re.compile(r": epoch (\d+)/\d+ ").search, lines) if m], default=0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    (root / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    snakemake(*args(root, 2))
    return root


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, reference):
    root = tmp_path_factory.mktemp("interrupted")
    (root / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    best = json.loads((reference / "results/models/tiny/summary.json").read_text())["best_epoch"]
    # killed during the epoch after the best one (the defect: the resumed epochs never improve,
    # so checkpoint.pt, deleted by Snakemake, was never written again)
    after_best = min(best, EPOCHS - 1)
    events = []

    # 1. SIGKILL while a shard is being written (its temporary file exists)
    tmp_shard = lambda: glob.glob(str(root / "results/cohort/.tmp-*-shard-*.h5"))
    events.append(("ingestion", interrupt_when(root, lambda: bool(tmp_shard()), signal.SIGKILL)))
    assert not (root / "results/cohort/sequences.tsv").exists()
    # 2. Ctrl-C in the first epochs, before the best one
    events.append(("training, before the best epoch",
                   interrupt_when(root, lambda: epochs_logged(root) >= 1, signal.SIGINT)))
    assert epochs_logged(root) < best
    # 3. SIGKILL after the best epoch
    events.append(("training, after the best epoch",
                   interrupt_when(root, lambda: epochs_logged(root) >= after_best, signal.SIGKILL)))
    assert not (root / "results/models/tiny/summary.json").exists()
    # 4. Ctrl-C while a shard is encoded (its temporary file exists)
    encoding = lambda: bool(glob.glob(str(root / "results/latents/tiny/.tmp-*-shard-*")))
    events.append(("encoding", interrupt_when(root, encoding, signal.SIGINT)))
    assert not all((root / t).exists() for t in TARGETS)
    snakemake(*args(root, 1))                 # the re-run to the end
    # training outputs deleted and made again (-R after the targets: it takes every word up to the next option)
    snakemake(*args(root, 1), "-R", "train_vae")
    return root, events


def test_interruptions_happened(interrupted):
    _, events = interrupted
    assert [name for name, _ in events] == ["ingestion", "training, before the best epoch",
                                             "training, after the best epoch", "encoding"]
    assert all(code != 0 for _, code in events)


def test_cohort_is_the_same(reference, interrupted):
    root, _ = interrupted
    for name in ("patients.tsv", "sequences.tsv", "qc.tsv", "plan.tsv"):
        assert (root / "results/cohort" / name).read_bytes() == (reference / "results/cohort" / name).read_bytes()
    assert json.loads((root / "results/cohort/provenance.json").read_text())["inputs"].values() is not None
    for shard in (0, 1):
        with h5py.File(reference / f"results/cohort/shard-{shard}.h5") as a, \
                h5py.File(root / f"results/cohort/shard-{shard}.h5") as b:
            names = []
            a.visit(names.append)
            assert names == (lambda n: (b.visit(n.append), n)[1])([])
            for name in names:
                if isinstance(a[name], h5py.Dataset):
                    np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)
    assert not glob.glob(str(root / "results/cohort/.tmp-*"))  # the killed job's leftovers are gone


def test_model_is_the_same(reference, interrupted):
    root, _ = interrupted
    a = torch.load(reference / "results/models/tiny/checkpoint.pt", weights_only=True)
    b = torch.load(root / "results/models/tiny/checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for name in ("latent_bounds.tsv", "config.json"):
        assert (root / "results/models/tiny" / name).read_bytes() == \
            (reference / "results/models/tiny" / name).read_bytes()
    history = [pd.read_csv(r / "results/models/tiny/history.tsv", sep="\t").drop(columns="seconds")
               for r in (reference, root)]
    pd.testing.assert_frame_equal(*history)
    summaries = [json.loads((r / "results/models/tiny/summary.json").read_text()) for r in (reference, root)]
    for s in summaries:
        s.pop("train_seconds")
    assert summaries[0] == summaries[1]


def test_latents_are_the_same(reference, interrupted):
    root, _ = interrupted
    for shard in (0, 1):
        pd.testing.assert_frame_equal(pd.read_parquet(reference / f"results/latents/tiny/shard-{shard}.parquet"),
                                      pd.read_parquet(root / f"results/latents/tiny/shard-{shard}.parquet"))
