"""One synthetic patient end to end, and the streaming cohort writer.

:func:`simulate_patient` is a pure function of ``(config, index)``: its randomness comes
from ``SeedSequence(config.seed, spawn_key=(index,))``, split into a population stream, a
views stream (one child per view in the fixed order of :data:`echolatent.VIEWS`, each split
again into pose / noise / defects / imaging streams) and a grid stream (the patient's native
grid with ``image.geometry: camus-like``, :func:`~echolatent.simulate.geometry.native_grid`).
A patient never depends on the others, on the number of processes, or on the views
selected; its heart, pose, boundary noise, spikes and the defect type of each frame do not
depend on its grid (the first two streams are those of a fixed-geometry cohort, whose masks
and images are unchanged by the grid stream).

:func:`write_cohort` simulates patients in index order (optionally in worker processes,
with a bounded window of patients in flight) and streams them to the writer of the
chosen format in ``out_dir``; see :mod:`echolatent.simulate.export`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from echolatent import VIEWS
from echolatent.simulate import bmode
from echolatent.simulate.config import DEFECT_TYPES, NEGATIVE_CONTROLS, SimulationConfig
from echolatent.simulate.dynamics import HeartState, heart_state, la_measures, sample_frames, simpson_biplane
from echolatent.simulate.geometry import (ANGLES, ViewGeometry, _ray_line, bbox, inside, native_grid, patient_image,
                                          window)
from echolatent.simulate.observation import apply_defect, contour_noise, draw_defects, spike_scale, spike_targets
from echolatent.simulate.population import EFFECT_KINDS, Patient, draw_patient, patient_seed_sequence

#: Gap kept between the LA and the mitral line tables so LV/MYO and LA never share a pixel (mm).
LINE_EPS = 0.01
#: Margin kept between the clean heart and the image border when posing a view (mm).
FIT_MARGIN_MM = 6.0
#: The observed wall keeps at least this fraction of its clean thickness.
MIN_WALL_FRACTION = 0.8
#: Distance from the mitral line over which the boundary noise fades out (mm).
TAPER_MM = 6.0


@dataclass
class ViewSimulation:
    """One simulated full-cycle sequence."""

    view: str
    mask: np.ndarray  #: observed labels (T, H, W) uint8: noise and defects
    clean: np.ndarray  #: clean labels (T, H, W) uint8
    image: np.ndarray | None  #: B-mode images (T, H, W) uint8
    spacing: tuple[float, float]
    ed: int
    es: int
    frame_rate: float
    image_quality: str
    frames: dict = field(default_factory=dict)  #: per-frame truth columns (arrays or lists of length T)
    info: dict = field(default_factory=dict)  #: per-view truth scalars

    @property
    def half(self) -> slice:
        """Frames ED..ES (inclusive) of the full cycle."""
        return slice(self.ed, self.es + 1)


@dataclass
class PatientSimulation:
    """A simulated patient: covariates, both views and the truth."""

    patient: Patient
    views: dict
    truth: dict

    @property
    def patient_id(self) -> str:
        return self.patient.patient_id

    def covariates(self) -> dict:
        """What an analysis may see: ``patient_id, group, severity, age, sex, bsa``."""
        p = self.patient
        return {"patient_id": p.patient_id, "group": p.group, "severity": round(p.severity, 6),
                "age": round(p.age, 2), "sex": p.sex, "bsa": round(p.bsa, 4)}


# ------------------------------------------------------------------- one patient
def _streams(seed_sequence: np.random.SeedSequence, n: int, observer: int = 0):
    """pose, noise, defects, imaging generators of a view; ``observer`` re-keys noise and defects."""
    children = seed_sequence.spawn(n)
    if observer:
        children[1] = np.random.SeedSequence(children[1].entropy, spawn_key=children[1].spawn_key + (observer,))
        children[2] = np.random.SeedSequence(children[2].entropy, spawn_key=children[2].spawn_key + (observer,))
    return [np.random.default_rng(s) for s in children]


def simulate_patient(config: SimulationConfig, index: int, observer: int = 0) -> PatientSimulation:
    """Simulate patient ``index`` (0-based; id ``patient{index + 1:04d}``) of the cohort of ``config``.

    ``observer > 0`` gives the same heart, pose and images seen by another, independent
    observer: only the boundary noise and the defects of the observed masks are redrawn
    (for inter-observer studies). The cohort files use observer 0.
    """
    if index < 0:
        raise ValueError(f"patient index must be >= 0, got {index}")
    if observer < 0:
        raise ValueError(f"observer must be >= 0, got {observer}")
    root = patient_seed_sequence(config.seed, index)
    population_ss, views_ss, grid_ss = root.spawn(3)  # children 0 and 1 as before the grid draw existed
    shape, spacing = native_grid(config.image, np.random.default_rng(grid_ss))
    image = patient_image(config.image, shape, spacing)
    patient = draw_patient(config, index, np.random.default_rng(population_ss))
    per_view = views_ss.spawn(len(VIEWS))
    streams = {view: _streams(per_view[VIEWS.index(view)], 4, observer) for view in config.views}
    poses = {view: _pose(config, streams[view][0]) for view in config.views}
    samplings = {view: sample_frames(config.frames, poses[view][0], patient.systolic_fraction, patient.cycle_s,
                                  patient.e_a_ratio)
                 for view in config.views}
    # One solve of the heart for every phase needed: the frames of each view, then ED, ES and
    # the end of the atrial contraction (smallest LA) for the truth table.
    ts = patient.systolic_fraction
    key = np.array([0.0, ts, ts + 0.94 * (1.0 - ts)])
    state = heart_state(patient, np.concatenate([samplings[v].tau for v in config.views] + [key]))
    views, offset = {}, 0
    for view in config.views:
        n = config.frames
        views[view] = _simulate_view(config, patient, view, streams[view], poses[view], samplings[view],
                                     state.subset(slice(offset, offset + n)), image)
        offset += n
    truth = _patient_truth(config, patient, views, state.subset(slice(offset, offset + 3)), image)
    return PatientSimulation(patient=patient, views=views, truth=truth)


def _pose(config: SimulationConfig, rng: np.random.Generator):
    ps = config.pose
    u = rng.random(3)
    z = rng.standard_normal(2)
    start = -config.start_phase_max * u[0]
    tilt = math.radians(float(np.clip(ps.tilt_sd_deg * z[0], -ps.tilt_max_deg, ps.tilt_max_deg)))
    depth = ps.apex_depth_mm[0] + (ps.apex_depth_mm[1] - ps.apex_depth_mm[0]) * u[1]
    lateral = ps.lateral_offset_sd_mm * float(np.clip(z[1], -2.5, 2.5))
    return start, tilt, depth, lateral


def _fit(geometry: ViewGeometry, spacing, shape) -> tuple[tuple[float, float], bool]:
    """Apex position moving the heart inside the image (with margins) when needed.

    Uses the bounding boxes of the untruncated epicardial and LA ellipses (conservative).
    """
    d, nrm = geometry.axis, geometry.normal
    boxes = []
    for centre_s, a, b in ((geometry.L, geometry.L + geometry.ha, geometry.b + geometry.h),
                           (geometry.lax + geometry.la_c, geometry.la_A, geometry.la_W)):
        cy, cx = geometry.point(centre_s).T
        hy = np.sqrt((a * d[0]) ** 2 + (b * nrm[0]) ** 2)
        hx = np.sqrt((a * d[1]) ** 2 + (b * nrm[1]) ** 2)
        boxes.append((cy - hy, cy + hy, cx - hx, cx + hx))
    y0 = min(float(np.min(bx[0])) for bx in boxes)
    y1 = max(float(np.max(bx[1])) for bx in boxes)
    x0 = min(float(np.min(bx[2])) for bx in boxes)
    x1 = max(float(np.max(bx[3])) for bx in boxes)
    y0 = max(y0, geometry.apex[0] - float(np.max(geometry.ha)))  # the epicardial apex is the top
    height, width = (shape[0] - 1) * spacing[0], (shape[1] - 1) * spacing[1]
    dy = dx = 0.0
    if y1 > height - FIT_MARGIN_MM:
        dy = (height - FIT_MARGIN_MM) - y1
    if y0 + dy < FIT_MARGIN_MM:
        dy = FIT_MARGIN_MM - y0
    if x1 > width - FIT_MARGIN_MM:
        dx = (width - FIT_MARGIN_MM) - x1
    if x0 + dx < FIT_MARGIN_MM:
        dx = FIT_MARGIN_MM - x0
    fits = (y1 - y0 <= height - 2 * FIT_MARGIN_MM) and (x1 - x0 <= width - 2 * FIT_MARGIN_MM)
    return (geometry.apex[0] + dy, geometry.apex[1] + dx), bool(fits)


def _simulate_view(config: SimulationConfig, patient: Patient, view: str, streams, pose, sampling, state,
                   image=None):
    """One view; ``image``: the patient's image config on its native grid (default ``config.image``)."""
    im, ob = (config.image if image is None else image), config.observation
    shape = (im.rows, im.cols)
    spacing = (float(im.spacing[0]), float(im.spacing[1]))
    _, r_noise, r_defect, r_image = streams
    start, tilt, depth, lateral = pose
    n = config.frames

    apex = (depth, (im.cols - 1) / 2.0 * spacing[1] + lateral)
    geometry = ViewGeometry.from_state(view, state, tilt, apex)
    apex, fits = _fit(geometry, spacing, shape)
    geometry = ViewGeometry.from_state(view, state, tilt, apex)
    c_lv, c_la = geometry.centres(spacing)
    tab = geometry.tables(spacing, (c_lv, c_la))

    # ---- clean tables
    lv_line, la_line = tab["lv_line"], _shift_line(geometry, c_la, spacing, LINE_EPS, above=False)
    R_lv = np.minimum(tab["lv_ell"], lv_line)
    R_epi = np.minimum(tab["epi_ell"], lv_line)
    R_la = np.minimum(tab["la_ell"], la_line)

    # ---- observed tables: boundary noise
    radii = [float(np.mean(R_lv[np.isfinite(R_lv)])), float(np.mean(R_epi[np.isfinite(R_epi)])),
             float(np.mean(R_la[np.isfinite(R_la)]))]
    d_endo, d_epi, d_la, d_mitral = contour_noise(r_noise, n, ob, radii)
    # The mitral hinge points are landmarks: the noise tapers to zero within TAPER_MM of the
    # mitral line, so the annulus of the LA stays inside the LV base (criteria 9 and 10).
    cos_psi = np.cos(ANGLES[None, :] - geometry.tilt)
    s_lv0, _ = geometry.local(c_lv[0] * spacing[0], c_lv[1] * spacing[1])
    s_la0, _ = geometry.local(c_la[0] * spacing[0], c_la[1] * spacing[1])
    lax = geometry.lax[:, None]
    gap_lv = lax - (s_lv0 + tab["lv_ell"] * cos_psi)
    # The LV base may not widen beyond the atrium's annulus (criterion 9): slower taper for growth.
    taper_lv = np.where(d_endo > 0, np.clip((gap_lv - 2.0) / (2.0 * TAPER_MM), 0.0, 1.0),
                        np.clip(gap_lv / TAPER_MM, 0.0, 1.0))
    taper_epi = np.clip((lax - (s_lv0 + tab["epi_ell"] * cos_psi)) / TAPER_MM, 0.0, 1.0)
    # The LA may grow freely (the cone and the line clip it) but only shrinks away from the annulus.
    taper_la = np.clip(((s_la0 + tab["la_ell"] * cos_psi) - lax) / (2.5 * TAPER_MM), 0.0, 1.0)
    d_la = np.where(d_la > 0, d_la, d_la * taper_la)
    thickness = tab["epi_ell"] - tab["lv_ell"]
    lv_ell_o = np.maximum(tab["lv_ell"] + d_endo * taper_lv, 0.3 * tab["lv_ell"])
    epi_ell_o = np.maximum(tab["epi_ell"] + d_epi * taper_epi, lv_ell_o + MIN_WALL_FRACTION * thickness)
    la_ell_o = np.maximum(tab["la_ell"] + d_la, 0.3 * tab["la_ell"])
    lv_line_o = _shift_line(geometry, c_lv, spacing, d_mitral, above=True)
    la_line_o = _shift_line(geometry, c_la, spacing, d_mitral + LINE_EPS, above=False)

    # ---- defects drawn per frame; spikes act on the tables
    types = draw_defects(r_defect, n, config.defect_rates)
    spike_change = np.zeros(n)
    # the former draws, per spiked frame; the frames of a two-frame spike share its sign
    spike_target = spike_targets(r_defect, types, ob.spike_area_change)
    lv_ell_nospike = lv_ell_o.copy()
    for t in np.flatnonzero(spike_target):
        k = spike_scale(lv_ell_o[t], lv_line_o[t], spike_target[t])
        lv_ell_o[t] *= k
        epi_ell_o[t] = np.maximum(epi_ell_o[t], lv_ell_o[t] + 0.3 * thickness[t])
    R_lv_o = np.minimum(lv_ell_o, lv_line_o)
    R_epi_o = np.minimum(epi_ell_o, lv_line_o)
    R_la_o = np.minimum(la_ell_o, la_line_o)

    # ---- rasterise clean and observed (ellipses from the tables, the mitral line exactly)
    box_lv, _ = bbox(np.concatenate([R_epi, R_epi_o]), c_lv, spacing, shape)
    box_la, _ = bbox(np.concatenate([R_la, R_la_o]), c_la, spacing, shape)
    clipped = bbox(R_epi, c_lv, spacing, shape, pad=0)[1] or bbox(R_la, c_la, spacing, shape, pad=0)[1]
    win_lv = window(c_lv, box_lv, spacing, shape) + (_axial(geometry, box_lv, spacing),)
    win_la = window(c_la, box_la, spacing, shape) + (_axial(geometry, box_la, spacing),
                                                     geometry.la_cone(box_la, spacing))
    line = geometry.lax
    line_o = geometry.lax + d_mitral
    clean, counts = _rasterise(n, shape, (tab["lv_ell"], tab["epi_ell"], tab["la_ell"]), line,
                               geometry.la_a0 - geometry.la_k * line, box_lv, box_la, win_lv, win_la)
    observed, counts_o = _rasterise(n, shape, (lv_ell_o, epi_ell_o, la_ell_o), line_o,
                                    geometry.la_a0 - geometry.la_k * line_o, box_lv, box_la, win_lv, win_la)

    # ---- spike sizes as rasterised
    for t in np.flatnonzero(spike_target):
        rho, idx, axial = win_lv
        ref = np.count_nonzero(inside(lv_ell_nospike[t:t + 1], rho, idx) & (axial <= line_o[t]))
        spike_change[t] = counts_o["lv"][t] / max(ref, 1) - 1.0

    # ---- pixel defects
    defect_kind = [""] * n
    defect_row = np.full(n, -1)
    defect_col = np.full(n, -1)
    for t, kind_type in enumerate(types):
        if not kind_type:
            continue
        if kind_type == "spike":
            defect_kind[t] = "spike_up" if spike_target[t] > 0 else "spike_down"
            continue
        radii_t = {"lv": R_lv_o[t], "epi": R_epi_o[t], "la": R_la_o[t]}
        line_s = float(geometry.lax[t] + d_mitral[t])
        result = apply_defect(observed[t], kind_type, r_defect, spacing=spacing, lv_centre=c_lv, la_centre=c_la,
                              radii=radii_t, line_s=line_s, local_s=lambda y, x: geometry.local(y, x)[0])
        defect_kind[t] = result["kind"]
        defect_row[t], defect_col[t] = result["row"], result["col"]
    applied = [_kind_type(k) for k in defect_kind]

    # ---- images
    image, imaging = None, bmode.draw_view_imaging(r_image, im)
    if im.images:
        union = (max(min(box_lv[0], box_la[0]) - 2, 0), min(max(box_lv[1], box_la[1]) + 2, shape[0]),
                 max(min(box_lv[2], box_la[2]) - 2, 0), min(max(box_lv[3], box_la[3]) + 2, shape[1]))
        motion = 0.5 * (float(np.max(geometry.lax)) - geometry.lax)
        image = bmode.render(clean, union, motion, imaging, config.seed, im)

    # ---- per-frame truth
    analytic = geometry.analytic(spacing)
    sh, sw = spacing
    cy, cx = geometry.epi_centroid()
    ed_contour = analytic["lv_contour_length_mm"][sampling.ed]
    frames = {
        "frame": np.arange(n),
        "phase": np.mod(sampling.tau, 1.0),
        "time_s": np.arange(n) / sampling.frame_rate,
        "is_ed": (np.arange(n) == sampling.ed).astype(int),
        "is_es": (np.arange(n) == sampling.es).astype(int),
        "in_half": ((np.arange(n) >= sampling.ed) & (np.arange(n) <= sampling.es)).astype(int),
        "ejected_fraction": state.e,
        "lv_volume_ml": state.volume,
        "la_volume_ml": state.la_volume,
        **analytic,
        "lv_area_px": counts["lv"], "myo_area_px": counts["myo"], "la_area_px": counts["la"],
        "lv_length_px": analytic["lv_length_mm"] / _axis_pixel(geometry.tilt, spacing),
        "lv_base_width_px": analytic["lv_base_width_mm"] / _lateral_pixel(geometry.tilt, spacing),
        "epi_center_x": cx / sw, "epi_center_y": cy / sh,
        "longitudinal_strain": analytic["lv_contour_length_mm"] / ed_contour - 1.0,
        "axial_strain": geometry.lax / geometry.lax[sampling.ed] - 1.0,
        "observed_lv_area_px": counts_o["lv"],
        "defect": defect_kind,
        **{f"defect_{name}": np.array([int(a == name) for a in applied]) for name in DEFECT_TYPES},
        "defect_row": defect_row, "defect_col": defect_col,
        "spike_area_change": spike_change,
    }
    info = {
        "tilt_deg": math.degrees(tilt), "apex_row": apex[0] / sh, "apex_col": apex[1] / sw,
        "start_phase": start, "frame_rate": sampling.frame_rate, "ed": sampling.ed, "es": sampling.es,
        "image_quality": imaging["quality"], "fits_image": int(fits and not clipped),
        "lv_centre": c_lv, "la_centre": c_la, "state": state, "geometry": geometry,
    }
    return ViewSimulation(view=view, mask=observed, clean=clean, image=image, spacing=spacing, ed=sampling.ed,
                          es=sampling.es, frame_rate=float(sampling.frame_rate), image_quality=imaging["quality"],
                          frames=frames, info=info)


def _kind_type(kind: str) -> str:
    if not kind:
        return ""
    if kind.startswith("hole"):
        return "hole"
    if kind.startswith("island"):
        return "island"
    if kind.startswith("spike"):
        return "spike"
    if kind == "la_detached":
        return "lv_bg_contact"
    return kind


def _axis_pixel(tilt, spacing):
    """Length (mm) of one pixel step along the direction of the long axis."""
    return 1.0 / math.hypot(math.cos(tilt) / spacing[0], math.sin(tilt) / spacing[1])


def _lateral_pixel(tilt, spacing):
    return 1.0 / math.hypot(math.sin(tilt) / spacing[0], math.cos(tilt) / spacing[1])


def _shift_line(geometry: ViewGeometry, centre, spacing, offset, *, above: bool):
    psi = ANGLES[None, :] - geometry.tilt
    s0, _ = geometry.local(centre[0] * spacing[0], centre[1] * spacing[1])
    s_line = (geometry.lax + np.broadcast_to(np.asarray(offset, float), geometry.lax.shape))[:, None]
    return _ray_line(s0, s_line, np.cos(psi), above=above)


def _axial(geometry: ViewGeometry, box, spacing) -> np.ndarray:
    """Position along the long axis (mm from the apex, float32) of the pixel centres of ``box``."""
    i0, i1, j0, j1 = box
    a = geometry.axis
    rows = (np.arange(i0, i1) * spacing[0] - geometry.apex[0]) * a[0]
    cols = (np.arange(j0, j1) * spacing[1] - geometry.apex[1]) * a[1]
    return (rows[:, None] + cols[None, :]).astype(np.float32)


def _rasterise(n, shape, ellipses, line, cone, box_lv, box_la, win_lv, win_la):
    """Label maps (T, H, W) of the regions: LV/epicardium above the mitral line, LA below it.

    ``cone`` is the per-frame threshold of the LA cone field (``a0 - k * line``). Frame by
    frame, so that the working arrays stay in cache.
    """
    lv_ell, epi_ell, la_ell = (np.asarray(e, np.float32) for e in ellipses)
    line = np.asarray(line, np.float32)
    cone = np.asarray(cone, np.float32)
    labels = np.zeros((n,) + shape, np.uint8)
    counts = np.zeros((3, n), np.int64)
    rho, idx, axial = win_lv
    rho_a, idx_a, axial_a, cone_a = win_la
    i0, i1, j0, j1 = box_lv
    k0, k1, l0, l1 = box_la
    three = np.uint8(3)
    for t in range(n):
        epi = epi_ell[t].take(idx) >= rho
        epi &= axial <= line[t]
        lv = lv_ell[t].take(idx) >= rho
        lv &= epi
        out = labels[t, i0:i1, j0:j1]
        np.left_shift(epi.view(np.uint8), 1, out=out)
        out -= lv.view(np.uint8)
        la = la_ell[t].take(idx_a) >= rho_a
        la &= axial_a > line[t]
        la &= cone_a <= cone[t]
        labels[t, k0:k1, l0:l1] |= la.view(np.uint8) * three
        counts[0, t] = np.count_nonzero(lv)
        counts[1, t] = np.count_nonzero(epi)
        counts[2, t] = np.count_nonzero(la)
    return labels, {"lv": counts[0], "myo": counts[1] - counts[0], "la": counts[2]}


def _patient_truth(config: SimulationConfig, patient: Patient, views: dict, key: HeartState, image=None) -> dict:
    """Per-patient truth row; ``key`` is the heart at ED, ES and the end of atrial contraction.

    ``image``: the patient's image config on its native grid, recorded as ``spacing_h_mm``,
    ``spacing_w_mm``, ``rows``, ``cols`` (the grid of both views).
    """
    image = config.image if image is None else image
    p = patient
    key_instants = key.subset(slice(0, 2))
    edv, esv = (float(v) for v in key_instants.volume)
    mid = simpson_biplane(key_instants, "midpoint")
    basal = simpson_biplane(key_instants, "basal")
    la_max = float(key_instants.la_volume[1])
    la_min = float(key.la_volume[2])
    row = {
        "patient_id": p.patient_id, "index": p.index, "group": p.group, "is_case": int(p.is_case),
        "severity": p.severity, "severity_z": p.severity_z, "age": p.age, "sex": p.sex, "bsa": p.bsa,
        "heart_rate": p.heart_rate, "cycle_s": p.cycle_s, "systolic_fraction": p.systolic_fraction,
        "spacing_h_mm": float(image.spacing[0]), "spacing_w_mm": float(image.spacing[1]),
        "rows": int(image.rows), "cols": int(image.cols),
    }
    for name, kind in EFFECT_KINDS.items():
        row[f"effect_{name}"] = getattr(p, f"effect_{name}")
        row[f"group_effect_{name}"] = getattr(config.effects, name)
        row[f"effect_kind_{name}"] = kind
    row.update({
        "negative_controls": ",".join(NEGATIVE_CONTROLS),
        "edv_ml": edv, "esv_ml": esv, "sv_ml": edv - esv, "ef_pct": 100.0 * (edv - esv) / edv,
        "edv_simpson_mid_ml": float(mid[0]), "esv_simpson_mid_ml": float(mid[1]),
        "ef_simpson_mid_pct": float(100.0 * (mid[0] - mid[1]) / mid[0]),
        "edv_simpson_basal_ml": float(basal[0]), "esv_simpson_basal_ml": float(basal[1]),
        "ef_simpson_basal_pct": float(100.0 * (basal[0] - basal[1]) / basal[0]),
        "la_volume_max_ml": la_max, "la_volume_min_ml": la_min, "la_volume_es_ml": la_max,
        "lv_length_ed_mm": float(key_instants.lax[0]), "lv_length_es_mm": float(key_instants.lax[1]),
        "lv_b4_ed_mm": float(key_instants.b4[0]), "lv_b2_ed_mm": float(key_instants.b2[0]),
        "lv_b4_es_mm": float(key_instants.b4[1]), "lv_b2_es_mm": float(key_instants.b2[1]),
        "base_truncation": p.base_truncation, "lv_aspect_2ch": p.lv_aspect_2ch,
        "lv_base_width_4ch_ed_mm": float(2 * key_instants.b4[0] * math.sqrt(1 - p.base_truncation ** 2)),
        "wall_thickness_ed_mm": float(key_instants.h[0]), "wall_thickness_es_mm": float(key_instants.h[1]),
        "apex_thickness_ratio": p.apex_thickness_ratio, "gls_axial": p.gls, "e_a_ratio": p.e_a_ratio,
        "la_emptying_fraction": p.la_emptying_fraction, "la_aspect": p.la_aspect,
        "la_length_es_mm": float(key_instants.la_c[1] + key_instants.la_A[1]),
        "thickness_clamped": int(p.thickness_clamped), "la_clamped": int(bool(np.any(key_instants.la_clamped))),
    })
    # Biplane area-length LA volume at ES from the analytic LA areas of the two planes.
    s = key_instants
    r = p.lv_aspect_2ch
    a4 = la_measures(s.la_a0[1], s.la_k[1], s.la_W4[1], s.la_A[1], s.la_c[1])[0]
    a2 = la_measures(r * s.la_a0[1], r * s.la_k[1], s.la_W2[1], s.la_A[1], s.la_c[1])[0]
    la_len = s.la_c[1] + s.la_A[1]
    row["la_volume_area_length_ml"] = float(8.0 * a4 * a2 / (3.0 * math.pi * la_len) / 1000.0)
    for view in VIEWS:
        v = views.get(view)
        tag = view.lower()
        if v is None:
            continue
        row[f"ed_{tag}"], row[f"es_{tag}"] = v.ed, v.es
        row[f"frame_rate_{tag}"] = v.frame_rate
        row[f"image_quality_{tag}"] = v.image_quality
        row[f"tilt_{tag}_deg"] = v.info["tilt_deg"]
        row[f"fits_image_{tag}"] = v.info["fits_image"]
        row[f"edv_frame_{tag}_ml"] = float(v.frames["lv_volume_ml"][v.ed])
        row[f"esv_frame_{tag}_ml"] = float(v.frames["lv_volume_ml"][v.es])
    return row
