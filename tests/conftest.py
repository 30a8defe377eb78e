"""Shared fixtures: small hand-made sequences and cohort folders written with the real writers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hypothesis import settings

# CI replays the same examples every run (a red CI must be reproducible); local runs explore.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

from echolatent.io import camus
from echolatent.io.itk import write_sequence
from echolatent.shape.attributes import TEMPORAL_ATTRIBUTES, shape_attributes
from echolatent.temporal.thresholds import derive_thresholds_table


def apical_masks(n_frames: int = 6, height: int = 40, width: int = 32, shift: int = 0) -> np.ndarray:
    """A small, deliberately left-right asymmetric apical label-map sequence (T, H, W).

    LV (1) as an ellipse whose radius shrinks towards ES, a myocardial ring (2) open at the
    base, the LA (3) below; an extra MYO notch on the left makes the mask asymmetric, so a
    transposed or flipped read-back cannot pass for the original.
    """
    rows, cols = np.mgrid[0:height, 0:width]
    masks = np.zeros((n_frames, height, width), np.uint8)
    for t in range(n_frames):
        scale = 1.0 - 0.25 * np.sin(np.pi * t / max(n_frames - 1, 1))
        cy, cx = 0.40 * height, 0.45 * width + shift
        ry, rx = 0.28 * height * scale, 0.18 * width * scale
        r = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2
        ring = ((rows - cy) / (ry + 3)) ** 2 + ((cols - cx) / (rx + 3)) ** 2
        frame = masks[t]
        frame[(ring <= 1) & (rows <= cy + ry * 0.6)] = 2
        frame[(r <= 1) & (rows <= cy + ry * 0.6)] = 1
        la = ((rows - (cy + ry + 4)) / 5) ** 2 + ((cols - cx) / (rx + 1)) ** 2 <= 1
        frame[la & (frame == 0)] = 3
        frame[2:4, 1:3] = 2  # asymmetric marker in the top-left corner
    return masks


def images_for(masks: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.choose(masks, [40, 10, 200, 15]).astype(np.int16)
    return np.clip(base + rng.integers(-10, 10, masks.shape), 0, 255).astype(np.uint8)


def write_camus_patient(root, patient: str, layout: str, *, n_frames=6, spacing=(0.3, 0.15), age=60, sex="F",
                        quality="Good", views=("2CH", "4CH")):
    """Write one patient in a CAMUS layout with the real writers; return {view: (masks, images)}."""
    written = {}
    for number, view in enumerate(views):
        masks = apical_masks(n_frames, shift=number)
        images = images_for(masks, seed=number)
        kind = "full" if layout == "ted" else "half"
        write_sequence(camus.sequence_file(root, patient, view, kind, layout, gt=True), masks, spacing,
                       compress=layout == "camus-nifti")
        write_sequence(camus.sequence_file(root, patient, view, kind, layout, gt=False), images, spacing,
                       compress=layout == "camus-nifti")
        cfg = {"ED": 1, "ES": n_frames, "NbFrame": n_frames, "Sex": sex, "Age": age, "ImageQuality": quality}
        if layout == "ted":
            cfg["ES"] = n_frames // 2
        camus.write_cfg(camus.cfg_file(root, patient, view, layout), cfg)
        written[view] = (masks, images)
    return written


@pytest.fixture
def camus_nifti(tmp_path):
    root = tmp_path / "CAMUS_public"
    data = {f"patient{i:04d}": write_camus_patient(root, f"patient{i:04d}", "camus-nifti", age=50 + i,
                                                   sex="MF"[i % 2]) for i in range(1, 7)}
    camus.write_split_lists(root, {p: s for p, s in zip(sorted(data), ["train"] * 4 + ["val", "test"])})
    return root, data


def draw_apical_ellipses(mask, rows, cols, cy, cx, ry, rx, h) -> None:
    """Draw, in place, an apical-like map on a small grid: LV half-ellipse (1) cut at its base,
    a MYO band of thickness ``h`` (2), the LA below (3). ``rows``/``cols`` are pixel centres."""
    base = cy + 0.6 * ry
    lv = (((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1) & (rows <= base)
    epi = (((rows - cy) / (ry + h)) ** 2 + ((cols - cx) / (rx + h)) ** 2 <= 1) & (rows <= base)
    la = (((rows - base - 4) / 4) ** 2 + ((cols - cx) / (rx + 1)) ** 2 <= 1) & (rows > base)
    mask[la] = 3
    mask[epi] = 2
    mask[lv] = 1


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: tiny tensors run faster, and far faster on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def log_lines():
    """The messages that EchoLatent logs at INFO and above during the test, as a list (it can be cleared)."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("echolatent")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


# --------------------------------------------------------------------------- cohort sheets
def write_sheet(tmp_path, rows, extra=None):
    lines = ["\t".join(rows[0].keys())] + ["\t".join(str(v) for v in r.values()) for r in rows]
    path = tmp_path / "cohort.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def sheet_cohort(tmp_path, n=6):
    rows = []
    for i in range(n):
        for view in ("2CH", "4CH"):
            masks = apical_masks(8, shift=i % 3)
            write_sequence(tmp_path / "data" / f"p{i}_{view}_gt.nii.gz", masks, (0.4, 0.4))
            write_sequence(tmp_path / "data" / f"p{i}_{view}.nii.gz", images_for(masks), (0.4, 0.4))
            rows.append({"patient_id": f"P{i:02d}", "view": view, "mask": f"data/p{i}_{view}_gt.nii.gz",
                         "image": f"data/p{i}_{view}.nii.gz", "ed": 0, "es": 4, "age": 40 + i,
                         "sex": "MF"[i % 2], "group": ["control", "case"][i % 2], "bsa": 1.8, "smoker": "yes"})
    return rows


# --------------------------------------------------------------------------- the workflow, run for real
REPO = Path(__file__).resolve().parents[1]


def snakemake(*args, cwd=REPO, check=True, env=None):
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args],
                            cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def write_config(path: Path, cohort: dict, **sections) -> Path:
    path.write_text(yaml.safe_dump({"cohort": cohort, **sections}))
    return path


# --------------------------------------------------------------------------- temporal correction: a model with a known latent space
BG, LV, MYO, LA = 0, 1, 2, 3  # written out here too: the tests check the package's constants independently


def render(scale: float, size: int = 48) -> np.ndarray:
    """Apical-like label map whose LV/MYO/LA grow with ``scale`` (monotonic, smooth)."""
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    cy, cx = 0.42 * size, (0.5 + 0.1 * (scale - 1)) * size
    ry, rx = 0.26 * size * scale, 0.16 * size * scale
    base = cy + 0.55 * ry
    angle = np.radians(25.0 * (scale - 1))  # the heart tilts a little as it grows
    rows, cols = (cy + (rows - cy) * np.cos(angle) - (cols - cx) * np.sin(angle),
                  cx + (rows - cy) * np.sin(angle) + (cols - cx) * np.cos(angle))
    frame = np.zeros((size, size), np.uint8)
    outer = ((rows - cy) / (ry + 3)) ** 2 + ((cols - cx) / (rx + 3)) ** 2 <= 1
    inner = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
    frame[outer & (rows <= base)] = MYO
    frame[inner & (rows <= base)] = LV
    depth = 0.3 * size * scale
    atrium = ((rows - base) / depth) ** 4 + ((cols - cx) / (rx - 1.5)) ** 4 <= 1  # a rounded box under the LV
    frame[atrium & (rows > base)] = LA
    return frame


class KnownModel(torch.nn.Module):
    """A stand-in for a trained VAE: z0 = scale of the rendered heart (read from the LV area), z1 = 0.

    ``decode`` renders the heart at scale z0, so a spike in LV area is a spike in z0 and
    smoothing z0 removes it: the whole pipeline can be checked without training a network.
    """

    def __init__(self, n_classes: int = 4, size: int = 48):
        super().__init__()
        self.config = SimpleNamespace(n_classes=n_classes, input_size=size, latent_dim=2)
        self.scales = np.linspace(0.5, 1.5, 201)
        self.areas = np.array([(render(s, size) == LV).sum() for s in self.scales])

    def encode(self, x):
        area = x[:, LV].sum(dim=(1, 2)).numpy()
        scale = np.interp(area, self.areas, self.scales)
        mu = torch.tensor(np.stack([scale, np.zeros_like(scale)], axis=1), dtype=torch.float32)
        return mu, torch.zeros_like(mu)

    def decode(self, z):
        maps = np.stack([render(float(s), self.config.input_size) for s in z[:, 0].numpy()])
        if self.config.n_classes == 3:
            maps[maps == LA] = BG
        one_hot = torch.nn.functional.one_hot(torch.from_numpy(maps).long(), self.config.n_classes)
        return one_hot.permute(0, 3, 1, 2) * 10.0


def clean_scales(n_frames=20, phase=0.0):
    t = np.arange(n_frames) / n_frames
    return 1.0 - 0.2 * np.sin(np.pi * t + phase) ** 2


def sequence(scales, size=48):
    return np.stack([render(s, size) for s in scales])


def image_thresholds(references, spacing=(1.0, 1.0)):
    rows = []
    for n, masks in enumerate(references):
        table = shape_attributes(masks, spacing)
        table.insert(0, "frame", np.arange(len(masks)))
        table.insert(0, "view", "4CH")
        table.insert(0, "patient_id", f"P{n}")
        rows.append(table)
    return derive_thresholds_table(pd.concat(rows), list(TEMPORAL_ATTRIBUTES), reference="test")


def image_arrays(thresholds):
    return (thresholds["name"].tolist(), thresholds["lo"].to_numpy(), thresholds["hi"].to_numpy(),
            thresholds["tau"].to_numpy())


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    """A 6-patient synthetic cohort (32 px model grid), its attribute tables and a VAE trained for 2 epochs."""
    from echolatent.ingest.cohort import ingest_cohort
    from echolatent.io.tables import write_table
    from echolatent.simulate import SimulationConfig, write_cohort
    from echolatent.stages.ingest import open_source
    from echolatent.stages.shape import shard_anatomy_tables
    from echolatent.stages.train import train_on_cohort

    root = tmp_path_factory.mktemp("temporal")
    config = SimulationConfig.from_dict({"n_patients": 6, "seed": 5, "frames": 10,
                                         "image": {"rows": 80, "cols": 72, "spacing": [2.4, 2.6], "images": False},
                                         "observation": {"defect_rates": {"spike": 0.2}}})
    write_cohort(config, root / "store", fmt="store")
    cohort = root / "cohort"
    ingest_cohort(open_source("store", root / "store"), cohort, image_size=32, n_shards=1, seed=1,
                  fractions={"train": 0.5, "val": 0.25, "test": 0.25}, truth_dir=root / "store" / "truth")
    for source, shard, attrs_from in (("input", cohort / "shard-0.h5", None),
                                      ("truth", cohort / "truth" / "shard-0.h5", cohort / "shard-0.h5")):
        _, attributes = shard_anatomy_tables(shard, attrs_from=attrs_from)
        write_table(attributes, root / f"attributes-{source}.parquet")
    training = {"model": {"n_classes": 4, "input_size": 32, "blocks": 2, "init_channels": 4, "latent_dim": 10},
                "loss": {"kind": "ar-vae"}, "epochs": 2, "batch_size": 16, "device": "cpu", "num_threads": 1}
    train_on_cohort([cohort / "shard-0.h5"], cohort / "patients.tsv", training, list(TEMPORAL_ATTRIBUTES),
                    out_dir=root / "model")
    return root


def pytest_collection_modifyitems(session, config, items):
    """Run the SLURM cluster test last.

    Once `tests/slurm/start_cluster.sh` has installed the SLURM client and the test has
    stopped its controller, every later Snakemake start pays a 10 s `scontrol show config`
    timeout (the SLURM executor plugin asks for MinJobAge at import). Ordering the cluster
    test last keeps that cost out of the other workflow tests.
    """
    items.sort(key=lambda item: item.path.name == "test_slurm_workflow.py")
