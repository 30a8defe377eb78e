"""Stage "latent encoding": the functions its rules call (``workflow/rules/encode.smk``).

Rules, their files and their function
-------------------------------------
``encode_latents``  ``results/models/{model}/checkpoint.pt`` and a cohort shard ->
                    ``results/latents/{model}/shard-{k}.parquet`` (latent means and
                    log-variances, reconstruction Dice, one row per frame) and
                    ``results/latents/{model}/shard-{k}.h5`` (reconstructions, a mask shard of
                    the cohort layout); :func:`encode_stage`
``model_quality``   the model's latent tables and ``results/cohort/patients.tsv`` ->
                    ``results/models/{model}/quality.tsv`` (reconstruction Dice per split);
                    :func:`quality_stage`
``study_quality``   every model's ``quality.tsv`` -> ``results/models/quality.tsv``;
                    :func:`study_quality_stage`

:func:`load_corrector` loads a trained checkpoint for every rule that runs the network
(here and in :mod:`echolatent.stages.temporal`). The quality tables are
:mod:`echolatent.models.quality`.
"""

from __future__ import annotations

import pandas as pd

from echolatent.io.tables import read_table, write_table
from echolatent.models.quality import reconstruction_quality, study_quality

__all__ = ["load_corrector", "encode_stage", "quality_stage", "study_quality_stage"]


def load_corrector(checkpoint, device: str = "auto"):
    """``(model, attribute_names, device)`` of a checkpoint written by the trainer.

    ``attribute_names`` are the attributes tied to latent dims 0..K-1 (AR-VAE), [] otherwise;
    an AR-VAE checkpoint that does not name them has the trainer's default (the seven
    attributes of the TMI 2022 order).
    """
    from echolatent.models.checkpoint import load_checkpoint, load_model
    from echolatent.models.config import ATTRIBUTE_NAMES
    from echolatent.models.device import resolve_device

    dev = resolve_device(device)
    config = load_checkpoint(checkpoint, map_location="cpu")["config"]
    model = load_model(checkpoint, device=dev)
    names = []
    if config["loss"]["kind"] == "ar-vae":
        names = list(config.get("attribute_names") or ATTRIBUTE_NAMES)
    return model, names, dev


def encode_stage(checkpoint, shard, *, out_table, out_h5, model_name: str = "", device: str = "auto",
                 batch_size: int = 256) -> pd.DataFrame:
    """Latent means, log-variances and reconstructions of a shard (rule ``encode_latents``)."""
    from echolatent.models.shard_encoding import encode_shard

    model, _, dev = load_corrector(checkpoint, device)
    return encode_shard(shard, model, out_table=out_table, out_h5=out_h5, batch_size=batch_size, device=dev,
                        model_name=model_name)


def quality_stage(latent_tables, patients, *, model: str, out) -> pd.DataFrame:
    """Reconstruction Dice of a trained model per split (rule ``model_quality``;
    :func:`echolatent.models.quality.reconstruction_quality`), written to ``out``.

    ``latent_tables``: the model's ``results/latents/{model}/shard-*.parquet``;
    ``patients``: ``results/cohort/patients.tsv`` (the split of every patient).
    """
    latents = pd.concat([read_table(path) for path in latent_tables], ignore_index=True)
    table = reconstruction_quality(latents, patients, model=model)
    write_table(table, out)
    return table


def study_quality_stage(tables, *, out) -> pd.DataFrame:
    """The reconstruction quality of every model of the study, side by side (rule
    ``study_quality``; :func:`echolatent.models.quality.study_quality`), written to ``out``."""
    table = study_quality(tables)
    write_table(table, out)
    return table
