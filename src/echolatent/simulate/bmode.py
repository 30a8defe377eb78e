"""Cheap B-mode-like images of the simulated views.

The image is built in the log (display) domain, where the model's factors add up:

``dB = echogenicity(labels) (laterally PSF-blurred) + speckle + depth gain + view gain``

* **Echogenicity**: myocardium bright, surrounding tissue mid-grey, blood dark (darker for
  better image quality), from the *clean* label map of each frame, blurred laterally.
* **Speckle**: ``20 log10 |Z|`` of a complex Gaussian field filtered by the PSF (axial
  sigma ``psf_axial_mm``, lateral sigma growing with depth from ``psf_lateral_mm[0]`` to
  ``[1]``), i.e. fully developed (Rayleigh) speckle, plus a weak smooth tissue
  heterogeneity. A pool of it is drawn once per (seed, grid) and every view takes its own
  window; the window follows the longitudinal motion of the mid-ventricle frame by frame,
  so speckle moves with the tissue (temporally coherent).
* **Depth and sector**: residual attenuation after time-gain compensation, darker sector
  edges, nothing outside the sector (apex at the top centre of the image).
* **Display**: log compression to ``dynamic_range_db``, 8 bit.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import ndimage

from echolatent.simulate.config import ImageConfig
from echolatent.simulate.population import COHORT_KEY

QUALITIES = ("Good", "Medium", "Poor")
#: dB levels relative to the display maximum: tissue, myocardium, blood per quality.
TISSUE_DB = -21.0
MYO_DB = {"Good": -5.0, "Medium": -6.0, "Poor": -8.0}
BLOOD_DB = {"Good": -47.0, "Medium": -42.0, "Poor": -36.0}
#: Extra rows of the speckle pool (motion of the speckle window), in mm.
MOTION_MARGIN_MM = 30.0
OUTSIDE = -20000


def _units(config: ImageConfig) -> float:
    return 255.0 / config.dynamic_range_db


@lru_cache(maxsize=4)
def static_map(config: ImageConfig) -> np.ndarray:
    """Display units (int16) of homogeneous tissue with depth gain; OUTSIDE outside the sector."""
    rows, cols = config.rows, config.cols
    sh, sw = config.spacing
    y = np.arange(rows)[:, None] * sh + 2.0
    x = (np.arange(cols)[None, :] - (cols - 1) / 2.0) * sw
    r = np.hypot(y, x)
    angle = np.degrees(np.arctan2(x, y))
    half = config.sector_angle_deg / 2.0
    edge = (np.abs(angle) / half) ** 6
    db = TISSUE_DB - config.attenuation_db_per_mm * r - 8.0 * edge - 6.0 * np.exp(-r / 6.0)
    out = np.round(255.0 + db * _units(config))
    inside = (np.abs(angle) <= half) & (r <= rows * sh)
    out = np.where(inside, out, OUTSIDE).astype(np.int16)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=2)
def speckle_pool(seed: int, config: ImageConfig) -> np.ndarray:
    """Log-envelope speckle (display units, int16) of shape (rows + margin, 4 cols)."""
    sh, sw = config.spacing
    margin = int(math.ceil(MOTION_MARGIN_MM / sh))
    shape = (config.rows + margin, 4 * config.cols)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(COHORT_KEY, 1)))
    z = rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32)
    sa = config.psf_axial_mm / sh
    near = ndimage.gaussian_filter(z, (sa, config.psf_lateral_mm[0] / sw), mode="wrap")
    far = ndimage.gaussian_filter(z, (sa, config.psf_lateral_mm[1] / sw), mode="wrap")
    w = np.clip(np.arange(shape[0]) / config.rows, 0.0, 1.0)[:, None]
    field = (1.0 - w) * near + w * far
    amp = np.abs(field)
    amp /= np.sqrt((amp ** 2).mean(axis=1, keepdims=True))
    db = 20.0 * np.log10(np.maximum(amp, 1e-4))
    coarse = rng.standard_normal((shape[0] // 16 + 2, shape[1] // 16 + 2))
    hetero = ndimage.zoom(ndimage.gaussian_filter(coarse, 1.0, mode="wrap"), 16, order=1)[: shape[0], : shape[1]]
    db += 2.5 * hetero / max(hetero.std(), 1e-6)
    pool = np.round(db * _units(config)).astype(np.int16)
    pool.flags.writeable = False
    return pool


def draw_view_imaging(rng: np.random.Generator, config: ImageConfig) -> dict:
    """Per-view imaging draws: quality, gain, speckle window column (fixed amount of randomness)."""
    u, g, c = rng.random(3)
    cum = np.cumsum(config.quality_probabilities)
    quality = QUALITIES[min(int(np.searchsorted(cum, u, side="right")), 2)]
    return {"quality": quality, "gain_db": float(2.0 * (g - 0.5) * 3.0),
            "column": int(c * (3 * config.cols + 1))}


def render(clean_labels, box, motion_mm, imaging: dict, seed: int, config: ImageConfig) -> np.ndarray:
    """B-mode images (T, H, W) uint8 of a view.

    Parameters
    ----------
    clean_labels : ndarray (T, H, W) uint8
    box : (i0, i1, j0, j1)
        Bounding box holding every non-background label, with 2 background columns each side.
    motion_mm : ndarray (T,)
        Longitudinal tissue displacement (towards the apex, >= 0) moving the speckle.
    """
    units = _units(config)
    quality = imaging["quality"]
    lut = np.round(np.array([0.0, BLOOD_DB[quality] - TISSUE_DB, MYO_DB[quality] - TISSUE_DB,
                             BLOOD_DB[quality] - TISSUE_DB + 3.0]) * units).astype(np.int16)
    static = static_map(config)
    pool = speckle_pool(seed, config)
    n_frames, rows, cols = clean_labels.shape
    gain = np.int16(round(imaging["gain_db"] * units))
    base = static + gain  # int16 (H, W)
    c0 = imaging["column"]
    shifts = np.clip(np.round(np.asarray(motion_mm) / config.spacing[0]).astype(int), 0, pool.shape[0] - rows)
    buf = np.empty((n_frames, rows, cols), np.int16)
    i0, i1, j0, j1 = box
    blur = j1 - j0 > 4 and i1 > i0
    for t in range(n_frames):  # frame by frame: the working arrays stay in cache
        frame = buf[t]
        np.add(base, pool[shifts[t]: shifts[t] + rows, c0: c0 + cols], out=frame)
        if blur:
            echo = lut.take(clean_labels[t, i0:i1, j0:j1])
            # lateral PSF blur of the echogenicity: [1 4 6 4 1] / 16
            acc = echo[:, :-4] + echo[:, 4:]
            acc += (echo[:, 1:-3] + echo[:, 3:-1]) << 2
            acc += echo[:, 2:-2] * np.int16(6)
            acc >>= 4
            frame[i0:i1, j0 + 2:j1 - 2] += acc
        np.clip(frame, 0, 255, out=frame)
    return buf.astype(np.uint8)
