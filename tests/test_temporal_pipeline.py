"""Temporal pipeline: pre-cleaning, correction with a known (hand-made) model, thresholds, shards, export."""

from __future__ import annotations

from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from echolatent.attributes import TEMPORAL_ATTRIBUTES, shape_attributes
from echolatent.temporal.metric import temporal_consistency
from echolatent.temporal.pipeline import (CorrectionConfig, LatentConstraint, correct_sequences, dice_scores,
                                          model_input)
from echolatent.temporal.preclean import fill_holes, largest_component, preclean
from echolatent.temporal.thresholds import (derive_thresholds_table, published_thresholds, read_thresholds,
                                            write_thresholds)

BG, LV, MYO, LA = 0, 1, 2, 3


# --------------------------------------------------------------------------- a model with a known latent space
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
    atrium = ((rows - base - 0.28 * size * scale) / (0.28 * size * scale)) ** 2 + ((cols - cx) / (rx + 3)) ** 2 <= 1
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
        return torch.nn.functional.one_hot(torch.from_numpy(maps).long(), self.config.n_classes).permute(0, 3, 1, 2) * 10.0


def clean_scales(n_frames=20, phase=0.0):
    t = np.arange(n_frames) / n_frames
    return 1.0 - 0.2 * np.sin(np.pi * t + phase) ** 2


def sequence(scales, size=48):
    return np.stack([render(s, size) for s in scales])


# --------------------------------------------------------------------------- pre-cleaning
def test_preclean_largest_blob_holes_and_gaps():
    clean = render(1.0)[None].repeat(3, axis=0)
    noisy = clean.copy()
    noisy[0, 2:5, 2:5] = LV                     # LV island
    noisy[1, 20, 22:24] = BG                    # hole inside the LV
    ys, xs = np.nonzero(clean[2] == MYO)
    noisy[2, ys[len(ys) // 2], xs[len(xs) // 2]] = BG  # hole inside the MYO (a single pixel of the wall)
    out = preclean(noisy)
    np.testing.assert_array_equal(out, clean)
    # A gap between LV and MYO (background ring) becomes MYO.
    gap = clean[0].copy()
    inner = (gap == LV) & ~(np.roll(gap == LV, 1, 0) & np.roll(gap == LV, -1, 0) & np.roll(gap == LV, 1, 1)
                            & np.roll(gap == LV, -1, 1))
    upper = inner & (np.arange(48)[:, None] < 14)
    gap[upper] = BG
    fixed = preclean(gap)
    assert np.all(fixed[upper] == MYO)


def test_preclean_closed_myocardium_keeps_its_cavity_and_drops_unknown_labels():
    frame = np.zeros((20, 20), np.uint8)
    frame[3:17, 3:17] = MYO
    frame[6:14, 6:14] = LV
    frame[9:11, 9:11] = BG   # hole in the LV, inside a closed MYO
    frame[17:19, 5:15] = LA
    out = preclean(frame)
    assert (out == LV).sum() == 64 and (out == MYO).sum() == 14 * 14 - 64
    no_la = preclean(frame, keep_atrium=False)
    assert not np.any(no_la == LA) and np.array_equal(no_la[:17], out[:17])


def test_component_helpers_work_per_frame():
    stack = np.zeros((2, 10, 10), bool)
    stack[0, 1:3, 1:3] = True
    stack[0, 5:9, 5:9] = True
    stack[1, 1:3, 1:3] = True
    stack[1, 4, 4] = True
    kept = largest_component(stack)
    assert kept[0].sum() == 16 and kept[1].sum() == 4 and kept[1, 1, 1]
    ring = np.zeros((1, 7, 7), bool)
    ring[0, 1:6, 1:6] = True
    ring[0, 2:5, 2:5] = False
    assert fill_holes(ring).sum() == 9
    border = np.zeros((1, 5, 5), bool)
    border[0, :, 2] = True
    assert fill_holes(border).sum() == 0


# --------------------------------------------------------------------------- correction with the known model
def image_thresholds(references, spacing=(1.0, 1.0)):
    rows = []
    for n, masks in enumerate(references):
        table = shape_attributes(masks, spacing)
        table.insert(0, "frame", np.arange(len(masks)))
        table.insert(0, "view", "4CH")
        table.insert(0, "patient_id", f"P{n}")
        rows.append(table)
    return derive_thresholds_table(pd.concat(rows), list(TEMPORAL_ATTRIBUTES), reference="test")


@pytest.fixture(scope="module")
def spiked_case():
    references = [sequence(clean_scales(20, phase)) for phase in (0.0, 0.3, 0.6, 0.9)]
    thresholds = image_thresholds(references)
    scales = clean_scales(20, 0.45)
    spiked = scales.copy()
    spiked[8] *= 1.12
    return thresholds, sequence(scales), sequence(spiked)


def constraint_for(model, references):
    mus = [model.encode(torch.nn.functional.one_hot(torch.from_numpy(r).long(), 4).permute(0, 3, 1, 2).float())[0]
           .numpy()[:, :1] for r in references]
    table = pd.concat([pd.DataFrame({"patient_id": f"P{n}", "view": "4CH", "frame": np.arange(len(m)),
                                     "mu_0": m[:, 0]}) for n, m in enumerate(mus)])
    derived = derive_thresholds_table(table, ["mu_0"], names=["lv_area"], space="latent", dims=[0],
                                      bounds=([0.5], [1.5]))
    return LatentConstraint.from_table(derived)


def test_correction_removes_a_spike_and_keeps_a_clean_sequence(spiked_case):
    thresholds, clean, spiked = spiked_case
    model = KnownModel()
    references = [sequence(clean_scales(20, phase)) for phase in (0.0, 0.3, 0.6, 0.9)]
    constraint = constraint_for(model, references)
    image = tuple(thresholds[c].tolist() if c == "name" else thresholds[c].to_numpy() for c in ("name", "lo", "hi", "tau"))
    results = correct_sequences(model, [clean, spiked], constraint=constraint, spacings=[(1.0, 1.0)] * 2, image=image)
    before = [r["check_before"]["sequence_inconsistent"] for r in results]
    after = [r["check_after"]["sequence_inconsistent"] for r in results]
    assert before == [False, True] and after == [False, False]
    assert np.flatnonzero(results[1]["check_before"]["frame_inconsistent"]).tolist()[:1] in ([7], [8])
    # The spike is gone: the corrected frame is much closer to the clean one than the spiked input.
    assert dice_scores(results[1]["masks"][8:9], clean[8:9])[0, 0] > dice_scores(spiked[8:9], clean[8:9])[0, 0] + 0.05
    # The constrained dim got the smallest feasible weight; the free one the snake weight.
    assert results[1]["weights"][1] == 50.0 and 0 < results[1]["weights"][0] <= 128
    z = results[1]["z"][:, :1]
    assert not temporal_consistency(z, constraint.lo, constraint.hi, constraint.tau)["sequence_inconsistent"]


def test_scope_inconsistent_leaves_consistent_sequences_untouched(spiked_case):
    thresholds, clean, spiked = spiked_case
    image = (thresholds["name"].tolist(), thresholds["lo"].to_numpy(), thresholds["hi"].to_numpy(),
             thresholds["tau"].to_numpy())
    results = correct_sequences(KnownModel(), [clean, spiked], constraint=None,
                                config=CorrectionConfig(scope="inconsistent"), spacings=[(1.0, 1.0)] * 2, image=image)
    assert [r["corrected"] for r in results] == [False, True]
    assert results[0]["masks"] is not None and np.array_equal(results[0]["masks"], clean)
    with pytest.raises(ValueError, match="image-space thresholds"):
        correct_sequences(KnownModel(), [clean], constraint=None, config=CorrectionConfig(scope="inconsistent"))


def test_three_class_model_keeps_the_input_atrium_where_free(spiked_case):
    _, clean, _ = spiked_case
    big = np.repeat(np.repeat(clean, 2, axis=1), 2, axis=2)  # native grid 96 -> model grid 48 and back
    model = KnownModel(n_classes=3)
    assert not np.any(model_input(big, model) == LA) and model_input(big, model).shape == (20, 48, 48)
    kept = correct_sequences(model, [big], constraint=None)[0]["masks"]
    dropped = correct_sequences(model, [big], constraint=None, config=CorrectionConfig(atrium="drop"))[0]["masks"]
    assert kept.shape == big.shape and not np.any(dropped == LA)
    assert np.all(kept[big == LA] != BG)                 # LA pixels stay (LA, or LV/MYO where those claim them)
    np.testing.assert_array_equal(kept[kept != LA], dropped[kept != LA])
    assert dice_scores(kept, big)[:, 2].mean() > 0.9


# --------------------------------------------------------------------------- thresholds tables
def test_thresholds_round_trip_published_file_and_exclusion(tmp_path):
    from pathlib import Path

    shipped = read_thresholds(Path(__file__).resolve().parents[1] / "resources" / "temporal_thresholds.tsv")
    pd.testing.assert_frame_equal(shipped, read_thresholds_roundtrip(published_thresholds(), tmp_path))
    t = np.arange(12, dtype=float)
    table = pd.DataFrame({"patient_id": "P", "view": "2CH", "frame": np.arange(12), "a": np.sin(t / 3),
                          "bad": False})
    table.loc[5, "a"] += 3.0
    with_spike = derive_thresholds_table(table, ["a"])
    table.loc[5, "bad"] = True
    without = derive_thresholds_table(table, ["a"], exclude="bad")
    assert without["tau"].iloc[0] < 0.2 * with_spike["tau"].iloc[0]
    assert without["hi"].iloc[0] < 1.01
    with pytest.raises(ValueError, match="do not vary"):
        derive_thresholds_table(table.assign(a=1.0), ["a"])


def read_thresholds_roundtrip(table, tmp_path):
    write_thresholds(table, tmp_path / "t.tsv")
    return read_thresholds(tmp_path / "t.tsv")
