"""Frames of a cohort split, ready for VAE training: masks, attributes and phase positions.

Reads the model-grid masks (``mask``) of the cohort shards for the patients of one split,
and measures the shape attributes on those very masks (the AR-VAE only uses the sign of
attribute differences between frames, so they must describe what the network sees).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from echolatent.io.errors import InputError
from echolatent.io.shards import iter_shard
from echolatent.resample import resize_masks_nearest


def load_split_frames(shards, patients, split: str, *, input_size: int, attributes=()) -> dict:
    """All frames of the patients of one split.

    Parameters
    ----------
    shards : sequence of path
        Cohort shards.
    patients : DataFrame or path
        ``results/cohort/patients.tsv`` (``patient_id``, ``split``).
    split : {"train", "val", "test"}
    input_size : int
        Side of the network input; masks are resized (nearest) when the model grid differs.
    attributes : sequence of str
        Shape attributes (:mod:`echolatent.shape.attributes`) to measure on every frame.

    Returns
    -------
    dict
        ``masks`` (N, S, S) uint8, ``attributes`` (N, K) float32 or None, ``phase`` (N,)
        float32 and ``frames`` (DataFrame: patient_id, view, frame).
    """
    from echolatent.shape.attributes import shape_attributes

    if not isinstance(patients, pd.DataFrame):
        patients = pd.read_csv(patients, sep="\t", dtype={"patient_id": str})
    members = set(patients.loc[patients["split"] == split, "patient_id"])
    if not members:
        raise InputError(None, f"no patient in split {split!r}")
    masks, phase, ids = [], [], []
    for shard in shards:
        for sequence in iter_shard(shard, ("mask", "frame_pos")):
            if sequence.patient_id not in members:
                continue
            frames = sequence.arrays["mask"]
            if frames.shape[1:] != (input_size, input_size):
                frames = resize_masks_nearest(frames, (input_size, input_size))
            masks.append(frames)
            phase.append(sequence.arrays["frame_pos"])
            ids.append(pd.DataFrame({"patient_id": sequence.patient_id, "view": sequence.view,
                                     "frame": np.arange(len(frames))}))
    if not masks:
        raise InputError(None, f"the shards hold no sequence of split {split!r}")
    masks = np.concatenate(masks)
    values = None
    if attributes:
        table = shape_attributes(masks)
        unknown = [a for a in attributes if a not in table]
        if unknown:
            raise ValueError(f"unknown shape attribute(s) {unknown}")
        values = table[list(attributes)].to_numpy(np.float32)
    return {"masks": masks, "attributes": values, "phase": np.concatenate(phase).astype(np.float32),
            "frames": pd.concat(ids, ignore_index=True)}
