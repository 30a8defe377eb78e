"""Training loop: outputs, safe checkpoints, config checks, interruption and bit-identical resume."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from conftest import draw_apical_ellipses
from echolatent.models import (CheckpointMismatchError, TrainConfig, TrainingInterrupted, VAEConfig,
                               load_checkpoint, load_model, one_hot, train_vae)

S = 32


def ellipse_masks(n: int, seed: int):
    """Random apical-like label maps at 32x32: LV ellipse, MYO band, LA below.

    Returns masks (n, 32, 32) uint8, attributes (n, 2) = (LV area, MYO area), phase (n,).
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:S, 0:S] + 0.5
    masks = np.zeros((n, S, S), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(12, 15), rng.uniform(14, 18)
        ry, rx, h = rng.uniform(6, 9), rng.uniform(3.5, 5.5), rng.uniform(1.5, 3)
        draw_apical_ellipses(masks[i], rows, cols, cy, cx, ry, rx, h)
    attrs = np.stack([(masks == 1).sum((1, 2)), (masks == 2).sum((1, 2))], 1).astype(np.float32)
    phase = rng.uniform(0, 1, n).astype(np.float32)
    return masks, attrs, phase


TINY = dict(
    model=dict(input_size=S, blocks=2, init_channels=4, bottleneck_channels=4, latent_dim=4),
    loss=dict(kind="ar-vae"),
    epochs=4, batch_size=8, lr=2e-3, seed=3, device="cpu", num_threads=1,
)


@pytest.fixture(scope="module")
def data():
    tr = ellipse_masks(40, 0)
    va = ellipse_masks(16, 1)
    return tr, va


def test_train_config_from_dict():
    cfg = TrainConfig.from_dict(TINY)
    assert cfg.model.input_size == S and cfg.loss.kind == "ar-vae"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict({**TINY, "learning_rate": 1e-3})
    with pytest.raises(ValueError, match="model config: unknown key"):
        TrainConfig.from_dict({**TINY, "model": {"latent": 3}})
    with pytest.raises(ValueError, match="loss config: unknown key"):
        TrainConfig.from_dict({**TINY, "loss": {"kind": "vae", "gama": 1}})
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig.from_dict({**TINY, "lr_schedule": "step"})
    # the cVAE kind switches the phase head on, and the saved config says so
    cvae = TrainConfig.from_dict({**TINY, "loss": {"kind": "cvae"}})
    assert cvae.model.phase_head is True


def test_outputs_safe_checkpoints_and_mismatch(tmp_path, data, log_lines):
    (tm, ta, tp), (vm, va, vp) = data
    out = tmp_path / "run"
    cfg = {**TINY, "epochs": 2}
    threads = torch.get_num_threads()
    summary = train_vae(tm, ta, tp, vm, va, vp, cfg, out)
    assert torch.get_num_threads() == threads  # restored after the call
    for name in ("checkpoint.pt", "last.pt", "history.tsv", "latent_bounds.tsv", "config.json",
                 "summary.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp"))
    assert any("falling back" in l or l.startswith("device: cpu") for l in log_lines)
    assert sum(l.startswith("epoch ") for l in log_lines) == 2

    history = (out / "history.tsv").read_text().splitlines()
    header = history[0].split("\t")
    for col in ("epoch", "train_total", "train_rec", "train_ce", "train_dice_loss", "train_kl",
                "train_attr", "val_total", "val_kl", "val_attr", "val_dice_lv", "val_dice_myo",
                "val_dice_la", "lr", "seconds"):
        assert col in header
    assert len(history) == 3

    bounds = (out / "latent_bounds.tsv").read_text().splitlines()
    assert bounds[0].split("\t") == ["dim", "attribute", "z_min", "z_max", "mu_p01", "mu_p99"]
    assert len(bounds) == 1 + 4
    rows = [r.split("\t") for r in bounds[1:]]
    assert [r[1] for r in rows] == ["attr_0", "attr_1", "", ""]
    # recomputed by hand from the best model: mu percentiles over the training masks, and the
    # sampled-code bounds the best checkpoint stored
    best = load_model(out / "checkpoint.pt")
    with torch.no_grad():
        mu_tr = best.encode(one_hot(tm, 4))[0].numpy()
        mu_va = best.encode(one_hot(vm, 4))[0]
        rec_va = best.decode(mu_va).argmax(1).numpy()
    mu_va = mu_va.numpy()
    stored = torch.load(out / "checkpoint.pt", weights_only=True)
    table = np.array([[float(v) for v in r[2:]] for r in rows])
    np.testing.assert_allclose(table[:, 0], stored["latent_min"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(table[:, 1], stored["latent_max"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(table[:, 2:], np.percentile(mu_tr, [1, 99], axis=0).T, rtol=1e-4, atol=1e-5)

    saved = json.loads((out / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    # validation Dice per class: 2 |P & T| / (|P| + |T|) per frame, averaged over frames holding the class
    for label, name in ((1, "lv"), (2, "myo"), (3, "la")):
        p, t = rec_va == label, vm == label
        size = p.sum((1, 2)) + t.sum((1, 2))
        per_frame = 2 * (p & t).sum((1, 2))[size > 0] / size[size > 0]
        assert saved["val_dice"][name] == pytest.approx(per_frame.mean(), abs=1e-9)
        assert saved["val_dice_frames"][name] == int((size > 0).sum())
    for j in range(2):
        assert saved["spearman"][f"attr_{j}"] == pytest.approx(spearmanr(mu_va[:, j], va[:, j]).statistic, abs=1e-6)
    assert json.loads((out / "config.json").read_text()) == TrainConfig.from_dict(cfg).to_dict()

    # safe loading: plain torch.load with weights_only=True works on both checkpoints
    for name in ("checkpoint.pt", "last.pt"):
        raw = torch.load(out / name, weights_only=True)
        assert raw["config"]["model"]["latent_dim"] == 4 and isinstance(raw["config"], dict)
        assert "optimizer" in raw and "rng" in raw
    ckpt = load_checkpoint(out / "checkpoint.pt", expected_config=cfg)
    assert ckpt["epoch"] in (1, 2)
    model = load_model(out / "checkpoint.pt", VAEConfig(**TINY["model"]))
    assert not model.training and model.config.latent_dim == 4

    # mismatching architecture or loss -> clear error naming the keys
    with pytest.raises(CheckpointMismatchError, match="model.latent_dim"):
        load_checkpoint(out / "checkpoint.pt",
                        expected_config={**cfg, "model": {**TINY["model"], "latent_dim": 8}})
    with pytest.raises(CheckpointMismatchError, match="model.init_channels"):
        load_model(out / "checkpoint.pt", {**TINY["model"], "init_channels": 8})
    with pytest.raises(CheckpointMismatchError, match="loss.gamma"):
        load_checkpoint(out / "checkpoint.pt", {**cfg, "loss": {"kind": "ar-vae", "gamma": 1.0}})
    # the runtime keys (device, threads) may differ
    load_checkpoint(out / "checkpoint.pt", {**cfg, "device": "auto", "num_threads": 2})
    # the same output directory cannot be reused with another configuration
    with pytest.raises(CheckpointMismatchError, match="loss.beta"):
        train_vae(tm, ta, tp, vm, va, vp, {**cfg, "loss": {"kind": "ar-vae", "beta": 1.0}}, out)

    # nor resumed on other data
    with pytest.raises(CheckpointMismatchError, match="other data"):
        train_vae(tm[::-1].copy(), ta, tp, vm, va, vp, cfg, out)

    # a completed run is not retrained; outputs are regenerated identically
    before = torch.load(out / "last.pt", weights_only=True)["model"]
    again = train_vae(tm, ta, tp, vm, va, vp, cfg, out)
    after = torch.load(out / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert again["val_dice"] == summary["val_dice"]


def test_unsafe_or_foreign_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("unsafe",))

    bad = tmp_path / "bad.pt"
    with open(bad, "wb") as f:
        pickle.dump({"x": Evil()}, f, protocol=2)
    with pytest.raises(CheckpointMismatchError, match="weights_only") as info:
        load_checkpoint(bad)
    # says what to do, and does not pass on PyTorch's advice to turn the safe loader off
    message = str(info.value)
    assert "delete it and retrain" in message and "Unsupported global: GLOBAL print" in message
    assert "If you trust" not in message and "Never load it with weights_only=False" in message
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointMismatchError, match="not an EchoLatent"):
        load_checkpoint(other)


def test_cvae_and_vae_kinds_are_config_changes(tmp_path, data):
    (tm, ta, tp), (vm, va, vp) = data
    s = train_vae(tm, None, tp, vm, None, vp, {**TINY, "epochs": 1, "loss": {"kind": "cvae"}},
                  tmp_path / "cvae")
    assert "spearman" not in s
    cvae = load_model(tmp_path / "cvae" / "checkpoint.pt")
    assert cvae.phase_head is not None
    with torch.no_grad():  # the phase head's MSE on the validation frames, by hand
        pred = cvae.phase(cvae.encode(one_hot(vm, 4))[0]).numpy()
    assert s["val_phase_mse"] == pytest.approx(float(np.mean((pred - vp) ** 2)), rel=1e-5)
    s = train_vae(tm, None, None, vm, None, None, {**TINY, "epochs": 1, "loss": {"kind": "vae"}},
                  tmp_path / "vae")
    assert s["kind"] == "vae"
    with pytest.raises(ValueError, match="ar-vae"):
        train_vae(tm, None, None, vm, None, None, {**TINY, "epochs": 1}, tmp_path / "x")
    with pytest.raises(ValueError, match=r"\(N, 32, 32\)"):
        train_vae(tm[:, :16, :16], ta, tp, vm, va, vp, TINY, tmp_path / "y")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda_is_an_error(tmp_path, data):
    (tm, ta, tp), (vm, va, vp) = data
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        train_vae(tm, ta, tp, vm, va, vp, {**TINY, "device": "cuda"}, tmp_path / "c")


RUNNER = textwrap.dedent("""
    import json, logging, os, signal, sys
    import numpy as np
    from echolatent.models import TrainingInterrupted, train_vae

    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")

    data, out, kill_at, cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    d = np.load(data)

    def on_step(epoch, step):
        if kill_at is not None and [epoch, step] == kill_at:
            os.kill(os.getpid(), signal.SIGTERM)   # a real signal, through the real handler

    try:
        train_vae(d["tm"], d["ta"], d["tp"], d["vm"], d["va"], d["vp"], cfg, out,
                  on_step=on_step)
    except TrainingInterrupted as exc:
        print(exc, flush=True)
        sys.exit(exc.exit_code)
""")


def test_interrupt_and_resume_is_bit_identical(tmp_path, data):
    (tm, ta, tp), (vm, va, vp) = data
    npz = tmp_path / "data.npz"
    np.savez(npz, tm=tm, ta=ta, tp=tp, vm=vm, va=va, vp=vp)
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    cfg = json.dumps(TINY)

    def start(out, kill_at=None):
        return subprocess.Popen([sys.executable, str(script), str(npz), str(out),
                                 json.dumps(kill_at), cfg], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    # the uninterrupted reference and the first interrupted run go side by side (1 thread each)
    ref_proc = start(tmp_path / "ref")
    out = tmp_path / "resumed"
    first_proc = start(out, [2, 1])    # SIGTERM in the middle of epoch 2
    first_out, first_err = first_proc.communicate(timeout=120)
    ref_out, ref_err = ref_proc.communicate(timeout=120)
    assert ref_proc.returncode == 0, ref_err
    assert first_proc.returncode == 143, first_out + first_err
    assert "SIGTERM" in first_out and "discarding the partial epoch" in first_out
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1

    second_proc = start(out)           # resumed to the end
    second_out, second_err = second_proc.communicate(timeout=120)
    assert second_proc.returncode == 0, second_err
    assert "resuming" in second_out and "end of epoch 1" in second_out
    assert [l.split()[1] for l in second_out.splitlines() if l.startswith("epoch ")] == \
        ["2/4", "3/4", "4/4"]

    for name in ("last.pt", "checkpoint.pt"):
        a = torch.load(tmp_path / "ref" / name, weights_only=True)
        b = torch.load(out / name, weights_only=True)
        assert a["epoch"] == b["epoch"]
        assert a["model"].keys() == b["model"].keys()
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), f"{name}: {key} differs"
        for pid, st in a["optimizer"]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, b["optimizer"]["state"][pid][k])
        assert torch.equal(a["latent_min"], b["latent_min"])
        assert torch.equal(a["latent_max"], b["latent_max"])
        assert len(a["history"]) == len(b["history"])
        for ha, hb in zip(a["history"], b["history"]):
            keys = [k for k in ha if k != "seconds"]
            assert keys == [k for k in hb if k != "seconds"]
            assert np.array_equal([ha[k] for k in keys], [hb[k] for k in keys], equal_nan=True)
    assert (tmp_path / "ref" / "latent_bounds.tsv").read_text() == \
        (out / "latent_bounds.tsv").read_text()
    ref_summary = json.loads((tmp_path / "ref" / "summary.json").read_text())
    res_summary = json.loads((out / "summary.json").read_text())
    assert ref_summary["val_dice"] == res_summary["val_dice"]
    assert all(math.isfinite(v) for v in res_summary["val_dice"].values())


def test_interrupt_in_first_epoch_in_process(tmp_path, data, log_lines):
    (tm, ta, tp), (vm, va, vp) = data
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)   # SIG_IGN when pytest runs as a background job

    def kill(epoch, step):
        if (epoch, step) == (1, 2):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as info:
        train_vae(tm, ta, tp, vm, va, vp, {**TINY, "epochs": 1}, out,
                  on_step=kill)
    assert info.value.exit_code == 130 and info.value.epoch == 1
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 0
    assert not (out / "checkpoint.pt").exists()
    # the previous SIGINT handler is back
    assert signal.getsignal(signal.SIGINT) is before
    train_vae(tm, ta, tp, vm, va, vp, {**TINY, "epochs": 1}, out)
    assert any("resuming" in l and "end of epoch 0" in l for l in log_lines)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1


OUTPUTS = ("checkpoint.pt", "history.tsv", "latent_bounds.tsv", "config.json", "summary.json")


def assert_same_outputs(ref, out):
    """Same best weights, bounds, history (but timings) and summary (but timings)."""
    a = torch.load(ref / "checkpoint.pt", weights_only=True)
    b = torch.load(out / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert (ref / "latent_bounds.tsv").read_text() == (out / "latent_bounds.tsv").read_text()
    assert (ref / "config.json").read_text() == (out / "config.json").read_text()
    drop = lambda d: {k: v for k, v in d.items() if k != "train_seconds"}
    assert drop(json.loads((ref / "summary.json").read_text())) == \
        drop(json.loads((out / "summary.json").read_text()))
    strip = lambda p: [l.split("\t")[:-1] for l in p.read_text().splitlines()]  # last column: seconds
    assert strip(ref / "history.tsv") == strip(out / "history.tsv")


@pytest.fixture(scope="module")
def early_best(data):
    """Validation masks of random labels: the validation loss is lowest after epoch 1 and
    rises after it (the model learns apical shapes, not noise), so the best epoch is 1 of 4."""
    (tm, ta, tp), (vm, va, vp) = data
    noise = np.random.default_rng(0).integers(0, 4, vm.shape).astype(np.uint8)
    return (tm, ta, tp), (noise, va, vp)


def test_interrupt_after_the_best_epoch_with_outputs_deleted_resumes_to_the_same_outputs(tmp_path, early_best,
                                                                                          log_lines):
    # Issue 11 defect 1: Snakemake deletes checkpoint.pt before re-running the job; the resumed
    # epochs never improve on epoch 1, so checkpoint.pt was never written again (FileNotFoundError).
    (tm, ta, tp), (vm, va, vp) = early_best
    ref = tmp_path / "ref"
    summary = train_vae(tm, ta, tp, vm, va, vp, TINY, ref)
    assert summary["best_epoch"] == 1

    out = tmp_path / "run"

    def interrupt(epoch, step):
        if (epoch, step) == (3, 1):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train_vae(tm, ta, tp, vm, va, vp, TINY, out, on_step=interrupt)
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    train_vae(tm, ta, tp, vm, va, vp, TINY, out)
    assert any("end of epoch 2" in l for l in log_lines)
    assert_same_outputs(ref, out)

    # snakemake -R after a finished run: every declared output deleted, nothing left to train
    for name in OUTPUTS:
        (out / name).unlink()
    log_lines.clear()
    train_vae(tm, ta, tp, vm, va, vp, TINY, out)
    assert any("end of epoch 4" in l for l in log_lines) and not any(l.startswith("epoch ") for l in log_lines)
    assert_same_outputs(ref, out)


def test_changed_config_never_resumes_even_without_config_json(tmp_path, early_best, log_lines):
    # Issue 11 defect 1: Snakemake deletes config.json too, so the "same configuration" check
    # must rest on what last.pt itself stores.
    (tm, ta, tp), (vm, va, vp) = early_best
    out = tmp_path / "run"
    train_vae(tm, ta, tp, vm, va, vp, {**TINY, "epochs": 2}, out)
    for name in OUTPUTS:
        (out / name).unlink()
    changed = {**TINY, "epochs": 3, "lr": 1e-3}
    with pytest.raises(CheckpointMismatchError, match=r"epochs: 2 != 3.*lr: 0.002 != 0.001"):
        train_vae(tm, ta, tp, vm, va, vp, changed, out)
    # the workflow's choice: start afresh, and end exactly where a fresh run ends
    train_vae(tm, ta, tp, vm, va, vp, changed, out, on_mismatch="restart")
    assert any("starting afresh" in l for l in log_lines) and not any("resuming" in l for l in log_lines)
    train_vae(tm, ta, tp, vm, va, vp, changed, tmp_path / "fresh")
    assert_same_outputs(tmp_path / "fresh", out)
