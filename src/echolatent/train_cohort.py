"""Train a mask VAE on a cohort: the train split for fitting, the val split for selection."""

from __future__ import annotations

import dataclasses

from echolatent.training_data import load_split_frames


def train_on_cohort(shards, patients, training: dict, attributes, *, out_dir, threads: int | None = None,
                    log=None, on_mismatch: str = "error") -> dict:
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
    from echolatent.models.training import TrainConfig, train_vae

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
                     val["phase"], config, out_dir, log=log, on_mismatch=on_mismatch)
