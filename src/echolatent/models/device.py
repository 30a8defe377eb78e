"""The torch device a stage runs on: "auto", "cpu", "cuda" or "cuda:N", checked."""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["resolve_device"]


def resolve_device(requested: str = "auto", log: Callable[[str], None] | None = None
                   ) -> torch.device:
    """Map "auto"/"cpu"/"cuda"/"cuda:N" to a device.

    "auto" falls back to CPU when CUDA is not available (and says so in the log); an
    explicit "cuda" request without CUDA raises ``RuntimeError``.
    """
    log = log or (lambda msg: None)
    if requested == "auto":
        if torch.cuda.is_available():
            dev = torch.device("cuda")
            log(f"device: cuda ({torch.cuda.get_device_name(dev)}) [auto]")
        else:
            dev = torch.device("cpu")
            log("device: cpu [auto: CUDA not available, falling back to CPU]")
        return dev
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {requested!r} was requested but CUDA is not available "
                               f"(torch {torch.__version__}); use device 'auto' or 'cpu'")
        dev = torch.device(requested)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {requested!r} requested but only "
                               f"{torch.cuda.device_count()} CUDA device(s) are visible")
        log(f"device: {dev} ({torch.cuda.get_device_name(dev)})")
        return dev
    if requested == "cpu":
        log("device: cpu")
        return torch.device("cpu")
    raise ValueError(f"unknown device {requested!r}")
