"""The grid of the 12 anatomical criteria (issue 12, item 6).

A heart drawn in millimetres is rasterised at several native geometries (CAMUS-like
anisotropic 0.154 x 0.308 mm, isotropic 0.3 mm, coarse 0.75 mm, reversed anisotropy):
with its spacing, a valid heart passes all 12 criteria and a defective one fails at every
geometry, and the thresholded ratios (criteria 9-12) no longer depend on the acquisition
grid. The resampling to the canonical grid is nearest neighbour and keeps the labels.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from echolatent.shape.criteria import anatomical_metrics, criteria_validity
from echolatent.shape.criteria_definitions import CRITERIA, GRID_CRITERIA, THRESHOLDS
from echolatent.shape.grid import CRITERIA_GRID_MM, SMALL_OBJECT_MM2, criteria_grid, resample_to_grid

#: (rows, cols, spacing_h, spacing_w): CAMUS-like anisotropic, finer anisotropic, milder
#: anisotropy, isotropic fine, isotropic coarse (the default synthetic cohort), reversed.
GEOMETRIES = {
    "camus": (1000, 600, 0.154, 0.308),
    "camus-fine": (1200, 560, 0.14, 0.28),
    "aniso-1.5": (780, 520, 0.2, 0.3),
    "iso-0.3": (600, 600, 0.3, 0.3),
    "iso-0.75": (256, 256, 0.75, 0.75),
    "reversed": (500, 1000, 0.33, 0.165),
}


# --------------------------------------------------------------------------------------
# A heart in millimetres, rasterised on any grid
# --------------------------------------------------------------------------------------
def heart_mm(rows, cols, sh, sw, *, L=75.0, b=22.0, t=10.0, t_apex=9.0, la_b=20.0, la_len=45.0, apex=15.0):
    """Bullet LV (apex up) in a MYO band open at the base, LA below the base; lengths in mm.

    Pixel (i, j) is centred at ((i + 1/2) sh, (j + 1/2) sw). Returns the map and the pixel
    centres ``y (rows, 1)``, ``x (1, cols)`` with the axis column ``cx`` and base row ``base`` (mm).
    """
    y = (np.arange(rows) + 0.5)[:, None] * sh
    x = (np.arange(cols) + 0.5)[None, :] * sw
    cx = cols * sw / 2
    base = apex + t_apex + L
    u = base - y  # height above the base

    def bullet(height, width):
        return (u > 0) & (u <= height) & (np.abs(x - cx) <= width * np.sqrt(np.clip(1 - (u / height) ** 2, 0, None)))

    m = np.zeros((rows, cols), np.uint8)
    m[bullet(L + t_apex, b + t)] = 2
    m[bullet(L, b)] = 1
    m[(u <= 0) & (u > -la_len) & (np.abs(x - cx) <= la_b * np.sqrt(np.clip(1 - (u / la_len) ** 2, 0, None)))] = 3
    return m, (y, x, cx, base)


def with_defect(kind, geometry):
    rows, cols, sh, sw = geometry
    m, (y, x, cx, base) = heart_mm(rows, cols, sh, sw)
    mid = base - 35.0  # a row through the middle of the cavity
    if kind == "hole":  # a background disc of 1.5 mm radius in the cavity
        m[(y - mid) ** 2 + (x - cx) ** 2 <= 1.5 ** 2] = 0
    elif kind == "cut_wall":  # the lateral wall cut by a 2 mm band of background
        m[(np.abs(y - mid) <= 1.0) & (x > cx) & (m == 2)] = 0
    elif kind == "pinhole":  # one native pixel of background in the cavity
        i, j = int(mid / sh), int(cx / sw)
        assert m[i, j] == 1
        m[i, j] = 0
    elif kind == "la_detached":  # the LA pulled 3 mm away: the whole LV base faces background
        m[(m == 3) & (y < base + 3.0)] = 0
    else:
        raise ValueError(kind)
    return m


def failing(df) -> set[str]:
    valid = criteria_validity(df)
    return {name for name in CRITERIA if not valid[name].iloc[0]}


# --------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------
def test_resampling_is_nearest_neighbour_with_exact_values():
    m = np.array([[0, 1],
                  [2, 3],
                  [3, 2],
                  [1, 0]], np.uint8)
    # columns of 0.6 mm split in two, rows of 0.3 mm kept
    np.testing.assert_array_equal(resample_to_grid(m, (0.3, 0.6), 0.3),
                                  [[0, 0, 1, 1], [2, 2, 3, 3], [3, 3, 2, 2], [1, 1, 0, 0]])
    # rows of 0.3 mm merged in pairs: the output pixel centred at 0.3 mm (0.9 mm) reads row 1 (3)
    np.testing.assert_array_equal(resample_to_grid(m, (0.3, 0.6), 0.6), [[2, 3], [1, 0]])
    # a non-integer factor: 3 pixels of 0.5 mm -> 4 of 0.4 mm (centres 0.2, 0.6, 1.0, 1.4 mm)
    row = np.array([[1, 2, 3]], np.uint8)
    np.testing.assert_array_equal(resample_to_grid(row, (0.5, 0.5), 0.4), [[1, 2, 3, 3]])
    # already on the grid: unchanged (a copy)
    same = resample_to_grid(m, (0.3, 0.3), 0.3)
    np.testing.assert_array_equal(same, m)
    assert same is not m


def test_resampling_keeps_labels_field_of_view_and_batches():
    m, _ = heart_mm(*GEOMETRIES["camus"])
    out = resample_to_grid(m, (0.154, 0.308), 0.3)
    assert out.shape == (round(1000 * 0.154 / 0.3), round(600 * 0.308 / 0.3)) == (513, 616)
    assert out.dtype == m.dtype and set(np.unique(out)) == set(np.unique(m)) == {0, 1, 2, 3}
    # every output pixel copies the input pixel under its centre
    rng = np.random.default_rng(0)
    for i, j in rng.integers(0, [513, 616], size=(200, 2)):
        src = m[min(int((i + 0.5) * 0.3 / 0.154), 999), min(int((j + 0.5) * 0.3 / 0.308), 599)]
        assert out[i, j] == src
    # the area of each structure is kept to within the boundary pixels
    for k in (1, 2, 3):
        native_mm2 = np.count_nonzero(m == k) * 0.154 * 0.308
        assert np.count_nonzero(out == k) * 0.09 == pytest.approx(native_mm2, rel=0.02)
    batch = resample_to_grid(np.stack([m, m[::-1]]), (0.154, 0.308), 0.3)
    np.testing.assert_array_equal(batch[0], out)
    np.testing.assert_array_equal(batch[1], resample_to_grid(m[::-1], (0.154, 0.308), 0.3))


# --------------------------------------------------------------------------------------
# Valid and defective hearts at every geometry
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_valid_heart_passes_all_criteria_at_every_geometry(name):
    rows, cols, sh, sw = GEOMETRIES[name]
    m, _ = heart_mm(rows, cols, sh, sw)
    df = anatomical_metrics(m, (sh, sw))
    assert df.attrs["grid"] == CRITERIA_GRID_MM == 0.3
    assert failing(df) == set() and not df["anatomical_errors"].iloc[0]
    assert df[list(CRITERIA[:8])].iloc[0].eq(0).all()


@pytest.mark.parametrize("name", list(GEOMETRIES))
@pytest.mark.parametrize("kind, expected", [
    ("hole", {"holes_in_lv", "holes_in_epi"}),
    ("cut_wall", {"disconnectivity_in_myo", "erosion_ratio_before_myo_split"}),
    ("pinhole", {"holes_in_lv", "holes_in_epi"}),
    ("la_detached", {"frontier_ratio_between_lv_and_bg"}),
])
def test_defective_heart_fails_at_every_geometry(name, kind, expected):
    rows, cols, sh, sw = GEOMETRIES[name]
    df = anatomical_metrics(with_defect(kind, GEOMETRIES[name]), (sh, sw))
    assert df["anatomical_errors"].iloc[0]
    assert expected <= failing(df)
    if kind == "pinhole":  # criteria 1-8 count pixels of the native grid: one pixel, never lost
        assert df["holes_in_lv"].iloc[0] == 1


def test_sub_grid_defects_are_kept_by_the_native_topology():
    """A one-pixel hole or a one-row cut of the CAMUS grid vanishes on a coarser grid; criteria 1-8 see them."""
    rows, cols, sh, sw = GEOMETRIES["camus"]
    m, (y, x, cx, base) = heart_mm(rows, cols, sh, sw)
    sampled = set(np.floor((np.arange(513) + 0.5) * 0.3 / sh).astype(int))  # rows the 0.3 mm grid reads
    i = next(r for r in range(int((base - 35.0) / sh), rows) if r not in sampled)
    j = next(c for c in range(cols // 2 - 40, cols) if m[i, c] == 1)  # a cavity pixel
    cut, hole = m.copy(), m.copy()
    cut[i, (x[0] > cx) & (m[i] == 2)] = 0  # the lateral wall cut by one row of 0.154 mm
    hole[i, j] = 0
    for defect in (cut, hole):
        np.testing.assert_array_equal(resample_to_grid(defect, (sh, sw), 0.3), resample_to_grid(m, (sh, sw), 0.3))
    df = anatomical_metrics(np.stack([cut, hole]), (sh, sw))
    assert df["anatomical_errors"].all()
    assert df["disconnectivity_in_myo"].iloc[0] > 0 and df["holes_in_lv"].iloc[1] == 1


# --------------------------------------------------------------------------------------
# Why: the ratio criteria depend on the acquisition grid unless measured on a canonical one
# --------------------------------------------------------------------------------------
def _thin_lateral_wall(m, spacing, geo, mm):
    from scipy import ndimage as ndi

    y, x, cx, base = geo
    out = m.copy()
    dist = ndi.distance_transform_edt(m != 1, sampling=spacing)
    out[(np.abs(y - (base - 50.0)) <= 7.5) & (x > cx) & (m == 2) & (dist > mm)] = 0
    return out


def test_ratio_criteria_do_not_depend_on_the_acquisition_grid():
    values = {"auto": {}, "native": {}}
    for name, (rows, cols, sh, sw) in GEOMETRIES.items():
        m, _ = heart_mm(rows, cols, sh, sw)
        for grid in values:
            values[grid][name] = anatomical_metrics(m, (sh, sw), grid=grid).iloc[0]
    for crit in GRID_CRITERIA:
        canonical = [values["auto"][g][crit] for g in GEOMETRIES if g != "iso-0.75"]  # 0.75 mm: coarser input
        tolerance = 0.05 * max(canonical) if crit == "width_ratio_between_lv_and_myo" else 0.03
        assert max(canonical) - min(canonical) <= tolerance, (crit, canonical)
    erosion_native = [values["native"][g]["erosion_ratio_before_myo_split"] for g in GEOMETRIES]
    assert max(erosion_native) - min(erosion_native) > 0.1  # the reference's pixels: not invariant


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_plausible_thin_wall_passes_and_a_hairline_wall_fails(name):
    """In 12 mm walls, a 3 mm stretch (erosion ratio ~ 1.5 / 6 = 0.25) passes at every geometry; 1 mm (~0.08) fails.

    On CAMUS's native pixels the 3 mm wall fails: its thickness is counted in 0.308 mm columns
    and the apex's in 0.154 mm rows, which halves the erosion ratio (0.11 < 0.12).
    """
    rows, cols, sh, sw = GEOMETRIES[name]
    m, geo = heart_mm(rows, cols, sh, sw, t=12.0, t_apex=12.0)
    plausible = _thin_lateral_wall(m, (sh, sw), geo, 3.0)
    hairline = _thin_lateral_wall(m, (sh, sw), geo, 1.0)
    df = anatomical_metrics(np.stack([plausible, hairline]), (sh, sw))
    assert df["anatomical_errors"].tolist() == [False, True]
    assert df["erosion_ratio_before_myo_split"].iloc[1] < THRESHOLDS["erosion_ratio_before_myo_split"][0]
    if name == "camus":
        assert anatomical_metrics(plausible, (sh, sw), grid="native")["anatomical_errors"].iloc[0]


# --------------------------------------------------------------------------------------
# API
# --------------------------------------------------------------------------------------
def test_grid_argument_and_defaults():
    rows, cols, sh, sw = GEOMETRIES["camus"]
    m, _ = heart_mm(rows, cols, sh, sw)
    # without spacing, or with grid="native": the reference behaviour on the maps' pixels
    ref = anatomical_metrics(m)
    assert ref.attrs["grid"] == "native"
    pd.testing.assert_frame_equal(anatomical_metrics(m, (sh, sw), grid="native"), ref)
    # auto = the canonical grid when the spacing is known; numbers and numeric strings accepted
    auto = anatomical_metrics(m, (sh, sw))
    pd.testing.assert_frame_equal(anatomical_metrics(m, (sh, sw), grid=0.3), auto)
    pd.testing.assert_frame_equal(anatomical_metrics(m, (sh, sw), grid="0.3"), auto)
    assert criteria_grid("auto", None) == "native" and criteria_grid("auto", (1, 1)) == CRITERIA_GRID_MM
    assert criteria_grid(None, (1, 1)) == CRITERIA_GRID_MM and criteria_grid(0.5) == 0.5
    # criteria 1-8 come from the native grid: equal to the native measure for these gap-free maps
    pd.testing.assert_frame_equal(auto[list(CRITERIA[:8])], ref[list(CRITERIA[:8])])
    with pytest.raises(ValueError, match="needs the spacing"):
        anatomical_metrics(m, grid=0.3)
    for bad in ("fine", -0.3, 0, math.nan, True, [0.3]):
        with pytest.raises(ValueError, match="grid"):
            anatomical_metrics(m, (sh, sw), grid=bad)


def test_one_row_per_map_in_input_order_with_per_map_spacing():
    maps, spacings, singles = [], [], []
    for name in ("iso-0.75", "iso-0.3", "iso-0.75"):
        rows, cols, sh, sw = GEOMETRIES[name]
        m, _ = heart_mm(rows, cols, sh, sw)
        m = m[:256, :256] if name == "iso-0.3" else m  # same shape, another spacing
        maps.append(m)
        spacings.append((sh, sw))
    maps.append(with_defect("hole", GEOMETRIES["iso-0.75"]))
    spacings.append((0.75, 0.75))
    for m, sp in zip(maps, spacings):
        singles.append(anatomical_metrics(m, sp))
    batch = anatomical_metrics(np.stack(maps), np.array(spacings))
    assert len(batch) == 4
    pd.testing.assert_frame_equal(batch, pd.concat(singles, ignore_index=True), check_like=False)
    assert batch["anatomical_errors"].tolist()[3] and not batch["anatomical_errors"].iloc[0]
    empty = anatomical_metrics(np.zeros((0, 8, 8), np.uint8), (0.3, 0.3))
    assert len(empty) == 0 and list(empty.columns) == list(CRITERIA) + ["anatomical_errors"]


def test_small_object_size_is_physical():
    """A gap between LV and LA counts iff it exceeds 1.44 mm^2, whatever the pixel size."""
    assert SMALL_OBJECT_MM2 == pytest.approx(1.44)
    for sh, sw in ((0.3, 0.3), (0.2, 0.4)):
        s_px = SMALL_OBJECT_MM2 / (sh * sw)  # 16 and 18 pixels
        rows, cols = int(160 / sh), int(120 / sw)
        m, (y, x, cx, base) = heart_mm(rows, cols, sh, sw)
        i = int(np.flatnonzero((m == 3).any(axis=1))[0])  # first LA row, just below the LV
        j = int(cx / sw)
        for n_px, counted in ((int(s_px), False), (int(s_px) + 1, True)):
            g = m.copy()
            g[i, j - n_px // 2:j - n_px // 2 + n_px] = 0  # a one-row pocket on the mitral plane
            assert (g == 0).sum() - (m == 0).sum() == n_px
            gap = anatomical_metrics(g, (sh, sw))["holes_between_lv_and_atrium"].iloc[0]
            assert (gap == n_px) if counted else (gap == 0), (sh, sw, n_px, gap)


# --------------------------------------------------------------------------------------
# Command line and shard tables
# --------------------------------------------------------------------------------------
def _run_cli(argv):
    import argparse

    from echolatent.commands import anatomy as command

    parser = argparse.ArgumentParser(prog="echolatent")
    command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_grid_option(tmp_path):
    from echolatent.io.errors import InputError
    from echolatent.io.itk import write_sequence

    rows, cols, sh, sw = GEOMETRIES["camus"]
    m, geo = heart_mm(rows, cols, sh, sw, t=12.0, t_apex=12.0)
    masks = np.stack([_thin_lateral_wall(m, (sh, sw), geo, 3.0), _thin_lateral_wall(m, (sh, sw), geo, 1.0)])
    path = tmp_path / "seq_gt.nii.gz"
    write_sequence(path, masks, (sh, sw), compress=True)
    tables = {}
    for grid in ("auto", "native", "0.3"):
        out = tmp_path / f"{grid}.tsv"
        argv = ["anatomy", str(path), "--out", str(out)] + ([] if grid == "auto" else ["--grid", grid])
        assert _run_cli(argv) == 0
        tables[grid] = pd.read_csv(out, sep="\t")
    assert tables["auto"]["anatomical_errors"].tolist() == [False, True]
    assert tables["native"]["anatomical_errors"].tolist() == [True, True]  # CAMUS pixels: the 3 mm wall fails
    pd.testing.assert_frame_equal(tables["auto"], tables["0.3"])
    assert tables["auto"]["spacing_h"].iloc[0] == pytest.approx(sh)
    with pytest.raises(InputError, match="--grid"):
        _run_cli(["anatomy", str(path), "--out", str(tmp_path / "t.tsv"), "--grid", "fine"])


def test_explicit_small_object_size_matches_the_reference_definition():
    """The fast criteria with s = 16 px equal the straightforward baseline on a canvas where H W / 2**14 = 16."""
    import importlib.util
    from pathlib import Path

    from echolatent.shape.criteria_batch import criteria_batch

    spec = importlib.util.spec_from_file_location(
        "bench_anatomy", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_anatomy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(7)
    kinds = [d for d in bench.DEFECTS if d != "edge"]  # away from the border: crop invariant
    maps = np.stack([bench.make_heart(rng, 256, defect=kinds[k % len(kinds)] if k % 3 else None) for k in range(24)])
    fast = criteria_batch(maps, (1, 2, 3), 128, s=16.0)
    for i, m in enumerate(maps):
        ref = bench.baseline_metrics(np.pad(m, 128))  # 512 x 512: s = 16
        for name in CRITERIA:
            a, b = float(fast[name][i]), float(ref[name])
            assert (math.isnan(a) and math.isnan(b)) or a == b, (i, name, a, b)
