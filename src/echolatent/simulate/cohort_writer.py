"""Simulating a whole cohort: patients in worker processes, streamed to disk in one format.

:func:`iter_patients` yields the patients of :mod:`echolatent.simulate.cohort` in index order
with a bounded number in flight; :func:`write_cohort` writes them through a format's writer
(:mod:`echolatent.simulate.export`) into a temporary folder renamed once complete.
"""

from __future__ import annotations

import os
import shutil
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from echolatent.simulate.cohort import simulate_patient
from echolatent.simulate.config import FORMATS, SimulationConfig

__all__ = ["iter_patients", "write_cohort"]


def _simulate_for_pool(args):
    config_dict, index = args
    return simulate_patient(_config_cache(config_dict), index)


_CONFIG_CACHE: dict = {}


def _config_cache(config_dict):
    key = repr(config_dict)
    if key not in _CONFIG_CACHE:
        _CONFIG_CACHE.clear()
        _CONFIG_CACHE[key] = SimulationConfig.from_dict(config_dict)
    return _CONFIG_CACHE[key]


def iter_patients(config: SimulationConfig, n_jobs: int = 1, indices=None):
    """Yield :class:`PatientSimulation` in index order, simulated in ``n_jobs`` processes.

    At most ``2 * n_jobs`` patients are in flight, so memory does not grow with the cohort.
    """
    indices = range(config.n_patients) if indices is None else indices
    if n_jobs <= 1:
        for index in indices:
            yield simulate_patient(config, index)
        return
    payload = config.to_dict()
    with ProcessPoolExecutor(max_workers=n_jobs) as pool:
        pending = deque()
        iterator = iter(indices)
        for index in iterator:
            pending.append(pool.submit(_simulate_for_pool, (payload, index)))
            if len(pending) >= 2 * n_jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def write_cohort(config: SimulationConfig, out_dir, fmt: str = "store", n_jobs: int = 1, *,
                 overwrite: bool = False, progress=None) -> Path:
    """Simulate the cohort of ``config`` and write it to ``out_dir`` in format ``fmt``.

    The cohort is written patient by patient into a temporary folder beside ``out_dir``,
    renamed to ``out_dir`` once complete: a crash never leaves a folder that looks complete.

    Parameters
    ----------
    fmt : {"store", "camus-nifti", "camus-mhd"}
    n_jobs : int
        Worker processes simulating patients (the output does not depend on it).
    overwrite : bool
        Replace an existing ``out_dir`` (otherwise it is an error).
    progress : callable, optional
        Called as ``progress(done, total)`` after each patient.

    Returns
    -------
    Path
        ``out_dir``.
    """
    from echolatent.simulate.export import open_writer

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer, got {n_jobs!r}")
    config.validate()
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists (pass overwrite=True / --overwrite to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        writer = open_writer(fmt, tmp, config)
        try:
            for done, sim in enumerate(iter_patients(config, n_jobs), start=1):
                writer.add(sim)
                if progress is not None:
                    progress(done, config.n_patients)
        finally:
            writer.close()
        if out_dir.exists():
            trash = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.replace(out_dir, trash)
            os.replace(tmp, out_dir)
            shutil.rmtree(trash)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir

