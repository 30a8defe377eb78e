"""Writing mask shards: label-map sequences in the cohort shard layout (reconstructions, corrections).

A mask shard has the groups of a cohort shard (``/{patient_id}/{view}``, with the group
attributes of the cohort: spacing, ED/ES, ...) and holds label maps, so everything that reads
a cohort shard (:func:`echolatent.io.shards.iter_shard`, the NIfTI export) reads it too. Its
root attributes say what it is: ``format`` (:data:`MASK_SHARD_FORMAT`), ``version``,
``source`` (``reconstruction``, ``temporal``), ``model`` and ``image_size`` (the grid of its
``mask`` dataset).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import h5py
import numpy as np

from echolatent.io.atomic import atomic_path

__all__ = ["MASK_SHARD_FORMAT", "MaskShardWriter"]

MASK_SHARD_FORMAT = "echolatent-mask-shard"


class MaskShardWriter:
    """Writes a mask shard group by group; the file appears only once every group is written.

    Use as a context manager: the shard is written under a temporary name
    (:mod:`echolatent.io.atomic`) and renamed onto ``path`` when the block ends normally; an
    error leaves no partial shard behind.

    Parameters
    ----------
    path : path
        The shard to write (its folder is created).
    source : str
        What the label maps are (``reconstruction``, ``temporal``).
    model : str
        The model's name.
    image_size : int
        The grid of the ``mask`` datasets.
    """

    def __init__(self, path, *, source: str, model: str, image_size: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._files = contextlib.ExitStack()
        try:
            temporary = self._files.enter_context(atomic_path(self.path))
            self.h5 = self._files.enter_context(h5py.File(temporary, "w"))
        except BaseException:
            self._files.close()
            raise
        self.h5.attrs.update({"format": MASK_SHARD_FORMAT, "version": 1, "source": source, "model": model,
                              "image_size": int(image_size)})

    def write(self, sequence, datasets: dict) -> None:
        """One (patient, view) group: ``datasets`` (name -> array) and the attributes of ``sequence``.

        ``sequence`` is a :class:`~echolatent.io.shards.ShardSequence` of the cohort shard;
        label-map stacks (3-D) are stored one frame per chunk, gzip level 1.
        """
        group = self.h5.require_group(sequence.patient_id).create_group(sequence.view)
        for name, data in datasets.items():
            data = np.asarray(data)
            chunks = (1,) + data.shape[1:] if data.ndim == 3 else None
            group.create_dataset(name, data=data, chunks=chunks, compression="gzip" if chunks else None,
                                 compression_opts=1 if chunks else None)
        for key, value in sequence.attrs.items():
            group.attrs[key] = value

    def __enter__(self) -> "MaskShardWriter":
        return self

    def __exit__(self, exc_type, exc, traceback):
        # closes the file, then renames it onto the target (or removes it after an error)
        return self._files.__exit__(exc_type, exc, traceback)

    @classmethod
    def optional(cls, path, **kwargs):
        """The writer as a context manager, or ``None`` (through a null context) without a path."""
        return cls(path, **kwargs) if path else contextlib.nullcontext()
