"""Device slots: on a workstation with several GPUs, each running GPU job on a GPU of its own.

Snakemake counts the ``gpu`` resource but never tells a job *which* GPU to use: it does not
set ``CUDA_VISIBLE_DEVICES`` (snakemake#281), so with ``--resources gpu=2`` two training jobs
would both land on device 0. Every rule that runs a network resolves its device through
:func:`echolatent.models.device.resolve_device`, which first calls :func:`claim_device`:

1. the machine's devices are listed (:func:`visible_devices`): ``ECHOLATENT_GPUS`` if set
   (a comma list, e.g. ``0,1`` or ``2,3``: the GPUs the workflow may use), else
   ``CUDA_VISIBLE_DEVICES`` if it names more than one device, else the GPUs ``nvidia-smi
   -L`` lists;
2. with more than one device the job takes an exclusive ``flock`` on the first free lock
   file ``.snakemake/gpu-slots/slot-{i}.lock`` of the run directory (waiting while all are
   held) and sets ``CUDA_VISIBLE_DEVICES`` to that device alone, before CUDA starts;
3. the lock is held until the process ends; the kernel releases it even when the job is
   killed, so a crashed job never keeps its slot.

``snakemake --cores N --resources gpu=K`` with K devices then runs at most K GPU jobs at once,
each on its own device. Nothing happens under SLURM (``SLURM_JOB_ID`` set: the cluster gives
each job its own devices), with one device or none, or when a job asks for an explicit
``cuda:N``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["LOCK_DIR", "visible_devices", "may_have_gpu", "claim_device"]

logger = logging.getLogger(__name__)

#: Where the slot locks live, relative to the run directory (Snakemake's own state folder).
LOCK_DIR = Path(".snakemake") / "gpu-slots"

_held: dict[str, object] = {}  # the open lock file of the slot this process holds (kept open on purpose)


def visible_devices(environ=None) -> list[str]:
    """The GPUs this run may spread its jobs over (see the module docstring); [] without any."""
    environ = os.environ if environ is None else environ
    listed = environ.get("ECHOLATENT_GPUS")
    if listed is None and len(_split(environ.get("CUDA_VISIBLE_DEVICES", ""))) > 1:
        listed = environ["CUDA_VISIBLE_DEVICES"]
    if listed is not None:
        return _split(listed)
    if environ.get("CUDA_VISIBLE_DEVICES") is not None or not shutil.which("nvidia-smi"):
        return []  # one device already chosen (or none hidden), or no NVIDIA driver
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def may_have_gpu(environ=None, *, dev=Path("/dev")) -> bool:
    """Whether a job started here may see an NVIDIA GPU (``device: auto`` would then use it).

    False only when none can be there: ``CUDA_VISIBLE_DEVICES`` hides every device (empty or
    ``-1``), or no NVIDIA driver is installed (no ``nvidia-smi`` on the PATH, no ``/dev/nvidia*``
    device file, no WSL ``/dev/dxg``). A machine with a driver but no usable device answers
    True: a needless GPU token costs concurrency, a missing one would put jobs together on a GPU.
    """
    environ = os.environ if environ is None else environ
    if environ.get("ECHOLATENT_GPUS") is not None:
        return bool(_split(environ["ECHOLATENT_GPUS"]))
    hidden = environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None:
        return bool(_split(hidden)) and hidden.strip() != "-1"
    return (shutil.which("nvidia-smi", path=environ.get("PATH", "")) is not None
            or any(dev.glob("nvidia[0-9]*")) or (dev / "dxg").exists())


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def claim_device(lock_dir=LOCK_DIR, *, environ=None, poll_seconds: float = 0.5,
                 timeout_seconds: float | None = None) -> str | None:
    """Take a free device slot and make it this process's only visible GPU.

    Returns the device (as ``CUDA_VISIBLE_DEVICES`` now says), or None when there is nothing to
    choose (SLURM, one device or none). Calling it again in the same process returns the slot
    already held.

    Raises
    ------
    TimeoutError
        No slot freed within ``timeout_seconds`` (None: wait as long as it takes; Snakemake's
        ``--resources gpu=K`` keeps at most K jobs waiting for K slots, so a wait is short).
    """
    environ = os.environ if environ is None else environ
    if "device" in _held:
        return _held["device"]
    if environ.get("SLURM_JOB_ID"):
        return None
    devices = visible_devices(environ)
    if len(devices) < 2:
        return None
    folder = Path(lock_dir)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    waited = False
    while True:
        for index, device in enumerate(devices):
            handle = open(folder / f"slot-{index}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()} {device}\n")  # who holds it, for a curious user
            handle.flush()
            _held.update(device=device, handle=handle)
            environ["CUDA_VISIBLE_DEVICES"] = device
            logger.info(f"GPU slot {index} of {len(devices)}: CUDA_VISIBLE_DEVICES={device}"
                        + (f" (waited {time.monotonic() - start:.1f} s)" if waited else ""))
            return device
        if timeout_seconds is not None and time.monotonic() - start > timeout_seconds:
            raise TimeoutError(f"no free GPU slot among {devices} after {timeout_seconds} s (locks in {folder}); "
                               f"is --resources gpu= larger than the number of GPUs?")
        waited = True
        time.sleep(poll_seconds)
