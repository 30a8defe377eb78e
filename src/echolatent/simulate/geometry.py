"""Apical views of the 3-D heart and their rasterisation on the native pixel grid.

A view is the cut of the heart (:mod:`echolatent.simulate.dynamics`) by an apical plane: the
LV cavity and the epicardium become ellipses truncated by the mitral line, the LA an ellipse
on the other side of that line. The view is posed in the image: apex at ``apex`` (mm, rows
then columns, near the top of the image), long axis tilted by ``tilt`` (radians; positive
moves the base towards larger column indices), so the LA lies at the bottom, as in CAMUS.

Fast rasterisation
------------------
Each region is convex, hence star-shaped about a fixed interior point ``C`` (one for LV and
epicardium, one for the LA, both snapped to pixel centres). Its boundary is tabulated as a
radius ``R_t(phi)`` on ``N_ANGLES`` directions per frame (ray/ellipse and ray/line
intersections, closed form), and a pixel at polar position ``(rho, phi)`` about ``C`` is
inside iff ``rho <= R_t(phi)``. ``(rho, phi)`` of every pixel offset are tabulated once per
grid, so rasterising all frames of a view is one gather and one comparison per region on
its bounding box. Boundary noise and spikes are edits of the tables.

Conventions: pixel ``(i, j)`` is centred at ``(i * sh, j * sw)`` mm; direction ``phi`` is
the unit vector ``(cos phi, sin phi)`` in (row, column) order.

Native grid of a patient
------------------------
:func:`native_grid` gives each patient's grid: the configured one (``image.geometry:
fixed``), or an anisotropic CAMUS-like one drawn from the patient's own stream
(``camus-like``). Every length of the heart is in mm, so the same heart can be rendered on
any grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from echolatent.simulate.dynamics import HeartState, half_area_factor, la_measures, lv_contour_length

#: Directions of the boundary tables.
N_ANGLES = 1024
ANGLES = (np.arange(N_ANGLES) + 0.5) * (2.0 * np.pi / N_ANGLES)
DPHI = 2.0 * np.pi / N_ANGLES
COS, SIN = np.cos(ANGLES), np.sin(ANGLES)
for _a in (ANGLES, COS, SIN):
    _a.flags.writeable = False


def native_grid(image, rng: np.random.Generator | None = None) -> tuple[tuple[int, int], tuple[float, float]]:
    """``((rows, cols), (h, w))`` of a patient's native grid (see :class:`~echolatent.simulate.config.ImageConfig`).

    ``fixed``: the configured grid, no draw. ``camus-like``: four uniform draws from ``rng``,
    in this order: h, w, depth, width; ``rows = ceil(depth / h)``, ``cols = ceil(width / w)``.
    """
    if image.geometry == "fixed":
        return (int(image.rows), int(image.cols)), (float(image.spacing[0]), float(image.spacing[1]))
    if image.geometry != "camus-like":
        raise ValueError(f"unknown image geometry {image.geometry!r}")
    if rng is None:
        raise ValueError("a camus-like geometry needs the patient's random generator")
    u = rng.random(4)
    lerp = lambda r, t: float(r[0] + (r[1] - r[0]) * t)  # noqa: E731
    h, w = lerp(image.spacing_h_range_mm, u[0]), lerp(image.spacing_w_range_mm, u[1])
    depth, width = lerp(image.depth_range_mm, u[2]), lerp(image.width_range_mm, u[3])
    return (int(math.ceil(depth / h - 1e-9)), int(math.ceil(width / w - 1e-9))), (h, w)


def patient_image(image, shape, spacing):
    """The :class:`ImageConfig` of one patient: ``image`` on the patient's fixed grid."""
    import dataclasses

    if image.geometry == "fixed":
        return image
    return dataclasses.replace(image, geometry="fixed", rows=int(shape[0]), cols=int(shape[1]),
                               spacing=(float(spacing[0]), float(spacing[1])))


@lru_cache(maxsize=4)
def polar_maps(rows: int, cols: int, sh: float, sw: float):
    """``(rho, index)`` of every pixel offset ``(di, dj)``, arrays of shape (2 rows + 1, 2 cols + 1).

    Element ``[rows + di, cols + dj]`` is the distance (mm, float32) and the direction bin of
    the offset; the centre has direction bin 0 and distance 0.
    """
    di = np.arange(-rows, rows + 1, dtype=np.float64)[:, None] * sh
    dj = np.arange(-cols, cols + 1, dtype=np.float64)[None, :] * sw
    rho = np.hypot(di, dj).astype(np.float32)
    phi = np.mod(np.arctan2(dj, di), 2.0 * np.pi)
    index = np.minimum((phi / DPHI).astype(np.intp), N_ANGLES - 1)
    rho.flags.writeable = False
    index.flags.writeable = False
    return rho, index


@dataclass
class ViewGeometry:
    """One posed apical view of a heart over the frames of a sequence (mm, radians)."""

    view: str
    tilt: float
    apex: tuple[float, float]
    L: np.ndarray  #: LV long semi-axis per frame
    b: np.ndarray  #: LV minor semi-axis in this plane
    lax: np.ndarray  #: apex to mitral plane
    h: np.ndarray
    ha: np.ndarray
    la_A: np.ndarray
    la_W: np.ndarray
    la_c: np.ndarray
    la_a0: np.ndarray  #: LA annulus half-width in this plane
    la_k: np.ndarray  #: LA cone slope in this plane
    f: float

    @classmethod
    def from_state(cls, view: str, state: HeartState, tilt: float, apex) -> "ViewGeometry":
        b = state.b4 if view == "4CH" else state.b2
        w = state.la_W4 if view == "4CH" else state.la_W2
        scale = 1.0 if view == "4CH" else state.b2 / state.b4  # the 2CH section of the LA cone
        return cls(view=view, tilt=float(tilt), apex=(float(apex[0]), float(apex[1])), L=state.L, b=b,
                   lax=state.lax, h=state.h, ha=state.ha, la_A=state.la_A, la_W=w, la_c=state.la_c,
                   la_a0=state.la_a0 * scale, la_k=state.la_k * scale, f=state.f)

    # ---------------------------------------------------------------- frame
    @property
    def axis(self):
        return np.array([math.cos(self.tilt), math.sin(self.tilt)])

    @property
    def normal(self):
        return np.array([-math.sin(self.tilt), math.cos(self.tilt)])

    def point(self, s, v=0.0):
        """Image position (mm) of local coordinates (s along the axis from the apex, v lateral)."""
        return np.asarray(self.apex) + np.multiply.outer(s, self.axis) + np.multiply.outer(v, self.normal)

    def la_cone(self, box, spacing):
        """``|v| - k s`` (float32) of the pixel centres of ``box``: the LA is where it is <= a0 - k Lax."""
        i0, i1, j0, j1 = box
        y = (np.arange(i0, i1) * spacing[0])[:, None]
        x = (np.arange(j0, j1) * spacing[1])[None, :]
        s, v = self.local(y, x)
        k = float(np.mean(self.la_k))
        return (np.abs(v) - k * s).astype(np.float32)

    def local(self, y, x):
        """Local (s, v) of image positions (mm)."""
        dy, dx = np.asarray(y) - self.apex[0], np.asarray(x) - self.apex[1]
        a, n = self.axis, self.normal
        return dy * a[0] + dx * a[1], dy * n[0] + dx * n[1]

    def centres(self, spacing):
        """Pixel centres used as star centres: LV/epicardium, LA (row, col ints)."""
        sh, sw = spacing
        s_lv = 0.5 * float(np.min(self.lax))
        s_la = 0.5 * (float(np.max(self.lax)) + float(np.min(self.lax + self.la_c + self.la_A)))
        out = []
        for s in (s_lv, s_la):
            y, x = self.point(s)
            out.append((int(round(y / sh)), int(round(x / sw))))
        return out

    # --------------------------------------------------------------- tables
    def _local_origin(self, centre, spacing):
        return self.local(centre[0] * spacing[0], centre[1] * spacing[1])

    def tables(self, spacing, centres):
        """Exact boundary tables (T, N_ANGLES) in mm.

        Returns a dict with ``lv_ell``, ``epi_ell``, ``lv_line`` (about the LV centre),
        ``la_ell``, ``la_line`` (about the LA centre). A region's radius is the minimum of
        its ellipse and line radii.
        """
        psi = ANGLES[None, :] - self.tilt
        ds, dv = np.cos(psi).astype(np.float32), np.sin(psi).astype(np.float32)
        col = lambda a: np.asarray(a, np.float32)[:, None]  # noqa: E731
        s0, v0 = (np.float32(x) for x in self._local_origin(centres[0], spacing))
        lv_ell = _ray_ellipse(s0, v0, col(self.L), col(self.L), col(self.b), ds, dv)
        epi_ell = _ray_ellipse(s0, v0, col(self.L), col(self.L + self.ha), col(self.b + self.h), ds, dv)
        lv_line = _ray_line(s0, col(self.lax), ds, above=True)
        s1, v1 = (np.float32(x) for x in self._local_origin(centres[1], spacing))
        la_ell = _ray_ellipse(s1, v1, col(self.lax + self.la_c), col(self.la_A), col(self.la_W), ds, dv)
        la_line = _ray_line(s1, col(self.lax), ds, above=False)
        return {"lv_ell": lv_ell, "epi_ell": epi_ell, "lv_line": lv_line, "la_ell": la_ell, "la_line": la_line}

    def epi_centroid(self):
        """Centroid (row mm, col mm) of the epicardial region (LV + MYO) per frame, exact."""
        a = self.L + self.ha
        bb = self.b + self.h
        fe = np.clip(self.f * self.L / a, -1.0, 1.0)
        area = 2.0 * bb * a * half_area_factor(fe)
        # z = s - L from the equator towards the base; the region spans z in [-a, f L]
        z_mean = -(2.0 * bb * a * a / 3.0) * (1.0 - fe * fe) ** 1.5 / area
        centre = self.point(self.L + z_mean)
        return centre[:, 0], centre[:, 1]

    # ------------------------------------------------------- analytic 2-D values
    def analytic(self, spacing) -> dict:
        """Per-frame analytic 2-D quantities of the clean view (mm, mm^2, degrees, pixels)."""
        f = self.f
        lv_area = 2.0 * self.b * self.L * half_area_factor(f)
        le = self.L + self.ha
        epi_area = 2.0 * (self.b + self.h) * le * half_area_factor(f * self.L / le)
        la_area, _, u_star = la_measures(self.la_a0, self.la_k, self.la_W, self.la_A, self.la_c)
        la_half_width = np.where(u_star >= self.la_c, self.la_a0 + self.la_k * u_star, self.la_W)
        base_width = 2.0 * self.b * math.sqrt(1.0 - f * f)
        contour = lv_contour_length(self.L, self.b, f)
        sh, sw = spacing
        base_mid = self.point(self.lax)
        return {
            "lv_area_mm2": lv_area, "myo_area_mm2": epi_area - lv_area, "la_area_mm2": la_area,
            "lv_length_mm": self.lax.copy(), "lv_base_width_mm": base_width, "lv_semi_axis_mm": self.b.copy(),
            "myo_thickness_mm": self.h.copy(), "myo_thickness_apex_mm": self.ha.copy(),
            "la_length_mm": self.la_c + self.la_A, "la_width_mm": 2.0 * la_half_width,
            "lv_contour_length_mm": contour,
            "lv_orientation_deg": np.full_like(self.L, math.degrees(self.tilt)),
            "apex_row": np.full_like(self.L, self.apex[0] / sh), "apex_col": np.full_like(self.L, self.apex[1] / sw),
            "base_mid_row": base_mid[:, 0] / sh, "base_mid_col": base_mid[:, 1] / sw,
        }


def _ray_ellipse(s0, v0, sc, a_s, b_v, ds, dv):
    """Distance from (s0, v0) along (ds, dv) to the ellipse centred at (sc, 0) with semi-axes (a_s, b_v)."""
    inv_a2, inv_b2 = 1.0 / (a_s * a_s), 1.0 / (b_v * b_v)
    p = s0 - sc
    qa = ds * ds * inv_a2 + dv * dv * inv_b2
    qb = p * ds * inv_a2 + v0 * dv * inv_b2
    qc = p * p * inv_a2 + v0 * v0 * inv_b2 - 1.0
    disc = np.maximum(qb * qb - qa * qc, 0.0)
    return np.maximum((-qb + np.sqrt(disc)) / qa, 0.0)


def _ray_line(s0, s_line, ds, *, above: bool):
    """Distance to the line s = s_line for rays from s0; inf for rays that never reach it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (s_line - s0) / ds
    ok = ds > 1e-12 if above else ds < -1e-12
    return np.where(ok & (r >= 0), r, np.inf)


def table_area(radius) -> np.ndarray:
    """Area (mm^2) of the star-shaped region with boundary table ``radius`` (..., N_ANGLES)."""
    return 0.5 * (radius.astype(np.float64) ** 2).sum(-1) * DPHI


def table_centroid(radius, centre_mm):
    """Centroid (row mm, col mm) of a star-shaped region."""
    r = radius.astype(np.float64)
    area = table_area(r)
    m = (r ** 3 / 3.0) * DPHI
    return centre_mm[0] + (m * COS).sum(-1) / area, centre_mm[1] + (m * SIN).sum(-1) / area


def bbox(radius, centre, spacing, shape, pad: int = 1):
    """Pixel bounding box ``(i0, i1, j0, j1)`` (half-open, clipped to the image) of tables about ``centre``.

    Also returns whether the region was clipped by the image border.
    """
    sh, sw = spacing
    r = np.max(np.where(np.isfinite(radius), radius, 0.0), axis=0)
    rows = centre[0] + r * COS / sh
    cols = centre[1] + r * SIN / sw
    i0, i1 = int(math.floor(rows.min())) - pad, int(math.ceil(rows.max())) + pad + 1
    j0, j1 = int(math.floor(cols.min())) - pad, int(math.ceil(cols.max())) + pad + 1
    clipped = i0 < 0 or j0 < 0 or i1 > shape[0] or j1 > shape[1]
    return (max(i0, 0), min(i1, shape[0]), max(j0, 0), min(j1, shape[1])), clipped


def window(centre, box, spacing, shape):
    """``(rho, index)`` of the pixels of ``box`` about ``centre`` (contiguous arrays)."""
    rho, index = polar_maps(shape[0], shape[1], float(spacing[0]), float(spacing[1]))
    i0, i1, j0, j1 = box
    ic, jc = centre
    rs = slice(shape[0] + i0 - ic, shape[0] + i1 - ic)
    cs = slice(shape[1] + j0 - jc, shape[1] + j1 - jc)
    return np.ascontiguousarray(rho[rs, cs]), np.ascontiguousarray(index[rs, cs])


def inside(radius, rho, index):
    """Boolean (T, h, w): pixels whose distance is within the table radius of their direction."""
    return np.take(radius.astype(np.float32, copy=False), index, axis=1) >= rho
