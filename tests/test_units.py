"""Physical units (issue 12): per-patient native grids in the simulator, and a temporal metric whose
flags do not depend on the pixel spacing.

The truth is the simulator's analytic heart (mm) and its injected spikes, plus a hand-drawn
bullet. The same heart, boundary noise and spikes are rendered on two anisotropic grids (the
grid has its own random stream), one CAMUS-like (rows finer than columns), one with rows
coarser than columns (the pixel-space LV is stretched sideways).

Tolerances derived from the discretisation of each grid:

* attributes of the clean heart against the analytic ones (per frame):
  area of a region (mm^2) ``e = N_b^(2/3) * h * w`` with ``N_b`` its boundary pixels (the
  pixel count of a smooth region errs by O(N_b^(2/3)) pixels: lattice-point discrepancy of a
  smooth curve, van der Corput; not the O(N_b) of a worst case); a length between two
  landmarks ``e = 2 * diag`` (each landmark is a pixel or a contour point within one pixel
  step of its continuous position; ``diag = hypot(h, w)``), plus one pixel step for the
  corners, which are LV pixels inside the base; the orientation ``e = diag / L`` (one pixel
  diagonal across the LV length, in radians); the epicardial centre ``2 * e_A * R / A`` (an
  area error e_A at distance <= R from the centroid of a region of area A);
* deviations ``d_t = a_t - (a_{t-1} + a_{t+1}) / 2`` of the observed masks on the two grids:
  at most ``2 * (eps_A + eps_B)``, where ``eps_G`` is the grid's own error of ``d_t`` measured
  on the clean heart of the same sequence against the analytic ``d_t`` (twice: the observed
  boundary is the clean one moved by smooth noise, rasterised with errors of the same order).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from echolatent.shape.attributes import (MM_ATTRIBUTES, PHYSICAL_ATTRIBUTES, PHYSICAL_NAMES, TEMPORAL_ATTRIBUTES,
                                         shape_attributes, temporal_attribute)
from echolatent.simulate import ConfigError, SimulationConfig, simulate_patient
from echolatent.temporal.metric import consistency_deviation
from echolatent.temporal.thresholds import (by_attribute, derive_thresholds_table, image_attribute_names,
                                            published_thresholds)

NO_OTHER_DEFECTS = {"hole": 0.0, "island": 0.0, "myo_gap": 0.0, "lv_bg_contact": 0.0}
FOV = (180.0, 160.0)  # depth, width (mm) of the paired renders
GRID_A = (0.20, 0.35)  # rows finer than columns, as CAMUS
GRID_B = (0.45, 0.25)  # rows coarser than columns: the pixel-space LV is stretched sideways


def fixed(spacing, **changes) -> SimulationConfig:
    """Fixed-geometry config covering FOV at ``spacing`` (masks only)."""
    image = {"rows": math.ceil(FOV[0] / spacing[0]), "cols": math.ceil(FOV[1] / spacing[1]),
             "spacing": list(spacing), "images": False}
    data = {"n_patients": 20, "seed": 7, "frames": 16, "image": image, **changes}
    return SimulationConfig.from_dict(data)


def camus_like(**image) -> SimulationConfig:
    return SimulationConfig.from_dict({"n_patients": 12, "seed": 7, "frames": 16,
                                       "image": {"geometry": "camus-like", "images": False, **image}})


# ----------------------------------------------------------------------------- simulator geometry
def test_camus_like_grid_is_drawn_per_patient_seeded_and_recorded():
    config = camus_like(spacing_h_range_mm=[0.3, 0.4], spacing_w_range_mm=[0.5, 0.7])
    im = config.image
    seen = set()
    for index in range(4):
        sim = simulate_patient(config, index)
        t = sim.truth
        h, w, rows, cols = t["spacing_h_mm"], t["spacing_w_mm"], t["rows"], t["cols"]
        assert im.spacing_h_range_mm[0] <= h <= im.spacing_h_range_mm[1]
        assert im.spacing_w_range_mm[0] <= w <= im.spacing_w_range_mm[1]
        # the grid covers the drawn field of view, by less than one pixel more
        assert im.depth_range_mm[0] <= rows * h < im.depth_range_mm[1] + h
        assert im.width_range_mm[0] <= cols * w < im.width_range_mm[1] + w
        for v in sim.views.values():  # both views on the patient's grid
            assert v.spacing == (h, w) and v.mask.shape[1:] == (rows, cols) == v.clean.shape[1:]
        seen.add((h, w))
    assert len(seen) == 4
    # a patient is a function of (seed, index) only
    other = SimulationConfig.from_dict({**config.to_dict(), "n_patients": 3})
    a, b = simulate_patient(config, 2), simulate_patient(other, 2)
    assert a.truth == b.truth
    for view in a.views:
        np.testing.assert_array_equal(a.views[view].mask, b.views[view].mask)


def test_the_grid_has_its_own_stream_so_the_heart_does_not_depend_on_it():
    a = simulate_patient(camus_like(), 3)
    b = simulate_patient(fixed(GRID_B), 3)
    assert (a.truth["rows"], a.truth["cols"]) != (b.truth["rows"], b.truth["cols"])
    for key in ("edv_ml", "esv_ml", "la_volume_max_ml", "lv_length_ed_mm", "tilt_4ch_deg", "age"):
        assert a.truth[key] == b.truth[key]
    for view in a.views:
        fa, fb = a.views[view].frames, b.views[view].frames
        np.testing.assert_array_equal(fa["lv_area_mm2"], fb["lv_area_mm2"])
        np.testing.assert_array_equal(fa["defect_spike"], fb["defect_spike"])
    # fixed geometry: the configured grid is recorded
    assert (b.truth["spacing_h_mm"], b.truth["spacing_w_mm"]) == GRID_B
    assert (b.truth["rows"], b.truth["cols"]) == (400, 640)


@pytest.mark.parametrize("image,field", [
    ({"geometry": "camus"}, "image.geometry"),
    ({"spacing_h_range_mm": [0.3, 0.2]}, "image.spacing_h_range_mm"),
    ({"spacing_w_range_mm": [0.0, 0.3]}, "image.spacing_w_range_mm"),
    ({"depth_range_mm": [120.0, 160.0]}, "image.depth_range_mm"),
    ({"width_range_mm": [100.0, 130.0]}, "image.width_range_mm"),
    ({"spacing_h_range_mm": [0.05, 0.1], "depth_range_mm": [150.0, 300.0]}, "image.spacing_h_range_mm"),
])
def test_geometry_config_errors_name_the_field(image, field):
    with pytest.raises(ConfigError, match=field):
        SimulationConfig.from_dict({"image": {"geometry": "camus-like", **image}})


def test_default_geometry_is_fixed_and_round_trips():
    config = SimulationConfig()
    assert config.image.geometry == "fixed"
    camus = camus_like()
    assert SimulationConfig.from_dict(camus.to_dict()) == camus


# ----------------------------------------------------------------------------- attributes in mm
def _boundary_pixels(region: np.ndarray) -> np.ndarray:
    """Per frame, the pixels of ``region`` (T, H, W) with a 4-neighbour outside it."""
    inner = region.copy()
    inner[:, 1:] &= region[:, :-1]
    inner[:, :-1] &= region[:, 1:]
    inner[:, :, 1:] &= region[:, :, :-1]
    inner[:, :, :-1] &= region[:, :, 1:]
    return (region & ~inner).sum(axis=(1, 2))


def discretisation_errors(masks: np.ndarray, spacing, attributes: pd.DataFrame) -> dict:
    """Per-frame error bound of each physical attribute on this grid (see the module docstring)."""
    h, w = spacing
    diag = math.hypot(h, w)
    lv, myo = masks == 1, masks == 2
    epi = lv | myo
    area = lambda region: _boundary_pixels(region) ** (2.0 / 3.0) * h * w  # noqa: E731
    e_epi = area(epi)
    rows, cols = np.indices(masks.shape[1:])
    radius = np.array([np.max(np.hypot((rows[m] - rows[m].mean()) * h, (cols[m] - cols[m].mean()) * w))
                       for m in epi])
    centre = 2 * e_epi * radius / (epi.sum(axis=(1, 2)) * h * w)
    return {"lv_area_mm2": area(lv), "myo_area_mm2": area(myo), "lv_base_width_mm": np.full(len(masks), 2 * diag),
            "lv_length_mm": np.full(len(masks), 2 * diag),
            "lv_orientation_deg": np.degrees(diag / attributes["lv_length_mm"].to_numpy()),
            "epi_center_x_mm": centre, "epi_center_y_mm": centre}


@pytest.mark.parametrize("spacing", [GRID_A, GRID_B])
def test_physical_attributes_of_the_clean_heart_match_the_analytic_one(spacing):
    """On either anisotropic grid the mm attributes are the analytic heart's, within the discretisation."""
    pixel_orientation_error = 0.0
    for index in range(2):
        sim = simulate_patient(fixed(spacing), index)
        for view, v in sim.views.items():
            got = shape_attributes(v.clean, spacing)
            err = discretisation_errors(v.clean, spacing, got)
            f = v.frames
            truth = {"lv_area_mm2": f["lv_area_mm2"], "myo_area_mm2": f["myo_area_mm2"],
                     "lv_orientation_deg": f["lv_orientation_deg"], "epi_center_x_mm": f["epi_center_x"] * spacing[1],
                     "epi_center_y_mm": f["epi_center_y"] * spacing[0]}
            for name, value in truth.items():
                assert np.all(np.abs(got[name] - value) <= err[name]), (view, name)
            # landmark lengths: the corners are LV pixels next to the MYO and the base, so within
            # one pixel step inwards of the analytic corners on top of the bound
            for name in ("lv_length_mm", "lv_base_width_mm"):
                assert np.all(np.abs(got[name] - f[name]) <= err[name] + math.hypot(*spacing)), (view, name)
            pixel_orientation_error = max(pixel_orientation_error,
                                          np.max(np.abs(got["lv_orientation"] - f["lv_orientation_deg"])))
    # the pixel-space orientation of a tilted heart is not the heart's on an anisotropic grid
    assert pixel_orientation_error > 2.0


def bullet(h, w, *, L=60.0, b=15.0, tilt_deg=8.0, wall=6.0, fov=(130.0, 120.0)) -> np.ndarray:
    """A tilted bullet-shaped LV (half ellipse, semi-axes L x b mm, cut at its equator) in a MYO band."""
    tilt = math.radians(tilt_deg)
    y, x = np.indices((math.ceil(fov[0] / h), math.ceil(fov[1] / w))) * np.array([h, w])[:, None, None]
    s = (y - 20.0) * math.cos(tilt) + (x - 60.0) * math.sin(tilt)  # along the axis from the apex (20, 60) mm
    v = -(y - 20.0) * math.sin(tilt) + (x - 60.0) * math.cos(tilt)
    lv = (((s - L) / L) ** 2 + (v / b) ** 2 <= 1) & (s <= L)
    epi = (((s - L) / (L + wall)) ** 2 + (v / (b + wall)) ** 2 <= 1) & (s <= L)
    return np.where(lv, 1, np.where(epi, 2, 0)).astype(np.uint8)


def test_hand_built_tilted_bullet_on_a_stretched_grid():
    """A tilted bullet drawn analytically: length and orientation in mm where the pixel ones fail."""
    h, w = 0.5, 0.15  # rows coarse: the 60 x 30 mm LV is 120 x 200 px, wider than long in pixels
    got = shape_attributes(bullet(h, w), (h, w)).iloc[0]
    diag = math.hypot(h, w)
    assert got["lv_orientation_deg"] == pytest.approx(8.0, abs=math.degrees(diag / 60.0))
    assert got["lv_length_mm"] == pytest.approx(60.0, abs=2 * diag)
    assert got["lv_base_width_mm"] == pytest.approx(30.0, abs=3 * diag)
    assert got["lv_area_mm2"] == pytest.approx(math.pi * 60.0 * 15.0 / 2, rel=0.01)
    # in pixels the same LV is an ellipse lying on its side: pixel orientation and pixel-space apex fail
    assert abs(got["lv_orientation"] - 8.0) > 45.0
    # (no apex above the centre of the sideways pixel-space ellipse: NaN, or a side wall)
    assert np.isnan(got["lv_length"]) or min(abs(got["lv_length"] * h - 60.0), abs(got["lv_length"] * w - 60.0)) > 5.0
    # on an isotropic grid the physical and pixel definitions coincide
    iso = shape_attributes(bullet(0.3, 0.3), (0.3, 0.3)).iloc[0]
    assert iso["lv_length_mm"] == pytest.approx(iso["lv_length"] * 0.3, rel=1e-12)
    assert iso["lv_orientation_deg"] == pytest.approx(iso["lv_orientation"], abs=1e-9)
    assert iso["lv_orientation_deg"] == pytest.approx(8.0, abs=math.degrees(math.hypot(0.3, 0.3) / 60.0))


def test_physical_columns_and_names():
    assert PHYSICAL_ATTRIBUTES == tuple(PHYSICAL_NAMES[a] for a in TEMPORAL_ATTRIBUTES)
    assert set(PHYSICAL_ATTRIBUTES) <= set(MM_ATTRIBUTES)
    assert {temporal_attribute(c) for c in PHYSICAL_ATTRIBUTES} == set(TEMPORAL_ATTRIBUTES)
    assert temporal_attribute("lv_area") == "lv_area" and temporal_attribute("atrium_area_mm2") is None
    assert image_attribute_names() == list(PHYSICAL_ATTRIBUTES)
    assert image_attribute_names("pixels") == list(TEMPORAL_ATTRIBUTES)
    with pytest.raises(ValueError, match="units"):
        image_attribute_names("cm")
    # the published thresholds keep the CAMUS native-pixel convention
    published = published_thresholds()
    assert published["name"].tolist() == list(TEMPORAL_ATTRIBUTES)
    assert by_attribute(published)["tau"].to_dict() == published.set_index("name")["tau"].to_dict()
    physical = published.assign(name=list(PHYSICAL_ATTRIBUTES))
    assert by_attribute(physical).index.tolist() == list(TEMPORAL_ATTRIBUTES)
    with pytest.raises(ValueError, match="more than one"):
        by_attribute(pd.concat([published, physical]))


# ----------------------------------------------------------------------------- same heart, two grids
def analytic(v, spacing) -> pd.DataFrame:
    """The simulator's analytic values of the physical attributes of a view's clean heart, per frame."""
    f = v.frames
    return pd.DataFrame({"lv_area_mm2": f["lv_area_mm2"], "lv_base_width_mm": f["lv_base_width_mm"],
                         "lv_length_mm": f["lv_length_mm"], "lv_orientation_deg": f["lv_orientation_deg"],
                         "myo_area_mm2": f["myo_area_mm2"],
                         "epi_center_x_mm": np.asarray(f["epi_center_x"]) * spacing[1],
                         "epi_center_y_mm": np.asarray(f["epi_center_y"]) * spacing[0]})


@pytest.fixture(scope="module")
def renders():
    """Patients 0-3 (spikes only) on GRID_A and GRID_B: per grid, a list of sequences (same order)."""
    out = {}
    for spacing in (GRID_A, GRID_B):
        config = fixed(spacing, observation={"defect_rates": {"spike": 0.15, **NO_OTHER_DEFECTS}})
        out[spacing] = [(f"{sim.patient_id}/{view}", v) for sim in (simulate_patient(config, i) for i in range(4))
                        for view, v in sim.views.items()]
    return out


def _deviations(curves) -> np.ndarray:
    """``d_t`` in the attributes' own units (bounds 0 and 1)."""
    curves = np.asarray(curves, float)
    return consistency_deviation(curves, np.zeros(curves.shape[1]), np.ones(curves.shape[1]))


def deviation_error(v, spacing, names) -> np.ndarray:
    """Discretisation error of ``d_t`` on this grid: max over frames of |d(clean, measured) - d(analytic)|."""
    measured = shape_attributes(v.clean, spacing)[names]
    return np.max(np.abs(_deviations(measured) - _deviations(analytic(v, spacing)[names])), axis=0)


@pytest.fixture(scope="module")
def reference_thresholds():
    """Physical and pixel thresholds from the spike-free frames of a camus-like cohort (per-patient grids)."""
    config = camus_like(spacing_h_range_mm=[0.2, 0.35], spacing_w_range_mm=[0.3, 0.5])
    config = config.replace(observation={"defect_rates": {"spike": 0.15, **NO_OTHER_DEFECTS}})
    rows = []
    for index in range(8, 16):
        sim = simulate_patient(config, index)
        for view, v in sim.views.items():
            table = shape_attributes(v.mask, v.spacing)
            table.insert(0, "frame", np.arange(len(table)))
            rows.append(table.assign(patient_id=sim.patient_id, view=view,
                                     spike=np.asarray(v.frames["defect_spike"], bool)))
    table = pd.concat(rows, ignore_index=True)
    return {units: derive_thresholds_table(table, image_attribute_names(units), exclude="spike")
            for units in ("physical", "pixels")}


def test_same_heart_on_two_anisotropic_grids_gives_the_same_deviations_and_flags(renders, reference_thresholds):
    """Observed masks (boundary noise + spikes) of the same hearts on a CAMUS-like grid (rows fine) and
    on a grid with rows coarser than columns: same physical deviations within twice the grids' own
    discretisation error of ``d_t`` (measured on the clean heart against the analytic one; twice: the
    observed boundary is the clean one moved by smooth noise), hence the same flags wherever the
    deviation is not within that tolerance of the threshold; the injected spikes are flagged on both."""
    table = reference_thresholds["physical"]
    names = table["name"].tolist()
    lo, hi, tau = (table[c].to_numpy(float) for c in ("lo", "hi", "tau"))
    n_pairs = n_ambiguous = n_spikes = n_spikes_flagged = n_disagree = 0
    ambiguous_per_attribute = np.zeros(len(names))
    for (key, a), (_, b) in zip(renders[GRID_A], renders[GRID_B]):
        spikes = np.asarray(a.frames["defect_spike"], bool)
        np.testing.assert_array_equal(spikes, np.asarray(b.frames["defect_spike"], bool))  # the same spikes
        tol = 2 * (deviation_error(a, GRID_A, names) + deviation_error(b, GRID_B, names))  # mm, mm^2, degrees
        d_a = _deviations(shape_attributes(a.mask, GRID_A)[names])
        d_b = _deviations(shape_attributes(b.mask, GRID_B)[names])
        gap = np.abs(d_a - d_b)
        assert np.all(gap <= tol), (key, dict(zip(names, gap.max(axis=0))), dict(zip(names, tol)))
        # flags (normalised by the reference bounds) agree wherever |d| is not within tol of tau
        limit = tau * (hi - lo)
        ambiguous = (np.abs(np.abs(d_a) - limit) <= tol) | (np.abs(np.abs(d_b) - limit) <= tol)
        flag_a, flag_b = np.abs(d_a) > limit, np.abs(d_b) > limit
        assert np.array_equal(flag_a[~ambiguous], flag_b[~ambiguous]), key
        n_pairs += ambiguous.size
        n_ambiguous += ambiguous.sum()
        ambiguous_per_attribute += ambiguous.mean(axis=0) / len(renders[GRID_A])
        n_disagree += (flag_a.any(axis=1) != flag_b.any(axis=1)).sum()
        # the injected spikes (interior, isolated) are flagged on both grids
        interior = np.zeros_like(spikes)
        interior[1:-1] = spikes[1:-1] & ~spikes[:-2] & ~spikes[2:]
        n_spikes += interior.sum()
        n_spikes_flagged += (flag_a.any(axis=1) & flag_b.any(axis=1) & interior).sum()
    # the comparison is not vacuous: the base width (pixel corners) is the coarsest attribute
    assert n_ambiguous <= 0.15 * n_pairs and ambiguous_per_attribute.max() <= 0.6
    assert ambiguous_per_attribute[names.index("lv_area_mm2")] <= 0.05
    assert n_spikes >= 5 and n_spikes_flagged >= 0.8 * n_spikes
    assert n_disagree <= 2


def test_in_pixels_the_same_spike_is_a_grid_dependent_deviation(renders, reference_thresholds):
    """The old units: the LV-area deviation of the same spike scales with 1 / (h w) of the grid."""
    ratio = (GRID_B[0] * GRID_B[1]) / (GRID_A[0] * GRID_A[1])  # pixel area B / A
    table = reference_thresholds["pixels"].set_index("name")
    limit = table.loc["lv_area", "tau"] * (table.loc["lv_area", "hi"] - table.loc["lv_area", "lo"])
    found = []
    for (_, a), (_, b) in zip(renders[GRID_A], renders[GRID_B]):
        spikes = np.asarray(a.frames["defect_spike"], bool)
        d_a = _deviations(shape_attributes(a.mask)[["lv_area"]])[:, 0]
        d_b = _deviations(shape_attributes(b.mask)[["lv_area"]])[:, 0]
        big = spikes & (np.abs(d_a) > 2 * limit)
        found.extend(d_a[big] / d_b[big])
    assert len(found) >= 4
    assert np.median(found) == pytest.approx(ratio, rel=0.05)


# ----------------------------------------------------------------------------- workflow plumbing
def test_temporal_units_setting():
    from echolatent.temporal import workflow

    settings = workflow.settings({})
    assert settings["thresholds"]["units"] == "physical"
    assert workflow.threshold_names(settings) == list(PHYSICAL_ATTRIBUTES)
    pixels = workflow.settings({"temporal": {"thresholds": {"units": "pixels"}}})
    assert workflow.threshold_names(pixels) == list(TEMPORAL_ATTRIBUTES)
    with pytest.raises(ValueError, match=r"temporal\.thresholds\.units"):
        workflow.settings({"temporal": {"thresholds": {"units": "mm"}}})


def test_camus_like_store_through_ingestion_attributes_thresholds_and_detection(tmp_path):
    """Per-patient grids survive the store, ingestion and the attribute tables; thresholds in mm."""
    from echolatent.ingest.cohort import ingest_cohort
    from echolatent.io.tables import write_table
    from echolatent.simulate import write_cohort
    from echolatent.stages.ingest import open_source
    from echolatent.stages.shape import shard_anatomy_tables
    from echolatent.stages.temporal import detection_stage, image_thresholds_stage

    config = SimulationConfig.from_dict({
        "n_patients": 6, "seed": 4, "frames": 10,
        "image": {"geometry": "camus-like", "images": False, "spacing_h_range_mm": [0.5, 0.7],
                  "spacing_w_range_mm": [0.6, 0.9], "depth_range_mm": [150, 160], "width_range_mm": [120, 130]},
        "observation": {"defect_rates": {"spike": 0.2}}})
    write_cohort(config, tmp_path / "store")
    truth = pd.read_csv(tmp_path / "store" / "truth" / "patients.tsv", sep="\t")
    assert truth["spacing_h_mm"].nunique() == 6 and {"rows", "cols", "spacing_w_mm"} <= set(truth.columns)
    cohort = tmp_path / "cohort"
    sequences = ingest_cohort(open_source("store", tmp_path / "store"), cohort, image_size=32, n_shards=1, seed=1,
                              fractions={"train": 0.5, "val": 0.25, "test": 0.25},
                              truth_dir=tmp_path / "store" / "truth")
    merged = sequences.merge(truth, on="patient_id")
    np.testing.assert_allclose(merged["spacing_h"], merged["spacing_h_mm"], rtol=1e-6)
    np.testing.assert_array_equal(merged["height"], merged["rows"])
    _, attributes = shard_anatomy_tables(cohort / "shard-0.h5")
    assert set(PHYSICAL_ATTRIBUTES) <= set(attributes.columns)
    write_table(attributes, tmp_path / "attributes.parquet")
    frames = cohort / "truth" / "frames.tsv"
    image = image_thresholds_stage([tmp_path / "attributes.parquet"], cohort / "patients.tsv", reference="observed",
                                   splits=["train", "val", "test"], names=image_attribute_names(), frames=frames,
                                   out=tmp_path / "thresholds.tsv")
    assert image["name"].tolist() == list(PHYSICAL_ATTRIBUTES) and (image["tau"] > 0).all()
    # the TMI 2022 deviation: its clean windows are reference frames, consistent by construction (the
    # spike detector's wider windows reach the defects two frames away: tests/test_pair_detection.py)
    rates = detection_stage([tmp_path / "attributes.parquet"], frames, tmp_path / "thresholds.tsv",
                            detector="deviation")
    assert rates["detector"].drop_duplicates().tolist() == ["deviation", "spikes"]  # configured first
    rates = rates[rates["detector"] == "deviation"].set_index("frames")
    assert rates.loc["clean_window", "flagged"] == 0.0  # reference frames, consistent by construction
    assert rates.loc["spike", "n_frames"] > 0
    # Read shard by shard (the cohort's patients split over three tables), the rates are those
    # of the whole cohort checked at once, and each rate is the mean of the per-frame flags.
    from echolatent.temporal.evaluation import FRAME_CLASSES, detection_rates, injected_defects

    patients = sorted(attributes["patient_id"].unique())
    shards = []
    for k, part in enumerate((patients[:1], patients[1:4], patients[4:])):
        shards.append(tmp_path / f"attributes-{k}.parquet")
        write_table(attributes[attributes["patient_id"].isin(part)], shards[-1])
    whole = detection_stage([tmp_path / "attributes.parquet"], frames, tmp_path / "thresholds.tsv",
                            detector="deviation", patients=cohort / "patients.tsv")
    sharded = detection_stage(shards, frames, tmp_path / "thresholds.tsv", detector="deviation",
                              patients=cohort / "patients.tsv")
    pd.testing.assert_frame_equal(sharded, whole, check_exact=True)
    _, checked = detection_rates(attributes, injected_defects(frames, cycle="full"), image, cycle="full")
    expected = whole[(whole["detector"] == "deviation") & (whole["split"] == "all")].set_index("frames")
    for name in FRAME_CLASSES:
        members = checked if name == "all" else checked[checked[name].astype(bool)]
        assert expected.loc[name, "n_frames"] == len(members)
        for flag in ["flagged", *(f"flagged_{n}" for n in image["name"])]:
            truth = members[flag].mean() if len(members) else np.nan
            np.testing.assert_equal(expected.loc[name, flag], truth)
