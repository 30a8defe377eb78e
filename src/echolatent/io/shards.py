"""Reading cohort shards (``results/cohort/shard-{k}.h5``; contract in :mod:`echolatent.ingest`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from echolatent.io.errors import InputError


@dataclass
class ShardSequence:
    """One (patient, view) group of a shard: the requested arrays and the group attributes."""

    patient_id: str
    view: str
    arrays: dict
    attrs: dict

    def spacing(self, dataset: str) -> tuple[float, float]:
        """Pixel spacing (h, w) mm of a dataset's grid (native or model grid)."""
        key = "spacing_native" if dataset.endswith("_native") else "spacing"
        return tuple(float(s) for s in self.attrs[key])


def iter_shard(path, datasets=("mask_native",), *, attrs_from=None) -> Iterator[ShardSequence]:
    """Stream the sequences of a shard, sorted by patient then view.

    Parameters
    ----------
    path : path
        A cohort shard, or a truth shard (same groups).
    datasets : sequence of str
        Datasets to load per group (e.g. ``mask_native``, ``mask``, ``frame_pos``).
    attrs_from : path, optional
        Take the group attributes (spacing, ED/ES, ...) from this shard instead, e.g. the
        cohort shard when reading a truth shard, which carries arrays only.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "shard not found")
    meta = h5py.File(attrs_from, "r") if attrs_from is not None else None
    try:
        with h5py.File(path, "r") as h5:
            for patient in sorted(h5.keys()):
                for view in sorted(h5[patient].keys()):
                    group = h5[f"{patient}/{view}"]
                    missing = [d for d in datasets if d not in group]
                    if missing:
                        raise InputError(path, f"/{patient}/{view} lacks dataset(s) {missing}")
                    attrs_group = group if meta is None else meta[f"{patient}/{view}"]
                    attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs_group.attrs.items()}
                    yield ShardSequence(patient, view, {d: group[d][()] for d in datasets}, attrs)
    finally:
        if meta is not None:
            meta.close()


def iter_shard_batches(path, datasets=("mask_native",), limit: int = 64, *,
                       size=lambda sequence: 1) -> Iterator[list[ShardSequence]]:
    """The sequences of :func:`iter_shard` in lists of consecutive ones whose total ``size`` reaches ``limit``.

    ``size`` weighs a sequence: 1 (default) batches ``limit`` sequences, the number of its
    frames a network batch's worth of frames. The last list may be short.
    """
    batch, total = [], 0
    for sequence in iter_shard(path, datasets):
        batch.append(sequence)
        total += size(sequence)
        if total >= limit:
            yield batch
            batch, total = [], 0
    if batch:
        yield batch


def shard_counts(path, dataset: str = "mask_native") -> tuple[int, int]:
    """``(sequences, frames)`` of a shard, from the shapes of ``dataset`` (no array is read).

    A group without ``dataset`` counts no frame (:func:`iter_shard` reports it).
    """
    with h5py.File(path, "r") as h5:
        groups = [h5[patient][view] for patient in h5 for view in h5[patient]]
        frames = [len(group[dataset]) if dataset in group else 0 for group in groups]
    return len(frames), sum(frames)


def shard_grid(path) -> int | None:
    """The cohort's model grid (root attribute ``image_size``) of a shard, if recorded."""
    with h5py.File(path, "r") as h5:
        size = h5.attrs.get("image_size")
    return None if size is None else int(size)
