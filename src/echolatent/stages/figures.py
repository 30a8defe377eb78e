"""Stage "figures": the functions its rules call (``workflow/rules/figures.smk``).

Every figure is rebuilt from saved results only (tables, shards, checkpoints): no training,
encoding or correction runs here. Each function reads its rule's inputs, calls one figure
function of :mod:`echolatent.figures` and writes a 300-dpi PNG and a vector PDF
(:func:`echolatent.figures.style.save_figure`, atomically), plus, for the figures that measure
something new (decoded shapes, corrected frames), the figure's source data as a TSV.

Rules, their files and their function
-------------------------------------
``figure_cohort_flow``          cohort plan, patients, sequences, QC (and statistics) tables ->
                                ``results/figures/cohort/flow``; :func:`cohort_flow_stage`
``figure_learning_curves``      ``results/models/{model}/history.tsv`` ->
                                ``results/figures/models/{model}/learning_curves``; :func:`learning_curves_stage`
``figure_reconstruction_dice``  every model's latent tables -> ``results/figures/models/reconstruction_dice``;
                                :func:`reconstruction_dice_stage`
``figure_model_comparison``     ``results/models/quality.tsv``, summaries, prior-sample tables ->
                                ``results/figures/models/comparison``; :func:`model_comparison_stage`
``figure_latent_interpolation`` checkpoint and latent tables -> ``results/figures/latent/{model}/interpolation``;
                                :func:`interpolation_stage`
``figure_prior_samples``        checkpoint -> ``results/figures/latent/{model}/prior_samples`` (+ ``.tsv``);
                                :func:`prior_samples_stage`
``figure_traversals``           checkpoint, latent bounds and tables -> ``results/figures/latent/{model}/traversals``
                                (+ ``.tsv``); :func:`traversals_stage`
``figure_latent_pca``           latent tables -> ``results/figures/latent/{model}/pca``; :func:`latent_pca_stage`
``figure_temporal_sequence``    temporal tables and shards, cohort shards, thresholds ->
                                ``results/figures/temporal/{model}/sequence``; :func:`temporal_sequence_stage`
``figure_anatomy_validity``     criteria tables, temporal and cohort shards ->
                                ``results/figures/anatomy/{model}/validity`` (+ ``.tsv``);
                                :func:`anatomy_validity_stage`
``figure_forest``               ``results/stats/effects.tsv`` -> ``results/figures/stats/forest_{family}``;
                                :func:`forest_plot_stage`
``figure_table1``               ``results/stats/table1.tsv`` -> ``results/figures/stats/table1`` (+ ``.tex``);
                                :func:`table1_figure_stage`
``figure_curves_attributes``    ``results/stats/curves.tsv``, ``curve_intervals.tsv`` ->
                                ``results/figures/stats/curves_attributes``; :func:`curves_figure_stage`
``figure_curves_latent``        the same and the model's latent bounds -> ``results/figures/latent/{model}/curves``;
                                :func:`curves_figure_stage`
``figure_roc``                  ``results/stats/{classification,classification_comparisons,roc}.tsv`` ->
                                ``results/figures/stats/roc``; :func:`roc_figure_stage`
``figure_agreement``            ``results/stats/agreement.tsv`` and the two sources' index tables ->
                                ``results/figures/stats/agreement/{method}_vs_{reference}``; :func:`agreement_figure_stage`
``figure_latent_modes``         ``results/stats/latent/{model}/decoded.{tsv,h5}`` ->
                                ``results/figures/latent/{model}/modes``; :func:`latent_modes_stage`
``figure_group_shapes``         the same -> ``results/figures/latent/{model}/group_means``; :func:`group_shapes_stage`
``figure_group_direction``      the same -> ``results/figures/latent/{model}/group_direction``;
                                :func:`group_direction_stage`
``figures``                     the target: every figure file of the configured study,
                                :func:`figure_targets` (:mod:`echolatent.figures.targets`)

Decoded shapes are decoded on the cohort's most common native grid (logits upsampled
bilinearly, :func:`echolatent.models.inference.decode_masks`) and measured there, with the
native spacing, exactly as the anatomy stage measures the input masks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from echolatent.figures.targets import figure_targets  # noqa: F401 (the `figures` target rule's files)
from echolatent.io.tables import write_table

__all__ = ["cohort_flow_stage", "learning_curves_stage", "reconstruction_dice_stage", "model_comparison_stage",
           "interpolation_stage", "prior_samples_stage", "traversals_stage", "latent_pca_stage",
           "temporal_sequence_stage", "anatomy_validity_stage", "forest_plot_stage", "table1_figure_stage",
           "curves_figure_stage", "roc_figure_stage", "agreement_figure_stage", "latent_modes_stage",
           "group_shapes_stage", "group_direction_stage",
           "reference_geometry", "compared_groups", "figure_targets", "patient_dice", "corrected_criteria"]

logger = logging.getLogger(__name__)

_KEY = ["patient_id", "view"]


# --------------------------------------------------------------------------- shared helpers
def _save(fig, out_png, out_pdf) -> None:
    from echolatent.figures.style import save_figure

    save_figure(fig, out_png, out_pdf)
    width, height = fig.get_size_inches()
    logger.info(f"wrote {out_png} and {out_pdf} ({width:.2f} x {height:.2f} in)")


def _read(path) -> pd.DataFrame:
    """A TSV with ids kept as text (a patient called "NA" stays "NA")."""
    if str(path).endswith(".parquet"):
        return pd.read_parquet(path)
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""], dtype={"patient_id": str})


def _text(column: pd.Series) -> pd.Series:
    """A column as text, empty cells (read as NaN; a column of them as float) as ""."""
    return column.astype(object).where(column.notna(), "").astype(str)


def _concat(paths) -> pd.DataFrame:
    return pd.concat([_read(p) for p in paths], ignore_index=True)


def _by_parent(paths) -> dict[str, list]:
    """Paths grouped by the name of their folder (``results/latents/{model}/shard-{k}.parquet`` -> model)."""
    groups: dict[str, list] = {}
    for path in paths:
        groups.setdefault(Path(path).parent.name, []).append(path)
    return groups


def compared_groups(values, groups=()) -> tuple[str, ...]:
    """``(control, case)`` as the statistics resolve them; the cohort's groups sorted if they cannot be."""
    from echolatent.stats.design import resolve_groups

    try:
        return resolve_groups(values, groups)
    except ValueError:
        return tuple(sorted(pd.Series(values).dropna().astype(str).unique()))


def reference_geometry(sequences: pd.DataFrame) -> tuple[tuple[int, int], tuple[float, float]]:
    """The most common native grid of the cohort: ``((height, width), (spacing_h, spacing_w))``.

    Decoded shapes are drawn and measured on it, so they have the physical size of a cohort frame.
    """
    columns = ["height", "width", "spacing_h", "spacing_w"]
    row = sequences.groupby(columns).size().sort_values(ascending=False).index[0]
    return (int(row[0]), int(row[1])), (float(row[2]), float(row[3]))


def _load_model(checkpoint, threads: int):
    """The trained model on the CPU (``weights_only`` loading, :func:`echolatent.models.checkpoint.load_model`)."""
    import torch

    from echolatent.models.checkpoint import load_model

    torch.set_num_threads(max(1, int(threads)))
    return load_model(checkpoint, device="cpu")


def _decode(model, codes, size, grid) -> np.ndarray:
    """Argmax label maps of ``codes`` (N, D) on the native grid ``size`` (through the cohort grid ``grid``)."""
    from echolatent.models.inference import decode_masks

    codes = np.asarray(codes, dtype=np.float32)
    flat = codes.reshape(-1, codes.shape[-1])
    masks = decode_masks(model, flat, size=size, grid=grid, device="cpu")
    return masks.reshape(*codes.shape[:-1], *masks.shape[1:])


def _measure(model, masks: np.ndarray, spacing, criteria_grid) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 12 criteria and the shape attributes of label maps (N, H, W) of one spacing, decoded by ``model``
    (a model without an LA class is judged on the criteria of LV and MYO only)."""
    from echolatent.labels import LA, LV, MYO
    from echolatent.models.inference import knows_atrium
    from echolatent.shape.attributes import shape_attributes
    from echolatent.shape.criteria import anatomical_metrics

    labels = (LV, MYO, LA) if knows_atrium(model) else (LV, MYO)
    return (anatomical_metrics(masks, spacing, grid=criteria_grid, labels=labels),
            shape_attributes(masks, spacing))


def _cohort_grid(image_size, model) -> int:
    return int(image_size) if image_size else int(model.config.input_size)


# --------------------------------------------------------------------------- cohort
def cohort_flow_stage(plan, patients, sequences, qc, analysis=None, exclusions=None, *, groups=(), out_png,
                      out_pdf) -> dict:
    """The cohort's flow chart (rule ``figure_cohort_flow``): :func:`echolatent.figures.cohort.cohort_flow`.

    ``analysis`` and ``exclusions`` (``results/stats/patients.tsv``, ``exclusions.tsv``) are
    given when the study runs its statistics.
    """
    from echolatent.figures.cohort import cohort_flow, flow_counts

    cohort = _read(patients)
    control_case = compared_groups(cohort["group"], groups) if "group" in cohort else ()
    counts = flow_counts(_read(plan), cohort, _read(sequences), _read(qc),
                         _read(analysis) if analysis else None, _read(exclusions) if exclusions else None,
                         groups=control_case)
    _save(cohort_flow(counts), out_png, out_pdf)
    return counts


# --------------------------------------------------------------------------- models
def learning_curves_stage(history, *, model: str = "", out_png, out_pdf) -> None:
    """Learning curves of one model (rule ``figure_learning_curves``)."""
    from echolatent.figures.models import learning_curves

    _save(learning_curves(_read(history), model=model), out_png, out_pdf)


def patient_dice(latents, patients) -> pd.DataFrame:
    """Per (model, patient) mean reconstruction Dice of every structure, with the patient's split.

    ``latents``: latent tables ``results/latents/{model}/shard-{k}.parquet`` of any number of models.
    """
    split = _read(patients)[["patient_id", "split"]]
    tables = []
    for model, paths in _by_parent(latents).items():
        frames = _concat(paths)
        columns = [c for c in ("dice_lv", "dice_myo", "dice_la") if c in frames]
        per_patient = frames.groupby("patient_id", sort=True)[columns].mean().reset_index()
        per_patient.insert(0, "model", model)
        tables.append(per_patient.merge(split, on="patient_id", how="left"))
    return pd.concat(tables, ignore_index=True)


def reconstruction_dice_stage(latents, patients, *, out_png, out_pdf) -> pd.DataFrame:
    """Reconstruction Dice per structure, split and model (rule ``figure_reconstruction_dice``)."""
    from echolatent.figures.models import reconstruction_dice

    table = patient_dice(latents, patients)
    _save(reconstruction_dice(table), out_png, out_pdf)
    return table


def model_comparison_stage(quality, priors, summaries, *, out_png, out_pdf) -> None:
    """The study's models side by side (rule ``figure_model_comparison``).

    ``priors``: each model's ``results/figures/latent/{model}/prior_samples.tsv`` (validity of
    its prior decodings); ``summaries``: each model's ``results/models/{model}/summary.json``
    (Spearman correlation of the AR-VAE dimensions).
    """
    from echolatent.figures.models import model_comparison

    validity = []
    for path in priors:
        samples = _read(path)
        validity.append({"model": Path(path).parent.name, "n": len(samples),
                         "valid": int((~samples["anatomical_errors"].astype(bool)).sum())})
    spearman = []
    for path in summaries:
        rho = json.loads(Path(path).read_text()).get("spearman") or {}
        spearman += [{"model": Path(path).parent.name, "attribute": a, "rho": np.nan if r is None else float(r)}
                     for a, r in rho.items()]
    figure = model_comparison(_read(quality), pd.DataFrame(validity, columns=["model", "n", "valid"]),
                              pd.DataFrame(spearman, columns=["model", "attribute", "rho"]))
    _save(figure, out_png, out_pdf)


# --------------------------------------------------------------------------- latent space
def _ed_codes(latents: pd.DataFrame, sequences: pd.DataFrame) -> pd.DataFrame:
    """The latent rows of the ED frame of every sequence."""
    ed = sequences[[*_KEY, "ed"]].rename(columns={"ed": "frame"})
    return latents.merge(ed, on=[*_KEY, "frame"], how="inner")


def _pair(patients: pd.DataFrame, candidates, groups) -> list[str]:
    """Two patients to interpolate between: one of each compared group, from the test split if it has both."""
    table = patients[patients["patient_id"].isin(candidates)].sort_values("patient_id")
    for split in ("test", "val", "train", None) if "split" in table else (None,):
        rows = table if split is None else table[table["split"] == split]
        picks = [rows.loc[rows["group"].astype(str) == g, "patient_id"].iloc[0] for g in groups
                 if "group" in rows and (rows["group"].astype(str) == g).any()]
        if len(picks) >= 2:
            return picks[:2]
    if len(table) < 2:
        raise ValueError("an interpolation needs two patients with latent codes")
    return list(table["patient_id"].iloc[:2])


def interpolation_stage(checkpoint, latents, sequences, patients, *, groups=(), image_size=None, criteria_grid=0.3,
                        steps: int = 7, threads: int = 1, out_png, out_pdf) -> pd.DataFrame:
    """Shapes decoded between two patients' ED frames, one row per view (rule ``figure_latent_interpolation``).

    The two patients are the first (by id) of the control and of the case group in the test
    split (:func:`_pair`); each row decodes ``t z0 + (1 - t) z1`` between their ED codes of one view.
    Returns the table of the decoded shapes (view, t, anatomical_errors).
    """
    from echolatent.figures.latent import interpolation
    from echolatent.figures.latent_codes import interpolation_codes, mu_columns

    frames, seqs, cohort = _concat(latents), _read(sequences), _read(patients)
    mu = mu_columns(frames)
    ed = _ed_codes(frames, seqs)
    control_case = compared_groups(cohort["group"], groups) if "group" in cohort else ()
    first, second = _pair(cohort, set(ed["patient_id"]), control_case)
    views = sorted(set(ed.loc[ed["patient_id"] == first, "view"]) & set(ed.loc[ed["patient_id"] == second, "view"]))
    if not views:
        raise ValueError(f"patients {first} and {second} share no view")
    model = _load_model(checkpoint, threads)
    size, spacing = reference_geometry(seqs)
    codes = []
    for view in views:
        z0 = ed.loc[(ed["patient_id"] == first) & (ed["view"] == view), mu].to_numpy(float)[0]
        z1 = ed.loc[(ed["patient_id"] == second) & (ed["view"] == view), mu].to_numpy(float)[0]
        t, row = interpolation_codes(z0, z1, steps)
        codes.append(row)
    masks = _decode(model, np.stack(codes), size, _cohort_grid(image_size, model))
    criteria, _ = _measure(model, masks.reshape(-1, *size), spacing, criteria_grid)
    invalid = criteria["anatomical_errors"].to_numpy(bool).reshape(len(views), steps)
    group_of = cohort.set_index("patient_id")["group"].astype(str).to_dict() if "group" in cohort else {}

    def name(patient):
        return f"{patient} ({group_of[patient]})" if patient in group_of else patient

    figure = interpolation(masks, t, spacing=spacing, row_labels=[f"{v}, ED" for v in views],
                           start=f"{name(first)} (t = 1)", end=f"{name(second)} (t = 0)", invalid=invalid)
    _save(figure, out_png, out_pdf)
    logger.info(f"interpolated {first} -> {second} in views {views}: {int(invalid.sum())} of {invalid.size} "
                f"decodings fail an anatomical criterion")
    return pd.DataFrame({"view": np.repeat(views, steps), "t": np.tile(t, len(views)),
                         "anatomical_errors": invalid.ravel()})


def prior_samples_stage(checkpoint, sequences, *, n_samples: int = 200, n_shown: int = 32, seed: int = 0,
                        image_size=None, criteria_grid=0.3, threads: int = 1, out_png, out_pdf,
                        out_table) -> pd.DataFrame:
    """Shapes decoded from ``n_samples`` codes of the prior N(0, I) (rule ``figure_prior_samples``).

    All are measured (12 criteria, shape attributes; the table ``out_table``, one row per sample,
    ``shown`` marking the first ``n_shown``, which the figure draws).
    """
    from echolatent.figures.latent import prior_samples
    from echolatent.figures.latent_codes import prior_codes
    from echolatent.shape.attributes import MM_ATTRIBUTES

    model = _load_model(checkpoint, threads)
    size, spacing = reference_geometry(_read(sequences))
    codes = prior_codes(n_samples, int(model.config.latent_dim), seed)
    masks = _decode(model, codes, size, _cohort_grid(image_size, model))
    criteria, attributes = _measure(model, masks, spacing, criteria_grid)
    invalid = criteria["anatomical_errors"].to_numpy(bool)
    shown = min(int(n_shown), len(masks))
    valid = int((~invalid).sum())
    title = (f"Decoded samples of the prior N(0, I): {valid} of {len(masks)} anatomically valid "
             f"({100 * valid / max(len(masks), 1):.0f} %); {shown} shown")
    _save(prior_samples(masks[:shown], spacing=spacing, invalid=invalid[:shown], title=title), out_png, out_pdf)
    table = pd.concat([pd.DataFrame({"sample": np.arange(len(masks)), "shown": np.arange(len(masks)) < shown}),
                       criteria.reset_index(drop=True),
                       attributes[[c for c in MM_ATTRIBUTES if c in attributes]].reset_index(drop=True)], axis=1)
    write_table(table, out_table)
    logger.info(title)
    return table


def _regularised(bounds: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``latent_bounds.tsv`` of the attribute-regularised dimensions."""
    named = _text(bounds["attribute"]).str.len() > 0 if "attribute" in bounds else pd.Series(False, index=bounds.index)
    return bounds[named].sort_values("dim")


def traversals_stage(checkpoint, bounds, latents, patients, sequences, *, view: str = "4CH", steps: int = 7,
                     image_size=None, criteria_grid=0.3, threads: int = 1, out_png, out_pdf,
                     out_table) -> pd.DataFrame:
    """AR-VAE traversals, one row per regularised dimension (rule ``figure_traversals``).

    Each row starts from the mean ED code of ``view`` over the training patients and moves its
    dimension from the 1st to the 99th percentile of the training codes (``latent_bounds.tsv``);
    the attribute the dimension regularises is measured on every decoded shape (physical units),
    and the shapes failing a criterion are marked. ``out_table``: one row per decoded shape.
    """
    from echolatent.figures.latent import traversals
    from echolatent.figures.latent_codes import mu_columns, traversal_codes
    from echolatent.shape.attributes import PHYSICAL_NAMES

    limits = _regularised(_read(bounds))
    if limits.empty:
        raise ValueError(f"{bounds}: no attribute-regularised dimension (traversals are drawn for AR-VAE models)")
    frames, seqs, cohort = _concat(latents), _read(sequences), _read(patients)
    mu = mu_columns(frames)
    ed = _ed_codes(frames, seqs)
    train = set(cohort.loc[cohort["split"] == "train", "patient_id"]) if "split" in cohort else set()
    base_rows = ed[(ed["view"] == view) & ed["patient_id"].isin(train)]
    if base_rows.empty:  # no training frame of that view: every ED code
        base_rows = ed
    base = base_rows[mu].to_numpy(float).mean(axis=0)
    dims = limits["dim"].astype(int).tolist()
    values, codes = traversal_codes(base, dims, limits["mu_p01"].astype(float), limits["mu_p99"].astype(float), steps)
    model = _load_model(checkpoint, threads)
    size, spacing = reference_geometry(seqs)
    masks = _decode(model, codes, size, _cohort_grid(image_size, model))
    criteria, attributes = _measure(model, masks.reshape(-1, *size), spacing, criteria_grid)
    names = limits["attribute"].astype(str).tolist()
    columns = [PHYSICAL_NAMES.get(name, name) for name in names]
    measured = np.stack([attributes[column].to_numpy(float).reshape(len(dims), steps)[d]
                         if column in attributes else np.full(steps, np.nan) for d, column in enumerate(columns)])
    invalid = criteria["anatomical_errors"].to_numpy(bool).reshape(len(dims), steps)
    figure = traversals(masks, values, measured, attributes=columns, spacing=spacing, invalid=invalid, dims=dims)
    _save(figure, out_png, out_pdf)
    table = pd.DataFrame({"dim": np.repeat(dims, steps), "attribute": np.repeat(columns, steps),
                          "step": np.tile(np.arange(steps), len(dims)), "value": values.ravel(),
                          "measured": measured.ravel(), "anatomical_errors": invalid.ravel()})
    write_table(table, out_table)
    logger.info(f"traversals of dims {dims} from the mean {view} ED code of {len(base_rows)} sequences; "
                f"{int(invalid.sum())} of {invalid.size} decodings fail an anatomical criterion")
    return table


def latent_pca_stage(latents, patients, *, groups=(), n_trajectories: int = 3, out_png, out_pdf) -> None:
    """PCA of the latent means: frames by phase, patients by group (rule ``figure_latent_pca``).

    Frames: every frame's code. Patients: each patient's cycle-mean code of every view, the
    views side by side (patients lacking a view are left out). A few test sequences are drawn
    as trajectories through the frames' projection.
    """
    from echolatent.figures.latent import latent_pca
    from echolatent.figures.latent_codes import mu_columns, pca

    frames, cohort = _concat(latents), _read(patients)
    mu = mu_columns(frames)
    scores, explained_frames, components, mean = pca(frames[mu].to_numpy(float))
    frame_points = pd.DataFrame({"pc1": scores[:, 0], "pc2": scores[:, 1], "frame_pos": frames["frame_pos"]})
    wide = frames.groupby(_KEY)[mu].mean().unstack("view").dropna()
    patient_scores, explained_patients, _, _ = pca(wide.to_numpy(float))
    group_of = cohort.set_index("patient_id")["group"].astype(str) if "group" in cohort else None
    patient_points = pd.DataFrame({"pc1": patient_scores[:, 0], "pc2": patient_scores[:, 1],
                                   "group": group_of.reindex(wide.index).fillna("unknown").to_numpy()
                                   if group_of is not None else "all"})
    encoded = set(frames["patient_id"])
    split = cohort["split"] if "split" in cohort else pd.Series("", index=cohort.index)
    test = sorted(set(cohort.loc[split == "test", "patient_id"]) & encoded) or sorted(encoded)
    chosen = [(p, "4CH" if ((frames["patient_id"] == p) & (frames["view"] == "4CH")).any() else
               frames.loc[frames["patient_id"] == p, "view"].iloc[0]) for p in test[:n_trajectories]]
    paths = []
    for patient, view in chosen:
        rows = frames[(frames["patient_id"] == patient) & (frames["view"] == view)].sort_values("frame")
        projected = (rows[mu].to_numpy(float) - mean) @ components.T
        paths.append(pd.DataFrame({"pc1": projected[:, 0], "pc2": projected[:, 1], "sequence": f"{patient} {view}"}))
    control_case = compared_groups(cohort["group"], groups) if "group" in cohort else ()
    figure = latent_pca(frame_points, patient_points, explained_frames=explained_frames,
                        explained_patients=explained_patients, groups=control_case,
                        trajectories=pd.concat(paths, ignore_index=True) if paths else None)
    _save(figure, out_png, out_pdf)


# --------------------------------------------------------------------------- temporal
def _worst_sequence(tables) -> tuple[int, pd.Series]:
    """(index of its table, row) of the corrected sequence with the most inconsistent input frames
    (of the test split when one of its sequences was corrected)."""
    rows = []
    for index, path in enumerate(tables):
        table = _read(path)
        table["_table"] = index
        rows.append(table)
    table = pd.concat(rows, ignore_index=True)
    corrected = table[table["corrected"].astype(str).str.lower() == "true"] if "corrected" in table else table
    pool = corrected if len(corrected) else table
    # a held-out sequence when one was corrected: the example is then one the thresholds never saw
    held_out = pool[(pool.get("split", pd.Series("", index=pool.index)) == "test")
                    & (pool["inconsistent_frames_before"] > 0)]
    pool = held_out if len(held_out) else pool
    pool = pool.sort_values(["inconsistent_frames_before", "patient_id", "view"], ascending=[False, True, True])
    row = pool.iloc[0]
    return int(row["_table"]), row


def _sequence(shard, patient: str, view: str, datasets):
    """One sequence of a mask shard (:class:`echolatent.io.shards.ShardSequence`), the datasets it has
    among ``datasets`` read (the others skipped: e.g. a cohort without images)."""
    import h5py

    from echolatent.io.shards import ShardSequence

    with h5py.File(shard, "r") as h5:
        if f"{patient}/{view}" not in h5:
            raise ValueError(f"{shard} has no sequence {patient}/{view}")
        group = h5[f"{patient}/{view}"]
        arrays = {name: group[name][()] for name in datasets if name in group}
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in group.attrs.items()}
    return ShardSequence(patient, view, arrays, attrs)


def temporal_sequence_stage(tables, corrected, cohort, thresholds, *, cycle: str = "full", margin: float = 0.0,
                            model: str = "", n_attributes: int = 4, n_shown: int = 5, out_png, out_pdf) -> dict:
    """One sequence before and after the temporal correction (rule ``figure_temporal_sequence``).

    ``tables``, ``corrected``, ``cohort``: the temporal stage's tables and corrected shards and
    the cohort shards, shard by shard in the same order. The sequence drawn is the corrected one
    with the most inconsistent input frames (ties: the first patient id), of the test split when
    it has one. Its attribute curves
    are measured on the native masks (input and corrected), the metric recomputed with the
    stage's thresholds (``thresholds``: the image-space thresholds table) and ``cycle``.
    """
    from echolatent.figures.temporal import correction_example
    from echolatent.shape.attributes import TEMPORAL_ATTRIBUTES, shape_attributes, temporal_attribute
    from echolatent.temporal.evaluation import end_thresholds
    from echolatent.temporal.metric import temporal_consistency

    index, row = _worst_sequence(tables)
    patient, view = str(row["patient_id"]), str(row["view"])
    before = _sequence(cohort[index], patient, view, ("mask_native", "image"))
    after = _sequence(corrected[index], patient, view, ("mask_native",))
    has_image = "image" in before.arrays
    spacing = before.spacing("mask_native")
    limits = _read(thresholds)
    if "space" in limits:
        limits = limits[limits["space"] == "image"]
    names = limits["name"].astype(str).tolist()
    measured_before = shape_attributes(before.arrays["mask_native"], spacing)
    measured_after = shape_attributes(after.arrays["mask_native"], spacing)
    lo, hi, tau = (limits[c].to_numpy(float) for c in ("lo", "hi", "tau"))
    ratios = [temporal_consistency(m[names].to_numpy(float), lo, hi, tau, margin=margin, cycle=cycle,
                                   end_thresholds=end_thresholds(limits))["error_to_threshold"]
              for m in (measured_before, measured_after)]
    # the attributes flagged in the input first (worst first), then the others in the metric's order
    worst = np.nan_to_num(ratios[0], nan=0.0).max(axis=0)
    order = sorted(range(len(names)), key=lambda k: (-int(worst[k] > 1), -worst[k] if worst[k] > 1 else 0,
                                                      TEMPORAL_ATTRIBUTES.index(temporal_attribute(names[k]))
                                                      if temporal_attribute(names[k]) else k))
    picked = order[:max(1, int(n_attributes))]
    n_frames = len(measured_before)
    centre = int(np.nan_to_num(ratios[0], nan=0.0).max(axis=1).argmax())
    first = min(max(0, centre - n_shown // 2), max(0, n_frames - n_shown))
    shown = list(range(first, min(n_frames, first + n_shown)))
    images = before.arrays["image"][shown] if has_image else None
    title = (f"{patient} {view} ({row.get('split', '')}), model {model}: {int(row['inconsistent_frames_before'])} "
             f"inconsistent frames before, {int(row['inconsistent_frames_after'])} after ({row.get('method', '')})")
    figure = correction_example(measured_before[[names[k] for k in picked]], measured_after[[names[k] for k in picked]],
                                ratios[0][:, picked], ratios[1][:, picked],
                                masks_before=before.arrays["mask_native"][shown],
                                masks_after=after.arrays["mask_native"][shown], shown=shown, images=images,
                                spacing=spacing, title=title)
    _save(figure, out_png, out_pdf)
    logger.info(f"drawn: {title}")
    return {"patient_id": patient, "view": view, "frames": shown, "attributes": [names[k] for k in picked]}


# --------------------------------------------------------------------------- anatomy
def corrected_criteria(input_criteria: pd.DataFrame, corrected, cohort, *, criteria_grid=0.3) -> tuple[pd.DataFrame, int]:
    """The 12 criteria of every frame of corrected mask shards.

    A frame the correction left unchanged keeps its input row (``input_criteria``, the anatomy
    stage's table of the same frames); only the changed frames are measured, with the native
    spacing and the anatomy stage's grid. Returns the table and the number of changed frames.
    """
    from echolatent.io.shards import iter_shard

    keyed = input_criteria.set_index([*_KEY, "frame"]).sort_index()
    rows, changed_masks, changed_keys, changed_spacing = [], [], [], []
    for corrected_shard, cohort_shard in zip(corrected, cohort):
        inputs = {(s.patient_id, s.view): s.arrays["mask_native"] for s in iter_shard(cohort_shard)}
        for sequence in iter_shard(corrected_shard):
            masks = sequence.arrays["mask_native"]
            original = inputs[(sequence.patient_id, sequence.view)]
            same = (masks == original).reshape(len(masks), -1).all(axis=1)
            ids = [(sequence.patient_id, sequence.view, f) for f in range(len(masks))]
            rows.append(keyed.loc[[i for i, s in zip(ids, same) if s]].reset_index())
            changed_masks += [masks[~same]]
            changed_keys += [i for i, s in zip(ids, same) if not s]
            changed_spacing += [np.tile(sequence.spacing("mask_native"), (int((~same).sum()), 1))]
    n_changed = len(changed_keys)
    if n_changed:
        from echolatent.shape.criteria import anatomical_metrics

        masks = np.concatenate(changed_masks)
        measured = anatomical_metrics(masks, np.concatenate(changed_spacing), grid=criteria_grid)
        ids = pd.DataFrame(changed_keys, columns=[*_KEY, "frame"])
        ids["frame_pos"] = keyed.loc[changed_keys, "frame_pos"].to_numpy() if "frame_pos" in keyed else np.nan
        rows.append(pd.concat([ids, measured.reset_index(drop=True)], axis=1))
    table = pd.concat(rows, ignore_index=True).sort_values([*_KEY, "frame"]).reset_index(drop=True)
    return table, n_changed


def anatomy_validity_stage(input_criteria, corrected, cohort, truth_criteria=(), *, criteria_grid=0.3,
                           model: str = "", out_png, out_pdf, out_table) -> pd.DataFrame:
    """Frames failing each anatomical criterion before and after the temporal correction
    (rule ``figure_anatomy_validity``); the clean truth beside them on a synthetic cohort.

    ``out_table``: the rates drawn (:func:`echolatent.figures.anatomy.failure_rates`).
    """
    from echolatent.figures.anatomy import failure_rates, validity_by_criterion

    before = _concat(input_criteria)
    after, n_changed = corrected_criteria(before, corrected, cohort, criteria_grid=criteria_grid)
    rates = [failure_rates(before, "input"), failure_rates(after, "temporal")]
    if truth_criteria:
        rates.append(failure_rates(_concat(truth_criteria), "truth"))
    rates = pd.concat(rates, ignore_index=True)
    labels = {"input": "input masks", "temporal": f"temporally corrected ({model})" if model else "temporally corrected",
              "truth": "clean truth (simulator)"}
    _save(validity_by_criterion(rates, source_labels=labels), out_png, out_pdf)
    write_table(rates, out_table)
    logger.info(f"{n_changed} of {len(after)} frames changed by the correction were measured; frames failing any "
                f"criterion: {rates.loc[rates['criterion'] == 'any criterion', ['source', 'failing']].to_dict('records')}")
    return rates


# --------------------------------------------------------------------------- statistics
def forest_plot_stage(effects, bounds=(), *, family: str, groups=(), covariates=(), out_png, out_pdf) -> None:
    """Forest plot of one family of group effects (rule ``figure_forest``).

    ``bounds``: the ``latent_bounds.tsv`` of the study's models, naming the attribute each
    AR-VAE dimension regularises (latent family only).
    """
    from echolatent.figures.forest import forest_plot

    dim_labels = {}
    for path in bounds:
        table = _read(path)
        for dim, attribute in zip(table["dim"], _text(table["attribute"])):
            dim_labels[(Path(path).parent.name, f"mu_{int(dim)}")] = str(attribute)
    figure = forest_plot(_read(effects), family, groups=tuple(groups), covariates=tuple(covariates),
                         dim_labels=dim_labels)
    _save(figure, out_png, out_pdf)


def table1_figure_stage(table1, patients, *, groups=(), out_png, out_pdf, out_tex) -> str:
    """Table 1 as a figure and as LaTeX (rule ``figure_table1``); ``patients``: ``results/stats/patients.tsv``."""
    from echolatent.io.atomic import atomic_path
    from echolatent.figures.table1 import group_sizes, table1_figure, table1_latex

    table, analysis = _read(table1), _read(patients)
    control, case = compared_groups(analysis["group"], groups)[:2]
    sizes = group_sizes(analysis, control, case)
    note = ("Mean ± SD, median [Q1, Q3] or n (%) of the analysed patients. SMD: standardised mean difference, case "
            "minus control (pooled SD). p: Welch t-test, Mann-Whitney U for skewed variables, chi-square for "
            "categorical ones.")
    _save(table1_figure(table, control=control, case=case, sizes=sizes, note=note), out_png, out_pdf)
    latex = table1_latex(table, control=control, case=case, sizes=sizes,
                         caption=f"Characteristics of the analysed patients by group. {note}")
    Path(out_tex).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_tex) as tmp:
        tmp.write_text(latex)
    logger.info(f"wrote {out_tex}")
    return latex


# --------------------------------------------------------------------------- statistics: curves, ROC, agreement
def _dim_labels(bounds) -> dict[str, str]:
    """``mu_k`` -> the attribute AR-VAE dimension k regularises, from ``latent_bounds.tsv`` files."""
    labels = {}
    for path in bounds:
        table = _read(path)
        for dim, attribute in zip(table["dim"], _text(table["attribute"])):
            if attribute:
                labels[f"mu_{int(dim)}"] = str(attribute)
    return labels


def curves_figure_stage(curves, intervals, bounds=(), *, family: str, model: str = "", groups=(), out_png,
                        out_pdf) -> pd.DataFrame:
    """Group curves over the normalised cycle of one family (rules ``figure_curves_attributes``,
    ``figure_curves_latent``): :func:`echolatent.figures.curves.phase_curves`.

    ``curves``, ``intervals``: ``results/stats/curves.tsv`` and ``curve_intervals.tsv``; the rows
    of ``family`` (and ``model``) are drawn. ``bounds``: the model's ``latent_bounds.tsv``
    (AR-VAE dimensions named after their attribute). Returns the curve rows drawn.
    """
    from echolatent.figures.curves import phase_curves

    def mine(table):
        keep = table["family"].astype(str) == family
        if model:
            keep &= _text(table["model"]) == model
        return table[keep]

    rows, spans = mine(_read(curves)), mine(_read(intervals))
    if rows.empty:
        raise ValueError(f"{curves} has no curves of family {family!r}{f' model {model!r}' if model else ''}")
    control_case = compared_groups(rows["group"], groups)
    title = ("Shape attributes of the input masks" if family == "attributes" else
             f"Latent means of model {model}" if model else f"{family} curves") + " over the normalised cycle"
    _save(phase_curves(rows, spans, groups=control_case, title=title, dim_labels=_dim_labels(bounds)),
          out_png, out_pdf)
    logger.info(f"{family} {model}: {rows['outcome'].nunique()} outcomes x {rows['view'].nunique()} views, "
                f"{len(spans)} significant intervals")
    return rows


def roc_figure_stage(classification, comparisons, roc, *, groups=(), out_png, out_pdf) -> None:
    """ROC curves of latent codes, clinical baseline and both (rule ``figure_roc``):
    :func:`echolatent.figures.classification.roc_curves`."""
    from echolatent.figures.classification import roc_curves

    table = _read(classification)
    _save(roc_curves(table, _read(comparisons), _read(roc), groups=tuple(groups)), out_png, out_pdf)


def agreement_figure_stage(agreement, method_values, reference_values, *, method: str, reference: str, out_png,
                           out_pdf) -> pd.DataFrame:
    """Identity and Bland-Altman plots of one method against one reference (rule ``figure_agreement``).

    ``method_values``, ``reference_values``: the two sources' per-patient index tables
    (``results/clinical/indices.tsv``, ``results/clinical/{reconstruction,temporal}/{model}/indices.tsv``
    or the synthetic truth ``results/cohort/truth/patients.tsv``, whose LA volume is
    ``la_volume_es_ml``); the bias and limits drawn are those of ``agreement.tsv``. Returns the
    paired values drawn.
    """
    from echolatent.figures.agreement import agreement_plots, paired_values
    from echolatent.stages.stats import AGREEMENT_INDICES, TRUTH_INDEX_COLUMNS

    table = _read(agreement)
    table = table[(table["method"].astype(str) == method) & (table["reference"].astype(str) == reference)]
    values = paired_values(_read(method_values), _read(reference_values), AGREEMENT_INDICES,
                           method_columns=TRUTH_INDEX_COLUMNS if method == "truth" else None,
                           reference_columns=TRUTH_INDEX_COLUMNS if reference == "truth" else None)
    _save(agreement_plots(values, table, method=method, reference=reference), out_png, out_pdf)
    logger.info(f"{method} vs {reference}: {values.groupby('index').size().to_dict()} paired patients")
    return values


# --------------------------------------------------------------------------- statistics: decoded shapes
def _decoded(table, h5) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """``decoded.tsv`` (rows in the order of the masks), the masks and their spacings (N, 2)."""
    import h5py

    rows = _read(table)
    with h5py.File(h5, "r") as f:
        masks = f["masks"][()]
        spacing = np.asarray(f["masks"].attrs.get("spacing", [1.0, 1.0]), float)
    if len(masks) != len(rows):
        raise ValueError(f"{h5} has {len(masks)} masks for {len(rows)} rows of {table}")
    if spacing.ndim == 1:
        spacing = np.tile(spacing, (len(masks), 1))
    if "code" in rows:
        rows = rows.sort_values("code")
    for column in ("group", "view", "phase", "kind"):
        if column in rows:
            rows[column] = _text(rows[column])
    return rows.reset_index(drop=True), masks, spacing


def _count_invalid(rows, kind) -> str:
    part = rows[rows["kind"] == kind]
    bad = part["anatomical_errors"].astype(str).str.lower().isin(["true", "1"]).sum() if "anatomical_errors" in part else 0
    return f"{int(bad)} of {len(part)} {kind} decodings fail an anatomical criterion"


def latent_modes_stage(table, h5, *, model: str = "", out_png, out_pdf) -> None:
    """Decoded modes of variation (rule ``figure_latent_modes``): :func:`echolatent.figures.decoded.decoded_modes`."""
    from echolatent.figures.decoded import decoded_modes

    rows, masks, spacing = _decoded(table, h5)
    _save(decoded_modes(masks, rows, spacing, model=model), out_png, out_pdf)
    logger.info(_count_invalid(rows, "mode"))


def group_shapes_stage(table, h5, *, model: str = "", groups=(), out_png, out_pdf) -> None:
    """Decoded adjusted group-mean shapes, case over control (rule ``figure_group_shapes``)."""
    from echolatent.figures.decoded import group_mean_shapes

    rows, masks, spacing = _decoded(table, h5)
    means = rows.loc[rows["kind"] == "group_mean", "group"]
    _save(group_mean_shapes(masks, rows, spacing, groups=compared_groups(means, groups), model=model),
          out_png, out_pdf)
    logger.info(_count_invalid(rows, "group_mean"))


def group_direction_stage(table, h5, *, model: str = "", groups=(), out_png, out_pdf) -> None:
    """Decoded shapes along the group direction (rule ``figure_group_direction``)."""
    from echolatent.figures.decoded import group_direction

    rows, masks, spacing = _decoded(table, h5)
    means = rows.loc[rows["kind"] == "group_mean", "group"]
    control_case = compared_groups(means, groups) if len(means) else tuple(groups)
    _save(group_direction(masks, rows, spacing, groups=control_case, model=model), out_png, out_pdf)
    logger.info(_count_invalid(rows, "direction"))
