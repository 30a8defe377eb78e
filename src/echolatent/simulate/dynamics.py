"""Cardiac dynamics over a normalised cycle and the 3-D heart at each frame.

Cycle
-----
``tau`` in [0, 1) is the phase, 0 at end-diastole (ED, onset of ejection) and ``Ts`` (the
systolic fraction) at end-systole (ES). The ejected fraction of the stroke volume is

* systole, ``tau <= Ts``: ``e = S(tau / Ts)`` with the raised-cosine step ``S(x) = (1 - cos(pi x)) / 2``;
* diastole (length ``D = 1 - Ts``): isovolumic relaxation, early filling (E wave,
  ``Ts + 0.1 D`` to ``Ts + 0.45 D``), diastasis, atrial filling (A wave, ``Ts + 0.72 D`` to
  ``Ts + 0.94 D``), isovolumic contraction; ``e = 1 - fE S(.) - (1 - fE) S(.)`` with the
  E-fraction ``fE = EA / (1 + EA)``.

LV volume ``V = EDV - SV e`` (``SV = EF EDV``); long axis ``Lax = Lax_ED (1 + GLS e)``.
LA volume ``Vla = Vmin + (Vmax - Vmin) e``: filling in systole, largest at ES (a very small
atrium cannot shrink below the half-ellipsoid hanging from its annulus; ``la_clamped`` then
flags it and the truth reports the volume actually drawn).

Geometry (3-D, mm)
------------------
* **LV cavity**: a prolate ellipsoid with long semi-axis ``L`` (apex at 0, equator at ``L``
  along the axis) and minor semi-axes ``b4``, ``b2`` (the 4CH and 2CH cut planes), truncated
  by the mitral plane at ``Lax = L (1 + f)`` (``f``: base truncation). Every short-axis
  section is an ellipse, so the biplane method of discs is exact up to discretisation:
  ``V = pi b4 b2 L kappa(f)``, ``kappa(f) = 2/3 + f - f^3/3``. ``b4 b2`` follows from ``V``.
* **Myocardium**: the epicardium is the ellipsoid with semi-axes ``L + ha``,
  ``b4 + h``, ``b2 + h`` on the same equator, cut by the same plane (``ha = apex ratio * h``).
  ``h(t)`` keeps the myocardial volume constant (incompressibility), so the wall thickens in
  systole.
* **Left atrium**: an ellipsoid on the same axis below the mitral plane with semi-axes
  ``A``, ``W4 = q A``, ``W2 = r W4`` (``q`` LA aspect, ``r = b2 / b4``), its centre at ``c``
  below the plane so that its section by the plane (the annulus) has half-widths
  ``a0 = annulus ratio * LV base half-width`` (and ``r a0``), intersected with the elliptic
  cone of half-widths ``a0 + k u`` (``r (a0 + k u)``) at depth ``u`` below the annulus
  (``k = LA_CONE_SLOPE``), which keeps its wall steep at the annulus. Sections remain
  ellipses, so volume and areas have closed forms (:func:`la_measures`), and the biplane
  method of discs is exact. Its size follows ``Vla(t)``.

Sampling: frame ``k`` of a full cycle of ``T`` frames is at ``tau_k = phi0 + k / (T - 1)``
with a random start ``phi0`` in ``[-start_phase_max, 0]`` (late diastole), so frame ``T - 1``
has the phase of frame 0 one beat later. As in CAMUS, ES is the frame with the smallest LV
(the first one on the isovolumic plateau) and ED the one with the largest LV before it (the
last one, nearest the onset of ejection); hence ``0 <= ED < ES`` always.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from echolatent.simulate.population import Patient

#: Number of discs of the reference biplane method of discs.
N_DISCS = 20
#: Lateral widening of the LA per mm below the annulus, at most (4CH; 2CH scaled by b2/b4):
#: keeps the atrial wall steep where it meets the mitral plane, so the atrium never slides
#: under the myocardium (anatomical criterion 10).
LA_CONE_SLOPE = 0.7


def smooth_step(x):
    """Raised-cosine step: 0 for x <= 0, 1 for x >= 1."""
    return 0.5 * (1.0 - np.cos(np.pi * np.clip(x, 0.0, 1.0)))


def ejection_curve(tau, systolic_fraction: float, e_a_ratio: float):
    """Ejected fraction of the stroke volume, ``e(tau)`` in [0, 1] (0 at ED, 1 at ES)."""
    tau = np.mod(tau, 1.0)
    ts = systolic_fraction
    d = 1.0 - ts
    fe = e_a_ratio / (1.0 + e_a_ratio)
    systole = smooth_step(tau / ts)
    diastole = (1.0 - fe * smooth_step((tau - ts - 0.10 * d) / (0.35 * d))
                - (1.0 - fe) * smooth_step((tau - ts - 0.72 * d) / (0.22 * d)))
    return np.where(tau <= ts, systole, diastole)


def kappa(f):
    """Volume of an ellipsoid truncated at ``f`` semi-axes beyond its equator, over ``pi a b c``."""
    return 2.0 / 3.0 + f - f ** 3 / 3.0


def half_area_factor(f):
    """Area of an ellipse truncated at ``f`` semi-axes beyond its centre, over ``2 a b``."""
    f = np.clip(f, -1.0, 1.0)
    return np.pi / 4.0 + (f * np.sqrt(1.0 - f * f) + np.arcsin(f)) / 2.0


@dataclass
class Sampling:
    """Frame phases of one full-cycle sequence."""

    tau: np.ndarray  #: phase of each frame (may be < 0 before ED)
    ed: int
    es: int
    frame_rate: float
    start_phase: float


def sample_frames(n_frames: int, start_phase: float, systolic_fraction: float, cycle_s: float,
                  e_a_ratio: float) -> Sampling:
    """Phases of a full cycle of ``n_frames`` starting at ``start_phase`` (in [-0.25, 0]).

    ES is the first frame with the smallest LV volume, ED the frame with the largest volume
    before it (the latest one on a tie: the onset of ejection), as CAMUS defines them.
    """
    step = 1.0 / (n_frames - 1)
    tau = start_phase + step * np.arange(n_frames)
    e = ejection_curve(tau, systolic_fraction, e_a_ratio)
    first_cycle = tau < 1.0 + start_phase - 0.5 * step
    es = int(np.flatnonzero(first_cycle & (e >= e[first_cycle].max() - 1e-12))[0])
    before = e[: es]
    ed = int(np.flatnonzero(before <= before.min() + 1e-12)[-1])
    if not 0 <= ed < es < n_frames - 1:
        raise AssertionError(f"bad ED/ES sampling ({ed}, {es}) for {n_frames} frames")
    return Sampling(tau=tau, ed=ed, es=es, frame_rate=(n_frames - 1) / cycle_s, start_phase=start_phase)


@dataclass
class HeartState:
    """The 3-D heart at a set of phases (every field an array over frames)."""

    tau: np.ndarray
    e: np.ndarray
    volume: np.ndarray  #: LV cavity volume (mL)
    lax: np.ndarray  #: apex to mitral-plane distance (mm)
    L: np.ndarray  #: LV long semi-axis (mm)
    b4: np.ndarray
    b2: np.ndarray
    h: np.ndarray  #: lateral wall thickness (mm)
    ha: np.ndarray  #: apical wall thickness (mm)
    la_volume: np.ndarray  #: LA volume (mL)
    la_A: np.ndarray  #: LA long semi-axis (mm)
    la_W4: np.ndarray
    la_W2: np.ndarray
    la_c: np.ndarray  #: distance from the mitral plane to the LA centre (mm)
    la_a0: np.ndarray  #: annulus half-width, 4CH (mm)
    la_k: np.ndarray  #: cone slope, 4CH
    f: float  #: base truncation
    la_clamped: np.ndarray

    def subset(self, index) -> "HeartState":
        """The state at a subset (slice or index array) of its phases."""
        values = {k: (v[index] if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}
        return HeartState(**values)


def _lv_minor(patient: Patient, volume_ml, L):
    prod = volume_ml * 1000.0 / (np.pi * L * kappa(patient.base_truncation))
    b4 = np.sqrt(prod / patient.lv_aspect_2ch)
    return b4, patient.lv_aspect_2ch * b4


def _epi_volume(L, b4, b2, h, apex_ratio, f):
    ha = apex_ratio * h
    le = L + ha
    return np.pi * (b4 + h) * (b2 + h) * le * kappa(f * L / le) / 1000.0


def _solve(func, target, low, high, x0=None, iterations=30):
    """Vectorised safeguarded Newton (numerical slope) for an increasing ``func``; ``x`` in [low, high].

    Stops once every element meets ``|func(x) - target| <= 1e-11 max(|target|, 1)``.
    """
    low, high = np.array(low, float), np.array(high, float)
    x = 0.5 * (low + high) if x0 is None else np.clip(np.broadcast_to(x0, low.shape).astype(float), low, high)
    tol = 1e-11 * np.maximum(np.abs(target), 1.0)
    for _ in range(iterations):
        fx = func(x) - target
        done = np.abs(fx) <= tol
        if done.all():
            break
        above = fx > 0
        high = np.where(above, x, high)
        low = np.where(above, low, x)
        step = 1e-7 * np.maximum(np.abs(x), 1e-3)
        slope = (func(x + step) - target - fx) / step
        with np.errstate(divide="ignore", invalid="ignore"):
            new = x - fx / slope
        bad = ~np.isfinite(new) | (new < low) | (new > high)
        x = np.where(done, x, np.where(bad, 0.5 * (low + high), new))
    return x


def la_measures(a0, k, W, A, c):
    """LA (ellipse through the annulus, limited by the cone) in one plane.

    ``a0`` annulus half-width, ``k`` cone slope, ``W``/``A`` lateral/longitudinal
    semi-axes, ``c`` depth of the ellipse centre below the annulus (all mm).

    Returns
    -------
    area : mm^2 of the section in this plane
    section_integral : integral over depth of the squared half-width (mm^3); the volume
        of the atrium is ``pi r section_integral`` for the 4CH quantities.
    u_star : depth where the wall leaves the cone (0 when the cone never binds).
    """
    ratio2 = (W / A) ** 2
    u_star = np.clip(2.0 * (ratio2 * c - a0 * k) / (k * k + ratio2), 0.0, c + A)
    x = np.clip((u_star - c) / A, -1.0, 1.0)
    tail = np.pi / 4.0 - (x * np.sqrt(1.0 - x * x) + np.arcsin(x)) / 2.0  # integral of sqrt(1 - t^2), x..1
    area = 2.0 * (a0 * u_star + 0.5 * k * u_star ** 2 + W * A * tail)
    cone = ((a0 + k * u_star) ** 3 - a0 ** 3) / (3.0 * k)
    ellipse = W * W * A * ((1.0 - x) - (1.0 - x ** 3) / 3.0)
    return area, cone + ellipse, u_star


def heart_state(patient: Patient, tau) -> HeartState:
    """The heart of ``patient`` at phases ``tau``."""
    tau = np.asarray(tau, float)
    f = patient.base_truncation
    e = ejection_curve(tau, patient.systolic_fraction, patient.e_a_ratio)
    sv = patient.ef * patient.edv_ml
    volume = patient.edv_ml - sv * e
    lax = patient.lv_length_mm * (1.0 + patient.gls * e)
    L = lax / (1.0 + f)
    b4, b2 = _lv_minor(patient, volume, L)

    # Myocardial volume at ED, conserved over the cycle.
    L0 = patient.lv_length_mm / (1.0 + f)
    b40, b20 = _lv_minor(patient, patient.edv_ml, L0)
    h0 = patient.wall_thickness_mm
    myo = _epi_volume(L0, b40, b20, h0, patient.apex_thickness_ratio, f) - patient.edv_ml
    h = _solve(lambda x: _epi_volume(L, b4, b2, x, patient.apex_thickness_ratio, f) - volume,
                myo, np.full_like(volume, 0.2 * h0), np.full_like(volume, 5.0 * h0),
                x0=h0 * np.sqrt(patient.edv_ml / volume))

    # Left atrium.
    la_min = patient.la_volume_max_ml * (1.0 - patient.la_emptying_fraction)
    la_volume = la_min + (patient.la_volume_max_ml - la_min) * e
    q, r = patient.la_aspect, patient.lv_aspect_2ch
    a0 = patient.la_annulus_ratio * b4 * math.sqrt(1.0 - f * f)  # annulus half-width, 4CH

    def la_geometry(s):
        w4 = q * s
        c = s * np.sqrt(np.clip(1.0 - (a0 / w4) ** 2, 0.0, 1.0))
        return w4, c

    def la_vol(s):
        w4, c = la_geometry(s)
        return np.pi * r * la_measures(a0, LA_CONE_SLOPE, w4, s, c)[1] / 1000.0

    s_min = a0 / q * (1.0 + 1e-9)
    clamped = la_vol(s_min) > la_volume
    s_guess = (la_volume * 1000.0 / (np.pi * q * q * r * 1.2)) ** (1.0 / 3.0)
    s = _solve(la_vol, la_volume, s_min, s_min * 40.0, x0=s_guess)
    la_A = s
    la_W4, la_c = la_geometry(s)
    la_volume_actual = la_vol(s)
    return HeartState(tau=tau, e=e, volume=volume, lax=lax, L=L, b4=b4, b2=b2, h=h,
                      ha=patient.apex_thickness_ratio * h, la_volume=la_volume_actual, la_A=la_A, la_W4=la_W4,
                      la_W2=r * la_W4, la_c=la_c, la_a0=a0, la_k=np.full_like(a0, LA_CONE_SLOPE), f=f,
                      la_clamped=clamped)


def simpson_biplane(state: HeartState, rule: str = "midpoint", n_discs: int = N_DISCS):
    """Biplane method of discs on the exact geometry (mL); ``rule`` midpoint or basal (disc basal end)."""
    offset = 0.5 if rule == "midpoint" else 0.0
    x = (np.arange(n_discs) + offset) / n_discs  # fraction of Lax from the base
    s = state.lax[..., None] * (1.0 - x)  # distance from the apex
    L = state.L[..., None]
    w = np.sqrt(np.clip(1.0 - ((s - L) / L) ** 2, 0.0, None))
    a, b = 2.0 * state.b4[..., None] * w, 2.0 * state.b2[..., None] * w
    return np.pi / 4.0 * (a * b).sum(-1) * state.lax / n_discs / 1000.0


def lv_contour_length(L, b, f, n: int = 96):
    """Length of the endocardial contour (open at the mitral plane) of a view (mm)."""
    t_base = np.arccos(-f)
    t = (np.arange(n) + 0.5) / n * t_base
    L, b = np.asarray(L, float)[..., None], np.asarray(b, float)[..., None]
    speed = np.sqrt((L * np.sin(t)) ** 2 + (b * np.cos(t)) ** 2)
    return 2.0 * speed.sum(-1) * t_base / n
