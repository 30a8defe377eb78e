"""One function per workflow rule of the latent-encoding and temporal stages.

The Snakemake scripts only unpack the ``snakemake`` object and call these, so every rule
can also be run (and tested) from Python.

Reference sequences (for thresholds)
------------------------------------
``truth``     the simulator's clean masks (``results/attributes/truth``, truth shards);
``observed``  the ingested masks of a synthetic cohort, leaving out the frames with an
              injected defect and their neighbours (``truth/frames.tsv``): the observer
              variability without the segmentation failures, i.e. what manual annotations
              are for the published thresholds;
``input``     the ingested masks as they are (real cohorts: the manual annotations).
Only the sequences of the patients in ``splits`` are reference sequences.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from echolatent.temporal.thresholds import derive_thresholds_table, read_thresholds, write_thresholds

__all__ = [
    "REFERENCES",
    "load_corrector",
    "read_latent_bounds",
    "image_thresholds_stage",
    "latent_thresholds_stage",
    "detection_stage",
    "encode_stage",
    "correction_stage",
    "summary_stage",
]

REFERENCES = ("truth", "observed", "input")
LATENT_MODES = ("derived", "image")


def _members(patients, splits) -> set[str]:
    if not isinstance(patients, pd.DataFrame):
        patients = pd.read_csv(patients, sep="\t", dtype={"patient_id": str})
    members = set(patients.loc[patients["split"].isin(list(splits)), "patient_id"])
    if not members:
        raise ValueError(f"no patient in the reference split(s) {list(splits)}")
    return members


def load_corrector(checkpoint, device: str = "auto", log=None):
    """``(model, attribute_names, device)`` of a checkpoint written by the trainer.

    ``attribute_names`` are the attributes tied to latent dims 0..K-1 (AR-VAE), [] otherwise;
    an AR-VAE checkpoint that does not name them has the trainer's default (the seven
    attributes of the TMI 2022 order).
    """
    from echolatent.models.training import ATTRIBUTE_NAMES, load_checkpoint, load_model, resolve_device

    dev = resolve_device(device, (lambda m: print(m, file=log, flush=True)) if log is not None else None)
    config = load_checkpoint(checkpoint, map_location="cpu")["config"]
    model = load_model(checkpoint, device=dev)
    names = []
    if config["loss"]["kind"] == "ar-vae":
        names = list(config.get("attribute_names") or ATTRIBUTE_NAMES)
    return model, names, dev


def read_latent_bounds(path) -> pd.DataFrame:
    """The trainer's ``latent_bounds.tsv`` (``dim, attribute, z_min, z_max, mu_p01, mu_p99``)."""
    table = pd.read_csv(path, sep="\t", dtype={"attribute": str}, keep_default_na=False,
                        na_values={"z_min": ["nan"], "z_max": ["nan"], "mu_p01": ["nan"], "mu_p99": ["nan"]})
    missing = [c for c in ("dim", "z_min", "z_max") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: latent bounds table lacks column(s) {missing}")
    return table.sort_values("dim").reset_index(drop=True)


def _read_attributes(tables) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(t) if str(t).endswith(".parquet") else pd.read_csv(t, sep="\t")
                      for t in tables], ignore_index=True)


def _with_defects(table: pd.DataFrame, frames, cycle: str) -> pd.DataFrame:
    from echolatent.temporal.evaluation import injected_defects

    defects = injected_defects(frames, cycle=cycle)[["patient_id", "view", "frame", "defective"]]
    out = table.merge(defects, on=["patient_id", "view", "frame"], how="left")
    if out["defective"].isna().any():
        raise ValueError("frames without a record in the simulator's frames table")
    out["defective"] = out["defective"].astype(bool)
    return out


def image_thresholds_stage(attribute_tables, patients, *, reference: str, splits, names, frames=None,
                           cycle: str = "full", out=None, log=None) -> pd.DataFrame:
    """Image-space bounds and thresholds from the reference sequences (rule ``temporal_thresholds``).

    ``attribute_tables``: per-shard attribute tables of the reference masks (``truth``) or
    of the ingested masks (``observed``, ``input``); ``frames``: the simulator's frames
    table (``observed`` only).
    """
    if reference not in REFERENCES:
        raise ValueError(f"temporal reference must be one of {REFERENCES}, got {reference!r}")
    table = _read_attributes(attribute_tables)
    table = table[table["patient_id"].astype(str).isin(_members(patients, splits))]
    exclude = None
    if reference == "observed":
        if frames is None:
            raise ValueError("the 'observed' reference needs the simulator's frames table (synthetic cohorts)")
        table, exclude = _with_defects(table, frames, cycle), "defective"
    result = derive_thresholds_table(table, list(names), reference=f"{reference}:{'+'.join(splits)}",
                                     exclude=exclude)
    if log is not None:
        print(result.to_string(index=False), file=log, flush=True)
    if out is not None:
        write_thresholds(result, out)
    return result


def latent_thresholds_stage(checkpoint, latent_bounds, image_thresholds, *, mode: str, reference: str = "input",
                            reference_shards=(), cohort_shards=(), patients=None, splits=("train",), frames=None,
                            cycle: str = "full", device: str = "auto", batch_size: int = 256, out=None,
                            log=None) -> pd.DataFrame:
    """Latent-space bounds and thresholds of the attribute dimensions (rule ``latent_thresholds``).

    ``mode="image"`` is the reference's choice: the image threshold of attribute k on latent
    dim k normalised by the training latent min/max. ``mode="derived"`` derives them from
    the latent trajectories (``mu`` of the pre-cleaned masks) of the reference sequences,
    normalised by the same min/max: the thresholds are then in the units they are applied in.
    A model without attribute dimensions gives an empty table (plain snake).
    """
    from echolatent.temporal.pipeline import encode_mu, model_input, _shard_grid
    from echolatent.temporal.preclean import preclean
    from echolatent.temporal.thresholds import THRESHOLD_COLUMNS
    from echolatent.io.shards import iter_shard

    if mode not in LATENT_MODES:
        raise ValueError(f"temporal latent_thresholds must be one of {LATENT_MODES}, got {mode!r}")
    model, names, dev = load_corrector(checkpoint, device, log)
    image = read_thresholds(image_thresholds, space="image").set_index("name")
    bounds = read_latent_bounds(latent_bounds)
    dims = [k for k, name in enumerate(names) if name in image.index]
    lo = bounds.set_index("dim").loc[dims, "z_min"].to_numpy(float)
    hi = bounds.set_index("dim").loc[dims, "z_max"].to_numpy(float)
    dim_names = [names[k] for k in dims]
    if not dims:
        result = pd.DataFrame(columns=THRESHOLD_COLUMNS)
    elif mode == "image":
        result = pd.DataFrame({"space": "latent", "name": dim_names, "dim": dims, "lo": lo, "hi": hi,
                               "tau": image.loc[dim_names, "tau"].to_numpy(float), "n_sequences": pd.NA,
                               "seq_max_min": np.nan, "seq_max_mean": np.nan, "seq_max_std": np.nan,
                               "reference": "image-thresholds"}, columns=THRESHOLD_COLUMNS)
    else:
        members = _members(patients, splits)
        keep_la = int(model.config.n_classes) > 3
        rows = []
        for ref_shard, cohort_shard in zip(reference_shards, cohort_shards):
            grid = _shard_grid(cohort_shard)
            attrs_from = None if str(ref_shard) == str(cohort_shard) else cohort_shard
            for sequence in iter_shard(ref_shard, ("mask_native",), attrs_from=attrs_from):
                if sequence.patient_id not in members:
                    continue
                x = model_input(preclean(sequence.arrays["mask_native"], keep_atrium=keep_la), model, grid)
                mu = encode_mu(model, x, batch_size=batch_size, device=dev)[:, dims]
                frame = pd.DataFrame(mu, columns=[f"mu_{k}" for k in dims])
                frame.insert(0, "frame", np.arange(len(x)))
                frame.insert(0, "view", sequence.view)
                frame.insert(0, "patient_id", sequence.patient_id)
                rows.append(frame)
        if not rows:
            raise ValueError("no reference sequence in the reference shards")
        table = pd.concat(rows, ignore_index=True)
        exclude = None
        if reference == "observed":
            table, exclude = _with_defects(table, frames, cycle), "defective"
        result = derive_thresholds_table(table, [f"mu_{k}" for k in dims], names=dim_names, space="latent",
                                         dims=dims, bounds=(lo, hi), exclude=exclude,
                                         reference=f"latent:{reference}:{'+'.join(splits)}")
    if log is not None:
        print(result.to_string(index=False), file=log, flush=True)
    if out is not None:
        write_thresholds(result, out)
    return result


def detection_stage(attribute_tables, frames, thresholds, *, cycle: str = "full", margin: float = 0.0, out=None,
                    log=None) -> pd.DataFrame:
    """Detection rates of the metric on the injected defects (rule ``temporal_detection``)."""
    from echolatent.shape_tables import write_table
    from echolatent.temporal.evaluation import detection_rates, injected_defects

    rates, _ = detection_rates(_read_attributes(attribute_tables), injected_defects(frames, cycle=cycle),
                               read_thresholds(thresholds, space="image"), margin=margin)
    if log is not None:
        print(rates.to_string(index=False), file=log, flush=True)
    if out is not None:
        write_table(rates, out)
    return rates


def encode_stage(checkpoint, shard, *, out_table, out_h5, model_name: str = "", device: str = "auto",
                 batch_size: int = 256, log=None) -> pd.DataFrame:
    """Latent means, log-variances and reconstructions of a shard (rule ``encode_latents``)."""
    from echolatent.temporal.pipeline import encode_shard

    model, _, dev = load_corrector(checkpoint, device, log)
    return encode_shard(shard, model, out_table=out_table, out_h5=out_h5, batch_size=batch_size, device=dev,
                        model_name=model_name, log=log)


def correction_stage(checkpoint, shard, image_thresholds, latent_thresholds, *, settings: dict,
                     truth_shard=None, frames=None, cycle: str = "full", out_table=None, out_h5=None,
                     model_name: str = "", device: str = "auto", log=None) -> pd.DataFrame:
    """Temporal correction of a shard (rule ``temporal_correction``).

    With the simulator's ``frames`` table (synthetic cohorts) the table also gets
    ``n_spikes``, ``n_defects`` (injected per sequence) and ``spiked``.
    """
    from echolatent.shape_tables import write_table
    from echolatent.attributes import TEMPORAL_ATTRIBUTES
    from echolatent.temporal.pipeline import CorrectionConfig, LatentConstraint, correct_shard

    model, _, dev = load_corrector(checkpoint, device, log)
    image = read_thresholds(image_thresholds, space="image")
    image = image[image["name"].isin(TEMPORAL_ATTRIBUTES)].reset_index(drop=True)
    latent = pd.read_csv(latent_thresholds, sep="\t")
    constraint = LatentConstraint.from_table(latent) if len(latent) else None
    config = CorrectionConfig.from_dict(settings)
    if log is not None:
        print(f"correction settings {json.dumps(settings)}; constrained dims "
              f"{[] if constraint is None else constraint.dims.tolist()}", file=log, flush=True)
    table = correct_shard(shard, model, image_thresholds=image, constraint=constraint, config=config,
                          truth_shard=truth_shard, out_h5=out_h5, model_name=model_name, device=dev, log=log)
    if frames is not None:
        from echolatent.temporal.evaluation import injected_defects

        defects = injected_defects(frames, cycle=cycle).groupby(["patient_id", "view"]).agg(
            n_spikes=("spike", "sum"), n_defects=("defective", "sum")).reset_index()
        table = table.merge(defects, on=["patient_id", "view"], how="left")
        table["spiked"] = table["n_spikes"] > 0
    if out_table is not None:
        write_table(table, out_table)
    return table


def summary_stage(tables, out=None) -> pd.DataFrame:
    """Cohort totals of the per-shard correction tables (rule ``temporal_summary``).

    One row per group (``all``; for synthetic cohorts also the sequences with and without
    an injected spike when a ``spiked`` column is present): sequences, inconsistent
    sequences and frames before/after, anatomical errors before/after, mean Dice to the
    truth before/after.
    """
    from echolatent.shape_tables import write_table

    table = pd.concat([pd.read_csv(t, sep="\t") for t in tables], ignore_index=True)
    groups = {"all": table}
    if "spiked" in table.columns:
        groups.update(spiked=table[table["spiked"].astype(bool)], not_spiked=table[~table["spiked"].astype(bool)])
    rows = []
    for name, members in groups.items():
        row = {"sequences": name, "n_sequences": len(members), "n_frames": int(members["n_frames"].sum())}
        for when in ("before", "after"):
            row[f"inconsistent_sequences_{when}"] = int(members[f"sequence_inconsistent_{when}"].sum())
            row[f"inconsistent_frames_{when}"] = int(members[f"inconsistent_frames_{when}"].sum())
            row[f"anatomical_errors_{when}"] = int(members[f"anatomical_errors_{when}"].sum())
            if f"dice_{when}" in members.columns:
                row[f"dice_{when}"] = float(members[f"dice_{when}"].mean())
        if "dice_before" in members.columns:
            delta = members["dice_after"] - members["dice_before"]
            row["dice_change_mean"] = float(delta.mean())
            row["dice_decreased"] = int((delta < 0).sum())
            row["dice_increased"] = int((delta > 0).sum())
            row["dice_change_min"] = float(delta.min()) if len(delta) else np.nan
        if "method" in members.columns:
            for method in ("repair", "smooth"):
                row[f"method_{method}"] = int((members["method"] == method).sum())
        rows.append(row)
    result = pd.DataFrame(rows)
    if out is not None:
        write_table(result, Path(out))
    return result
