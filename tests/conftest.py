"""Shared fixtures: small hand-made sequences and cohort folders written with the real writers."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings

# CI replays the same examples every run (a red CI must be reproducible); local runs explore.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

from echolatent.io import camus
from echolatent.io.itk import write_sequence


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
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
