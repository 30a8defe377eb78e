"""Tests of the clinical indices (echolatent.shape.clinical) on rasterised analytic shapes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from echolatent.shape.clinical import (
    clinical_indices,
    ef,
    la_length,
    la_volume_biplane_area_length,
    lv_axis,
    lv_volume_biplane,
    lv_volume_single_plane,
)


def apical_cut(L, b, spacing, *, tilt=0.0, myo=6.0, la=(30.0, None), size_mm=(170.0, 130.0), binary=False):
    """Apical cut of a truncated prolate ellipsoid: an LV half-ellipse of semi-axes L (long) and b.

    Rasterised on a grid of pixel size ``spacing`` = (h, w) mm (pixel (r, c) centred at
    (r h, c w)), apex up, the base (mitral plane) at 70 % of the height, long axis tilted by
    ``tilt`` degrees; a MYO band of ``myo`` mm open at the base and an LA half-ellipse of
    semi-axes ``la`` = (length, half-width) below the base, unless ``binary``.
    """
    sh, sw = spacing
    H, W = int(size_mm[0] / sh), int(size_mm[1] / sw)
    y, x = np.mgrid[0:H, 0:W].astype(float)
    y, x = y * sh - 0.7 * size_mm[0], x * sw - 0.5 * size_mm[1]
    t = math.radians(tilt)
    u = -(y * math.cos(t) - x * math.sin(t))  # height above the base, along the axis
    v = y * math.sin(t) + x * math.cos(t)
    lv = (u >= 0) & ((u / L) ** 2 + (v / b) ** 2 <= 1)
    if binary:
        return lv
    m = np.zeros((H, W), np.uint8)
    m[(u >= 0) & ((u / (L + myo)) ** 2 + (v / (b + myo)) ** 2 <= 1)] = 2
    m[lv] = 1
    la_len, la_b = la[0], la[1] or b
    m[(u < 0) & (((u + la_len) / la_len) ** 2 + (v / la_b) ** 2 <= 1) & (m == 0)] = 3
    return m


def half_ellipsoid(L, b4, b2):
    return 2 * math.pi / 3 * b4 * b2 * L / 1000.0  # mL


SPACINGS = [((0.3, 0.3), (0.3, 0.3)), ((0.31, 0.154), (0.154, 0.308)), ((0.6, 0.45), (0.45, 0.6))]


@pytest.mark.parametrize("sp4, sp2", SPACINGS)
@pytest.mark.parametrize("tilt", [0.0, 9.0, -14.0])
def test_biplane_simpson_half_ellipsoid(sp4, sp2, tilt):
    L, b4, b2 = 80.0, 25.0, 21.0
    v = lv_volume_biplane(apical_cut(L, b4, sp4, tilt=tilt), sp4, apical_cut(L, b2, sp2, tilt=-tilt), sp2)
    assert v == pytest.approx(half_ellipsoid(L, b4, b2), rel=0.02)


def test_midpoint_vs_basal_rule_on_analytic_discs():
    """The sums behind the two rules: 0.66688 vs 0.69125 for a section area prop. to 1 - x**2."""
    k = np.arange(20)
    assert np.mean(1 - ((k + 0.5) / 20) ** 2) == pytest.approx(0.66688, abs=1e-5)
    assert np.mean(1 - (k / 20) ** 2) == pytest.approx(0.69125, abs=1e-5)
    m4, m2 = apical_cut(80, 25, (0.3, 0.3)), apical_cut(80, 21, (0.3, 0.3))
    mid = lv_volume_biplane(m4, (0.3, 0.3), m2, (0.3, 0.3))
    basal = lv_volume_biplane(m4, (0.3, 0.3), m2, (0.3, 0.3), rule="basal")
    # the basal-end rule over-estimates the half ellipsoid by 0.69125 / (2/3) = +3.7 %,
    # the midpoint rule by 0.66688 / (2/3) = +0.03 % (clinical.md), up to rasterisation
    truth = half_ellipsoid(80, 25, 21)
    assert mid == pytest.approx(truth * 0.66688 / (2 / 3), rel=0.015)
    assert basal == pytest.approx(truth * 0.69125 / (2 / 3), rel=0.015)
    assert basal / mid == pytest.approx(0.69125 / 0.66688, abs=0.006)
    with pytest.raises(ValueError, match="rule"):
        lv_volume_biplane(m4, (0.3, 0.3), m2, (0.3, 0.3), rule="apical")


def test_axis_geometry():
    m = apical_cut(80.0, 25.0, (0.3, 0.3))
    ax = lv_axis(m, (0.3, 0.3))
    assert ax.base_method == "corners"
    assert ax.length == pytest.approx(80.0, abs=0.6)
    assert ax.diameters.shape == (20,)
    f = (np.arange(20) + 0.5) / 20
    assert ax.diameters == pytest.approx(2 * 25 * np.sqrt(1 - f**2), abs=0.7)
    assert abs(ax.base[0, 0] - ax.base[1, 0]) < 0.35  # horizontal mitral plane
    assert ax.apex[0] < ax.base[0, 0] - 79  # apex above the base


def test_binary_mask_uses_straight_edge_base():
    sp = (0.3, 0.3)
    m4, m2 = apical_cut(80, 25, sp, binary=True), apical_cut(80, 21, sp, binary=True)
    assert lv_axis(m4, sp).base_method == "straight-edge"
    assert lv_volume_biplane(m4, sp, m2, sp) == pytest.approx(half_ellipsoid(80, 25, 21), rel=0.02)
    # 0/1 integer maps are label maps without MYO: same fallback
    assert lv_axis(m4.astype(np.uint8), sp).base_method == "straight-edge"


def test_single_plane():
    sp = (0.3, 0.25)
    v = lv_volume_single_plane(apical_cut(75.0, 23.0, sp, tilt=5), sp)
    assert v == pytest.approx(half_ellipsoid(75.0, 23.0, 23.0), rel=0.02)


def test_ef_within_one_point():
    sp = (0.3, 0.3)
    ed = (80.0, 25.0, 21.0)
    es = (72.0, 18.5, 15.5)
    edv = lv_volume_biplane(apical_cut(ed[0], ed[1], sp), sp, apical_cut(ed[0], ed[2], sp), sp)
    esv = lv_volume_biplane(apical_cut(es[0], es[1], sp), sp, apical_cut(es[0], es[2], sp), sp)
    truth = ef(half_ellipsoid(*ed), half_ellipsoid(*es))
    assert ef(edv, esv) == pytest.approx(truth, abs=1.0)
    assert ef(100.0, 40.0) == pytest.approx(60.0)
    assert np.isnan(ef(0.0, 10.0))
    assert ef(np.array([100.0, 50.0]), np.array([50.0, 50.0])).tolist() == [50.0, 0.0]


def test_area_length_on_known_ellipse():
    """An LA ellipse of semi-axes a (along the axis) and b: A = pi a b, L = 2 a, V = 4/3 pi a b1 b2."""
    a, b1, b2 = 22.0, 18.0, 15.0
    sp4, sp2 = (0.3, 0.3), (0.25, 0.35)
    m4 = apical_cut(80, 25, sp4, la=(a, b1))
    m2 = apical_cut(80, 21, sp2, la=(a, b2))
    assert la_length(m4, sp4) == pytest.approx(2 * a, abs=0.6)
    v = la_volume_biplane_area_length(m4, sp4, m2, sp2)
    assert v == pytest.approx(4 / 3 * math.pi * a * b1 * b2 / 1000.0, rel=0.02)
    # without LV the length is the LA's extent along its principal axis
    only_la = np.where(m4 == 3, 3, 0).astype(np.uint8)
    assert la_length(only_la, sp4) == pytest.approx(2 * a, abs=0.6)
    assert np.isnan(la_volume_biplane_area_length(np.where(m4 == 3, 0, m4), sp4, m2, sp2))


def test_missing_lv_gives_nan():
    sp = (0.3, 0.3)
    m = apical_cut(80, 25, sp)
    assert np.isnan(lv_volume_biplane(np.where(m == 1, 0, m).astype(np.uint8), sp, m, sp))
    assert np.isnan(lv_axis(np.zeros((50, 50), bool), sp).length)


def test_clinical_indices_table():
    sp4, sp2 = (0.3, 0.3), (0.3, 0.25)
    patients = {
        # LA at ES: half-axes 22 (4CH) / 25 (2CH) mm along the axis, 18 / 15 mm across
        "p1": {"4CH": {"ed": apical_cut(80, 25, sp4), "es": apical_cut(72, 18.5, sp4, la=(22.0, 18.0)),
                       "spacing": sp4},
               "2CH": {"ed": apical_cut(80, 21, sp2), "es": apical_cut(72, 15.5, sp2, la=(25.0, 15.0)),
                       "spacing": sp2}},
        # 2CH cut misses the apex: 15 % shorter -> foreshortened
        "p2": {"4CH": {"ed": apical_cut(80, 25, sp4), "es": apical_cut(72, 18.5, sp4), "spacing": sp4},
               "2CH": {"ed": apical_cut(68, 21, sp2), "es": apical_cut(61, 15.5, sp2), "spacing": sp2}},
        "p3": {"4CH": {"ed": apical_cut(80, 25, sp4), "es": apical_cut(72, 18.5, sp4), "spacing": sp4}},
    }
    df = clinical_indices(patients)
    assert df["patient_id"].tolist() == ["p1", "p2", "p3"]
    p1 = df.iloc[0]
    assert p1["method"] == "biplane" and p1["views"] == "2CH+4CH"
    assert p1["edv_ml"] == pytest.approx(half_ellipsoid(80, 25, 21), rel=0.02)
    assert p1["esv_ml"] == pytest.approx(half_ellipsoid(72, 18.5, 15.5), rel=0.02)
    assert p1["ef_pct"] == pytest.approx(ef(half_ellipsoid(80, 25, 21), half_ellipsoid(72, 18.5, 15.5)), abs=1.0)
    # biplane area-length with L the shorter LA length (2 x 22 mm):
    # 8 (pi 22 18)(pi 25 15) / (3 pi 44) = 4/3 pi 25 18 15 mm^3
    assert p1["la_volume_ml"] == pytest.approx(4 / 3 * math.pi * 25 * 18 * 15 / 1000.0, rel=0.02)
    assert not p1["foreshortening"]
    p2 = df.iloc[1]
    assert p2["foreshortening"]  # |80 - 68| = 15 % of 80 > 10 %
    assert (p2["lv_length_4ch_ed_mm"], p2["lv_length_2ch_ed_mm"]) == (pytest.approx(80, abs=0.6),
                                                                       pytest.approx(68, abs=0.6))
    # each view's diameters are taken at fractions of its own axis and h = max(L) / 20 = 80 / 20,
    # so the foreshortened 2CH still gives the 80-mm half ellipsoid's volume
    assert p2["edv_ml"] == pytest.approx(half_ellipsoid(80, 25, 21), rel=0.02)
    assert df.iloc[2]["method"] == "single-plane 4CH" and np.isnan(df.iloc[2]["la_volume_ml"])
    assert df.iloc[2]["edv_ml"] == pytest.approx(half_ellipsoid(80, 25, 25), rel=0.02)
    # the record layout gives the same table
    records = [{"patient_id": pid, "view": view, **rec} for pid, views in patients.items() for view, rec in
               views.items()]
    pd.testing.assert_frame_equal(clinical_indices(records), df)


def test_bad_input():
    m = apical_cut(80, 25, (0.3, 0.3))
    with pytest.raises(ValueError, match="spacing"):
        lv_volume_biplane(m, None, m, (0.3, 0.3))
    with pytest.raises(ValueError, match="positive"):
        lv_volume_biplane(m, (0.3, 0.0), m, (0.3, 0.3))
    with pytest.raises(TypeError, match="dtype"):
        lv_axis(m.astype(float), (0.3, 0.3))
    with pytest.raises(ValueError, match="2-D"):
        lv_axis(m[None], (0.3, 0.3))
    with pytest.raises(ValueError, match="labels 0-3"):
        lv_axis(m * 3, (0.3, 0.3))
    with pytest.raises(ValueError, match="view"):
        clinical_indices({"p": {"3CH": {"ed": m, "es": m, "spacing": (0.3, 0.3)}}})
    with pytest.raises(ValueError, match="missing"):
        clinical_indices({"p": {"4CH": {"ed": m, "spacing": (0.3, 0.3)}}})
