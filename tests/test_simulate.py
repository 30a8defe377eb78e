"""The synthetic cohort simulator: determinism, anatomy, defects, analytic truth, effects, exports."""

from __future__ import annotations

import hashlib
import json
import math

import h5py
import numpy as np
import pandas as pd
import pytest

from echolatent.io import camus
from echolatent.io.sources import CamusSource, StoreSource
from echolatent.simulate import (
    DEFECT_TYPES, ConfigError, SimulationConfig, simulate_patient, write_cohort,
)
from echolatent.simulate.dynamics import heart_state, simpson_biplane
from echolatent.simulate.population import draw_patient

#: Small grid for fast tests (1.5 mm pixels still pass the CAMUS-tuned anatomical thresholds).
SMALL = {"image": {"rows": 128, "cols": 128, "spacing": [1.5, 1.5]}}
NO_DEFECTS = {"defect_rates": {name: 0.0 for name in DEFECT_TYPES}}


def small_config(**changes) -> SimulationConfig:
    data = {"n_patients": 4, "seed": 3, **SMALL}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return SimulationConfig.from_dict(data)


def digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- config
def test_default_config_round_trips_and_is_documented_default():
    config = SimulationConfig()
    assert SimulationConfig.from_dict(config.to_dict()) == config
    assert config.n_patients == 60 and config.frames == 20 and config.views == ("2CH", "4CH")
    assert (config.image.rows, config.image.cols) == (256, 256)
    json.dumps(config.to_dict())  # serialisable for the manifest


@pytest.mark.parametrize("data,field", [
    ({"n_patients": -5}, "n_patients"),
    ({"frames": 3}, "frames"),
    ({"heart": {"ef": 1.2}}, "heart.ef"),
    ({"heart": {"ef": 0.0}}, "heart.ef"),
    ({"heart": {"edv_ml": -10}}, "heart.edv_ml"),
    ({"image": {"spacing": [-0.5, 0.5]}}, "image.spacing[0]"),
    ({"image": {"rows": 64}}, "image.rows"),
    ({"observation": {"defect_rates": {"hole": 1.5}}}, "observation.defect_rates.hole"),
    ({"observation": {"defect_rates": {"spike": -0.1}}}, "observation.defect_rates.spike"),
    ({"observation": {"defect_rates": {"hole": 0.6, "island": 0.6}}}, "observation.defect_rates"),
    ({"population": {"case_fraction": 2}}, "population.case_fraction"),
    ({"population": {"groups": ["a", "a"]}}, "population.groups"),
    ({"colour": "blue"}, "colour"),
    ({"observation": {"noise": 1}}, "noise"),
    ({"image": {"images": "yes"}}, "image.images"),
    ({"frames": 12.5}, "frames"),
])
def test_nonsense_config_is_a_clear_error(data, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        SimulationConfig.from_dict(data)


# ------------------------------------------------------------------------ determinism
def test_patient_is_a_pure_function_of_seed_and_index():
    config = small_config()
    a, b = simulate_patient(config, 2), simulate_patient(config, 2)
    only_4ch = simulate_patient(config.replace(views=["4CH"]), 2)
    for view in ("2CH", "4CH"):
        for name in ("mask", "clean", "image"):
            np.testing.assert_array_equal(getattr(a.views[view], name), getattr(b.views[view], name))
    for name in ("mask", "clean", "image"):
        np.testing.assert_array_equal(getattr(a.views["4CH"], name), getattr(only_4ch.views["4CH"], name))
    assert a.truth == b.truth
    other = simulate_patient(config.replace(seed=4), 2)
    assert not np.array_equal(other.views["4CH"].clean, a.views["4CH"].clean)


def test_cohort_files_are_bit_identical_whatever_the_number_of_processes(tmp_path):
    config = small_config(n_patients=3)
    write_cohort(config, tmp_path / "one", "store", n_jobs=1)
    write_cohort(config, tmp_path / "two", "store", n_jobs=2)
    assert digest(tmp_path / "one") == digest(tmp_path / "two")
    write_cohort(config, tmp_path / "nii", "camus-nifti", n_jobs=2)
    write_cohort(config, tmp_path / "nii2", "camus-nifti", n_jobs=1)
    assert digest(tmp_path / "nii") == digest(tmp_path / "nii2")


def test_a_crash_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    from echolatent.simulate import export

    calls = []

    def broken(self, sim):
        calls.append(sim.patient_id)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(self, sim)

    original = export.StoreWriter.add
    monkeypatch.setattr(export.StoreWriter, "add", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_cohort(small_config(n_patients=3), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileExistsError):
        (tmp_path / "exists").mkdir()
        write_cohort(small_config(n_patients=1), tmp_path / "exists")


# ---------------------------------------------------------------------------- anatomy
@pytest.fixture(scope="module")
def native_patients():
    """Three patients at the default native grid (256 x 256 at 0.75 mm), images off."""
    config = SimulationConfig.from_dict({"n_patients": 3, "seed": 5, "image": {"images": False},
                                         "observation": {"defect_rates": {"hole": 0.06, "island": 0.06,
                                                                           "myo_gap": 0.06, "lv_bg_contact": 0.06,
                                                                           "spike": 0.08}}})
    return [simulate_patient(config, i) for i in range(config.n_patients)]


def _stack(patients, name):
    return np.concatenate([getattr(v, name) for p in patients for v in p.views.values()])


def _defects(patients):
    return np.array([k for p in patients for v in p.views.values() for k in v.frames["defect"]])


def test_clean_masks_pass_all_anatomical_criteria(native_patients):
    from echolatent.shape.criteria import anatomical_metrics

    clean = _stack(native_patients, "clean")
    assert clean.dtype == np.uint8 and set(np.unique(clean)) == {0, 1, 2, 3}
    metrics = anatomical_metrics(clean)
    assert not metrics["anatomical_errors"].any(), metrics[metrics["anatomical_errors"]].T


def test_clean_masks_pass_on_a_coarse_anisotropic_grid():
    from echolatent.shape.criteria import anatomical_metrics

    config = small_config(image={"rows": 100, "cols": 84, "spacing": [1.6, 1.9], "images": False})
    sims = [simulate_patient(config, i) for i in range(4)]
    metrics = anatomical_metrics(_stack(sims, "clean"))
    assert not metrics["anatomical_errors"].any()


def test_defects_are_where_the_truth_says_and_nowhere_else(native_patients):
    from echolatent.shape.criteria import anatomical_metrics, criteria_validity

    observed = _stack(native_patients, "mask")
    kinds = _defects(native_patients)
    metrics = anatomical_metrics(observed)
    invalid = ~criteria_validity(metrics)
    anatomical = np.isin(kinds, ["", "spike_up", "spike_down"], invert=True)
    assert anatomical.sum() >= 8 and len(set(kinds) - {""}) >= 6
    # noise alone (and spikes) never break the anatomy
    assert not metrics["anatomical_errors"][~anatomical].any()
    # every injected anatomical defect triggers its own criterion
    expected = {
        "hole_lv": ["holes_in_lv"], "hole_myo": ["holes_in_epi"], "hole_la": ["holes_in_atrium"],
        "island_lv": ["disconnectivity_in_lv"], "island_myo": ["disconnectivity_in_myo"],
        "island_la": ["disconnectivity_in_atrium"], "myo_gap": ["disconnectivity_in_myo"],
        "la_detached": ["frontier_ratio_between_lv_and_bg"],
    }
    for kind, criteria in expected.items():
        rows = np.flatnonzero(kinds == kind)
        for row in rows:
            assert invalid.iloc[row][criteria].all(), (kind, row, metrics.iloc[row])
    frames = pd.concat([pd.DataFrame(v.frames) for p in native_patients for v in p.views.values()])
    flags = frames[[f"defect_{t}" for t in DEFECT_TYPES]].to_numpy()
    assert (flags.sum(axis=1) == (kinds != "")).all()
    assert (frames.loc[frames["defect"] == "la_detached", "defect_lv_bg_contact"] == 1).all()


def test_spikes_are_area_jumps_on_any_frame(native_patients):
    """Spikes may hit any frame (the ends too) and two consecutive frames; each spiked frame's LV
    area jumps by the recorded change, and a single spike stands out of its periodic neighbours
    (a full cycle is closed: frame T - 1 is frame 0 one beat later)."""
    n_spikes = n_single = 0
    for p in native_patients:
        for v in p.views.values():
            ratio = v.frames["observed_lv_area_px"] / v.frames["lv_area_px"]
            T = len(ratio)
            prev, nxt = np.r_[T - 2, np.arange(T - 1)], np.r_[np.arange(1, T), 1]
            jump = ratio - 0.5 * (ratio[prev] + ratio[nxt])
            spike = np.array([k.startswith("spike") for k in v.frames["defect"]])
            near = spike | spike[prev] | spike[nxt]
            assert np.all(np.abs(jump[~near]) < 0.04)
            for t in np.flatnonzero(spike):
                n_spikes += 1
                change = v.frames["spike_area_change"][t]
                assert 0.045 <= abs(change) <= 0.105
                assert np.sign(change) == (1 if v.frames["defect"][t] == "spike_up" else -1)
                assert v.frames["defect_spike"][t] == 1
                if not (spike[prev[t]] or spike[nxt[t]]):
                    n_single += 1
                    assert abs(jump[t]) > 0.04
            assert np.all(v.frames["spike_area_change"][~spike] == 0)
    assert n_spikes >= 2 and n_single >= 1


def test_defect_free_observations_at_zero_rates():
    config = small_config(observation=NO_DEFECTS)
    sim = simulate_patient(config, 0)
    for v in sim.views.values():
        assert all(k == "" for k in v.frames["defect"])
        assert not np.array_equal(v.mask, v.clean)  # boundary noise only
        agreement = (v.mask == v.clean).mean()
        assert agreement > 0.97


# ---------------------------------------------------------------------- analytic truth
def test_dynamics_and_analytic_indices():
    config = SimulationConfig()
    for index in range(5):
        patient = draw_patient(config, index, np.random.default_rng(index))
        tau = np.linspace(0.0, 1.0, 201)
        state = heart_state(patient, tau)
        assert np.isclose(state.volume.max(), patient.edv_ml) and np.argmax(state.volume) == 0
        es = int(np.argmin(state.volume))
        assert abs(tau[es] - patient.systolic_fraction) < 0.01
        assert np.isclose(state.volume.min(), patient.edv_ml * (1 - patient.ef))
        assert abs(int(np.argmax(state.la_volume)) - es) <= 1  # LA largest at LV end-systole
        assert np.all(state.h[es] > state.h[0])  # systolic thickening
        key = heart_state(patient, np.array([0.0, patient.systolic_fraction]))
        mid, basal = simpson_biplane(key, "midpoint"), simpson_biplane(key, "basal")
        np.testing.assert_allclose(mid, key.volume, rtol=2e-3)
        assert np.all(basal > key.volume * 1.015)


def _chord_lengths(mask, start, direction, normal, spacing, positions, half_length):
    """Length (mm) of ``mask`` along the line through ``start + p * direction``, along ``normal``."""
    steps = np.arange(-half_length, half_length, 0.05)
    pts = (start[None, None, :] + positions[:, None, None] * direction[None, None, :]
           + steps[None, :, None] * normal[None, None, :])
    rows = np.clip(np.round(pts[..., 0] / spacing[0]).astype(int), 0, mask.shape[0] - 1)
    cols = np.clip(np.round(pts[..., 1] / spacing[1]).astype(int), 0, mask.shape[1] - 1)
    return mask[rows, cols].sum(axis=1) * 0.05


def _biplane_volume(views, t_of, label, n_discs=40):
    """Biplane discs integrated on the rasterised clean masks along the analytic axis (mL)."""
    diameters = []
    for view in ("4CH", "2CH"):
        v = views[view]
        t = t_of(v)
        f = v.frames
        sh, sw = v.spacing
        apex = np.array([f["apex_row"][t] * sh, f["apex_col"][t] * sw])
        base = np.array([f["base_mid_row"][t] * sh, f["base_mid_col"][t] * sw])
        axis = (base - apex) / np.linalg.norm(base - apex)
        normal = np.array([-axis[1], axis[0]])
        if label == 1:
            start, length = apex, f["lv_length_mm"][t]
        else:
            start, length = base, f["la_length_mm"][t]
        positions = (np.arange(n_discs) + 0.5) / n_discs * length
        diameters.append(_chord_lengths(v.clean[t] == label, start, axis, normal, (sh, sw), positions, 60.0))
        height = length / n_discs
    return float(np.pi / 4 * (diameters[0] * diameters[1]).sum() * height / 1000.0)


def test_analytic_volumes_match_the_rasterised_geometry(native_patients):
    for p in native_patients:
        truth = p.truth
        edv = _biplane_volume(p.views, lambda v: v.ed, 1)
        esv = _biplane_volume(p.views, lambda v: v.es, 1)
        assert edv == pytest.approx(truth["edv_frame_4ch_ml"], rel=0.02)
        assert esv == pytest.approx(p.views["4CH"].frames["lv_volume_ml"][p.views["4CH"].es], rel=0.02)
        la = _biplane_volume(p.views, lambda v: v.es, 3)
        assert la == pytest.approx(p.views["4CH"].frames["la_volume_ml"][p.views["4CH"].es], rel=0.02)
        for v in p.views.values():
            pixel = v.spacing[0] * v.spacing[1]
            for name in ("lv", "myo", "la"):
                np.testing.assert_allclose(v.frames[f"{name}_area_px"] * pixel, v.frames[f"{name}_area_mm2"],
                                           rtol=0.02)
        ef = 100 * (edv - esv) / edv
        assert abs(ef - 100 * (1 - truth["esv_frame_4ch_ml"] / truth["edv_frame_4ch_ml"])) < 1.5


def test_ed_before_es_and_half_cycle():
    config = small_config(frames=16)
    for index in range(4):
        sim = simulate_patient(config, index)
        for v in sim.views.values():
            assert 0 <= v.ed < v.es < 15 and v.mask.shape[0] == 16
            volume = v.frames["lv_volume_ml"]
            assert volume[v.ed] == pytest.approx(volume[: v.es + 1].max(), rel=1e-3)
            assert volume[v.es] == pytest.approx(volume.min(), rel=1e-3)
            assert v.frames["is_ed"][v.ed] == 1 and v.frames["is_es"][v.es] == 1
            assert v.frames["in_half"].sum() == v.es - v.ed + 1


# ------------------------------------------------------------------------- population
def _ols_group(table, column):
    """Covariate-adjusted group coefficient (and its SE) of ``column``."""
    x = np.column_stack([np.ones(len(table)), table["is_case"], table["age"], table["sex"] == "F", table["bsa"]])
    y = table[column].to_numpy(float)
    beta, *_ = np.linalg.lstsq(x.astype(float), y, rcond=None)
    residual = y - x.astype(float) @ beta
    sigma2 = residual @ residual / (len(y) - x.shape[1])
    cov = sigma2 * np.linalg.inv(x.T.astype(float) @ x.astype(float))
    return beta[1], math.sqrt(cov[1, 1])


@pytest.fixture(scope="module")
def effect_cohort():
    """ED clean attributes of 100 patients with the planted effects and their counterfactuals."""
    base = {"n_patients": 100, "seed": 9, "frames": 8, "image": {"rows": 128, "cols": 128, "spacing": [1.5, 1.5],
                                                                  "images": False}}
    rows = []
    planted = SimulationConfig.from_dict(base)
    null = SimulationConfig.from_dict({**base, "effects": {name: 0.0 for name in
                                                           ("wall_thickness", "la_volume", "gls", "ef", "edv",
                                                            "e_a_ratio")}})
    for index in range(planted.n_patients):
        for tag, config in (("", planted), ("cf_", null)):
            sim = simulate_patient(config, index)
            v = sim.views["4CH"]
            row = rows[index] if tag else {**sim.truth}
            row[f"{tag}myo_area"] = np.log(v.frames["myo_area_px"][v.ed])
            row[f"{tag}la_area"] = np.log(v.frames["la_area_px"][v.es])
            row[f"{tag}lv_length"] = np.log(v.frames["lv_length_mm"][v.ed])
            row[f"{tag}lv_base_width"] = np.log(v.frames["lv_base_width_mm"][v.ed])
            row[f"{tag}lv_orientation"] = v.frames["lv_orientation_deg"][v.ed]
            row[f"{tag}lv_base_width_true_ed"] = sim.truth["lv_base_width_4ch_ed_mm"]
            row[f"{tag}clean_mask_ed"] = v.clean[v.ed]
            if not tag:
                rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("attribute,sign,visible", [("myo_area", 1, True), ("la_area", 1, True),
                                                    ("lv_length", -1, False)])
def test_planted_group_effects_have_the_right_sign_and_size(effect_cohort, attribute, sign, visible):
    table = effect_cohort
    # exact per-patient planted effect on this attribute, from the counterfactual heart
    shift = table[attribute] - table[f"cf_{attribute}"]
    expected = shift[table["is_case"] == 1].mean() - shift[table["is_case"] == 0].mean()
    estimate, se = _ols_group(table, attribute)
    assert np.sign(expected) == sign and abs(expected) > 0.03
    assert abs(estimate - expected) < 3 * se + 0.01
    if visible:  # the -5 % cavity effect is too small for 100 patients
        assert estimate * sign > 2 * se


@pytest.mark.parametrize("attribute", ["lv_base_width", "lv_orientation"])
def test_negative_controls_carry_no_effect(effect_cohort, attribute):
    table = effect_cohort
    # exactly no effect at the ED instant; the sampled ED frame may lie a fraction of a frame off
    np.testing.assert_allclose(table["lv_base_width_true_ed"], table["cf_lv_base_width_true_ed"], rtol=1e-12)
    np.testing.assert_allclose(table[attribute], table[f"cf_{attribute}"], rtol=5e-3, atol=1e-9)
    estimate, se = _ols_group(table, attribute)
    assert abs(estimate) < 3 * se


def test_group_effects_through_the_shape_attributes(effect_cohort):
    attributes = pytest.importorskip("echolatent.shape.attributes")
    table = effect_cohort
    masks = np.stack(table["clean_mask_ed"].to_list())
    cf = np.stack(table["cf_clean_mask_ed"].to_list())
    measured = attributes.shape_attributes(masks, (1.5, 1.5)).reset_index(drop=True)
    measured_cf = attributes.shape_attributes(cf, (1.5, 1.5)).reset_index(drop=True)
    table = table.assign(myo=np.log(measured["myo_area"]), cf_myo=np.log(measured_cf["myo_area"]),
                         base=np.log(measured["lv_base_width"]), orient=measured["lv_orientation"])
    shift = table["myo"] - table["cf_myo"]
    expected = shift[table["is_case"] == 1].mean() - shift[table["is_case"] == 0].mean()
    estimate, se = _ols_group(table, "myo")
    assert expected > 0.05 and abs(estimate - expected) < 3 * se + 0.01
    for column in ("base", "orient"):
        estimate, se = _ols_group(table, column)
        assert abs(estimate) < 3.5 * se


def test_groups_are_balanced_and_confounded(effect_cohort):
    table = effect_cohort
    assert 40 <= table["is_case"].sum() <= 60
    cases, controls = table[table["is_case"] == 1], table[table["is_case"] == 0]
    assert cases["age"].mean() > controls["age"].mean() + 5
    assert cases["bsa"].mean() > controls["bsa"].mean()
    assert cases["severity"].mean() > controls["severity"].mean() + 0.3
    assert set(table["group"]) == {"control", "hypertensive"}


# ---------------------------------------------------------------------------- exports
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim_exports")
    config = small_config(n_patients=3, frames=12)
    for fmt in ("store", "camus-nifti", "camus-mhd"):
        write_cohort(config, root / fmt, fmt)
    return root, config, [simulate_patient(config, i) for i in range(3)]


def test_store_layout(exported):
    root, config, sims = exported
    store = root / "store"
    assert {p.name for p in store.iterdir()} == {"patients.tsv", "sequences.h5", "truth", "manifest.json"}
    assert {p.name for p in (store / "truth").iterdir()} == {"clean_masks.h5", "patients.tsv", "frames.tsv"}
    patients = pd.read_csv(store / "patients.tsv", sep="\t")
    assert list(patients.columns) == ["patient_id", "group", "severity", "age", "sex", "bsa"]
    assert patients["patient_id"].tolist() == ["patient0001", "patient0002", "patient0003"]
    with h5py.File(store / "sequences.h5", "r") as h5, h5py.File(store / "truth/clean_masks.h5", "r") as clean:
        for sim in sims:
            for view, v in sim.views.items():
                group = h5[f"{sim.patient_id}/{view}"]
                assert group["mask"].chunks == (4, 128, 128) and group["mask"].compression == "gzip"
                assert group["image"].chunks == (4, 128, 128) and group["image"].dtype == np.uint8
                np.testing.assert_array_equal(group["mask"][()], v.mask)
                np.testing.assert_array_equal(clean[f"{sim.patient_id}/{view}/mask"][()], v.clean)
                assert (int(group.attrs["ed"]), int(group.attrs["es"])) == (v.ed, v.es)
                np.testing.assert_allclose(group.attrs["spacing"], [1.5, 1.5])
                assert group.attrs["frame_rate"] > 0 and group.attrs["image_quality"] in ("Good", "Medium", "Poor")
    truth = pd.read_csv(store / "truth/patients.tsv", sep="\t")
    for column in ("edv_ml", "esv_ml", "ef_pct", "la_volume_max_ml", "effect_wall_thickness",
                   "group_effect_wall_thickness", "negative_controls", "edv_simpson_mid_ml"):
        assert column in truth
    assert truth["negative_controls"].iloc[0] == "lv_orientation,lv_base_width"
    frames = pd.read_csv(store / "truth/frames.tsv", sep="\t")
    assert len(frames) == 3 * 2 * 12 and frames["defect"].notna().all()
    flags = frames[[f"defect_{t}" for t in DEFECT_TYPES]].sum(axis=1)
    assert ((flags == 1) == (frames["defect"] != "none")).all()
    for column in ("phase", "lv_volume_ml", "lv_area_px", "defect", "defect_spike", "epi_center_x"):
        assert column in frames
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["config"] == config.to_dict()
    assert manifest["numpy_version"] == np.__version__


@pytest.mark.parametrize("fmt,cycle", [("store", "full"), ("store", "half"), ("camus-nifti", "full"),
                                       ("camus-nifti", "half"), ("camus-mhd", "half")])
def test_exports_read_back_identically_through_ingestion(exported, fmt, cycle):
    root, _, sims = exported
    source = StoreSource(root / fmt, cycle=cycle) if fmt == "store" else CamusSource(root / fmt, cycle=cycle)
    assert source.patients()["patient_id"].tolist() == [s.patient_id for s in sims]
    for sim in sims:
        records = {r.view: r for r in source.read_patient(sim.patient_id)}
        for view, v in sim.views.items():
            r = records[view]
            cut = slice(None) if cycle == "full" else v.half
            np.testing.assert_array_equal(r.mask, v.mask[cut])
            np.testing.assert_array_equal(r.image, v.image[cut])
            np.testing.assert_allclose(r.spacing, v.spacing, rtol=1e-6)
            assert (r.ed, r.es) == ((v.ed, v.es) if cycle == "full" else (0, v.es - v.ed))
            if fmt != "store":
                assert r.info["image_quality"] == v.image_quality


def test_camus_files_and_cfg(exported):
    root, _, sims = exported
    sim = sims[0]
    v = sim.views["2CH"]
    nifti, mhd = root / "camus-nifti", root / "camus-mhd"
    cfg = camus.read_cfg(camus.cfg_file(nifti, sim.patient_id, "2CH", "camus-nifti"))
    assert list(cfg) == ["ED", "ES", "NbFrame", "Sex", "Age", "ImageQuality", "EF", "FrameRate", "ED_full", "ES_full"]
    assert (cfg["ED"], cfg["ES"], cfg["NbFrame"]) == (1, v.es - v.ed + 1, v.es - v.ed + 1)
    assert (cfg["ED_full"], cfg["ES_full"]) == (v.ed + 1, v.es + 1)
    assert cfg["EF"] == round(sim.truth["ef_pct"]) and cfg["Sex"] == sim.patient.sex
    cfg = camus.read_cfg(camus.cfg_file(mhd, sim.patient_id, "2CH", "camus-mhd"))
    assert list(cfg) == ["ED", "ES", "NbFrame", "Sex", "Age", "ImageQuality", "LVedv", "LVesv", "LVef"]
    from echolatent.io.itk import read_sequence

    for layout, root_ in (("camus-nifti", nifti), ("camus-mhd", mhd)):
        for kind, frame in (("ED", v.ed), ("ES", v.es)):
            for gt, array in ((True, v.mask), (False, v.image)):
                data, spacing = read_sequence(camus.sequence_file(root_, sim.patient_id, "2CH", kind, layout, gt=gt))
                np.testing.assert_array_equal(data[0], array[frame])
    raw = camus.sequence_file(mhd, sim.patient_id, "2CH", "half", "camus-mhd", gt=True).with_suffix(".raw")
    assert raw.stat().st_size == v.mask[v.half].size  # uncompressed .raw
    splits = camus.read_split_lists(nifti)
    assert sorted(splits) == [s.patient_id for s in sims]
    for fmt in ("camus-nifti", "camus-mhd"):
        assert (root / fmt / "patients.tsv").is_file() and (root / fmt / "truth" / "frames.tsv").is_file()


def test_cli(tmp_path, capsys):
    from echolatent.cli import main

    config = tmp_path / "sim.yaml"
    config.write_text("cohort:\n  synthetic:\n    frames: 10\n    image: {rows: 128, cols: 128, spacing: [1.5, 1.5]}\n")
    out = tmp_path / "cohort"
    assert main(["simulate", "--patients", "2", "--seed", "1", "--out", str(out), "--config", str(config),
                 "--no-images", "--quiet"]) == 0
    with h5py.File(out / "sequences.h5", "r") as h5:
        assert h5["patient0002/4CH/mask"].shape == (10, 128, 128) and "image" not in h5["patient0002/4CH"]
    assert main(["simulate", "--patients", "2", "--out", str(out), "--quiet"]) == 2  # exists
    assert main(["simulate", "--patients", "0", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "n_patients" in capsys.readouterr().err
