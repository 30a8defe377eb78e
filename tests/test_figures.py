"""The paper's figures: every figure file is written, not blank, of the printed size, with its text and units.

Built on a small hand-made results folder (8 patients, two 48-pixel views, two shards), with
the known-latent-space model of conftest standing in for a trained network where the shapes
must mean something, and a tiny randomly initialised MaskVAE checkpoint where the safe
loading itself is under test. No training, no Snakemake (tests/test_figures_workflow.py runs
the rules).
"""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_hex
from matplotlib.image import imread
from matplotlib.text import Text

from conftest import KnownModel, clean_scales, image_thresholds, images_for, sequence
from echolatent.figures import style
from echolatent.figures.latent_codes import interpolation_codes, pca, prior_codes, traversal_codes
from echolatent.figures.names import PIXEL_ATTRIBUTES, label
from echolatent.figures.targets import (agreement_pairs, bounds_files, figure_targets, flow_inputs, latent_tables,
                                       source_file)
from echolatent.io.tables import write_table
from echolatent.labels import LA, LV, MYO
from echolatent.shape.criteria_definitions import CRITERIA
from echolatent.stages import figures as stage

PATIENTS = [f"P{i:02d}" for i in range(8)]
SPLITS = ["train"] * 4 + ["val"] * 2 + ["test"] * 2
GROUPS = ("control", "hypertensive")
N_FRAMES, SIZE = 10, 48
SPIKED = ("P06", "4CH", 5)  # a test sequence with a one-frame spike, which the "correction" removes


# --------------------------------------------------------------------------- checks
def figure_text(fig) -> str:
    """Every string the figure shows (titles, labels, tick labels, legends, annotations)."""
    return "\n".join(t.get_text() for t in fig.findobj(Text) if t.get_text())


def words(fig) -> str:
    """The figure's text with every run of white space one space (wrapped lines joined)."""
    return " ".join(figure_text(fig).split())


def axis_labels(fig) -> list[str]:
    return [text for ax in fig.axes for text in (ax.get_xlabel(), ax.get_ylabel()) if text]


def check_files(png, pdf, fig) -> np.ndarray:
    """The PNG is the figure at 300 dpi and not blank; the PDF is a PDF. Returns the PNG's pixels."""
    pixels = imread(png)
    width, height = fig.get_size_inches()
    expected = np.array([height * style.DPI, width * style.DPI])
    assert np.abs(np.array(pixels.shape[:2]) - expected).max() <= 1, (png, pixels.shape, expected)  # rounding
    grey = pixels[..., :3].mean(axis=-1)
    assert grey.std() > 0.05, f"{png} looks blank"
    assert (grey < 0.9).mean() > 0.005, f"{png} has almost nothing drawn"
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 2000
    assert not list(png.parent.glob(".tmp-*")), "a temporary file was left behind"
    return pixels


@pytest.fixture
def saved(monkeypatch):
    """Figures the stage functions save, by PNG name (the files are written as usual)."""
    figures = {}
    original = stage._save

    def keep(fig, out_png, out_pdf):
        figures[str(out_png).rsplit("/", 1)[-1]] = fig
        original(fig, out_png, out_pdf)

    monkeypatch.setattr(stage, "_save", keep)
    return figures


@pytest.fixture
def known_model(monkeypatch):
    """The stages' model loader returns conftest's KnownModel (z0 = heart scale, 48-pixel maps)."""
    monkeypatch.setattr(stage, "_load_model", lambda checkpoint, threads: KnownModel(size=SIZE))


# --------------------------------------------------------------------------- a small results folder
def scales_of(i: int) -> np.ndarray:
    return clean_scales(N_FRAMES, phase=0.1 * i) * (0.95 + 0.02 * i)


def write_shard(path, sequences: dict, images: bool = True) -> None:
    """A mask shard in the cohort layout (the datasets and attributes the figure stages read)."""
    with h5py.File(path, "w") as h5:
        h5.attrs["image_size"] = SIZE
        for (patient, view), masks in sequences.items():
            group = h5.create_group(f"{patient}/{view}")
            group["mask_native"] = masks
            group["mask"] = masks
            group["frame_pos"] = np.abs(np.linspace(-1, 1, len(masks))).astype(np.float32)[::-1]
            if images:
                group["image"] = images_for(masks)
            group.attrs.update(spacing=[1.0, 1.0], spacing_native=[1.0, 1.0], ed=0, es=4, cycle="full")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Cohort, anatomy, latent, temporal, model and statistics files of a tiny study (two models)."""
    from echolatent.stages.shape import shard_anatomy_tables
    from echolatent.stats.table_one import table_one

    root = tmp_path_factory.mktemp("results")
    (root / "models" / "known").mkdir(parents=True)
    (root / "models" / "other").mkdir(parents=True)
    patients = pd.DataFrame({"patient_id": PATIENTS, "group": [GROUPS[i % 2] for i in range(8)], "split": SPLITS,
                             "shard": [i % 2 for i in range(8)], "n_sequences": 2,
                             "age": np.linspace(40, 75, 8), "sex": list("MFMFMFFM"), "bsa": np.linspace(1.6, 2.1, 8)})
    write_table(patients, root / "patients.tsv")
    extra = pd.DataFrame([{"patient_id": "P08", "group": "control", "split": "train", "shard": 0}])
    write_table(pd.concat([patients.drop(columns="n_sequences"), extra], ignore_index=True), root / "plan.tsv")
    write_table(pd.DataFrame({"patient_id": ["P08", "P08"], "view": ["2CH", "4CH"], "file": ["a.nii", "b.nii"],
                              "reason": ["mask has 2 frames, fewer than 3"] * 2}), root / "qc.tsv")
    write_table(pd.DataFrame([{"patient_id": p, "view": v, "n_frames": N_FRAMES, "ed": 0, "es": 4, "height": SIZE,
                               "width": SIZE, "spacing_h": 1.0, "spacing_w": 1.0, "has_image": True}
                              for p in PATIENTS for v in ("2CH", "4CH")]), root / "sequences.tsv")

    inputs, corrected, latents, tables = {0: {}, 1: {}}, {0: {}, 1: {}}, {0: [], 1: []}, {0: [], 1: []}
    for i, patient in enumerate(PATIENTS):
        for view in ("2CH", "4CH"):
            scales = scales_of(i)
            clean = sequence(scales, SIZE)
            spiked = (patient, view) == SPIKED[:2]
            observed = scales.copy()
            if spiked:
                observed[SPIKED[2]] += 0.25
            inputs[i % 2][(patient, view)] = sequence(observed, SIZE)
            corrected[i % 2][(patient, view)] = clean if spiked else inputs[i % 2][(patient, view)]
            latents[i % 2].append(pd.DataFrame({
                "patient_id": patient, "view": view, "frame": np.arange(N_FRAMES),
                "frame_pos": np.abs(np.linspace(-1, 1, N_FRAMES))[::-1], "mu_0": observed,
                "mu_1": 0.1 * i + (0.3 if view == "4CH" else 0.0), "logvar_0": -6.0, "logvar_1": -6.0,
                "dice_lv": 0.95 + 0.004 * i, "dice_myo": 0.90 + 0.005 * i, "dice_la": 0.92 + 0.003 * i}))
            tables[i % 2].append({"patient_id": patient, "view": view, "split": SPLITS[i], "n_frames": N_FRAMES,
                                  "method": "repair", "corrected": spiked, "inconsistent_frames_before": 3 * spiked,
                                  "inconsistent_frames_after": 0})
    for k in (0, 1):
        write_shard(root / f"cohort-{k}.h5", inputs[k])
        write_shard(root / f"temporal-{k}.h5", corrected[k], images=False)
        write_table(pd.concat(latents[k], ignore_index=True), root / "models" / "known" / f"shard-{k}.parquet")
        write_table(pd.DataFrame(tables[k]), root / f"temporal-{k}.tsv")
        criteria, _ = shard_anatomy_tables(root / f"cohort-{k}.h5")
        write_table(criteria, root / f"anatomy-{k}.parquet")
    clean = [sequence(scales_of(i), SIZE) for i in range(4)]
    write_table(image_thresholds(clean), root / "thresholds.tsv")

    epochs = np.arange(1, 7)
    history = pd.DataFrame({"epoch": epochs, "train_total": 1.0 / epochs, "train_rec": 0.8 / epochs,
                            "train_kl": 10.0 * epochs, "train_attr": 0.5 / epochs, "train_phase": np.nan,
                            "val_total": 1.2 / epochs + 0.1 * (epochs == 6), "val_rec": 0.9 / epochs,
                            "val_kl": 11.0 * epochs, "val_attr": 0.6 / epochs, "val_phase": np.nan,
                            "val_dice_lv": 0.9 + 0.01 * epochs, "val_dice_myo": 0.8 + 0.02 * epochs,
                            "val_dice_la": 0.85 + 0.01 * epochs, "lr": 0.002, "seconds": 1.0})
    write_table(history, root / "models" / "known" / "history.tsv")
    write_table(pd.DataFrame({"dim": [0, 1], "attribute": ["lv_area", ""], "z_min": [0.7, -1.0], "z_max": [1.3, 1.0],
                              "mu_p01": [0.85, -0.5], "mu_p99": [1.25, 0.5]}),
                root / "models" / "known" / "latent_bounds.tsv")
    quality = pd.DataFrame([{"model": m, "split": s, "dice_lv": 0.95 - d, "dice_myo": 0.9 - d, "dice_la": 0.92 - d}
                            for m, d in (("known", 0.0), ("other", 0.03)) for s in ("train", "val", "test")])
    write_table(quality, root / "quality.tsv")
    (root / "models" / "known" / "summary.json").write_text(json.dumps({"spearman": {"lv_area": 0.98,
                                                                                     "myo_area": None}}))
    (root / "models" / "other" / "summary.json").write_text(json.dumps({"kind": "vae"}))

    analysis = patients.assign(analysed=patients["split"] != "val")
    write_table(analysis, root / "stats-patients.tsv")
    write_table(pd.DataFrame({"patient_id": ["P04", "P05", "P02"], "variable": ["", "", "clinical.ef_pct"],
                              "reason": ["split val not in population.splits"] * 2 + ["value missing"]}),
                root / "exclusions.tsv")
    table1 = table_one(analysis[analysis["analysed"]], *GROUPS, ["age", "bsa"], ["sex"])
    write_table(table1, root / "table1.tsv")
    rng = np.random.default_rng(0)
    outcomes = [("clinical", "ef_pct", ""), ("clinical", "edv_ml", "")]
    outcomes += [("attributes", f"{a}.{v}.{s}", "") for a in ("lv_area_mm2", "myo_area_mm2") for v in ("2CH", "4CH")
                 for s in ("ed", "es", "change", "mean")]
    outcomes += [("latent", f"mu_{d}.{v}.{s}", "known") for d in (0, 1) for v in ("2CH", "4CH") for s in ("ed", "es")]
    rows = []
    for family, outcome, model in outcomes:
        for adjusted in (True, False):
            beta = rng.normal(0, 0.6)
            rows.append({"family": family, "outcome": outcome, "model": model, "adjusted": adjusted, "n": 6,
                         "beta": beta, "ci_low": beta - 0.5, "ci_high": beta + 0.5, "p": 0.01, "std_beta": beta,
                         "std_ci_low": beta - 0.4, "std_ci_high": beta + 0.4, "q": 0.01 if abs(beta) > 0.5 else 0.4})
    write_table(pd.DataFrame(rows), root / "effects.tsv")
    return root


def shards(results, name, ext):
    return [results / f"{name}-{k}.{ext}" for k in (0, 1)]


def known_latents(results):
    return sorted((results / "models" / "known").glob("shard-*.parquet"))


# --------------------------------------------------------------------------- style, names, targets, codes
def test_style_palette_is_okabe_ito_and_each_structure_has_its_own_colour():
    okabe_ito = {"#000000", "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7", "#999999"}
    used = {*style.STRUCTURE_COLOURS.values(), *style.GROUP_COLOURS, *style.SPLIT_COLOURS.values(),
            *style.SOURCE_COLOURS.values(), *style.MODEL_COLOURS, style.INVALID_COLOUR}
    assert {to_hex(c) for c in used} <= okabe_ito
    assert set(style.STRUCTURE_COLOURS) == {LV, MYO, LA} and len(set(style.STRUCTURE_COLOURS.values())) == 3
    assert style.RC["font.size"] >= 7 and style.RC["xtick.labelsize"] >= 6  # legible at 3.5 in


@style.styled
def _masks_figure(mask, image=None):
    fig = style.new_figure(style.COLUMN, 2.0)
    style.draw_masks(fig.add_subplot(), mask, image=image, spacing=(0.5, 0.5))
    return fig


def test_masks_are_outlined_in_the_structure_colours_over_the_image(tmp_path):
    mask = sequence([1.0], SIZE)[0]
    fig = _masks_figure(mask, images_for(mask[None])[0])
    ax = fig.axes[0]
    colours = {to_hex(c) for collection in ax.collections for c in np.atleast_2d(collection.get_edgecolor())}
    assert colours == {to_hex(style.STRUCTURE_COLOURS[label]) for label in (LV, MYO, LA)}
    assert len(ax.images) == 2  # the B-mode image and the fill
    assert ax.get_xlim() == (0.0, SIZE * 0.5)  # drawn in mm
    window = style.crop_window(mask)
    assert window[0] > 0 and window[1] < SIZE and (mask[window[0]:window[1], window[2]:window[3]] > 0).sum() == \
        (mask > 0).sum()


def test_saving_is_atomic_and_reproducible(tmp_path):
    fig = _masks_figure(sequence([1.0], SIZE)[0])
    first = style.save_figure(fig, tmp_path / "a.png", tmp_path / "a.pdf")
    assert [p.name for p in first] == ["a.png", "a.pdf"]
    pixels = check_files(tmp_path / "a.png", tmp_path / "a.pdf", fig)
    assert pixels.shape[:2] == (600, 1050)  # 3.5 x 2 in at 300 dpi
    style.save_figure(fig, tmp_path / "b.png", tmp_path / "b.pdf")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()  # no time stamp inside


def test_display_names_carry_units():
    from echolatent.shape.attributes import PHYSICAL_NAMES

    assert label("clinical.ef_pct") == "EF (%)"
    assert label("attributes.lv_area_mm2.4CH.ed") == "LV area 4CH at ED (mm²)"
    assert label("lv_orientation") == "LV orientation (°)"
    assert label("latent.arvae.mu_3.2CH.change") == "z3 2CH ES − ED"
    assert label("unknown_column") == "unknown_column"
    assert PIXEL_ATTRIBUTES == {**PHYSICAL_NAMES, "atrium_area": "atrium_area_mm2"}


def test_figure_targets_follow_the_configured_study():
    one = figure_targets({"arvae": {"kind": "ar-vae"}}, temporal_models=["arvae"], statistics=True,
                         families=["clinical", "attributes", "latent"])
    assert "results/figures/latent/arvae/traversals.png" in one and "results/figures/models/comparison.png" not in one
    assert {"results/figures/temporal/arvae/sequence.pdf", "results/figures/anatomy/arvae/validity.tsv",
            "results/figures/stats/forest_latent.png", "results/figures/stats/table1.tex"} <= set(one)
    two = figure_targets({"vae": {"kind": "vae"}, "arvae": {"kind": "ar-vae"}}, temporal_models=["arvae"])
    assert "results/figures/models/comparison.png" in two
    assert "results/figures/latent/vae/traversals.png" not in two and "results/figures/latent/vae/pca.png" in two
    assert not [f for f in two if "/stats/" in f]  # no statistics configured: no statistics figure
    bare = figure_targets({}, statistics=True, families=["clinical", "latent"])
    assert bare == ["results/figures/cohort/flow.png", "results/figures/cohort/flow.pdf",
                    "results/figures/stats/table1.png", "results/figures/stats/table1.pdf",
                    "results/figures/stats/table1.tex", "results/figures/stats/forest_clinical.png",
                    "results/figures/stats/forest_clinical.pdf", "results/figures/stats/roc.png",
                    "results/figures/stats/roc.pdf"]  # no model: the clinical ROC only, no latent figure
    assert all(f.endswith((".png", ".pdf", ".tsv", ".tex")) for f in one + two)
    # what the rules read
    assert set(flow_inputs(False)) == {"plan", "patients", "sequences", "qc"}
    assert flow_inputs(True)["exclusions"] == "results/stats/exclusions.tsv"
    assert latent_tables("m", [0, 1]) == ["results/latents/m/shard-0.parquet", "results/latents/m/shard-1.parquet"]
    assert len(latent_tables(["a", "b"], [0])) == 2 and bounds_files(["a"]) == ["results/models/a/latent_bounds.tsv"]


def test_latent_codes():
    z0, z1 = np.array([1.0, 2.0]), np.array([-1.0, 0.0])
    t, codes = interpolation_codes(z0, z1, 5)
    np.testing.assert_allclose(codes[0], z0)
    np.testing.assert_allclose(codes[-1], z1)
    np.testing.assert_allclose(codes[2], (z0 + z1) / 2)
    values, codes = traversal_codes([0.0, 0.5, 1.0], [2, 0], [-1, -2], [1, 2], 3)
    assert codes.shape == (2, 3, 3)
    np.testing.assert_allclose(codes[0, :, 2], [-1, 0, 1])
    np.testing.assert_allclose(codes[0, :, :2], [[0.0, 0.5]] * 3)  # the other dims stay at the base
    np.testing.assert_allclose(values[1], [-2, 0, 2])
    assert np.array_equal(prior_codes(4, 3, seed=1), prior_codes(4, 3, seed=1))
    X = np.random.default_rng(0).normal(size=(50, 4)) * [5, 2, 1, 0.1]
    scores, explained, components, mean = pca(X)
    assert explained[0] > explained[1] and explained.sum() <= 1
    np.testing.assert_allclose(components @ components.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(scores, (X - mean) @ components.T)


# --------------------------------------------------------------------------- cohort and models
def test_cohort_flow(results, tmp_path, saved):
    counts = stage.cohort_flow_stage(results / "plan.tsv", results / "patients.tsv", results / "sequences.tsv",
                                     results / "qc.tsv", results / "stats-patients.tsv", results / "exclusions.tsv",
                                     groups=list(GROUPS), out_png=tmp_path / "flow.png", out_pdf=tmp_path / "flow.pdf")
    assert counts["planned"] == {"patients": 9, "sequences": 18}
    assert counts["qc"]["sequences"] == 2 and counts["qc"]["patients"] == 1
    assert counts["ingested"]["frames"] == 16 * N_FRAMES
    assert counts["splits"]["test"] == {"patients": 2, "sequences": 4, "frames": 40,
                                        "groups": {"control": 1, "hypertensive": 1}}
    assert counts["analysed"]["patients"] == 6 and counts["missing"] == {"values": 1, "patients": 1}
    fig = saved["flow.png"]
    check_files(tmp_path / "flow.png", tmp_path / "flow.pdf", fig)
    text = words(fig)
    assert "2 × mask has 2 frames, fewer than 3" in text and "2 × split val not in population.splits" in text
    assert "160 frames" in text and "6 patients" in text and "(1 patient; left out per outcome)" in text


def test_learning_curves(results, tmp_path, saved):
    stage.learning_curves_stage(results / "models" / "known" / "history.tsv", model="known",
                                out_png=tmp_path / "lc.png", out_pdf=tmp_path / "lc.pdf")
    fig = saved["lc.png"]
    check_files(tmp_path / "lc.png", tmp_path / "lc.pdf", fig)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["Total loss", "Reconstruction", "KL divergence", "Attribute regularisation", "Validation Dice"]
    assert "Phase" not in titles  # never finite: left out
    assert set(axis_labels(fig)) == {"Epoch", "Loss (a.u.)", "KL (nats per frame)", "Dice (0-1)"}
    assert "selected epoch (5)" in figure_text(fig)  # val_total is lowest at epoch 5


def test_reconstruction_dice_and_model_comparison(results, tmp_path, saved):
    latents = known_latents(results)
    table = stage.reconstruction_dice_stage(latents, results / "patients.tsv", out_png=tmp_path / "dice.png",
                                            out_pdf=tmp_path / "dice.pdf")
    assert len(table) == 8 and set(table["split"]) == set(SPLITS)
    check_files(tmp_path / "dice.png", tmp_path / "dice.pdf", saved["dice.png"])
    assert "Reconstruction Dice (0-1)" in axis_labels(saved["dice.png"])
    assert "test\n(n = 2)" in figure_text(saved["dice.png"])
    for model, invalid in (("known", [False, True, False, False]), ("other", [True, True, True, False])):
        (tmp_path / model).mkdir()
        write_table(pd.DataFrame({"sample": range(4), "anatomical_errors": invalid}),
                    tmp_path / model / "prior_samples.tsv")
    stage.model_comparison_stage(results / "quality.tsv", [tmp_path / m / "prior_samples.tsv" for m in ("known", "other")],
                                 [results / "models" / m / "summary.json" for m in ("known", "other")],
                                 out_png=tmp_path / "cmp.png", out_pdf=tmp_path / "cmp.pdf")
    fig = saved["cmp.png"]
    check_files(tmp_path / "cmp.png", tmp_path / "cmp.pdf", fig)
    text = figure_text(fig)
    assert "3/4" in text and "1/4" in text  # valid decodings per model
    assert {"Reconstruction Dice, test (0-1)", "Valid prior decodings (%)"} <= set(axis_labels(fig))


# --------------------------------------------------------------------------- latent space
def test_prior_samples_load_a_real_checkpoint_safely(results, tmp_path, saved):
    from echolatent.models.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION
    from echolatent.models.config import TrainConfig
    from echolatent.models.vae import MaskVAE

    config = TrainConfig(model={"n_classes": 4, "input_size": 16, "blocks": 1, "init_channels": 4, "latent_dim": 3,
                                "bottleneck_channels": 4})
    torch.manual_seed(0)
    model = MaskVAE(config.model)
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config.to_dict(),
                "model": model.state_dict()}, tmp_path / "checkpoint.pt")
    table = stage.prior_samples_stage(tmp_path / "checkpoint.pt", results / "sequences.tsv", n_samples=12, n_shown=8,
                                      image_size=SIZE, out_png=tmp_path / "prior.png", out_pdf=tmp_path / "prior.pdf",
                                      out_table=tmp_path / "prior.tsv")
    assert len(table) == 12 and table["shown"].sum() == 8
    assert {"anatomical_errors", *CRITERIA, "lv_area_mm2"} <= set(table.columns)
    assert pd.read_csv(tmp_path / "prior.tsv", sep="\t").shape == table.shape
    fig = saved["prior.png"]
    check_files(tmp_path / "prior.png", tmp_path / "prior.pdf", fig)
    assert re.search(r"\d+ of 12 anatomically valid", figure_text(fig)) and "20 mm" in figure_text(fig)


def test_interpolation_between_a_control_and_a_case(results, tmp_path, saved, known_model):
    table = stage.interpolation_stage("unused.pt", known_latents(results), results / "sequences.tsv",
                                      results / "patients.tsv", groups=list(GROUPS), image_size=SIZE, steps=5,
                                      out_png=tmp_path / "interp.png", out_pdf=tmp_path / "interp.pdf")
    assert list(table["view"].unique()) == ["2CH", "4CH"] and len(table) == 10
    fig = saved["interp.png"]
    check_files(tmp_path / "interp.png", tmp_path / "interp.pdf", fig)
    text = figure_text(fig)
    # the first control and the first case of the test split, at t = 1 and t = 0
    assert "P06 (control) (t = 1)" in text and "P07 (hypertensive) (t = 0)" in text
    assert "t = 0.50" in text and "2CH, ED" in text


def test_traversals_measure_the_attribute_on_every_decoded_shape(results, tmp_path, saved, known_model):
    table = stage.traversals_stage("unused.pt", results / "models" / "known" / "latent_bounds.tsv",
                                   known_latents(results), results / "patients.tsv", results / "sequences.tsv",
                                   steps=5, image_size=SIZE, out_png=tmp_path / "trav.png",
                                   out_pdf=tmp_path / "trav.pdf", out_table=tmp_path / "trav.tsv")
    assert list(table["dim"].unique()) == [0]  # the one regularised dim (dim 1 names no attribute)
    np.testing.assert_allclose(table["value"], np.linspace(0.85, 1.25, 5))
    assert (np.diff(table["measured"]) > 0).all()  # z0 grows the heart: its LV area grows
    assert not table["anatomical_errors"].any()
    fig = saved["trav.png"]
    check_files(tmp_path / "trav.png", tmp_path / "trav.pdf", fig)
    assert "mm²" in axis_labels(fig) and "z0\nLV area" in figure_text(fig)
    assert "Value of the traversed latent dimension (latent units)" in figure_text(fig)
    with pytest.raises(ValueError, match="no attribute-regularised dimension"):
        write_table(pd.DataFrame({"dim": [0], "attribute": [""], "mu_p01": [0.0], "mu_p99": [1.0]}),
                    tmp_path / "vae_bounds.tsv")
        stage.traversals_stage("unused.pt", tmp_path / "vae_bounds.tsv", known_latents(results),
                               results / "patients.tsv", results / "sequences.tsv", out_png=tmp_path / "x.png",
                               out_pdf=tmp_path / "x.pdf", out_table=tmp_path / "x.tsv")


def test_latent_pca(results, tmp_path, saved):
    stage.latent_pca_stage(known_latents(results), results / "patients.tsv", groups=list(GROUPS),
                           out_png=tmp_path / "pca.png", out_pdf=tmp_path / "pca.pdf")
    fig = saved["pca.png"]
    check_files(tmp_path / "pca.png", tmp_path / "pca.pdf", fig)
    text = figure_text(fig)
    assert "control (n = 4)" in text and "hypertensive (n = 4)" in text and "Frames (n = 160)" in text
    assert all("latent units" in label for label in axis_labels(fig) if label.startswith("PC"))
    assert "Phase position (0 = ED, 1 = ES)" in axis_labels(fig)


# --------------------------------------------------------------------------- temporal, anatomy
def test_temporal_sequence_shows_the_worst_corrected_sequence(results, tmp_path, saved):
    drawn = stage.temporal_sequence_stage(shards(results, "temporal", "tsv"), shards(results, "temporal", "h5"),
                                          shards(results, "cohort", "h5"), results / "thresholds.tsv", cycle="full",
                                          model="known", out_png=tmp_path / "seq.png", out_pdf=tmp_path / "seq.pdf")
    patient, view, frame = SPIKED
    assert (drawn["patient_id"], drawn["view"]) == (patient, view)
    assert frame in drawn["frames"] and len(drawn["frames"]) == 5
    assert "lv_area" in drawn["attributes"]  # the spike grows the whole heart: the LV area is flagged
    fig = saved["seq.png"]
    check_files(tmp_path / "seq.png", tmp_path / "seq.pdf", fig)
    text = figure_text(fig)
    assert f"{patient} {view} (test)" in text and "threshold (|d| = τ)" in text and f"frame {frame}" in text
    assert "|d| / τ" in axis_labels(fig) and "Frame" in axis_labels(fig)
    assert any(ax.images for ax in fig.axes)  # frames over the B-mode image


def test_anatomy_validity_measures_only_the_changed_frames(results, tmp_path, saved):
    before = pd.concat([pd.read_parquet(p) for p in shards(results, "anatomy", "parquet")], ignore_index=True)
    after, changed = stage.corrected_criteria(before, shards(results, "temporal", "h5"), shards(results, "cohort", "h5"))
    assert changed == 1 and len(after) == len(before)
    unchanged = after[~((after["patient_id"] == SPIKED[0]) & (after["view"] == SPIKED[1]) &
                        (after["frame"] == SPIKED[2]))]
    key = ["patient_id", "view", "frame"]
    pd.testing.assert_frame_equal(unchanged.sort_values(key).reset_index(drop=True)[before.columns],
                                  before.merge(unchanged[key]).sort_values(key).reset_index(drop=True),
                                  check_dtype=False)
    rates = stage.anatomy_validity_stage(shards(results, "anatomy", "parquet"), shards(results, "temporal", "h5"),
                                         shards(results, "cohort", "h5"), shards(results, "anatomy", "parquet"),
                                         model="known", out_png=tmp_path / "val.png", out_pdf=tmp_path / "val.pdf",
                                         out_table=tmp_path / "val.tsv")
    assert list(rates["source"].unique()) == ["input", "temporal", "truth"]
    assert len(rates) == 3 * 13 and (rates["frames"] == 160).all()
    fig = saved["val.png"]
    check_files(tmp_path / "val.png", tmp_path / "val.pdf", fig)
    text = figure_text(fig)
    assert "Frames failing the criterion (%)" in axis_labels(fig)
    assert "12 MYO erosion ratio" in text and "temporally corrected (known) (160 frames)" in text


# --------------------------------------------------------------------------- statistics
def test_forest_plots(results, tmp_path, saved):
    for family, panels in (("clinical", ["per patient"]), ("attributes", ["at ED", "at ES", "ES − ED", "cycle mean"]),
                           ("latent", ["at ED", "at ES"])):
        png, pdf = tmp_path / f"forest_{family}.png", tmp_path / f"forest_{family}.pdf"
        stage.forest_plot_stage(results / "effects.tsv", [results / "models" / "known" / "latent_bounds.tsv"],
                                family=family, groups=list(GROUPS), covariates=["age", "sex", "bsa"], out_png=png,
                                out_pdf=pdf)
        fig = saved[png.name]
        check_files(png, pdf, fig)
        assert [ax.get_title() for ax in fig.axes] == panels
        assert set(axis_labels(fig)) == {"Standardised β (SD)"}
        text = figure_text(fig)
        assert "hypertensive − control" in text and "adjusted for age, sex, bsa" in text and "q < 0.05 (BH)" in text
    assert "z0 LV area 4CH" in figure_text(saved["forest_latent.png"])  # the dim named after its attribute
    assert "EF" in figure_text(saved["forest_clinical.png"])
    with pytest.raises(ValueError, match="no row of the family"):
        stage.forest_plot_stage(results / "effects.tsv", family="nothing", out_png=tmp_path / "n.png",
                                out_pdf=tmp_path / "n.pdf")


def test_table1_as_figure_and_latex(results, tmp_path, saved):
    latex = stage.table1_figure_stage(results / "table1.tsv", results / "stats-patients.tsv", groups=list(GROUPS),
                                      out_png=tmp_path / "t1.png", out_pdf=tmp_path / "t1.pdf",
                                      out_tex=tmp_path / "t1.tex")
    fig = saved["t1.png"]
    check_files(tmp_path / "t1.png", tmp_path / "t1.pdf", fig)
    text = figure_text(fig)
    assert "Age (years), mean ± SD" in text and "BSA (m²), mean ± SD" in text and "control\n(n = 3)" in text
    assert "Sex, n (%)" in text
    assert (tmp_path / "t1.tex").read_text() == latex
    assert r"\toprule" in latex and r"\bottomrule" in latex and r"Age (years), mean $\pm$ SD" in latex
    assert r"\quad F" in latex and r"n (\%)" in latex and "hypertensive (n = 3)" in latex
    body = latex.split(r"\midrule")[1].split(r"\bottomrule")[0]
    assert all(line.count(" & ") == 5 for line in body.strip().splitlines())  # six cells a row


# --------------------------------------------------------------------------- statistics: curves, ROC, agreement, shapes
def test_statistics_figure_targets_follow_the_configured_study():
    study = figure_targets({"arvae": {"kind": "ar-vae"}}, temporal_models=["arvae"], statistics=True,
                           families=["clinical", "attributes", "latent"], synthetic=True)
    stems = {f.rsplit(".", 1)[0] for f in study}
    assert {"results/figures/stats/curves_attributes", "results/figures/stats/roc",
            "results/figures/latent/arvae/curves", "results/figures/latent/arvae/modes",
            "results/figures/latent/arvae/group_means", "results/figures/latent/arvae/group_direction",
            "results/figures/stats/agreement/temporal.arvae_vs_truth",
            "results/figures/stats/agreement/reconstruction.arvae_vs_input",
            "results/figures/stats/agreement/input_vs_truth"} <= stems
    assert len(study) == len(set(study))
    # no latent family: no latent curves, no decoded shapes, agreement of the input with the truth only
    plain = figure_targets({"arvae": {"kind": "ar-vae"}}, temporal_models=["arvae"], statistics=True,
                           families=["clinical", "attributes"], synthetic=True)
    assert not [f for f in plain if "/latent/arvae/" in f and f.rsplit("/", 1)[1].split(".")[0] in
                ("curves", "modes", "group_means", "group_direction")]
    assert [f for f in plain if "/agreement/" in f] == ["results/figures/stats/agreement/input_vs_truth.png",
                                                         "results/figures/stats/agreement/input_vs_truth.pdf"]
    # a real cohort without the latent family has one source: no agreement figure
    assert not [f for f in figure_targets({}, statistics=True, families=["clinical"]) if "agreement" in f]
    assert agreement_pairs(["a", "b"], ["b"], latent=True) == [("reconstruction.a", "input"),
                                                               ("reconstruction.b", "input"), ("temporal.b", "input")]
    assert source_file("temporal.b") == "results/clinical/temporal/b/indices.tsv"
    assert source_file("truth") == "results/cohort/truth/patients.tsv"
    with pytest.raises(ValueError):
        source_file("nonsense")


@pytest.fixture(scope="module")
def stats_tables(tmp_path_factory):
    """Small hand-made statistics tables: curves, classification, agreement sources, decoded shapes."""
    from echolatent.stats.agreement import agreement_table

    root = tmp_path_factory.mktemp("stats")
    rng = np.random.default_rng(1)
    phases = np.linspace(0, 1, 17)
    rows = []
    for family, model, outcomes in (("attributes", "", ["lv_area_mm2", "lv_length_mm"]), ("latent", "known", ["mu_0", "mu_1"])):
        for outcome in outcomes:
            for view in ("2CH", "4CH"):
                for group, shift, n in (("control", 0.0, 6), ("hypertensive", 1.0, 5)):
                    mean = 10 + 3 * np.sin(2 * np.pi * phases) + shift
                    rows += [{"family": family, "model": model, "outcome": outcome, "view": view, "cycle": "full",
                              "phase_index": k, "phase": ph, "group": group, "n": n, "mean": m, "ci_low": m - 0.5,
                              "ci_high": m + 0.5, "es_phase": 0.375} for k, (ph, m) in enumerate(zip(phases, mean))]
    write_table(pd.DataFrame(rows), root / "curves.tsv")
    intervals = [{"family": "attributes", "model": "", "outcome": "lv_area_mm2", "view": "4CH", "cycle": "full",
                  "index_start": 14, "index_end": 2, "phase_start": 0.875, "phase_end": 0.125, "n_points": 6,
                  "direction": 1, "max_abs_t": 4.0, "min_p_fwe": 0.01},  # through ED: two shaded spans
                 {"family": "latent", "model": "known", "outcome": "mu_0", "view": "2CH", "cycle": "full",
                  "index_start": 4, "index_end": 8, "phase_start": 0.25, "phase_end": 0.5, "n_points": 5,
                  "direction": -1, "max_abs_t": 3.0, "min_p_fwe": 0.02}]
    write_table(pd.DataFrame(intervals), root / "curve_intervals.tsv")
    write_table(pd.DataFrame({"dim": [0, 1], "attribute": ["lv_area", ""]}), root / "latent_bounds.tsv")

    sets = {"clinical": 0.75, "latent.known": 0.8, "clinical+latent.known": 0.85}
    write_table(pd.DataFrame([{"features": f, "n": 40, "n_case": 20, "n_control": 20, "auc": a, "auc_ci_low": a - 0.1,
                               "auc_ci_high": a + 0.1} for f, a in sets.items()]), root / "classification.tsv")
    write_table(pd.DataFrame([{"features_a": "clinical", "features_b": "latent.known", "n": 40, "auc_a": 0.75,
                               "auc_b": 0.8, "delta_auc": 0.05, "se": 0.04, "ci_low": -0.03, "ci_high": 0.13, "z": 1.25,
                               "p": 0.21}]), root / "classification_comparisons.tsv")
    roc = []
    for f, a in sets.items():
        fpr = np.linspace(0, 1, 11)
        roc += [{"features": f, "fpr": x, "tpr": min(1.0, x ** (1 - a)), "threshold": 1 - x} for x in fpr]
    write_table(pd.DataFrame(roc), root / "roc.tsv")

    patients = [f"Q{i:02d}" for i in range(12)]
    edv = rng.uniform(80, 160, 12)
    esv = edv * rng.uniform(0.3, 0.5, 12)
    sources = {"input": pd.DataFrame({"patient_id": patients, "edv_ml": edv, "esv_ml": esv,
                                      "ef_pct": 100 * (1 - esv / edv), "la_volume_ml": rng.uniform(40, 80, 12)})}
    noisy = sources["input"].copy()
    for column in ("edv_ml", "esv_ml", "la_volume_ml"):
        noisy[column] = noisy[column] + rng.normal(1.0, 2.0, 12)
    noisy["ef_pct"] = 100 * (1 - noisy["esv_ml"] / noisy["edv_ml"])
    sources["temporal.known"] = noisy
    sources["truth"] = sources["input"].rename(columns={"la_volume_ml": "la_volume_es_ml"}).assign(
        edv_ml=edv - 2.0, la_volume_es_ml=lambda t: t["la_volume_es_ml"] - 1.0)
    table, _ = agreement_table(sources, indices=["edv_ml", "esv_ml", "ef_pct", "la_volume_ml"],
                               methods=["input", "temporal.known"], reference=["input", "truth"],
                               columns={"truth": {"la_volume_ml": "la_volume_es_ml"}})
    write_table(table, root / "agreement.tsv")
    write_table(sources["input"], root / "input.tsv")
    write_table(sources["temporal.known"], root / "temporal.tsv")
    write_table(sources["truth"], root / "truth.tsv")

    decoded, masks = [], []
    for view in ("2CH", "4CH"):
        for phase, scale in (("ed", 1.0), ("es", 0.8)):
            for component in (1, 2):
                for sd in (-2, -1, 0, 1, 2):
                    decoded.append({"kind": "mode", "view": view, "phase": phase, "component": component, "sd": sd,
                                    "group": "", "step": np.nan})
                    masks.append(scale * (1 + 0.05 * sd * (1 if component == 1 else -1)))
            for group, g in (("control", 1.0), ("hypertensive", 1.1)):
                decoded.append({"kind": "group_mean", "view": view, "phase": phase, "component": np.nan, "sd": np.nan,
                                "group": group, "step": np.nan})
                masks.append(scale * g)
            for step in np.arange(-1, 2.5, 0.5):
                decoded.append({"kind": "direction", "view": view, "phase": phase, "component": np.nan, "sd": np.nan,
                                "group": "", "step": step})
                masks.append(scale * (1 + 0.1 * step))
    decoded = pd.DataFrame(decoded)
    decoded.insert(0, "code", np.arange(len(decoded)))
    decoded.insert(1, "model", "known")
    decoded["anatomical_errors"] = False
    decoded.loc[(decoded["kind"] == "direction") & (decoded["step"] == 2.0) & (decoded["view"] == "4CH"),
                "anatomical_errors"] = True
    decoded.loc[(decoded["kind"] == "mode") & (decoded["sd"] == 2) & (decoded["component"] == 2),
                "anatomical_errors"] = True
    write_table(decoded, root / "decoded.tsv")
    with h5py.File(root / "decoded.h5", "w") as h5:
        h5["masks"] = sequence(np.array(masks), SIZE).astype(np.uint8)
        h5["masks"].attrs["spacing"] = np.full((len(masks), 2), 2.0)
    return root


def test_curves_show_group_bands_es_and_significant_phases(stats_tables, tmp_path, saved):
    rows = stage.curves_figure_stage(stats_tables / "curves.tsv", stats_tables / "curve_intervals.tsv",
                                     family="attributes", groups=list(GROUPS), out_png=tmp_path / "ca.png",
                                     out_pdf=tmp_path / "ca.pdf")
    assert set(rows["family"]) == {"attributes"}
    fig = saved["ca.png"]
    check_files(tmp_path / "ca.png", tmp_path / "ca.pdf", fig)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 4  # (outcome, view)
    assert {"LV area (mm²)", "LV length (mm)", "Cycle phase (fraction, ED = 0)"} <= set(axis_labels(fig))
    text = words(fig)
    assert "control (n = 6)" in text and "hypertensive (n = 5)" in text and "ES" in text
    assert "groups differ (p_FWE ≤ 0.05, adjusted)" in text
    shaded = {ax.get_title(): len(ax.patches) for ax in panels}
    assert shaded["LV area, 4CH"] == 2 and shaded["LV area, 2CH"] == 0  # the interval through ED: two spans
    lines = panels[0].get_lines()
    assert {to_hex(line.get_color()) for line in lines[:2]} == {to_hex(c) for c in style.GROUP_COLOURS}
    stage.curves_figure_stage(stats_tables / "curves.tsv", stats_tables / "curve_intervals.tsv",
                              [stats_tables / "latent_bounds.tsv"], family="latent", model="known",
                              groups=list(GROUPS), out_png=tmp_path / "cl.png", out_pdf=tmp_path / "cl.pdf")
    fig = saved["cl.png"]
    check_files(tmp_path / "cl.png", tmp_path / "cl.pdf", fig)
    assert {"z0: lv_area (a.u.)", "z1 (a.u.)"} <= set(axis_labels(fig))
    with pytest.raises(ValueError, match="no curves"):
        stage.curves_figure_stage(stats_tables / "curves.tsv", stats_tables / "curve_intervals.tsv", family="latent",
                                  model="absent", out_png=tmp_path / "x.png", out_pdf=tmp_path / "x.pdf")


def test_roc_curves_give_auc_intervals_and_the_delong_test(stats_tables, tmp_path, saved):
    stage.roc_figure_stage(stats_tables / "classification.tsv", stats_tables / "classification_comparisons.tsv",
                           stats_tables / "roc.tsv", groups=list(GROUPS), out_png=tmp_path / "roc.png",
                           out_pdf=tmp_path / "roc.pdf")
    fig = saved["roc.png"]
    check_files(tmp_path / "roc.png", tmp_path / "roc.pdf", fig)
    text = words(fig)
    for part in ("Clinical: AUC 0.75 [0.65, 0.85]", "Latent: AUC 0.80 [0.70, 0.90]",
                 "Clinical + latent: AUC 0.85 [0.75, 0.95]", "ΔAUC latent − clinical +0.050, DeLong p = 0.21",
                 "hypertensive vs control"):
        assert part in text, part
    assert {"1 − specificity (false-positive rate)", "Sensitivity (true-positive rate)"} <= set(axis_labels(fig))
    colours = {to_hex(line.get_color()) for line in fig.axes[0].get_lines()}
    assert {to_hex(c) for c in style.FEATURE_COLOURS.values()} <= colours
    # a study without a latent model: the clinical baseline alone, no test
    clinical = tmp_path / "clinical.tsv"
    write_table(pd.read_csv(stats_tables / "classification.tsv", sep="\t").head(1), clinical)
    stage.roc_figure_stage(clinical, stats_tables / "classification_comparisons.tsv", stats_tables / "roc.tsv",
                           out_png=tmp_path / "roc1.png", out_pdf=tmp_path / "roc1.pdf")
    fig = saved["roc1.png"]
    assert len(fig.axes) == 1 and "DeLong" not in words(fig) and "Clinical: AUC 0.75" in words(fig)


def test_bland_altman_and_identity_plots_print_bias_and_limits(stats_tables, tmp_path, saved):
    values = stage.agreement_figure_stage(stats_tables / "agreement.tsv", stats_tables / "temporal.tsv",
                                          stats_tables / "truth.tsv", method="temporal.known", reference="truth",
                                          out_png=tmp_path / "ba.png", out_pdf=tmp_path / "ba.pdf")
    assert sorted(values["index"].unique()) == ["edv_ml", "ef_pct", "esv_ml", "la_volume_ml"]
    assert (values.groupby("index").size() == 12).all()  # the truth's LA volume read from la_volume_es_ml
    fig = saved["ba.png"]
    check_files(tmp_path / "ba.png", tmp_path / "ba.pdf", fig)
    assert len(fig.axes) == 8  # one row per index: identity, Bland-Altman
    labels = set(axis_labels(fig))
    assert {"Δ EDV (mL)", "Δ EF (%)", "Δ LA volume (mL)", "EF, mean of the two (%)"} <= labels
    table = pd.read_csv(stats_tables / "agreement.tsv", sep="\t")
    row = table[(table["method"] == "temporal.known") & (table["reference"] == "truth") & (table["index"] == "edv_ml")
                & (table["split"] == "all")].iloc[0]
    text = words(fig)
    assert f"bias {row['bias']:+.2f}" in text and f"+1.96 SD {row['loa_high']:+.2f}" in text
    assert f"−1.96 SD {row['loa_low']:+.2f}" in text and "n = 12" in text and "ICC(2,1)" in text
    # the bias line sits at the table's bias, the differences are method minus reference
    ba = fig.axes[1]
    assert any(np.allclose(line.get_ydata(), row["bias"]) for line in ba.get_lines())
    edv = values[values["index"] == "edv_ml"]
    np.testing.assert_allclose(np.sort(ba.collections[0].get_offsets()[:, 1]), np.sort(edv["method"] - edv["reference"]))
    stage.agreement_figure_stage(stats_tables / "agreement.tsv", stats_tables / "input.tsv", stats_tables / "truth.tsv",
                                 method="input", reference="truth", out_png=tmp_path / "it.png",
                                 out_pdf=tmp_path / "it.pdf")
    assert "Agreement of input masks with truth" in words(saved["it.png"])


def test_decoded_modes_group_means_and_direction(stats_tables, tmp_path, saved):
    table, h5 = stats_tables / "decoded.tsv", stats_tables / "decoded.h5"
    stage.latent_modes_stage(table, h5, model="known", out_png=tmp_path / "modes.png", out_pdf=tmp_path / "modes.pdf")
    fig = saved["modes.png"]
    check_files(tmp_path / "modes.png", tmp_path / "modes.pdf", fig)
    text = words(fig)
    for part in ("PC1 ED", "PC2 ES", "-2 SD", "mean", "+2 SD", "2CH", "4CH", "20 mm", "fails an anatomical criterion"):
        assert part in text, part
    assert figure_text(fig).count("\u2715") == 4  # PC2 at +2 SD, both views and phases
    stage.group_shapes_stage(table, h5, model="known", groups=list(GROUPS), out_png=tmp_path / "gm.png",
                             out_pdf=tmp_path / "gm.pdf")
    fig = saved["gm.png"]
    check_files(tmp_path / "gm.png", tmp_path / "gm.pdf", fig)
    text = words(fig)
    assert "control (adjusted mean)" in text and "hypertensive (adjusted mean)" in text and "ED" in text and "ES" in text
    drawn = fig.axes[0].collections
    assert {to_hex(c) for col in drawn for c in np.atleast_2d(col.get_edgecolor())} == \
        {to_hex(c) for c in style.GROUP_COLOURS}  # one colour per group
    assert len(drawn) == 6  # 3 structures x 2 groups, told apart by line style
    stage.group_direction_stage(table, h5, model="known", groups=list(GROUPS), out_png=tmp_path / "gd.png",
                                out_pdf=tmp_path / "gd.pdf")
    fig = saved["gd.png"]
    check_files(tmp_path / "gd.png", tmp_path / "gd.pdf", fig)
    text = words(fig)
    for part in ("step -1", "step +0 (control)", "step +1 (hypertensive)", "step +2", "4CH ES",
                 "fails an anatomical criterion"):
        assert part in text, part
    assert figure_text(fig).count("\u2715") == 2  # 4CH, step +2, ED and ES


def test_readme_figures_are_small_copies_and_a_missing_figure_is_named(tmp_path):
    from PIL import Image

    from echolatent.figures.readme import readme_figures

    source = tmp_path / "figures" / "stats"
    source.mkdir(parents=True)
    Image.new("RGB", (2000, 1000), (255, 255, 255)).save(source / "wide.png")
    Image.new("RGB", (600, 300), (0, 114, 178)).save(source / "narrow.png")
    written = readme_figures(tmp_path / "figures", tmp_path / "docs", width_px=900,
                             figures={"stats/wide.png": "wide.png", "stats/narrow.png": "narrow.png"})
    sizes = [Image.open(path).size for path in written]
    assert sizes == [(900, 450), (600, 300)]  # aspect kept, never enlarged
    assert Image.open(written[1]).convert("RGB").getpixel((10, 10)) == (0, 114, 178)
    with pytest.raises(FileNotFoundError, match="gone.png"):
        readme_figures(tmp_path / "figures", tmp_path / "docs", figures={"stats/gone.png": "gone.png"})


def test_agreement_figure_shows_an_index_without_paired_patients():
    """Defect: a source with no measurable index (blank reconstructions of an untrained model) stopped the
    figure with an error; the index's panels now say n = 0 and the others are drawn."""
    from echolatent.figures.agreement import agreement_plots

    values = pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "index": "ef_pct",
                           "method": [60.0, 55.0, 70.0], "reference": [61.0, 54.0, 69.0]})
    statistics = pd.DataFrame({"split": "all", "index": ["ef_pct", "edv_ml"], "n": [3, 0],
                               "bias": [1 / 3, np.nan], "loa_low": [-1.9, np.nan], "loa_high": [2.5, np.nan],
                               "icc_2_1": [0.98, np.nan], "ccc": [0.97, np.nan]})
    fig = agreement_plots(values, statistics, method="reconstruction.m", reference="input")
    text = words(fig)
    assert "no patient with EDV on both sides (n = 0)" in text and "bias +0.33" in text
    assert len(fig.axes) == 4  # two rows (EF, EDV), identity and Bland-Altman each
