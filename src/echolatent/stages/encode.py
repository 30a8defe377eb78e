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
``stats_latent_decode``  a table of latent codes (``results/stats/latent/{model}/codes.tsv``) ->
                    their decoded shapes (``decoded.h5``) and measures (``decoded.tsv``);
                    :func:`decode_codes_stage`

:func:`load_corrector` loads a trained checkpoint for every rule that runs the network
(here and in :mod:`echolatent.stages.temporal`). The quality tables are
:mod:`echolatent.models.quality`.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from echolatent.io.tables import read_table, read_tables, write_table
from echolatent.models.quality import reconstruction_quality, study_quality

__all__ = ["load_corrector", "encode_stage", "quality_stage", "study_quality_stage", "decode_codes_stage"]

logger = logging.getLogger(__name__)


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
                        model_name=model_name, channels_last=True)


def quality_stage(latent_tables, patients, *, model: str, out) -> pd.DataFrame:
    """Reconstruction Dice of a trained model per split (rule ``model_quality``;
    :func:`echolatent.models.quality.reconstruction_quality`), written to ``out``.

    ``latent_tables``: the model's ``results/latents/{model}/shard-*.parquet``;
    ``patients``: ``results/cohort/patients.tsv`` (the split of every patient).
    """
    # the Dice columns only: the codes (half the table) stay on disk
    latents = read_tables(latent_tables, lambda c: c in ("patient_id", "view", "frame") or c.startswith("dice_"))
    table = reconstruction_quality(latents, patients, model=model)
    write_table(table, out)
    return table


def study_quality_stage(tables, *, out) -> pd.DataFrame:
    """The reconstruction quality of every model of the study, side by side (rule
    ``study_quality``; :func:`echolatent.models.quality.study_quality`), written to ``out``."""
    table = study_quality(tables)
    write_table(table, out)
    return table


def decode_codes_stage(codes, checkpoint, sequences, *, device: str = "auto", batch_size: int = 256,
                       out_h5, out_table) -> pd.DataFrame:
    """Decode a table of latent codes into shapes and measure them (rule ``stats_latent_decode``).

    Parameters
    ----------
    codes : path
        One row per code: ``view`` and ``mu_0..mu_{K-1}``, any other columns describing the code
        (``kind``, ``phase``, ``component``, ``sd``, ``group``, ``step``: see
        :mod:`echolatent.stats.latent_space`).
    checkpoint : path
        The model's checkpoint.
    sequences : path
        ``results/cohort/sequences.tsv``: the model-grid spacing of each view (median over the
        view's sequences) gives the decoded shapes their physical size.
    out_h5 : path
        ``masks`` (N, S, S) uint8 argmax decodings on the model grid, in the row order of the
        codes table, with the attribute ``spacing`` (N, 2) in mm.
    out_table : path
        The codes table without its ``mu_*`` columns, plus ``code`` (row number in ``masks``),
        ``anatomical_errors`` (true when the shape fails any of the 12 criteria) and the
        physical shape attributes of each decoded shape.
    """
    import h5py

    from echolatent.io.atomic import atomic_path
    from echolatent.models.inference import decode_masks
    from echolatent.shape.attributes import MM_ATTRIBUTES, shape_attributes
    from echolatent.shape.criteria import anatomical_metrics

    table = read_table(codes)
    mu = [c for c in table.columns if c.startswith("mu_")]
    if not mu or "view" not in table:
        raise ValueError(f"{codes}: a codes table needs a 'view' column and mu_* columns")
    mu.sort(key=lambda c: int(c.split("_")[1]))
    model, _, dev = load_corrector(checkpoint, device)
    if len(mu) != int(model.config.latent_dim):
        raise ValueError(f"{codes}: {len(mu)} mu_* columns, but the model of {checkpoint} has "
                         f"{model.config.latent_dim} latent dimensions")
    seqs = read_table(sequences)
    grid = seqs.groupby("view")[["model_spacing_h", "model_spacing_w"]].median()
    unknown = sorted(set(table["view"]) - set(grid.index))
    if unknown:
        raise ValueError(f"{codes}: views {unknown} are not in {sequences}")
    spacing = grid.loc[table["view"]].to_numpy(np.float64)
    masks = decode_masks(model, table[mu].to_numpy(np.float32), batch_size=batch_size, device=dev)
    criteria = anatomical_metrics(masks, spacing)
    attributes = shape_attributes(masks, spacing)[list(MM_ATTRIBUTES)]
    out = table.drop(columns=mu).reset_index(drop=True)
    out.insert(0, "code", np.arange(len(out)))
    out["anatomical_errors"] = criteria["anatomical_errors"].to_numpy(bool)
    out = pd.concat([out, attributes.reset_index(drop=True)], axis=1)
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("masks", data=masks, compression="gzip")
        h5["masks"].attrs["spacing"] = spacing
    write_table(out, out_table)
    logger.info(f"{len(out)} codes decoded, {int(out['anatomical_errors'].sum())} anatomically invalid")
    return out
