"""The torch device a stage runs on: "auto", "cpu", "cuda" or "cuda:N", checked."""

from __future__ import annotations

import logging

import torch

__all__ = ["resolve_device"]

logger = logging.getLogger(__name__)


def resolve_device(requested: str = "auto") -> torch.device:
    """Map "auto"/"cpu"/"cuda"/"cuda:N" to a device.

    "auto" falls back to CPU when CUDA is not available (and logs it); an
    explicit "cuda" request without CUDA raises ``RuntimeError``. For "auto" and "cuda" on a
    machine with several GPUs, the process first takes a device slot of its own
    (:func:`echolatent.gpu_slots.claim_device`), before CUDA starts.
    """
    if requested in ("auto", "cuda"):
        from echolatent.gpu_slots import claim_device

        claim_device()
    if requested == "auto":
        if torch.cuda.is_available():
            dev = torch.device("cuda")
            logger.info(f"device: cuda ({torch.cuda.get_device_name(dev)}) [auto]")
        else:
            dev = torch.device("cpu")
            logger.info("device: cpu [auto: CUDA not available, falling back to CPU]")
        return dev
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {requested!r} was requested but CUDA is not available "
                               f"(torch {torch.__version__}); use device 'auto' or 'cpu'")
        dev = torch.device(requested)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {requested!r} requested but only "
                               f"{torch.cuda.device_count()} CUDA device(s) are visible")
        logger.info(f"device: {dev} ({torch.cuda.get_device_name(dev)})")
        return dev
    if requested == "cpu":
        logger.info("device: cpu")
        return torch.device("cpu")
    raise ValueError(f"unknown device {requested!r}")
