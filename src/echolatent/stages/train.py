"""Stage "VAE training": the function its rule calls (``workflow/rules/train.smk``).

Rule, its files and its function
--------------------------------
``train_vae``  the cohort shards and ``results/cohort/patients.tsv`` ->
               ``results/models/{model}/``: ``checkpoint.pt``, ``history.tsv``,
               ``latent_bounds.tsv``, ``config.json``, ``summary.json`` (and ``last.pt``, the
               resume point); :func:`train_stage`

The model is trained on the train split and selected on the val split
(:func:`train_on_cohort`). The frames of a split (:func:`load_split_frames`) are the
model-grid masks (``mask``) of the cohort shards, with the shape attributes measured on
those very masks (the AR-VAE only uses the sign of attribute differences between frames, so
they must describe what the network sees). The training itself is
:func:`echolatent.models.training.train_vae`.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd

from echolatent.io.errors import InputError
from echolatent.io.shards import iter_shard
from echolatent.resample import resize_masks_nearest

__all__ = ["load_split_frames", "train_on_cohort", "train_stage"]

logger = logging.getLogger(__name__)


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


def train_on_cohort(shards, patients, training: dict, attributes, *, out_dir, threads: int | None = None,
                    on_mismatch: str = "error") -> dict:
    """Load the train/val frames of a cohort and train (or resume) the configured VAE.

    Parameters
    ----------
    shards : sequence of path
        Cohort shards (``results/cohort/shard-{k}.h5``).
    patients : path or DataFrame
        ``results/cohort/patients.tsv`` (gives the split of every patient).
    training : dict
        :class:`echolatent.models.TrainConfig` fields (``model``, ``loss``, ``epochs``, ...).
    attributes : sequence of str
        Attributes tied to latent dims 0..K-1 (AR-VAE); measured on the model-grid masks.
    out_dir : path
        ``results/models/{model}/``; an interrupted run there is resumed.
    threads : int, optional
        CPU threads when the config does not set ``num_threads``. The workflow always sets
        ``num_threads`` (results depend on the thread count, so it comes from the config,
        never from the cores a job happens to get).
    on_mismatch : {"error", "restart"}
        What to do with a resume state of another configuration or data in ``out_dir``
        (see :func:`echolatent.models.train_vae`).

    Returns
    -------
    dict
        The training summary (also in ``summary.json``).
    """
    from echolatent.models.config import TrainConfig
    from echolatent.models.training import train_vae

    config = TrainConfig.from_dict(training)
    if config.num_threads is None and threads:
        config = dataclasses.replace(config, num_threads=int(threads))
    if config.loss.kind == "ar-vae":
        if not attributes:
            raise ValueError("the model's attributes are empty but its kind is 'ar-vae'")
        if len(attributes) > config.model.latent_dim:
            raise ValueError(f"{len(attributes)} attributes for a latent space of {config.model.latent_dim} dims")
        config = dataclasses.replace(config, attribute_names=list(attributes))
    wanted = list(attributes) if config.loss.kind == "ar-vae" else []
    data = {split: load_split_frames(shards, patients, split, input_size=config.model.input_size,
                                     attributes=wanted) for split in ("train", "val")}
    for split in data.values():
        if config.model.n_classes == 3:
            split["masks"][split["masks"] == 3] = 0  # a BG/LV/MYO model: the atrium is background
        elif config.model.n_classes != 4:
            raise ValueError(f"model.n_classes must be 3 (BG/LV/MYO) or 4 (BG/LV/MYO/LA), got {config.model.n_classes}")
    train, val = data["train"], data["val"]
    return train_vae(train["masks"], train["attributes"], train["phase"], val["masks"], val["attributes"],
                     val["phase"], config, out_dir, on_mismatch=on_mismatch)


def train_stage(shards, patients, training: dict, attributes, *, out_dir) -> int:
    """Train (or resume) one model of the study (rule ``train_vae``; :func:`train_on_cohort`).

    A resume state of another configuration or data in ``out_dir`` is discarded (Snakemake
    re-runs the job because the config or the data changed). An interrupted training is
    logged and can be resumed from ``last.pt`` by running the rule again.

    Returns
    -------
    int
        The job's exit status: 0 when training finished, the interruption's exit code
        (130 unless it names another) when it was interrupted.
    """
    from echolatent.models.training import TrainingInterrupted

    try:
        train_on_cohort(shards, patients, training, attributes, out_dir=out_dir, on_mismatch="restart")
    except TrainingInterrupted as interrupted:
        logger.warning(f"training interrupted ({interrupted}); re-run to resume from last.pt")
        return getattr(interrupted, "exit_code", 130)
    return 0
