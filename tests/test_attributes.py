"""Tests of the shape attributes (echolatent.shape.attributes)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks
from skimage.measure import find_contours, inertia_tensor

from echolatent.shape.attributes import ATTRIBUTES, MM_ATTRIBUTES, TEMPORAL_ATTRIBUTES, lv_landmarks, shape_attributes

_BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_anatomy.py"
_spec = importlib.util.spec_from_file_location("bench_anatomy", _BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def reference(m: np.ndarray) -> dict:
    """Direct implementation of the reference definitions with scipy/skimage, one map."""
    lv, myo = m == 1, m == 2
    out = dict(lv_area=lv.sum(), myo_area=myo.sum(), atrium_area=(m == 3).sum(), lv_orientation=math.nan,
               lv_base_width=math.nan, lv_length=math.nan, epi_center_x=math.nan, epi_center_y=math.nan)
    if (lv | myo).any():
        out["epi_center_y"], out["epi_center_x"] = ndimage.center_of_mass(lv | myo)
    if not lv.any():
        return out
    vec = np.linalg.eigh(inertia_tensor(lv))[1][:, -1]
    out["lv_orientation"] = math.degrees(math.atan2(vec[1], vec[0])) % 180.0 - 90.0
    if not myo.any():
        return out
    square = np.ones((3, 3), bool)
    y, x = np.nonzero(lv & ndimage.binary_dilation(myo, square) & ndimage.binary_dilation(~(lv | myo), square))
    corners = None
    if len(y) >= 2:
        if np.all(x == x.mean()):
            low = y > y.mean()
            i, j = y[low].argmin(), y[~low].argmax()
        else:
            low = x < x.mean()
            i, j = y[low].argmax(), y[~low].argmax()
        corners = np.array([y[low][i], x[low][i]]), np.array([y[~low][j], x[~low][j]])
    contour = find_contours(lv, level=0.9)[0]
    cc = contour - ndimage.center_of_mass(lv)
    rho, theta = np.sqrt(cc[:, 1] ** 2 + cc[:, 0] ** 2), np.arctan2(cc[:, 0], cc[:, 1])
    order = theta.argsort()
    theta, rho = theta[order], gaussian_filter1d(rho[order], len(contour) * 0.05)
    peaks, props = find_peaks(rho, height=0)
    up = theta[peaks] < 0
    apex = contour[order[peaks[up][props["peak_heights"][up].argmax()]]] if up.any() else None
    if corners is not None:
        out["lv_base_width"] = np.linalg.norm(corners[0] - corners[1])
        if apex is not None:
            out["lv_length"] = np.linalg.norm(apex - (corners[0] + corners[1]) / 2)
    return out


def assert_matches_reference(masks):
    df = shape_attributes(masks)
    for i, m in enumerate(masks):
        ref = reference(m)
        for name in ATTRIBUTES:
            a, b = float(df[name].iloc[i]), float(ref[name])
            if name in ("lv_orientation", "epi_center_x", "epi_center_y"):
                assert (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-9, (i, name, a, b)
            elif name in ("lv_base_width", "lv_length"):
                # the same landmarks; the reference's np.linalg.norm goes through BLAS's dot, whose
                # fused multiply-add (CPU dependent) may round the last bit of the distance
                # differently (seed 62 of the noise test: 27.487451682540524 vs ...527)
                assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=4e-16, abs_tol=0), \
                    (i, name, a, b)
            else:
                assert (math.isnan(a) and math.isnan(b)) or a == b, (i, name, a, b)


def ellipse(shape, centre, semi, angle_deg=0.0):
    """Filled ellipse whose first semi-axis makes ``angle_deg`` with the row axis (towards +columns)."""
    r, c = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    dr, dc = r - centre[0], c - centre[1]
    t = math.radians(angle_deg)
    u = dr * math.cos(t) + dc * math.sin(t)  # along the first axis
    v = -dr * math.sin(t) + dc * math.cos(t)
    return (u / semi[0]) ** 2 + (v / semi[1]) ** 2 <= 1


def bullet(size=160, L=70, b=24, t=7, base=120, cx=80, la=True):
    """Half-ellipse LV (base width 2b + 1 px, length L) in a MYO band open at the base, LA below."""
    r, c = np.mgrid[0:size, 0:size]
    u = base - r
    m = np.zeros((size, size), np.uint8)

    def half(height, width):
        return (u > 0) & (u <= height) & (np.abs(c - cx) <= width * np.sqrt(np.clip(1 - (u / height) ** 2, 0, None)))

    m[half(L + t, b + t)] = 2
    m[half(L, b)] = 1
    if la:
        m[(u <= 0) & (u > -30) & (np.abs(c - cx) <= b * np.sqrt(np.clip(1 - (u / 30) ** 2, 0, None)))] = 3
    return m


def test_columns_and_order():
    assert TEMPORAL_ATTRIBUTES == ("lv_area", "lv_base_width", "lv_length", "lv_orientation", "myo_area",
                                   "epi_center_x", "epi_center_y")
    df = shape_attributes(bullet())
    assert list(df.columns) == list(ATTRIBUTES)
    df = shape_attributes(np.stack([bullet(), bullet()]), spacing=(0.3, 0.2))
    assert list(df.columns) == list(ATTRIBUTES) + list(MM_ATTRIBUTES)
    assert len(df) == 2


def test_filled_ellipse_area_and_annulus():
    m = np.zeros((200, 200), np.uint8)
    m[ellipse(m.shape, (100, 100), (60, 25))] = 1
    a = shape_attributes(m)["lv_area"].iloc[0]
    assert a == pytest.approx(math.pi * 60 * 25, rel=0.01)
    m = np.zeros((200, 200), np.uint8)
    m[ellipse(m.shape, (100, 100), (50, 50))] = 2
    m[ellipse(m.shape, (100, 100), (35, 35))] = 1
    df = shape_attributes(m)
    assert df["myo_area"].iloc[0] == pytest.approx(math.pi * (50**2 - 35**2), rel=0.01)
    assert df["epi_center_x"].iloc[0] == pytest.approx(100) and df["epi_center_y"].iloc[0] == pytest.approx(100)


@pytest.mark.parametrize("angle", [-35.0, -10.0, 0.0, 10.0, 25.0])
def test_rotated_ellipse_orientation(angle):
    m = np.zeros((220, 220), np.uint8)
    m[ellipse(m.shape, (110, 110), (70, 25), angle)] = 1
    df = shape_attributes(m)
    assert df["lv_orientation"].iloc[0] == pytest.approx(angle, abs=0.5)
    assert df["lv_area"].iloc[0] == pytest.approx(math.pi * 70 * 25, rel=0.01)
    # sign invariance: the same shape flipped up-down has the opposite tilt, and an upright one 0
    assert shape_attributes(m[::-1])["lv_orientation"].iloc[0] == pytest.approx(-angle, abs=0.5)


def test_rotation_changes_orientation_by_the_rotation():
    base = shape_attributes(_rotated_bullet(0))["lv_orientation"].iloc[0]
    for angle in (-10, 10):
        m = _rotated_bullet(angle)
        assert shape_attributes(m)["lv_orientation"].iloc[0] - base == pytest.approx(angle, abs=1.0)
        assert shape_attributes(m)["lv_area"].iloc[0] == pytest.approx(shape_attributes(_rotated_bullet(0))[
            "lv_area"].iloc[0], rel=0.02)


def _rotated_bullet(angle, size=256, L=100.0, b=28.0, t=8.0):
    """Bullet LV + MYO + LA whose long axis is tilted by ``angle`` degrees (towards +columns, downwards)."""
    r, c = np.mgrid[0:size, 0:size].astype(float)
    th = math.radians(angle)
    dr, dc = r - 170, c - 128
    u = -(dr * math.cos(th) + dc * math.sin(th))  # height above the base, along the axis
    v = -dr * math.sin(th) + dc * math.cos(th)
    m = np.zeros((size, size), np.uint8)
    m[(u > 0) & ((u / (L + t)) ** 2 + (v / (b + t)) ** 2 <= 1)] = 2
    m[(u > 0) & ((u / L) ** 2 + (v / b) ** 2 <= 1)] = 1
    m[(u <= 0) & ((u / 35) ** 2 + (v / b) ** 2 <= 1)] = 3
    return m


def test_bullet_base_width_and_length():
    """By hand: the lowest LV row 119 (u = 1) spans |c - 80| <= floor(24 sqrt(1 - 1/70^2)) = 23, i.e.
    columns 57..103, so the basal corners are (119, 57) and (119, 103), 46 px apart. The top LV row
    is 50 (u = 70); the 0.9 iso-contour between rows 49 (0) and 50 (1) puts the apex at row 49.9, on
    the symmetry column 80: length 119 - 49.9 = 69.1 px."""
    m = bullet(L=70, b=24)
    df = shape_attributes(m)
    assert df["lv_base_width"].iloc[0] == pytest.approx(46, abs=1e-9)
    assert df["lv_length"].iloc[0] == pytest.approx(69.1, abs=1e-6)
    left, right, apex = lv_landmarks(m)
    np.testing.assert_allclose(left, [119, 57])
    np.testing.assert_allclose(right, [119, 103])
    np.testing.assert_allclose(apex, [49.9, 80], atol=1e-6)
    assert df["lv_orientation"].iloc[0] == pytest.approx(0, abs=1e-9)  # symmetric about column 80


def test_translation_moves_centres():
    m = bullet()
    a = shape_attributes(m)
    b = shape_attributes(np.roll(m, (7, -5), axis=(0, 1)))
    assert b["epi_center_x"].iloc[0] == pytest.approx(a["epi_center_x"].iloc[0] - 5)
    assert b["epi_center_y"].iloc[0] == pytest.approx(a["epi_center_y"].iloc[0] + 7)
    for name in ("lv_area", "lv_base_width", "lv_length", "lv_orientation", "myo_area", "atrium_area"):
        assert b[name].iloc[0] == pytest.approx(a[name].iloc[0], abs=1e-9)


def test_missing_structures():
    m = bullet()
    no_myo = np.where(m == 2, 0, m).astype(np.uint8)
    df = shape_attributes(no_myo)
    assert df["myo_area"].iloc[0] == 0
    assert np.isnan(df["lv_base_width"].iloc[0]) and np.isnan(df["lv_length"].iloc[0])
    # without MYO the LV alone gives the orientation (upright: 0) and the EPI centre: the centroid
    # of a half ellipse, 4 L / (3 pi) above its base (row 120), on the symmetry column 80
    assert df["lv_orientation"].iloc[0] == pytest.approx(0, abs=1e-9)
    assert df["epi_center_x"].iloc[0] == pytest.approx(80, abs=1e-9)
    assert df["epi_center_y"].iloc[0] == pytest.approx(120 - 4 * 70 / (3 * math.pi), abs=0.5)
    no_lv = np.where(m == 1, 0, m).astype(np.uint8)
    df = shape_attributes(no_lv)
    assert df["lv_area"].iloc[0] == 0
    assert df[["lv_base_width", "lv_length", "lv_orientation"]].iloc[0].isna().all()
    empty = shape_attributes(np.zeros((40, 40), np.uint8))
    assert empty[["lv_area", "myo_area", "atrium_area"]].iloc[0].eq(0).all()
    assert empty[["lv_base_width", "lv_length", "lv_orientation", "epi_center_x", "epi_center_y"]].iloc[0].isna().all()
    assert shape_attributes(np.where(m == 3, 0, m).astype(np.uint8))["atrium_area"].iloc[0] == 0


def test_mm_variants():
    m = bullet()
    px = shape_attributes(m)
    mm = shape_attributes(m, spacing=(0.5, 0.25))
    assert mm["lv_area_mm2"].iloc[0] == pytest.approx(px["lv_area"].iloc[0] * 0.125)
    assert mm["myo_area_mm2"].iloc[0] == pytest.approx(px["myo_area"].iloc[0] * 0.125)
    assert mm["atrium_area_mm2"].iloc[0] == pytest.approx(px["atrium_area"].iloc[0] * 0.125)
    assert mm["epi_center_x_mm"].iloc[0] == pytest.approx(px["epi_center_x"].iloc[0] * 0.25)
    assert mm["epi_center_y_mm"].iloc[0] == pytest.approx(px["epi_center_y"].iloc[0] * 0.5)
    # horizontal base, columns scaled by 0.25
    assert mm["lv_base_width_mm"].iloc[0] == pytest.approx(px["lv_base_width"].iloc[0] * 0.25)
    # vertical axis (apex on the base midpoint's column): 69.1 rows of 0.5 mm; base 46 columns of 0.25 mm
    assert mm["lv_length_mm"].iloc[0] == pytest.approx(69.1 * 0.5, abs=1e-6)
    assert mm["lv_base_width_mm"].iloc[0] == pytest.approx(46 * 0.25, abs=1e-9)
    per_map = shape_attributes(np.stack([m, m]), spacing=[(0.5, 0.25), (1.0, 1.0)])
    assert per_map["lv_area_mm2"].tolist() == pytest.approx([px["lv_area"].iloc[0] * 0.125, px["lv_area"].iloc[0]])


def test_bad_input():
    with pytest.raises(TypeError):
        shape_attributes(bullet().astype(np.float32))
    with pytest.raises(ValueError, match="unknown label"):
        shape_attributes(bullet() * 2)
    with pytest.raises(ValueError, match="spacing"):
        shape_attributes(bullet(), spacing=(0, 1))
    with pytest.raises(ValueError):
        shape_attributes(np.zeros((2, 2, 2, 2), np.uint8))


def test_matches_reference_on_realistic_mix():
    masks, _ = bench.make_masks(60, seed=21, defective_fraction=0.6)
    assert_matches_reference(masks)


def test_matches_reference_multi_contour_and_border_cases():
    m = bullet()
    island = m.copy()
    island[20:24, 10:14] = 1  # an LV island above the cavity: contour [0] is the island's
    hole = m.copy()
    hole[80:83, 78:81] = 0  # a hole in the cavity: a second contour
    diagonal = m.copy()
    diagonal[30, 60] = 1
    diagonal[29, 59] = 1  # diagonal-only pixels form their own (face-connected) contours
    touching = bench.make_heart(np.random.default_rng(3), 256, defect="edge")
    assert_matches_reference(np.stack([m, island, hole, diagonal]))
    assert_matches_reference(touching[None])


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from((None,) + bench.DEFECTS))
def test_matches_reference_hypothesis(seed, defect):
    assert_matches_reference(bench.make_heart(np.random.default_rng(seed), 128, defect=defect)[None])


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(-6, 6), st.integers(-6, 6))
def test_translation_invariance_hypothesis(seed, dr, dc):
    m = bench.make_heart(np.random.default_rng(seed), 128, defect=None)
    fg = np.argwhere(m)
    if fg.min(axis=0).min() + min(dr, dc) < 2 or fg.max(axis=0).max() + max(dr, dc) > 125:
        return
    a, b = shape_attributes(m), shape_attributes(np.roll(m, (dr, dc), axis=(0, 1)))
    pd.testing.assert_series_equal(a["epi_center_x"] + dc, b["epi_center_x"], check_exact=False, rtol=0, atol=1e-9)
    pd.testing.assert_series_equal(a["epi_center_y"] + dr, b["epi_center_y"], check_exact=False, rtol=0, atol=1e-9)
    for name in ("lv_area", "myo_area", "atrium_area", "lv_base_width", "lv_length", "lv_orientation"):
        pd.testing.assert_series_equal(a[name], b[name], check_exact=False, rtol=0, atol=1e-9)


def test_degenerate_maps():
    maps = (np.array([[1, 2, 1, 3]], np.uint8), np.array([[1], [2], [0]], np.uint8), np.full((5, 5), 1, np.uint8))
    for m, lv_area, myo_area in zip(maps, (2, 1, 25), (1, 1, 0)):
        df = shape_attributes(m)
        assert (df["lv_area"].iloc[0], df["myo_area"].iloc[0]) == (lv_area, myo_area)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_matches_reference_on_noise(seed):
    """Noise-like maps (islands, holes, diagonal contacts); skipped where the reference itself fails."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(28, 30)), rng.uniform(0.7, 2.0))
    m = np.digitize(field, np.quantile(field, np.sort(rng.uniform(0.1, 0.95, 3)))).astype(np.uint8)
    try:
        reference(m)
    except (IndexError, ValueError):
        return
    assert_matches_reference(m[None])


def test_tables_keyed_by_attribute_name_name_the_seven_temporal_attributes():
    """Data keyed by attribute name (published thresholds, CAMUS bounds, repair regions) follow TEMPORAL_ATTRIBUTES."""
    from echolatent.temporal.correction.regions import ATTRIBUTE_REGIONS
    from echolatent.temporal.metric import CAMUS_BOUNDS, TEMPORAL_THRESHOLDS

    for table in (TEMPORAL_THRESHOLDS, CAMUS_BOUNDS, ATTRIBUTE_REGIONS):
        assert tuple(table) == TEMPORAL_ATTRIBUTES
