"""Training loop for the mask VAE family (VAE, beta-VAE, AR-VAE, phase-constrained cVAE).

Outputs written into ``out_dir`` by :func:`train_vae`:

``checkpoint.pt``       best epoch by validation loss (model weights, config, bounds)
``last.pt``             state at the end of the last completed epoch (resumable), with the
                        best epoch's state inside it (``last["best"]``)
``history.tsv``         one row per epoch: every loss term (train and val), val Dice,
                        learning rate and seconds
``latent_bounds.tsv``   per latent dimension: min/max of the sampled z over the training
                        epoch that produced ``checkpoint.pt``, and 1st/99th percentiles of
                        mu over the training set (encoded with ``checkpoint.pt``)
``config.json``         the configuration (:class:`TrainConfig` as a plain dict)
``summary.json``        validation Dice per class, AR-VAE Spearman per regularised dim, ...

Reproducibility and fault tolerance
-----------------------------------
* The model is initialised after ``torch.manual_seed(seed)``. Every random draw of epoch
  ``e`` (the batch order and the reparameterisation noise) comes from generators derived
  from ``(seed, e)`` only, so an epoch depends only on the state at its start.
* ``last.pt`` is written at the end of every epoch (and once before the first), to a
  temporary name then moved with ``os.replace``.
* On SIGTERM/SIGINT the current optimisation step is finished, the partial epoch is
  abandoned (``last.pt`` keeps the end of the previous epoch) and
  :class:`TrainingInterrupted` is raised; its ``exit_code`` is 128 + signal number
  (143 for SIGTERM, 130 for SIGINT).
* Running again with the same ``out_dir`` resumes from ``last.pt`` and restarts the
  abandoned epoch. On CPU, with the same seed and thread count, an interrupted and resumed
  run ends with weights bit-identical to an uninterrupted run.
* ``checkpoint.pt`` is written once, at the end, from the best state that ``last.pt``
  carries. So a run killed at any moment (before or after its best epoch), or whose
  declared outputs were deleted (Snakemake removes them before re-running a job), always
  resumes to the same outputs as an uninterrupted run.
* ``last.pt`` stores the configuration and a fingerprint of the data it was trained on;
  a run with another configuration or other data never resumes it: it raises
  :class:`~echolatent.models.checkpoint.CheckpointMismatchError`, or starts afresh with
  ``on_mismatch="restart"`` (:mod:`echolatent.models.checkpoint`).
* Checkpoints hold only tensors and plain containers and load with
  ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from echolatent.progress import Progress, duration

from .checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, data_fingerprint, load_checkpoint, resume_state,
                         save_atomic, write_text_atomic)
from .config import TrainConfig
from .device import resolve_device
from .inference import encode, one_hot
from .losses import compute_losses
from .quality import dice_per_class
from .vae import MaskVAE, reparameterize

__all__ = ["TrainingInterrupted", "train_vae"]

logger = logging.getLogger(__name__)

LOSS_TERMS = ("total", "rec", "ce", "dice_loss", "kl", "attr", "phase")


class TrainingInterrupted(RuntimeError):
    """Raised when training stops on SIGTERM/SIGINT; ``last.pt`` can be resumed."""

    def __init__(self, signum: int, epoch: int, out_dir: Path):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        self.epoch = epoch
        self.out_dir = out_dir
        name = signal.Signals(self.signum).name
        super().__init__(f"training interrupted by {name} during epoch {epoch}; the partial "
                         f"epoch was discarded and {out_dir / 'last.pt'} holds the end of "
                         f"epoch {epoch - 1}; run again with the same output directory to "
                         f"resume")


# --------------------------------------------------------------------------- helpers
def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed that depends only on (seed, epoch, stream)."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def _lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate used during ``epoch`` (1-based)."""
    if cfg.lr_schedule == "constant" or cfg.epochs == 1:
        return cfg.lr
    frac = (epoch - 1) / (cfg.epochs - 1)
    lo = cfg.lr * cfg.lr_min_factor
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * frac))


class _SignalFlag:
    """Records SIGTERM/SIGINT instead of dying; restores the old handlers on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum

    def __enter__(self) -> "_SignalFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _check_inputs(masks: np.ndarray, attrs: np.ndarray | None, phase: np.ndarray | None,
                  cfg: TrainConfig, split: str) -> tuple[np.ndarray, np.ndarray | None,
                                                         np.ndarray | None]:
    masks = np.asarray(masks)
    s = cfg.model.input_size
    if masks.ndim != 3 or masks.shape[1:] != (s, s):
        raise ValueError(f"{split} masks must have shape (N, {s}, {s}) (model input_size), "
                         f"got {masks.shape}")
    if not np.issubdtype(masks.dtype, np.integer):
        raise TypeError(f"{split} masks must be integer label maps, got {masks.dtype}")
    if len(masks) == 0:
        raise ValueError(f"{split} set is empty")
    if masks.min() < 0 or masks.max() >= cfg.model.n_classes:
        raise ValueError(f"{split} masks hold labels outside [0, {cfg.model.n_classes})")
    masks = masks.astype(np.uint8, copy=False)
    if attrs is not None:
        attrs = np.array(attrs, dtype=np.float32)  # a writable copy: torch shares its memory
        if attrs.ndim == 1:
            attrs = attrs[:, None]
        if attrs.shape[0] != len(masks):
            raise ValueError(f"{split} attributes have {attrs.shape[0]} rows for "
                             f"{len(masks)} masks")
        if attrs.shape[1] > cfg.model.latent_dim:
            raise ValueError(f"{attrs.shape[1]} attributes but latent_dim is "
                             f"{cfg.model.latent_dim}")
    elif cfg.loss.uses_attributes:
        raise ValueError(f"kind 'ar-vae' needs {split} attributes")
    if phase is not None:
        phase = np.asarray(phase, dtype=np.float32).reshape(-1)
        if phase.shape[0] != len(masks):
            raise ValueError(f"{split} phase has {phase.shape[0]} values for {len(masks)} masks")
        if not np.all(np.isfinite(phase)):
            raise ValueError(f"{split} phase holds non-finite values")
    elif cfg.loss.uses_phase:
        raise ValueError(f"kind 'cvae' needs {split} phase (frame position in [0, 1])")
    return masks, attrs, phase


def _fmt(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.6g}"


# --------------------------------------------------------------------------- training
def train_vae(train_masks: np.ndarray, train_attrs: np.ndarray | None,
              train_phase: np.ndarray | None, val_masks: np.ndarray,
              val_attrs: np.ndarray | None, val_phase: np.ndarray | None,
              config: TrainConfig | Mapping[str, Any] | None, out_dir: str | os.PathLike,
              on_step: Callable[[int, int], None] | None = None,
              on_mismatch: str = "error") -> dict[str, Any]:
    """Train (or resume training of) a mask VAE and write the outputs into ``out_dir``.

    ``*_masks``: integer label maps (N, S, S) at the model input size; ``*_attrs``: (N, K)
    float attributes in the order of the regularised latent dims (needed for "ar-vae",
    optional otherwise); ``*_phase``: (N,) frame position in [0, 1] (needed for "cvae").
    Progress goes to this module's logger: one line per epoch, with the time left.
    ``on_step(epoch, step)`` is called after every optimisation step (tests use it).
    Returns the summary dict (also written to ``summary.json``).
    Raises :class:`TrainingInterrupted` on SIGTERM/SIGINT (after saving a resumable state).
    ``config.num_threads`` (if set) applies during the call; the previous torch thread
    count is restored afterwards.
    ``on_mismatch``: what to do when ``out_dir`` holds a run (``last.pt``) of another
    configuration or on other data: "error"
    (:class:`~echolatent.models.checkpoint.CheckpointMismatchError`) or "restart" (discard it
    and train afresh; the workflow's choice, since Snakemake re-runs the job precisely
    because the configuration or the data changed).
    """
    if on_mismatch not in ("error", "restart"):
        raise ValueError(f"on_mismatch must be 'error' or 'restart', got {on_mismatch!r}")
    cfg = TrainConfig.coerce(config)
    threads_before = torch.get_num_threads()
    try:
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        return _train(train_masks, train_attrs, train_phase, val_masks, val_attrs, val_phase,
                      cfg, out_dir, on_step, on_mismatch)
    finally:
        torch.set_num_threads(threads_before)


def _train(train_masks: np.ndarray, train_attrs: np.ndarray | None,
           train_phase: np.ndarray | None, val_masks: np.ndarray,
           val_attrs: np.ndarray | None, val_phase: np.ndarray | None, cfg: TrainConfig,
           out_dir: str | os.PathLike, on_step: Callable[[int, int], None] | None, on_mismatch: str) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tr_masks, tr_attrs, tr_phase = _check_inputs(train_masks, train_attrs, train_phase, cfg,
                                                 "train")
    va_masks, va_attrs, va_phase = _check_inputs(val_masks, val_attrs, val_phase, cfg, "val")
    if (tr_attrs is None) != (va_attrs is None) or (
            tr_attrs is not None and tr_attrs.shape[1] != va_attrs.shape[1]):
        raise ValueError("train and val attributes must both be given with the same columns")

    cfg_dict = cfg.to_dict()
    fingerprint = data_fingerprint(tr_masks, tr_attrs, tr_phase, va_masks, va_attrs, va_phase)
    last_path = out / "last.pt"
    # The resume state must come from the same configuration and data. It is checked against
    # what last.pt itself stores: config.json may have been deleted (Snakemake removes a job's
    # declared outputs before re-running it).
    resume = resume_state(last_path, cfg_dict, fingerprint, on_mismatch)
    write_text_atomic(out / "config.json", json.dumps(cfg_dict, indent=2) + "\n")

    device = resolve_device(cfg.device)
    on_cuda = device.type == "cuda"
    use_amp = cfg.amp and on_cuda
    use_cl = cfg.channels_last
    if on_cuda:
        torch.backends.cudnn.benchmark = True  # fast, not bit-reproducible (CPU runs are)
    memfmt = torch.channels_last if use_cl else torch.contiguous_format
    logger.info(f"kind={cfg.loss.kind} input={cfg.model.input_size}px blocks={cfg.model.blocks} "
                f"channels={cfg.model.init_channels} latent={cfg.model.latent_dim} "
                f"epochs={cfg.epochs} batch={cfg.batch_size} lr={cfg.lr:g} "
                f"train={len(tr_masks)} val={len(va_masks)} amp={use_amp} channels_last={use_cl} "
                f"threads={torch.get_num_threads()}")

    torch.manual_seed(cfg.seed)
    model = MaskVAE(cfg.model).to(device=device, memory_format=memfmt)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    history: list[dict[str, float]] = []
    best_val, best_epoch = math.inf, 0
    best: dict[str, Any] | None = None  # the state of the best epoch (becomes checkpoint.pt)
    start_epoch = 0

    def state(epoch: int, zmin: torch.Tensor, zmax: torch.Tensor) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "config": cfg_dict, "epoch": epoch, "data_fingerprint": fingerprint,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "best_val": best_val, "best_epoch": best_epoch, "history": history,
            "latent_min": zmin.cpu(), "latent_max": zmax.cpu(),
            "rng": {"torch_cpu": torch.get_rng_state()},
            "torch_version": str(torch.__version__),
        }

    nan_bounds = torch.full((cfg.model.latent_dim,), float("nan"))
    if resume is not None:
        ckpt = resume
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt["scaler"]:
            scaler.load_state_dict(ckpt["scaler"])
        history = list(ckpt["history"])
        best_val, best_epoch = float(ckpt["best_val"]), int(ckpt["best_epoch"])
        best = ckpt.get("best")
        start_epoch = int(ckpt["epoch"])
        logger.info(f"resuming from {last_path} at the end of epoch {start_epoch}")
    else:
        save_atomic(state(0, nan_bounds, nan_bounds) | {"best": None}, last_path)

    # Data stay as uint8 on the device; one-hot per batch.
    tr_x = torch.from_numpy(tr_masks).to(device)
    tr_a = torch.from_numpy(tr_attrs).to(device) if tr_attrs is not None else None
    tr_p = torch.from_numpy(tr_phase).to(device) if tr_phase is not None else None
    n_train = len(tr_masks)
    bs = min(cfg.batch_size, n_train)
    n_steps = n_train // bs if cfg.drop_last else -(-n_train // bs)
    nc = cfg.model.n_classes

    # epochs done of the run; the time left is measured on this call's epochs (not a resumed run's)
    progress = Progress(cfg.epochs, "epochs", "training", done=start_epoch, logger=logger)
    with _SignalFlag() as flag:
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            t0 = time.perf_counter()
            lr = _lr_at(cfg, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            order = np.random.default_rng(_epoch_seed(cfg.seed, epoch, 0)).permutation(n_train)
            order_t = torch.from_numpy(order).to(device)
            gen = torch.Generator(device=device)
            gen.manual_seed(_epoch_seed(cfg.seed, epoch, 1))
            zmin = torch.full((cfg.model.latent_dim,), math.inf, device=device)
            zmax = torch.full((cfg.model.latent_dim,), -math.inf, device=device)
            sums = {k: torch.zeros((), device=device) for k in LOSS_TERMS}
            model.train()
            for step in range(n_steps):
                idx = order_t[step * bs:(step + 1) * bs]
                target = tr_x[idx].long()
                x = one_hot(target, nc, check=False).contiguous(memory_format=memfmt)
                with torch.autocast(device_type=device.type, dtype=torch.float16,
                                    enabled=use_amp):
                    mu, logvar = model.encode(x)
                    z = reparameterize(mu.float(), logvar.float(), gen)
                    fwd = {"logits": model.decode(z), "mu": mu, "logvar": logvar, "z": z}
                    if model.phase_head is not None:
                        fwd["phase"] = model.phase(mu)
                terms = compute_losses(fwd, target, cfg.loss,
                                       tr_a[idx] if tr_a is not None else None,
                                       tr_p[idx] if tr_p is not None else None)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(terms["total"]).backward()
                scaler.step(optimizer)
                scaler.update()
                with torch.no_grad():
                    zd = z.detach()
                    zmin = torch.minimum(zmin, zd.min(0).values)
                    zmax = torch.maximum(zmax, zd.max(0).values)
                for k in LOSS_TERMS:
                    sums[k] += terms[k].detach().float()
                if on_step is not None:
                    on_step(epoch, step)
                if flag.signum is not None:
                    logger.warning(f"{signal.Signals(flag.signum).name} received at epoch {epoch} step "
                                   f"{step + 1}/{n_steps}: discarding the partial epoch")
                    raise TrainingInterrupted(flag.signum, epoch, out)
            train_terms = {k: float(v) / n_steps for k, v in sums.items()}
            if not math.isfinite(train_terms["total"]):
                raise FloatingPointError(f"non-finite training loss at epoch {epoch}; "
                                         f"try a lower lr")
            val_terms, val_dice = _validate(model, va_masks, va_attrs, va_phase, cfg, device,
                                            memfmt, use_amp)
            if not math.isfinite(val_terms["total"]):
                raise FloatingPointError(f"non-finite validation loss at epoch {epoch}")
            seconds = time.perf_counter() - t0
            row: dict[str, float] = {"epoch": epoch}
            row.update({f"train_{k}": v for k, v in train_terms.items()})
            row.update({f"val_{k}": v for k, v in val_terms.items()})
            row.update({f"val_dice_{cfg.class_name(c)}": float(val_dice[c])
                        for c in range(1, nc)})
            row.update({"lr": lr, "seconds": seconds})
            history.append(row)
            if val_terms["total"] < best_val:
                best_val, best_epoch = val_terms["total"], epoch
                best = copy.deepcopy(state(epoch, zmin, zmax))  # a copy: training goes on
            save_atomic(state(epoch, zmin, zmax) | {"best": best}, last_path)
            _write_history(out / "history.tsv", history)
            dice_txt = " ".join(f"{cfg.class_name(c)}={val_dice[c]:.3f}" for c in range(1, nc))
            progress.advance(1)
            logger.info(f"epoch {epoch}/{cfg.epochs} train total={train_terms['total']:.4f} "
                        f"rec={train_terms['rec']:.4f} kl={train_terms['kl']:.2f} "
                        f"attr={_fmt(train_terms['attr'])} phase={_fmt(train_terms['phase'])} | "
                        f"val total={val_terms['total']:.4f} dice {dice_txt} | lr={lr:.2e} "
                        f"{seconds:.1f}s ({n_steps * bs / seconds:.0f} frames/s) | ETA {duration(progress.eta)}"
                        + (" *best*" if best_epoch == epoch else ""))
            if flag.signum is not None:
                logger.warning(f"{signal.Signals(flag.signum).name} received; epoch {epoch} was saved")
                raise TrainingInterrupted(flag.signum, epoch + 1, out)

        if best is None:
            raise FloatingPointError(f"{out}: no epoch gave a finite validation loss")
        save_atomic(best, out / "checkpoint.pt")
        _write_history(out / "history.tsv", history)
        summary = _finalise(out, cfg, device, tr_masks, va_masks, va_attrs, va_phase, history,
                            memfmt == torch.channels_last)
    logger.info(f"done in {duration(progress.elapsed)}: best epoch {summary['best_epoch']} val loss "
                f"{summary['best_val_loss']:.4f}; val dice "
                + " ".join(f"{k}={v:.3f}" for k, v in summary["val_dice"].items()))
    return summary


@torch.no_grad()
def _validate(model: MaskVAE, masks: np.ndarray, attrs: np.ndarray | None,
              phase: np.ndarray | None, cfg: TrainConfig, device: torch.device,
              memfmt: torch.memory_format, use_amp: bool) -> tuple[dict[str, float], np.ndarray]:
    """Validation losses (z = mu, no sampling) and mean per-frame hard Dice per class."""
    model.eval()
    nc = cfg.model.n_classes
    sums = {k: 0.0 for k in LOSS_TERMS}
    dice_rows = []
    n = len(masks)
    for start in range(0, n, cfg.eval_batch_size):
        sl = slice(start, start + cfg.eval_batch_size)
        target = torch.from_numpy(masks[sl]).to(device).long()
        x = one_hot(target, nc, check=False).contiguous(memory_format=memfmt)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            fwd = model(x, sample=False)
        terms = compute_losses(
            fwd, target, cfg.loss,
            torch.from_numpy(attrs[sl]).to(device) if attrs is not None else None,
            torch.from_numpy(phase[sl]).to(device) if phase is not None else None)
        w = len(target) / n
        for k in LOSS_TERMS:
            sums[k] += float(terms[k]) * w
        dice_rows.append(dice_per_class(fwd["logits"].argmax(1).cpu(), target.cpu(), nc))
    model.train()
    with np.errstate(all="ignore"), _quiet_nanmean():
        dice = np.nanmean(np.concatenate(dice_rows), axis=0)
    return sums, dice


@contextlib.contextmanager
def _quiet_nanmean():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    cols = list(history[0])
    lines = ["\t".join(cols)]
    for row in history:
        lines.append("\t".join(str(int(row[c])) if c == "epoch" else _fmt(float(row[c]))
                               for c in cols))
    write_text_atomic(path, "\n".join(lines) + "\n")


def _finalise(out: Path, cfg: TrainConfig, device: torch.device, tr_masks: np.ndarray,
              va_masks: np.ndarray, va_attrs: np.ndarray | None, va_phase: np.ndarray | None,
              history: list[dict[str, float]], channels_last: bool) -> dict[str, Any]:
    """Latent bounds and summary from the best checkpoint."""
    from scipy.stats import spearmanr

    ckpt = load_checkpoint(out / "checkpoint.pt", cfg, map_location=device)
    memfmt = torch.channels_last if channels_last else torch.contiguous_format
    model = MaskVAE(cfg.model).to(device=device, memory_format=memfmt)
    model.load_state_dict(ckpt["model"])
    model.eval()
    nc, d = cfg.model.n_classes, cfg.model.latent_dim

    mu_tr, _, _ = encode(model, tr_masks, cfg.eval_batch_size, device, channels_last)
    p01, p99 = np.percentile(mu_tr, [1, 99], axis=0)
    zmin, zmax = ckpt["latent_min"].numpy(), ckpt["latent_max"].numpy()
    k = va_attrs.shape[1] if va_attrs is not None else 0
    lines = ["dim\tattribute\tz_min\tz_max\tmu_p01\tmu_p99"]
    for j in range(d):
        name = cfg.attribute_name(j, k) if (cfg.loss.uses_attributes and j < k) else ""
        lines.append(f"{j}\t{name}\t{_fmt(float(zmin[j]))}\t{_fmt(float(zmax[j]))}\t"
                     f"{_fmt(float(p01[j]))}\t{_fmt(float(p99[j]))}")
    write_text_atomic(out / "latent_bounds.tsv", "\n".join(lines) + "\n")

    mu_va, _, rec_va = encode(model, va_masks, cfg.eval_batch_size, device, channels_last)
    dice = dice_per_class(rec_va, va_masks, nc)
    with _quiet_nanmean():
        mean_dice = np.nanmean(dice, axis=0)
    summary: dict[str, Any] = {
        "kind": cfg.loss.kind,
        "epochs": cfg.epochs,
        "best_epoch": int(ckpt["epoch"]),
        "best_val_loss": float(ckpt["best_val"]),
        "device": str(device),
        "n_train": int(len(tr_masks)),
        "n_val": int(len(va_masks)),
        "train_seconds": float(sum(r["seconds"] for r in history)),
        "val_dice": {cfg.class_name(c): float(mean_dice[c]) for c in range(1, nc)},
        "val_dice_frames": {cfg.class_name(c): int(np.isfinite(dice[:, c]).sum())
                            for c in range(1, nc)},
    }
    if cfg.loss.uses_attributes and va_attrs is not None:
        rho = {}
        for j in range(k):
            ok = np.isfinite(va_attrs[:, j])
            r = spearmanr(mu_va[ok, j], va_attrs[ok, j]).statistic if ok.sum() > 2 else np.nan
            rho[cfg.attribute_name(j, k)] = None if not np.isfinite(r) else float(r)
        summary["spearman"] = rho
    if cfg.model.phase_head and va_phase is not None:
        with torch.no_grad():
            pred = model.phase(torch.from_numpy(mu_va).to(device)).float().cpu().numpy()
        summary["val_phase_mse"] = float(np.mean((pred - va_phase) ** 2))
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
