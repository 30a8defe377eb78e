"""Observation model: observer-like boundary noise and injected defects.

Boundary noise
--------------
Each contour (endocardium, epicardium, LA) is displaced along its rays by a smooth random
function of the direction, the sum of a per-sequence systematic part (the observer's
"style", SD ``noise_static_mm``) and an AR(1) part over frames (SD ``noise_dynamic_mm``,
correlation ``noise_rho`` between consecutive frames). Both are random Fourier series
whose spectrum gives a correlation length of ``noise_correlation_mm`` along the contour;
the mode 0 is a global over/under-segmentation. The epicardial noise correlates with the
endocardial one (``endo_epi_correlation``), and the mitral line moves by a small offset
shared by the three regions (so they never overlap). The observed wall keeps at least
80 % of its clean thickness and the noise fades out near the mitral hinge points, so noise
alone never breaks the anatomy.

Defects (at most one per frame, per-frame probabilities ``defect_rates``)
-------------------------------------------------------------------------
``hole``
    a background disc strictly inside the LV, the MYO or the LA (``hole_lv`` / ``hole_myo``
    / ``hole_la``): ``holes_in_lv`` + ``holes_in_epi``, ``holes_in_epi``, ``holes_in_atrium``.
``island``
    a detached disc of LV, MYO or LA label in the background beside the heart
    (``island_lv`` / ``island_myo`` / ``island_la``): ``disconnectivity_in_*``.
``myo_gap``
    a radial cut through a myocardial wall: ``disconnectivity_in_myo``.
``lv_bg_contact``
    the LA band just below the mitral line is erased, so the whole LV base touches the
    background: ``frontier_ratio_between_lv_and_bg`` > 0.4.
``spike``
    the endocardium of a frame is scaled so that the LV area jumps by ``spike_area_change``
    (sign random): a temporal spike. Where spikes go (:func:`draw_defects`):

    * ``spike_placement: uniform`` (default): on any frame, the first and last included, as a
      frame-by-frame segmentation network fails on any frame; a fraction ``spike_pair_rate``
      of the spikes lasts two consecutive frames (the same failure on a frame and the next,
      e.g. a shadow or a dropout that persists), and two spikes drawn independently may also
      fall side by side. A two-frame spike is the hard case of the temporal metric: each of its
      frames deviates by about half of what a single spike would
      (:mod:`echolatent.temporal.metric`).
    * ``spike_placement: interior``: the former rule, never on the first or last frame and
      never next to another spike (two-frame spikes, if ``spike_pair_rate > 0``, lie inside
      too). With ``spike_pair_rate: 0`` it reproduces the cohorts drawn before the option
      existed, bit for bit.

    The per-frame probability of a spike starting on a frame is ``defect_rates.spike`` (whatever
    the placement, for the frames it allows); a two-frame spike also covers the next frame
    (the previous one at the last allowed frame), replacing that frame's own draw. The truth
    table records every spiked frame (``defect_spike`` = 1, ``defect`` = ``spike_up`` /
    ``spike_down``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

from echolatent.simulate.config import DEFECT_TYPES, SPIKE_PLACEMENTS, ObservationConfig
from echolatent.simulate.geometry import ANGLES, DPHI, N_ANGLES

#: Fourier modes of the contour noise.
N_MODES = 24
#: The noise is synthesised on N_ANGLES // NOISE_STEP directions, then repeated (it is smooth).
NOISE_STEP = 4
#: Defect kinds per type.
DEFECT_KINDS = {
    "hole": ("hole_lv", "hole_myo", "hole_la"),
    "island": ("island_lv", "island_myo", "island_la"),
    "myo_gap": ("myo_gap",),
    "lv_bg_contact": ("la_detached",),
    "spike": ("spike_up", "spike_down"),
}


@lru_cache(maxsize=1)
def _basis():
    angles = ANGLES.reshape(-1, NOISE_STEP).mean(axis=1)
    k = np.arange(1, N_MODES + 1)[:, None]
    rows = [np.ones((1, angles.size))]
    rows.append(np.cos(k * angles[None, :]))
    rows.append(np.sin(k * angles[None, :]))
    basis = np.concatenate(rows, axis=0)  # (2 N_MODES + 1, N_ANGLES // NOISE_STEP)
    basis.flags.writeable = False
    return basis


def _weights(correlation_mm: float, mean_radius_mm: float):
    lam = correlation_mm / max(mean_radius_mm, 1.0)
    k = np.arange(1, N_MODES + 1)
    w = np.exp(-0.5 * (k * lam) ** 2)
    weights = np.concatenate([[1.0], w, w])
    return weights / np.sqrt((weights ** 2).sum())


def _ar1(rng: np.random.Generator, n_frames: int, n: int, rho: float):
    """``n`` AR(1) series over ``n_frames`` (unit variance, lag-1 correlation ``rho``)."""
    out = rng.standard_normal((n_frames, n))
    scale = np.sqrt(1.0 - rho * rho)
    for t in range(1, n_frames):
        out[t] *= scale
        out[t] += rho * out[t - 1]
    return out


def contour_noise(rng: np.random.Generator, n_frames: int, cfg: ObservationConfig, radii_mm):
    """Displacements (T, N_ANGLES) in mm for the endocardium, epicardium and LA, and the mitral offset (T,).

    ``radii_mm`` are the mean radii of the three contours about their star centres (they
    set the angular correlation scale). Always draws the same amount of randomness.
    """
    n = 2 * N_MODES + 1
    static = rng.standard_normal((3, n))
    mitral_static = rng.standard_normal()
    series = _ar1(rng, n_frames, 3 * n + 1, cfg.noise_rho)
    dynamic = series[:, :3 * n].reshape(n_frames, 3, n).transpose(1, 0, 2)
    c = cfg.endo_epi_correlation
    s = np.sqrt(1.0 - c * c)
    static[1] = c * static[0] + s * static[1]
    dynamic[1] = c * dynamic[0] + s * dynamic[1]
    coeffs = np.stack([(cfg.noise_static_mm * static[k][None, :] + cfg.noise_dynamic_mm * dynamic[k])
                       * _weights(cfg.noise_correlation_mm, radii_mm[k]) for k in range(3)])
    # einsum, not matmul: no BLAS threads for a tiny product (they only contend on a busy machine)
    coarse = np.einsum("ctm,ma->cta", coeffs, _basis())
    out = np.repeat(coarse, NOISE_STEP, axis=2)
    mitral = cfg.mitral_noise_mm * (0.8 * mitral_static + 0.6 * series[:, 3 * n])
    return out[0], out[1], out[2], mitral


def draw_defects(rng: np.random.Generator, n_frames: int, rates: dict, *, placement: str | None = None,
                 pair_rate: float | None = None) -> list[str]:
    """Defect type per frame ('' for none), at most one per frame.

    Parameters
    ----------
    rng : Generator
        Consumes exactly ``n_frames`` uniforms, whatever the options (the streams drawn after
        it do not depend on them).
    rates : dict
        Per-frame probability of each of :data:`~echolatent.simulate.config.DEFECT_TYPES`;
        may also hold ``spike_placement`` and ``spike_pair_rate``
        (:attr:`SimulationConfig.defect_rates <echolatent.simulate.config.SimulationConfig.defect_rates>`),
        the defaults of the two keywords.
    placement : {"uniform", "interior"}
        Frames a spike may take (module docstring). Default: ``rates["spike_placement"]``,
        else ``"uniform"``.
    pair_rate : float in [0, 1]
        Fraction of the spikes that last two consecutive frames. Default:
        ``rates["spike_pair_rate"]``, else 0.

    Notes
    -----
    Frame ``t`` draws ``u_t``; the defect intervals are stacked in the order of ``DEFECT_TYPES``
    (spike last), and the first ``pair_rate`` part of the spike interval makes a two-frame
    spike, so ``P(two-frame spike starts at t) = rate * pair_rate`` and ``P(single) = rate *
    (1 - pair_rate)``. A two-frame spike covers ``t`` and ``t + 1`` (``t - 1`` and ``t`` at the
    last allowed frame); the covered frame's own draw is discarded.
    """
    placement = rates.get("spike_placement", "uniform") if placement is None else placement
    pair_rate = float(rates.get("spike_pair_rate", 0.0) if pair_rate is None else pair_rate)
    if placement not in SPIKE_PLACEMENTS:
        raise ValueError(f"spike placement must be one of {SPIKE_PLACEMENTS}, got {placement!r}")
    if not 0.0 <= pair_rate <= 1.0:
        raise ValueError(f"spike pair rate must be in [0, 1], got {pair_rate}")
    u = rng.random(n_frames)
    edges = np.cumsum([rates[name] for name in DEFECT_TYPES])
    spike_start = edges[-1] - rates["spike"]
    first, last = (1, n_frames - 2) if placement == "interior" else (0, n_frames - 1)
    types = [""] * n_frames
    covered = np.zeros(n_frames, bool)
    for t in range(n_frames):
        if covered[t]:
            continue
        k = int(np.searchsorted(edges, u[t], side="right"))
        kind = DEFECT_TYPES[k] if k < len(DEFECT_TYPES) else ""
        if kind == "spike":
            pair = u[t] < spike_start + rates["spike"] * pair_rate
            if not first <= t <= last or (placement == "interior" and t > 0 and types[t - 1] == "spike"):
                kind = ""  # interior: never an end frame, never next to another spike
            elif pair and last > first:
                partner = t + 1 if t < last else t - 1
                types[partner], covered[partner] = "spike", True
        types[t] = kind
    return types


def spike_targets(rng: np.random.Generator, types, change_range) -> np.ndarray:
    """Signed relative LV area change of each frame (0 where no spike), for the spikes of ``types``.

    Draws, per spiked frame in order, a sign (``rng.random() < 0.5``: up) and a size
    ``uniform(lo + 0.1 (hi - lo), hi - 0.1 (hi - lo))`` (the draws the cohort has always made), but
    the frames of a run of consecutive spikes share the sign of the run's first frame: a failure
    that persists over two frames errs in the same direction on both.
    """
    lo, hi = (float(v) for v in change_range)
    spiked = np.array([kind == "spike" for kind in types], bool)
    out = np.zeros(len(spiked))
    sign = 1.0
    for t in np.flatnonzero(spiked):
        own = 1.0 if rng.random() < 0.5 else -1.0
        sign = sign if t > 0 and spiked[t - 1] else own
        out[t] = sign * rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo))
    return out


def spike_scale(lv_ell, lv_line, target_change: float):
    """Factor on the endocardial ellipse radii giving a relative LV area change ``target_change``."""
    base = np.minimum(lv_ell, lv_line)
    area0 = 0.5 * (base.astype(np.float64) ** 2).sum() * DPHI
    k = np.sqrt(1.0 + target_change)
    for _ in range(6):  # secant-free fixed point: the line part does not scale
        area = 0.5 * (np.minimum(lv_ell * k, lv_line).astype(np.float64) ** 2).sum() * DPHI
        ratio = (1.0 + target_change) * area0 / area
        k *= np.sqrt(ratio)
    return float(k)


# ------------------------------------------------------------------ pixel defects
def _disc(radius_px: float, spacing):
    """Offsets (di, dj) of a disc of ``radius_px`` (in units of the larger pixel side)."""
    sh, sw = spacing
    unit = max(sh, sw)
    ri = int(np.ceil(radius_px * unit / sh))
    rj = int(np.ceil(radius_px * unit / sw))
    di, dj = np.mgrid[-ri:ri + 1, -rj:rj + 1]
    keep = (di * sh) ** 2 + (dj * sw) ** 2 <= (radius_px * unit) ** 2 + 1e-9
    return di[keep], dj[keep]


def _stamp_ok(frame, ci, cj, di, dj, allowed):
    i, j = ci + di, cj + dj
    if i.min() < 0 or j.min() < 0 or i.max() >= frame.shape[0] or j.max() >= frame.shape[1]:
        return False
    return bool(np.isin(frame[i, j], allowed).all())


def _polar_point(centre, radius_mm, phi, spacing):
    return (int(round(centre[0] + radius_mm * np.cos(phi) / spacing[0])),
            int(round(centre[1] + radius_mm * np.sin(phi) / spacing[1])))


def _wall_directions(r_in, r_out, spacing, min_px=3.0):
    """Direction bins where the observed wall is at least ``min_px`` pixels thick."""
    thick = (r_out - r_in) / max(spacing)
    return np.flatnonzero(np.isfinite(thick) & (thick >= min_px))


def apply_defect(frame, kind_type, rng, *, spacing, lv_centre, la_centre, radii, line_s, local_s):
    """Inject a defect of ``kind_type`` into one observed label frame (in place).

    Parameters
    ----------
    frame : ndarray (H, W) uint8
    radii : dict
        Observed tables of this frame: ``lv``, ``epi``, ``la`` (N_ANGLES,) in mm.
    line_s : float
        Position of the observed mitral line along the axis (mm from the apex).
    local_s : callable
        ``local_s(rows, cols)`` -> position along the axis (mm) of pixel centres.

    Returns
    -------
    dict
        ``kind`` ('' when no valid location was found), ``row``, ``col`` of the defect.
    """
    unit = max(spacing)
    small = 2.5 / unit  # a disc of ~2.5 mm radius (at least 1.5 px)
    r_disc = max(1.5, min(small, 4.0))
    tries = 40
    if kind_type == "hole":
        kinds = DEFECT_KINDS["hole"]
        order = rng.permutation(len(kinds))
        for k in order:
            kind = kinds[k]
            for _ in range(tries):
                if kind == "hole_lv":
                    phi = rng.uniform(0, 2 * np.pi)
                    b = int(phi / DPHI) % N_ANGLES
                    centre, rad, label = lv_centre, rng.uniform(0.1, 0.6) * radii["lv"][b], 1
                elif kind == "hole_la":
                    phi = rng.uniform(0, 2 * np.pi)
                    b = int(phi / DPHI) % N_ANGLES
                    centre, rad, label = la_centre, rng.uniform(0.1, 0.6) * radii["la"][b], 3
                else:
                    bins = _wall_directions(radii["lv"], radii["epi"], spacing, min_px=2 * 1.5 + 3)
                    if not len(bins):
                        break
                    b = int(rng.choice(bins))
                    phi = ANGLES[b]
                    centre, rad, label = lv_centre, 0.5 * (radii["lv"][b] + radii["epi"][b]), 2
                r = r_disc if label != 2 else max(1.0, min(r_disc, ((radii["epi"][b] - radii["lv"][b]) / unit - 3) / 2))
                ci, cj = _polar_point(centre, rad, phi, spacing)
                di, dj = _disc(r, spacing)
                ri, rj = _disc(r + 1.5, spacing)
                if _stamp_ok(frame, ci, cj, ri, rj, [label]):
                    frame[ci + di, cj + dj] = 0
                    return {"kind": kind, "row": ci, "col": cj}
        return {"kind": "", "row": -1, "col": -1}

    if kind_type == "island":
        kinds = DEFECT_KINDS["island"]
        kind = kinds[int(rng.integers(len(kinds)))]
        label = {"island_lv": 1, "island_myo": 2, "island_la": 3}[kind]
        r = max(1.5, min(3.0 / unit, 5.0))
        for _ in range(tries):
            if rng.random() < 0.6:
                phi = rng.uniform(0, 2 * np.pi)
                b = int(phi / DPHI) % N_ANGLES
                if not np.isfinite(radii["epi"][b]):
                    continue
                centre, rad = lv_centre, radii["epi"][b] + rng.uniform(4.0, 15.0) + r * unit
            else:
                phi = rng.uniform(0, 2 * np.pi)
                b = int(phi / DPHI) % N_ANGLES
                centre, rad = la_centre, radii["la"][b] + rng.uniform(4.0, 15.0) + r * unit
            ci, cj = _polar_point(centre, rad, phi, spacing)
            di, dj = _disc(r, spacing)
            ri, rj = _disc(r + 3.0, spacing)
            if _stamp_ok(frame, ci, cj, ri, rj, [0]):
                frame[ci + di, cj + dj] = label
                return {"kind": kind, "row": ci, "col": cj}
        return {"kind": "", "row": -1, "col": -1}

    if kind_type == "myo_gap":
        bins = _wall_directions(radii["lv"], radii["epi"], spacing, min_px=2.0)
        if not len(bins):
            return {"kind": "", "row": -1, "col": -1}
        for _ in range(tries):
            b = int(rng.choice(bins))
            r_in, r_out = radii["lv"][b], radii["epi"][b]
            half = max(2.5 * unit / max(r_in, 1.0), 3.0 * DPHI)  # >= 2.5 px wide at the inner radius
            i0 = max(int(np.floor(lv_centre[0] - (r_out + 2 * unit) / spacing[0])), 0)
            i1 = min(int(np.ceil(lv_centre[0] + (r_out + 2 * unit) / spacing[0])) + 1, frame.shape[0])
            j0 = max(int(np.floor(lv_centre[1] - (r_out + 2 * unit) / spacing[1])), 0)
            j1 = min(int(np.ceil(lv_centre[1] + (r_out + 2 * unit) / spacing[1])) + 1, frame.shape[1])
            ii, jj = np.mgrid[i0:i1, j0:j1]
            dy, dx = (ii - lv_centre[0]) * spacing[0], (jj - lv_centre[1]) * spacing[1]
            ang = np.mod(np.arctan2(dx, dy) - ANGLES[b] + np.pi, 2 * np.pi) - np.pi
            cut = (np.abs(ang) <= half) & (frame[i0:i1, j0:j1] == 2)
            if not cut.any():
                continue
            trial = frame[i0:i1, j0:j1].copy()
            trial[cut] = 0
            myo = frame == 2
            myo[i0:i1, j0:j1] = trial == 2
            _, n = ndimage.label(myo, structure=np.ones((3, 3)))
            if n >= 2:
                frame[i0:i1, j0:j1] = trial
                ci, cj = _polar_point(lv_centre, 0.5 * (r_in + r_out), ANGLES[b], spacing)
                return {"kind": "myo_gap", "row": ci, "col": cj}
        return {"kind": "", "row": -1, "col": -1}

    if kind_type == "lv_bg_contact":
        la = np.argwhere(frame == 3)
        if not len(la):
            return {"kind": "", "row": -1, "col": -1}
        i0, j0 = la.min(0)
        i1, j1 = la.max(0) + 1
        ii, jj = np.mgrid[i0:i1, j0:j1]
        s = local_s(ii * spacing[0], jj * spacing[1])
        band = (s < line_s + max(3.0 * unit, 2.5)) & (frame[i0:i1, j0:j1] == 3)
        if not band.any():
            return {"kind": "", "row": -1, "col": -1}
        frame[i0:i1, j0:j1][band] = 0
        rows, cols = np.nonzero(band)
        return {"kind": "la_detached", "row": int(i0 + rows.mean()), "col": int(j0 + cols.mean())}

    raise ValueError(f"unknown defect type {kind_type!r}")
