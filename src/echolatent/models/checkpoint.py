"""Checkpoints of the mask VAE: writing them atomically, loading them safely, deciding to resume.

A checkpoint (``checkpoint.pt``, ``last.pt``, written by
:func:`~echolatent.models.training.train_vae`) is a dict of tensors and plain containers:
``format`` (:data:`CHECKPOINT_FORMAT`), ``version``, ``config`` (the
:class:`~echolatent.models.config.TrainConfig` as a dict), ``epoch``, ``model`` (the weights),
the optimiser and scaler states, the history, the latent bounds, the RNG state, the
fingerprint of the training data and (``last.pt``) the best epoch's state. It loads with
``torch.load(..., weights_only=True)``, which refuses anything else, so a damaged or foreign
file is an error and never code to run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from echolatent.io.atomic import atomic_path, remove_stale_temporaries

from .config import TrainConfig, VAEConfig
from .vae import MaskVAE

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "RUNTIME_KEYS",
    "CheckpointMismatchError",
    "config_diff",
    "data_fingerprint",
    "save_atomic",
    "write_text_atomic",
    "load_checkpoint",
    "load_model",
    "resume_state",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "echolatent-mask-vae"
CHECKPOINT_VERSION = 1
#: Config keys that may change between a run and its resumption (they do not define the
#: model or the optimisation; results on another device are not bit-identical anyway).
RUNTIME_KEYS = ("device", "num_threads", "eval_batch_size")


class CheckpointMismatchError(ValueError):
    """A checkpoint (or an existing output directory) does not match the configuration."""


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "",
                ignore: tuple[str, ...] = ()) -> list[str]:
    """Keys (dotted) whose values differ between two nested config dicts."""
    diffs = []
    for key in sorted(set(a) | set(b)):
        name = prefix + key
        if name in ignore:
            continue
        va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            diffs += config_diff(va, vb, name + ".", ignore)
        elif va != vb:
            diffs.append(f"{name}: {va!r} != {vb!r}")
    return diffs


def data_fingerprint(*arrays: np.ndarray | None) -> str:
    """SHA-1 of the shapes, dtypes and bytes of the data (to refuse resuming on other data)."""
    h = hashlib.sha1()
    for a in arrays:
        if a is None:
            h.update(b"none;")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def save_atomic(obj: Any, path) -> None:
    """``torch.save`` under a temporary name, then rename onto ``path`` (:mod:`echolatent.io.atomic`).

    The leftovers of a writer killed before it could rename are removed first.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    # Through a file object: torch names the archive inside the file after a file *name*,
    # which for the temporary would hold the pid; a file object gives the fixed name "archive".
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        torch.save(obj, stream)


def write_text_atomic(path, text: str) -> None:
    """Write a text file under a temporary name, then rename onto ``path``."""
    path = Path(path)
    remove_stale_temporaries(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def load_checkpoint(path: str | os.PathLike, expected_config: Any = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`~echolatent.models.training.train_vae` with ``weights_only=True``.

    ``expected_config`` may be a :class:`TrainConfig` (or its dict), compared on every key
    except the runtime ones (device, threads, eval batch size), or a :class:`VAEConfig`
    (or its dict), compared on the architecture only. A difference raises
    :class:`CheckpointMismatchError` listing the differing keys.
    Returns the checkpoint dict; ``ckpt["config"]`` is a plain dict.
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pickle errors, truncated files, unsafe content
        raise CheckpointMismatchError(
            f"{path}: refused by the safe loader (torch.load with weights_only=True): "
            f"{_loader_reason(exc)}. EchoLatent checkpoints hold tensors and plain containers "
            f"only, so this file is damaged or was not written by EchoLatent. Never load it "
            f"with weights_only=False: delete it and retrain (or restore the file from a "
            f"trusted copy).") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(f"{path}: not an EchoLatent mask-VAE checkpoint")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointMismatchError(f"{path}: checkpoint version {ckpt.get('version')} "
                                      f"is not supported (expected {CHECKPOINT_VERSION})")
    if expected_config is not None:
        stored = ckpt["config"]
        vae_keys = {f.name for f in dataclasses.fields(VAEConfig)}
        if isinstance(expected_config, VAEConfig) or (
                isinstance(expected_config, Mapping) and expected_config
                and set(expected_config) <= vae_keys):
            if isinstance(expected_config, Mapping):
                expected_config = VAEConfig.from_dict(expected_config)
            diffs = config_diff(stored["model"], expected_config.to_dict(), "model.")
        else:
            expected = TrainConfig.coerce(expected_config).to_dict()
            diffs = config_diff(stored, expected, ignore=RUNTIME_KEYS)
        if diffs:
            raise CheckpointMismatchError(
                f"{path}: checkpoint does not match the expected configuration "
                f"(stored != expected): " + "; ".join(diffs))
    return ckpt


def _loader_reason(exc: Exception) -> str:
    """The gist of a torch.load failure, without PyTorch's advice to disable the safe loader."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line.split(". ")[0]
    kept = [line for line in lines if "weights_only" not in line and "trust" not in line]
    return (kept[0] if kept else type(exc).__name__)[:200]


def load_model(path: str | os.PathLike, expected_config: Any = None,
               device: str | torch.device = "cpu") -> MaskVAE:
    """Rebuild the model of a checkpoint, load its weights and put it in eval mode."""
    ckpt = load_checkpoint(path, expected_config, map_location=device)
    model = MaskVAE(VAEConfig.from_dict(ckpt["config"]["model"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointMismatchError(f"{path}: weights do not fit the architecture stored in "
                                      f"the checkpoint: {exc}") from exc
    return model.to(device).eval()


def resume_state(last_path: Path, cfg_dict: dict[str, Any], fingerprint: str,
                 on_mismatch: str) -> dict[str, Any] | None:
    """The resumable state in ``last_path`` when it belongs to this configuration and data.

    Returns None when there is nothing to resume. A state of another configuration or data
    (``fingerprint``, :func:`data_fingerprint`) raises :class:`CheckpointMismatchError`
    (``on_mismatch="error"``) or is deleted (``"restart"``). A file the safe loader refuses
    always raises: it is never deleted silently.
    """
    if not last_path.exists():
        return None
    ckpt = load_checkpoint(last_path, map_location="cpu")
    problems = config_diff(ckpt["config"], cfg_dict, ignore=RUNTIME_KEYS)
    if problems:
        problem = ("holds a run with another configuration; differences (stored != requested): "
                   + "; ".join(problems))
    elif ckpt.get("data_fingerprint") != fingerprint:
        problem = "was trained on other data (different masks, attributes, phase or split)"
    elif int(ckpt["best_epoch"]) > 0 and "best" not in ckpt:
        problem = "was written by an older EchoLatent that did not keep the best state in it"
    else:
        return ckpt
    if on_mismatch == "restart":
        logger.warning(f"{last_path} {problem}: starting afresh")
        last_path.unlink()
        return None
    raise CheckpointMismatchError(f"{last_path} {problem}; use a new output directory or "
                                  f"delete it")
