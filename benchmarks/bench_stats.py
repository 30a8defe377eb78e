"""Benchmark of the statistics stage (issue 14): time and peak memory of every job for N synthetic patients.

For each size N the script writes a synthetic set of the stage's *input* files, in the layouts
of the workflow (``results/cohort/{patients,sequences}.tsv``, ``results/clinical/indices.tsv``,
8 shards of attribute and anatomy tables of the input masks, latent shards of one AR-VAE
``arvae`` with 16 dimensions, the temporal stage's sequence tables, the clinical indices of the
reconstructed and temporally corrected masks and the synthetic truth), generated with seeded,
vectorised numpy (not the image simulator, far too slow at 10,000 patients; generation is not
timed). Then it runs every stage function of :mod:`echolatent.stages.stats` in its own fresh
Python process, as Snakemake runs the rules (one job each, ``threads: 1``, so BLAS/OpenMP
threads 1), in the workflow's order: ``patients_stage`` (analysis table), then
``table1_stage``, ``effects_stage``, ``curves_stage``, ``latent_stage`` (model ``arvae``),
``classification_stage`` and ``agreement_stage``, with the schema's default settings
(``n_permutations`` 999, ``seed`` 0, 5 folds x 5 repeats, 1,000 bootstrap resamples, the
default clinical features). Per job: wall time of the process (interpreter start and imports
included, what the job costs), the time spent in the stage function, CPU time (user + system)
and peak RSS (``VmHWM`` of the job's process, :func:`peak_rss_mb`). The decode rule of the
stage (``stats_latent_decode``, a network) is not part of the measure.

Cohort: two groups (control / hypertensive, 50/50) confounded with age and BSA, sex, split
70/15/15 stratified by group; two views (2CH, 4CH) per patient, full cycles of 20 frames with
ED in frames 0-2 and ES 6-10 frames later; smooth periodic attribute curves (cavity areas and
lengths contract, MYO area thickens, LA fills to ES) scaled by BSA and age, frame noise, and a
planted group effect of +15 % on the MYO area (and -5 % LV cavity, +10 % LA); the AR-VAE's
first 7 latent means follow the 7 regularised attributes (monotone + noise), the other 9 are
patient-level noise.

Usage::

    python benchmarks/bench_stats.py --patients 1000 10000 --work /tmp/benchstats [--out table.md]
        [--reuse] [--stages patients effects ...] [--profile curves]

``--reuse`` keeps a generated input set of the same size and seed; ``--profile STAGE`` runs that
job under cProfile and prints its 25 most expensive functions (cumulative), timings then
include the profiler's overhead.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "GOTO_NUM_THREADS")
GROUPS = ("control", "hypertensive")
VIEWS = ("2CH", "4CH")
N_FRAMES = 20
N_SHARDS = 8
LATENT_DIM = 16
MODEL = "arvae"
#: ``models.arvae.attributes`` of config/config.yaml: dimension k regularised by attribute k.
REGULARISED = ["lv_area", "lv_base_width", "lv_length", "lv_orientation", "myo_area", "epi_center_x", "epi_center_y"]
#: Schema default of ``population.classification.clinical_features``.
CLINICAL_FEATURES = ["clinical.ef_pct", "clinical.edv_ml", "clinical.esv_ml", "clinical.la_volume_ml",
                     "attributes.myo_area_mm2.2CH.ed", "attributes.myo_area_mm2.4CH.ed"]
SPACING = 0.75
STAGES = ("patients", "table1", "effects", "curves", "latent", "classification", "agreement")
CRITERIA = ("holes_in_lv", "holes_in_epi", "holes_in_atrium", "holes_between_lv_and_myo",
            "holes_between_lv_and_atrium", "disconnectivity_in_lv", "disconnectivity_in_myo",
            "disconnectivity_in_atrium", "frontier_ratio_between_lv_and_bg",
            "frontier_ratio_between_myo_and_atrium", "width_ratio_between_lv_and_myo",
            "erosion_ratio_before_myo_split")


# --------------------------------------------------------------------------------------------
# Synthetic inputs, in the workflow's layouts
# --------------------------------------------------------------------------------------------
def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="\t", index=False)


def _biplane(a2, a4, length):
    """Biplane area-length volume (ml) from two areas (mm^2) and a length (mm)."""
    return 8.0 / (3.0 * np.pi) * a2 * a4 / length / 1000.0


def make_inputs(n: int, root: Path, seed: int = 0) -> dict:
    """Write the statistics stage's inputs for ``n`` patients under ``root/results``; returns the paths."""
    rng = np.random.default_rng(seed)
    res = root / "results"
    ids = np.array([f"patient{i:05d}" for i in range(1, n + 1)], dtype=object)

    # ---- patients: group confounded with age and BSA; split 70/15/15 stratified by group
    is_case = rng.permutation(np.arange(n) % 2 == 1)
    group = np.where(is_case, GROUPS[1], GROUPS[0]).astype(object)
    severity = np.where(is_case, rng.beta(7, 2.3, n), rng.beta(2, 8, n))
    age = np.round(np.where(is_case, rng.normal(61, 10, n), rng.normal(54, 10, n)).clip(20, 95), 2)
    sex = np.where(rng.random(n) < 0.45, "M", "F").astype(object)
    bsa = np.round(np.where(is_case, rng.normal(1.94, 0.19, n), rng.normal(1.89, 0.18, n))
                   + np.where(sex == "M", 0.08, -0.06), 4).clip(1.3, 2.7)
    split = np.empty(n, dtype=object)
    for flag in (False, True):
        members = rng.permutation(np.flatnonzero(is_case == flag))
        n_train, n_val = int(round(0.7 * len(members))), int(round(0.15 * len(members)))
        split[members[:n_train]] = "train"
        split[members[n_train:n_train + n_val]] = "val"
        split[members[n_train + n_val:]] = "test"
    shard = np.arange(n) % N_SHARDS
    patients = pd.DataFrame({"patient_id": ids, "group": group, "severity": np.round(severity, 6), "age": age,
                             "sex": sex, "bsa": bsa, "split": split, "shard": shard, "n_sequences": 2})

    # ---- sequences: 2 views, full cycles of 20 frames, ED in 0..2, ES 6..10 frames later
    S = 2 * n
    pat = np.repeat(np.arange(n), 2)
    view = np.tile(np.array(VIEWS, dtype=object), n)
    ed = rng.choice([0, 1, 2], S, p=[0.45, 0.5, 0.05])
    es = ed + rng.choice([6, 7, 8, 9, 10], S, p=[0.08, 0.32, 0.32, 0.2, 0.08])
    frame_rate = np.repeat(rng.normal(21.5, 3.4, n).clip(12, 35), 2)
    sequences = pd.DataFrame({
        "patient_id": ids[pat], "view": view, "shard": shard[pat], "cycle": "full", "n_frames": N_FRAMES,
        "ed": ed, "es": es, "height": 256, "width": 256, "spacing_h": SPACING, "spacing_w": SPACING,
        "model_spacing_h": 3.0, "model_spacing_w": 3.0, "frame_rate": frame_rate, "has_image": True,
        "image_quality": rng.choice(np.array(["Good", "Medium", "Poor"], dtype=object), S, p=[0.45, 0.31, 0.24]),
        "source_files": "results/synthetic/sequences.h5"})

    # ---- per-sequence shape parameters (patient size, age, group effect, view factor)
    size = bsa / 1.9
    dage = age - 55.0
    case = is_case.astype(float)
    lv_ed = 3100 * size * (1 - 0.002 * dage) * np.exp(rng.normal(0, 0.10, n)) * (1 - 0.05 * case)
    myo_ed = 2500 * size * (1 + 0.004 * dage) * np.exp(rng.normal(0, 0.08, n)) * (1 + 0.15 * case)  # planted
    la_ed = 1400 * size * (1 + 0.005 * dage) * np.exp(rng.normal(0, 0.15, n)) * (1 + 0.10 * case)
    length = 88 * np.sqrt(size) * np.exp(rng.normal(0, 0.05, n))
    width = 40 * np.sqrt(size) * np.exp(rng.normal(0, 0.07, n))
    contraction = (0.45 * np.exp(rng.normal(0, 0.10, n))).clip(0.2, 0.7)
    la_length = 50 * np.sqrt(size) * np.exp(rng.normal(0, 0.05, n))

    def per_view(values, sd):
        return values[pat] * np.exp(rng.normal(0, sd, S))

    params = {"lv": per_view(lv_ed, 0.05), "myo": per_view(myo_ed, 0.05), "la": per_view(la_ed, 0.06),
              "length": per_view(length, 0.02), "width": per_view(width, 0.04), "k": contraction[pat],
              "x": rng.normal(95, 5, S), "y": rng.normal(65, 5, S), "angle": rng.normal(0, 3, S)}

    # ---- frames: smooth periodic curves anchored at ED (0) and ES (1)
    F = S * N_FRAMES
    seq = np.repeat(np.arange(S), N_FRAMES)
    frame = np.tile(np.arange(N_FRAMES), S)
    period = N_FRAMES - 1
    phi = ((frame - ed[seq]) % period) / period
    s_es = (((es - ed) % period) / period)[seq]
    systole = phi <= s_es
    c = np.where(systole, (1 - np.cos(np.pi * phi / s_es)) / 2,
                 (1 + np.cos(np.pi * (phi - s_es) / (1 - s_es))) / 2)
    frame_pos = np.where(systole, phi / s_es, (1 - phi) / (1 - s_es)).astype(np.float32)

    def noisy(values, sd):
        return values * (1 + rng.normal(0, sd, F))

    px2 = SPACING * SPACING
    lv_px = np.round(noisy(params["lv"][seq] * (1 - params["k"][seq] * c), 0.015) / px2)
    myo_px = np.round(noisy(params["myo"][seq] * (1 + 0.25 * c), 0.02) / px2)
    la_px = np.round(noisy(params["la"][seq] * (1 + 0.6 * c), 0.03) / px2)
    length_mm = noisy(params["length"][seq] * (1 - 0.13 * c), 0.01)
    width_mm = noisy(params["width"][seq] * (1 - 0.10 * c), 0.02)
    x_mm = params["x"][seq] + 1.0 * c + rng.normal(0, 0.3, F)
    y_mm = params["y"][seq] + 2.0 * c + rng.normal(0, 0.3, F)
    angle = params["angle"][seq] + rng.normal(0, 0.1, F)
    keys = {"patient_id": ids[pat][seq], "view": view[seq], "frame": frame, "frame_pos": frame_pos}
    attributes = pd.DataFrame({
        **keys, "lv_area": lv_px, "lv_base_width": width_mm / SPACING, "lv_length": length_mm / SPACING,
        "lv_orientation": angle, "myo_area": myo_px, "epi_center_x": x_mm / SPACING, "epi_center_y": y_mm / SPACING,
        "atrium_area": la_px, "lv_area_mm2": lv_px * px2, "lv_base_width_mm": width_mm, "lv_length_mm": length_mm,
        "myo_area_mm2": myo_px * px2, "atrium_area_mm2": la_px * px2, "epi_center_x_mm": x_mm,
        "epi_center_y_mm": y_mm, "lv_orientation_deg": angle})

    # ---- anatomy: 12 criteria, ~10 % of the frames with an anatomical error
    error = rng.random(F) < 0.10
    which = rng.integers(0, 8, F)
    anatomy = {**keys}
    for j, name in enumerate(CRITERIA[:8]):
        anatomy[name] = np.where(error & (which == j), rng.integers(1, 40, F), 0).astype(float)
    anatomy["frontier_ratio_between_lv_and_bg"] = np.abs(rng.normal(0.1, 0.05, F))
    anatomy["frontier_ratio_between_myo_and_atrium"] = np.where(rng.random(F) < 0.05, rng.random(F) * 0.3, 0.0)
    anatomy["width_ratio_between_lv_and_myo"] = rng.normal(1.6, 0.1, F)
    anatomy["erosion_ratio_before_myo_split"] = rng.normal(0.43, 0.03, F)
    anatomy["anatomical_errors"] = error
    anatomy = pd.DataFrame(anatomy)

    # ---- latent means: dims 0..6 follow the regularised attributes, the rest patient-level noise
    mu = np.empty((F, LATENT_DIM), np.float32)
    for k, name in enumerate(REGULARISED):
        a = attributes[name].to_numpy()
        z = (a - a.mean()) / a.std()
        mu[:, k] = 1.5 * np.tanh(z / 1.5) + rng.normal(0, 0.15, F)
    loadings = rng.normal(0, 0.3, LATENT_DIM - len(REGULARISED))
    mu[:, len(REGULARISED):] = (rng.normal(0, 1, (S, LATENT_DIM - len(REGULARISED)))[seq]
                                + loadings * c[:, None] + rng.normal(0, 0.1, (F, LATENT_DIM - len(REGULARISED))))
    logvar = rng.normal(-6.5, 1.0, (F, LATENT_DIM)).astype(np.float32)
    dice = 1 - np.abs(rng.normal(0, [0.006, 0.02, 0.02], (F, 3)))
    latents = pd.concat([
        pd.DataFrame(keys),
        pd.DataFrame(mu, columns=[f"mu_{k}" for k in range(LATENT_DIM)]),
        pd.DataFrame(logvar, columns=[f"logvar_{k}" for k in range(LATENT_DIM)]),
        pd.DataFrame({"dice_lv": dice[:, 0], "dice_myo": dice[:, 1], "dice_la": dice[:, 2],
                      "dice_mean": dice.mean(axis=1)})], axis=1)

    # ---- clinical indices of the input masks (biplane area-length on the ED/ES frames)
    at_ed = np.arange(S) * N_FRAMES + ed
    at_es = np.arange(S) * N_FRAMES + es

    def both(values, rows):  # (n, 2): 2CH, 4CH of every patient
        return values[rows].reshape(n, 2)

    def indices(lv_ed_area, lv_es_area, len_ed, len_es, la_es_area, la_len):
        edv = _biplane(lv_ed_area[:, 0], lv_ed_area[:, 1], len_ed.max(axis=1))
        esv = _biplane(lv_es_area[:, 0], lv_es_area[:, 1], len_es.max(axis=1))
        la = _biplane(la_es_area[:, 0], la_es_area[:, 1], la_len)
        return edv, esv, 100 * (edv - esv) / edv, la

    lv_mm2, la_mm2 = lv_px * px2, la_px * px2
    len_ed, len_es = both(length_mm, at_ed), both(length_mm, at_es)
    edv, esv, ef, la_volume = indices(both(lv_mm2, at_ed), both(lv_mm2, at_es), len_ed, len_es,
                                      both(la_mm2, at_es), la_length * np.exp(rng.normal(0, 0.03, n)))
    la_volume[rng.random(n) < 0.005] = np.nan  # a few undefined values: listed exclusions
    clinical = pd.DataFrame({
        "patient_id": ids, "views": "2CH+4CH", "method": "biplane", "edv_ml": edv, "esv_ml": esv, "ef_pct": ef,
        "la_volume_ml": la_volume, "lv_length_4ch_ed_mm": len_ed[:, 1], "lv_length_2ch_ed_mm": len_ed[:, 0],
        "lv_length_4ch_es_mm": len_es[:, 1], "lv_length_2ch_es_mm": len_es[:, 0],
        "foreshortening": rng.random(n) < 0.02})

    def remeasured(sd):  # the indices of reconstructed / corrected masks: the input's, re-measured
        out = clinical.copy()
        for column in ("edv_ml", "esv_ml", "la_volume_ml", "lv_length_4ch_ed_mm", "lv_length_2ch_ed_mm",
                       "lv_length_4ch_es_mm", "lv_length_2ch_es_mm"):
            out[column] = out[column] * (1 + rng.normal(0, sd, n))
        out["ef_pct"] = 100 * (out["edv_ml"] - out["esv_ml"]) / out["edv_ml"]
        return out

    # ---- the synthetic truth: analytic volumes of the noise-free hearts
    p2 = lambda key: params[key].reshape(n, 2)  # noqa: E731
    t_edv = _biplane(p2("lv")[:, 0], p2("lv")[:, 1], length)
    t_esv = _biplane(p2("lv")[:, 0] * (1 - contraction), p2("lv")[:, 1] * (1 - contraction), length * 0.87)
    t_la_max = _biplane(p2("la")[:, 0] * 1.6, p2("la")[:, 1] * 1.6, la_length)
    truth = pd.DataFrame({
        "patient_id": ids, "index": np.arange(n), "group": group, "is_case": is_case.astype(int),
        "severity": severity, "age": age, "sex": sex, "bsa": bsa, "edv_ml": t_edv, "esv_ml": t_esv,
        "sv_ml": t_edv - t_esv, "ef_pct": 100 * (t_edv - t_esv) / t_edv, "la_volume_max_ml": t_la_max,
        "la_volume_min_ml": _biplane(p2("la")[:, 0], p2("la")[:, 1], la_length), "la_volume_es_ml": t_la_max,
        "lv_length_ed_mm": length, "lv_length_es_mm": length * 0.87})

    # ---- the temporal stage's sequence tables (QC flags before / after the correction)
    before = rng.poisson(1.5, S)
    after = np.minimum(rng.poisson(0.2, S), before)
    errors_before = rng.poisson(2.0, S)
    errors_after = np.minimum(rng.poisson(0.1, S), errors_before)
    dice_t = 1 - np.abs(rng.normal(0, 0.03, (S, 2)))
    temporal = pd.DataFrame({
        "patient_id": ids[pat], "view": view, "split": split[pat], "n_frames": N_FRAMES, "method": "repair",
        "corrected": before > 0, "replaced_frames": before - after, "rounds": np.minimum(before, 3),
        "inconsistent_frames_before": before, "inconsistent_frame_ratio_before": before / N_FRAMES,
        "sequence_inconsistent_before": before > 0, "inconsistent_frames_after": after,
        "inconsistent_frame_ratio_after": after / N_FRAMES, "sequence_inconsistent_after": after > 0,
        "anatomical_errors_before": errors_before, "anatomical_errors_after": errors_after,
        "latent_inconsistent_frames_before": before.astype(float),
        "latent_inconsistent_frames_after": after.astype(float),
        "mean_constrained_weight": np.nan, "dice_before": dice_t[:, 0], "dice_after": dice_t[:, 1],
        "n_spikes": rng.poisson(1, S), "n_defects": rng.poisson(3, S), "spiked": rng.random(S) < 0.5})

    # ---- write, sharded like the workflow (a patient's frames all in its shard)
    paths = {"patients": res / "cohort/patients.tsv", "sequences": res / "cohort/sequences.tsv",
             "clinical": res / "clinical/indices.tsv", "truth": res / "cohort/truth/patients.tsv",
             "reconstruction": res / f"clinical/reconstruction/{MODEL}/indices.tsv",
             "temporal_indices": res / f"clinical/temporal/{MODEL}/indices.tsv",
             "attributes": [], "anatomy": [], "latents": [], "corrections": []}
    for key, frame in (("patients", patients), ("sequences", sequences), ("clinical", clinical), ("truth", truth),
                       ("reconstruction", remeasured(0.03)), ("temporal_indices", remeasured(0.02))):
        _write(frame, paths[key])
    frame_shard = shard[pat][seq]
    for k in range(N_SHARDS):
        rows = frame_shard == k
        for key, frame, path in (("attributes", attributes, res / f"attributes/input/shard-{k}.parquet"),
                                 ("anatomy", anatomy, res / f"anatomy/input/shard-{k}.parquet"),
                                 ("latents", latents, res / f"latents/{MODEL}/shard-{k}.parquet")):
            _write(frame[rows].reset_index(drop=True), path)
            paths[key].append(path)
        path = res / f"temporal/{MODEL}/shard-{k}.tsv"
        _write(temporal[shard[pat] == k].reset_index(drop=True), path)
        paths["corrections"].append(path)
    return {key: [str(p) for p in value] if isinstance(value, list) else str(value) for key, value in paths.items()}


# --------------------------------------------------------------------------------------------
# One stage in its own process
# --------------------------------------------------------------------------------------------
def stage_call(stage: str, paths: dict, root: Path):
    """The stage function and its arguments, as the workflow's script of that rule calls it."""
    from echolatent.stages import stats

    out = root / "results" / "stats"
    common = {"groups": list(GROUPS), "min_group_size": 10}
    covariates = ["age", "sex", "bsa"]
    families = ["clinical", "attributes", "latent"]
    table = str(out / "patients.tsv")
    if stage == "patients":
        return stats.patients_stage, (paths["patients"], paths["sequences"], paths["clinical"], paths["attributes"],
                                      paths["anatomy"], paths["latents"], paths["corrections"]), dict(
            splits=["train", "val", "test"], covariates=covariates, out_table=table,
            out_exclusions=str(out / "exclusions.tsv"), **common)
    if stage == "table1":
        return stats.table1_stage, (table,), dict(skewed=[], out_tsv=str(out / "table1.tsv"),
                                                  out_md=str(out / "table1.md"), **common)
    if stage == "effects":
        return stats.effects_stage, (table,), dict(families=families, covariates=covariates,
                                                   out=str(out / "effects.tsv"), **common)
    if stage == "curves":
        return stats.curves_stage, (table, paths["sequences"], paths["attributes"], paths["latents"]), dict(
            families=families, covariates=covariates, n_points=64, n_permutations=999, seed=0,
            out_curves=str(out / "curves.tsv"), out_tests=str(out / "curve_tests.tsv"),
            out_intervals=str(out / "curve_intervals.tsv"), out_exclusions=str(out / "curve_exclusions.tsv"), **common)
    if stage == "latent":
        return stats.latent_stage, (table, paths["latents"], paths["attributes"], paths["patients"]), dict(
            model=MODEL, regularised=REGULARISED, covariates=covariates, pca_components=3, n_permutations=999,
            seed=0, out={name: str(out / "latent" / MODEL / f"{name}.tsv") for name in stats.LATENT_TABLES}, **common)
    if stage == "classification":
        return stats.classification_stage, (table,), dict(
            models=[MODEL], clinical_features=CLINICAL_FEATURES, latent_summaries=["ed", "es"], folds=5, repeats=5,
            n_bootstrap=1000, seed=0, out={name: str(out / f"{file}.tsv")
                                           for name, file in stats.CLASSIFICATION_TABLES.items()})
    if stage == "agreement":
        return stats.agreement_stage, (paths["clinical"], paths["patients"]), dict(
            reconstruction=[paths["reconstruction"]], temporal=[paths["temporal_indices"]], truth=paths["truth"],
            out=str(out / "agreement.tsv"), out_exclusions=str(out / "agreement_exclusions.tsv"))
    raise ValueError(f"unknown stage {stage!r}")


def child(stage: str, root: Path, result: Path, profile: bool) -> None:
    """Run one stage (this process is the job); write its time and peak RSS to ``result``."""
    from echolatent.stages.logs import log_to

    log_dir = root / "logs" / "stats"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_to(log_dir / f"{stage}.log")
    paths = json.loads((root / "inputs.json").read_text())
    function, args, kwargs = stage_call(stage, paths, root)
    t0 = time.perf_counter()
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(function, *args, **kwargs)
        seconds = time.perf_counter() - t0
        profiler.dump_stats(str(root / f"{stage}.prof"))
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
    else:
        function(*args, **kwargs)
        seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.write_text(json.dumps({"function_s": seconds, "cpu_s": usage.ru_utime + usage.ru_stime,
                                  "peak_rss_mb": peak_rss_mb(usage)}))


def peak_rss_mb(usage) -> float:
    """Peak resident memory of this process image (MB): ``VmHWM`` of ``/proc/self/status``.

    Not ``ru_maxrss`` alone: on Linux it survives ``execve`` and starts from the RSS of the
    parent at the fork, so a job started by a large parent would report the parent's size.
    ``VmHWM`` belongs to the memory map that ``execve`` created. Elsewhere: ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return usage.ru_maxrss / 1024


def run_stage(stage: str, root: Path, profile: bool) -> dict:
    result = root / f"{stage}.result.json"
    result.unlink(missing_ok=True)
    env = {**os.environ, **{name: "1" for name in THREAD_VARIABLES}}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", stage, "--work", str(root)]
    if profile:
        command.append("--profile-child")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env)
    wall = time.perf_counter() - t0
    row = {"stage": stage, "wall_s": wall, "load_start": load, "load_end": os.getloadavg()[0], "rc": done.returncode}
    if done.returncode == 0 and result.exists():
        row.update(json.loads(result.read_text()))
    else:
        log = root / "logs" / "stats" / f"{stage}.log"
        tail = log.read_text().splitlines()[-15:] if log.exists() else []
        print(f"  {stage} FAILED (rc {done.returncode}); log tail:\n    " + "\n    ".join(tail), flush=True)
    return row


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def _f(value, digits=1):
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def sanity(root: Path) -> list[str]:
    """A few lines showing the tables are real: the planted effect, AUCs, the permutation test."""
    out = root / "results" / "stats"
    lines = []
    try:
        effects = pd.read_csv(out / "effects.tsv", sep="\t")
        myo = effects[effects["outcome"].eq("myo_area_mm2.4CH.ed")]
        for row in myo.itertuples():
            lines.append(f"effects: myo_area_mm2.4CH.ed adjusted={row.adjusted}: beta {row.beta:.1f} mm^2 "
                         f"[{row.ci_low:.1f}, {row.ci_high:.1f}], q {row.q:.2g} (n {row.n})")
        cls = pd.read_csv(out / "classification.tsv", sep="\t")
        lines.append("classification AUC: " + ", ".join(f"{r.features} {r.auc:.3f}" for r in cls.itertuples()))
        perm = pd.read_csv(out / "latent" / MODEL / "permutation.tsv", sep="\t")
        perm = perm[perm["adjusted"].astype(bool)]
        lines.append("latent permutation p (adjusted): " + ", ".join(f"{r.view}/{r.phase} {r.p:.3g}"
                                                                     for r in perm.itertuples()))
    except Exception as error:  # noqa: BLE001 (a report line, not a check)
        lines.append(f"(sanity summary unavailable: {error})")
    return lines


def report(rows: list[dict], sizes: list[int], loads: list[float], started: str) -> str:
    table = pd.DataFrame(rows)
    lines = [f"Statistics stage (issue 14), one fresh process per job, BLAS/OpenMP threads 1; {started}",
             f"machine: {platform.machine()}, os.cpu_count() {os.cpu_count()}, nproc "
             f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()}, Python "
             f"{platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}",
             f"load average (1 min) during the jobs: {min(loads):.2f} - {max(loads):.2f}", "",
             "| stage | patients | wall s (job) | in function s | CPU s | peak RSS (MB) |",
             "|---|---:|---:|---:|---:|---:|"]
    for n in sizes:
        part = table[table["n"] == n]
        for row in part.to_dict("records"):
            lines.append(f"| {row['stage']} | {n:,} | {_f(row['wall_s'])} | {_f(row.get('function_s'))} | "
                         f"{_f(row.get('cpu_s'))} | {_f(row.get('peak_rss_mb'), 0)} |")
        lines.append(f"| **whole stage** (sum; peak = max) | {n:,} | {_f(part['wall_s'].sum())} | "
                     f"{_f(part['function_s'].sum())} | {_f(part['cpu_s'].sum())} | "
                     f"{_f(part['peak_rss_mb'].max(), 0)} |")
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        lines += ["", f"Growth {large:,} / {small:,} patients ({large / small:g}x):", "",
                  "| stage | wall | in function | CPU | peak RSS |", "|---|---:|---:|---:|---:|"]
        a = table[table["n"] == small].set_index("stage")
        b = table[table["n"] == large].set_index("stage")
        for stage in a.index.intersection(b.index):
            ratio = [b.loc[stage, c] / a.loc[stage, c] for c in ("wall_s", "function_s", "cpu_s", "peak_rss_mb")]
            lines.append(f"| {stage} | " + " | ".join(f"{_f(r, 2)}x" for r in ratio) + " |")
        ratio = [b[c].sum() / a[c].sum() for c in ("wall_s", "function_s", "cpu_s")]
        lines.append("| **whole stage** | " + " | ".join(f"{_f(r, 2)}x" for r in ratio)
                     + f" | {_f(b['peak_rss_mb'].max() / a['peak_rss_mb'].max(), 2)}x |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[1000, 10000], help="cohort sizes")
    parser.add_argument("--work", type=Path, default=Path("/tmp/benchstats"), help="working folder (inputs, outputs)")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="keep generated inputs of the same size and seed")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--profile", nargs="*", choices=STAGES, default=[], help="run these jobs under cProfile")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.work, args.work / f"{args.child}.result.json", args.profile_child)
    if args.generate:
        paths = make_inputs(args.generate, args.work, seed=args.seed)
        (args.work / "inputs.json").write_text(json.dumps({**paths, "meta": {"n": args.generate, "seed": args.seed}}))
        return None

    started = datetime.datetime.now().isoformat(timespec="minutes")
    rows, loads = [], []
    for n in args.patients:
        root = args.work / f"n{n}"
        stamp = root / "inputs.json"
        meta = {"n": n, "seed": args.seed}
        if args.reuse and stamp.exists() and json.loads(stamp.read_text()).get("meta") == meta:
            print(f"N = {n:,}: reusing the inputs in {root}", flush=True)
        else:
            t0 = time.perf_counter()  # in its own process: the parent stays small while the jobs run
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--generate", str(n), "--seed",
                            str(args.seed), "--work", str(root)], check=True)
            print(f"N = {n:,}: inputs generated in {time.perf_counter() - t0:.1f} s (not timed) under {root}",
                  flush=True)
        for stage in args.stages:
            row = {"n": n, **run_stage(stage, root, stage in args.profile)}
            loads += [row["load_start"], row["load_end"]]
            rows.append(row)
            print(f"  {stage:<15} wall {row['wall_s']:8.1f} s  function {row.get('function_s', np.nan):8.1f} s  "
                  f"CPU {row.get('cpu_s', np.nan):8.1f} s  peak RSS {row.get('peak_rss_mb', np.nan):7.0f} MB  "
                  f"load {row['load_start']:.2f} -> {row['load_end']:.2f}", flush=True)
        for line in sanity(root):
            print("  " + line, flush=True)
    text = report(rows, args.patients, loads, started)
    print("\n" + text)
    if args.out:
        args.out.write_text(text + "\n")
    return rows


if __name__ == "__main__":
    main()
