"""Stage "anatomical guarantees" (TMI 2020): the functions its rules call (``workflow/rules/guarantees.smk``).

Rules, their files and their function
-------------------------------------
``densify_latent_space``  the model's checkpoint, its encoded frames
                    (``results/latents/{model}/shard-*.parquet``), ``patients.tsv`` and
                    ``sequences.tsv`` -> ``results/guarantees/{model}/valid_codes.h5`` (the
                    codes whose decodings pass the 12 criteria) and ``densification.json``
                    (sampler, acceptance and validity rates, codes per second);
                    :func:`densify_stage`
``anatomical_correction``  a shard of masks (the cohort's, or the temporally corrected ones:
                    ``guarantees.postprocess``) and the valid codes ->
                    ``results/guarantees/{model}/shard-{k}.h5`` (a mask shard of the cohort
                    layout, every frame valid or reported) and ``shard-{k}.tsv`` (one row per
                    frame, with its split); :func:`correction_stage`
``guarantees_summary``  the per-frame tables -> ``results/guarantees/{model}/summary.tsv``
                    (per split); :func:`summary_stage`

The methods are :mod:`echolatent.guarantees`.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd

from echolatent.io.tables import read_table, write_table

__all__ = ["densify_stage", "correction_stage", "summary_stage", "read_valid_codes"]

logger = logging.getLogger(__name__)

VALID_CODES_FORMAT = "echolatent-valid-codes"


def _train_codes(latent_tables, patients, splits) -> np.ndarray:
    """Posterior means ``mu_*`` of the frames of the patients in ``splits``."""
    from echolatent.models.quality import with_split

    table = with_split(pd.concat([read_table(t) for t in latent_tables], ignore_index=True), patients)
    columns = sorted((c for c in table.columns if c.startswith("mu_")), key=lambda c: int(c.split("_")[1]))
    if not columns:
        raise ValueError(f"{latent_tables[0]}: no mu_* columns (is it a latent table of the encoding stage?)")
    codes = table.loc[table["split"].isin(list(splits)), columns].to_numpy(np.float64)
    if len(codes) < 2:
        raise ValueError(f"densification needs encoded frames of the splits {list(splits)}; found {len(codes)} "
                         f"in {len(latent_tables)} latent tables")
    return codes


def densify_stage(checkpoint, latent_tables, patients, sequences, *, n_samples: int, seed: int,
                  splits=("train",), sampler: str = "kde", bandwidth: float | None = None,
                  bound_quantile: float = 1.0, grid=0.3, batch_size: int = 256, device: str = "auto",
                  model: str = "", out_codes, out_summary) -> dict:
    """Fill a model's latent space with anatomically valid codes (rule ``densify_latent_space``).

    The target density is a KDE of the encoded frames of ``splits`` (the training split by
    default: nothing of the test split shapes what the correction may produce); ``n_samples``
    codes are drawn (:func:`~echolatent.guarantees.densify.densify`, ``sampler``), decoded on the
    model grid and checked against the 12 criteria at the cohort's median model-grid spacing.

    ``out_codes`` (HDF5): ``codes`` (n_valid, D) float32, the codes exactly as decoded, with
    the root attributes ``format``, ``model``, ``n_sampled``, ``acceptance_rate``,
    ``validity_rate``. ``out_summary`` (JSON): the same rates with the settings and the
    throughput (``codes_per_second``, decoded and checked).
    """
    import h5py

    from echolatent.guarantees.densify import densify
    from echolatent.io.atomic import atomic_path
    from echolatent.stages.encode import load_corrector

    codes = _train_codes(latent_tables, patients, splits)
    net, _, dev = load_corrector(checkpoint, device)
    seqs = read_table(sequences)
    members = read_table(patients)
    seqs = seqs[seqs["patient_id"].astype(str).isin(members.loc[members["split"].isin(list(splits)), "patient_id"]
                                                    .astype(str))]
    spacing = (float(seqs["model_spacing_h"].median()), float(seqs["model_spacing_w"].median()))
    logger.info(f"densifying {model or checkpoint}: {n_samples} codes from a KDE of {len(codes)} encoded frames "
                f"({', '.join(splits)}), sampler {sampler}, checked at {spacing[0]:g} x {spacing[1]:g} mm, grid {grid}")
    start = time.perf_counter()
    # decode_masks runs the network on float32 codes: the codes stored as float32 are those checked
    result = densify(net, codes, int(n_samples), np.random.default_rng(int(seed)), spacing=spacing,
                     grid=grid, sampler=sampler, bandwidth=bandwidth, bound_quantile=bound_quantile,
                     decode_batch_size=batch_size, device=dev)
    seconds = time.perf_counter() - start
    summary = {"model": model, "sampler": sampler, "splits": list(splits), "n_train_codes": int(len(codes)),
               "latent_dim": int(codes.shape[1]), "n_samples": int(n_samples), "n_sampled": int(result.n_sampled),
               "n_valid": int(len(result.codes)), "acceptance_rate": float(result.acceptance_rate),
               "validity_rate": float(result.validity_rate), "log_m": float(result.log_m),
               "n_over_bound": int(result.n_over_bound), "bandwidth": bandwidth, "bound_quantile": bound_quantile,
               "spacing_mm": list(spacing), "grid": grid, "seed": int(seed), "device": str(dev),
               "seconds": round(seconds, 3), "codes_per_second": round(result.n_sampled / seconds, 2)
               if seconds > 0 else None}
    if not len(result.codes):
        # not an error: the correction then reports every failing frame as uncorrectable (summary.tsv)
        logger.warning(f"densification of {model or checkpoint}: none of the {result.n_sampled} sampled codes "
                       f"decodes to a valid shape (an undertrained model?); no frame can be corrected")
    with atomic_path(out_codes) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("codes", data=result.codes.astype(np.float32))
        h5.attrs.update({"format": VALID_CODES_FORMAT, "model": model, "n_sampled": summary["n_sampled"],
                         "acceptance_rate": summary["acceptance_rate"],
                         "validity_rate": summary["validity_rate"]})
    with atomic_path(out_summary) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    logger.info(f"{summary['n_valid']} valid codes of {summary['n_sampled']} (validity {summary['validity_rate']:.3f}, "
                f"acceptance {summary['acceptance_rate']:.3g}), {summary['codes_per_second']} codes/s")
    return summary


def read_valid_codes(path) -> np.ndarray:
    """The ``codes`` (M, D) of a ``valid_codes.h5`` written by :func:`densify_stage`."""
    import h5py

    with h5py.File(path, "r") as h5:
        if h5.attrs.get("format") != VALID_CODES_FORMAT or "codes" not in h5:
            raise ValueError(f"{path}: not a valid-codes file of the densification stage (format attribute "
                             f"{h5.attrs.get('format')!r}, datasets {list(h5)})")
        return h5["codes"][()]


def correction_stage(checkpoint, codes, shard, *, patients, truth_shard=None, grid=0.3, n_bisections: int = 10,
                     max_distance: float | None = None, batch_size: int = 256, device: str = "auto",
                     masks: str = "input", model: str = "", refine: str = "components", refine_bisections: int = 8,
                     out_h5=None, out_table=None) -> pd.DataFrame:
    """Anatomical correction of a shard (rule ``anatomical_correction``;
    :func:`echolatent.guarantees.shard.correct_shard`).

    ``masks`` names what ``shard`` holds (``input``, or ``temporal/{model}``), recorded in the
    table's ``masks`` column; ``patients`` gives each frame's ``split``.
    """
    from echolatent.guarantees.shard import correct_shard
    from echolatent.models.quality import with_split
    from echolatent.stages.encode import load_corrector

    net, _, dev = load_corrector(checkpoint, device)
    valid = read_valid_codes(codes)
    if valid.shape[1] != int(net.config.latent_dim):
        raise ValueError(f"{codes}: codes of dimension {valid.shape[1]}, but the model of {checkpoint} has "
                         f"{net.config.latent_dim} latent dimensions (densified with another model?)")
    table = correct_shard(shard, net, valid, truth_shard=truth_shard, grid=grid, n_bisections=n_bisections,
                          max_distance=max_distance, batch_size=batch_size, device=dev, search_device=dev,
                          out_h5=out_h5, model_name=model, refine=refine, refine_bisections=refine_bisections)
    table = with_split(table, patients)
    table.insert(2, "split", table.pop("split"))
    table.insert(3, "masks", masks)
    if out_table is not None:
        write_table(table, out_table)
    return table


def summary_stage(tables, *, model: str = "", out=None) -> pd.DataFrame:
    """Per split (``train``, ``val``, ``test``, ``all``) totals of the per-frame correction tables
    (rule ``guarantees_summary``).

    Columns: ``frames``, ``failing_before`` (frames failing any criterion), ``corrected``,
    ``uncorrectable``, ``failing_after`` (failing before and not corrected), mean ``distance``
    moved in latent space, mean ``t`` and ``lam`` (image-space refinement), mean ``dice_to_input`` and ``changed_pixels`` over the
    corrected frames, and with the truth ``dice_truth_before`` / ``dice_truth_after`` over the
    corrected frames and ``dice_truth_worse`` (corrected frames whose Dice to the truth went down).
    """
    from echolatent.models.quality import SPLIT_ORDER

    table = pd.concat([read_table(t) for t in tables], ignore_index=True)
    rows = []
    for split in SPLIT_ORDER:
        part = table if split == "all" else table[table["split"] == split]
        fixed = part[part["status"] == "corrected"]
        row = {"model": model, "split": split, "frames": len(part),
               "failing_before": int((part["criteria_failed"] > 0).sum()), "corrected": len(fixed),
               "uncorrectable": int((part["status"] == "uncorrectable").sum())}
        row["failing_after"] = row["uncorrectable"]
        row.update({name: float(fixed[name].mean()) if len(fixed) else np.nan
                    for name in ("distance", "t", "lam", "dice_to_input", "changed_pixels")})
        if "dice_truth_before" in part:
            row["dice_truth_before"] = float(fixed["dice_truth_before"].mean()) if len(fixed) else np.nan
            row["dice_truth_after"] = float(fixed["dice_truth_after"].mean()) if len(fixed) else np.nan
            row["dice_truth_worse"] = int((fixed["dice_truth_after"] < fixed["dice_truth_before"]).sum())
        rows.append(row)
    result = pd.DataFrame(rows)
    if out is not None:
        write_table(result, out)
    logger.info("summary:\n%s", result.to_string(index=False))
    return result
