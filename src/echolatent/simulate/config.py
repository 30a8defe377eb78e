"""Configuration of the synthetic cohort simulator.

:class:`SimulationConfig` groups every knob of the simulator in nested dataclasses. Build it
with :meth:`SimulationConfig.from_dict` from a plain mapping (YAML); unknown keys and
nonsensical values raise :class:`ConfigError`, whose message names the offending field
(e.g. ``observation.defect_rates.hole must be in [0, 1], got 1.5``).

Conventions: lengths in mm, volumes in mL, fractions in [0, 1], angles in degrees.
``effects`` are the planted case-vs-control differences (relative for thickness, LA volume,
EDV and E/A; absolute for GLS and EF), see :mod:`echolatent.simulate.population`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields

from echolatent import VIEWS

#: Defect types, in the order the per-frame draw uses them.
DEFECT_TYPES = ("hole", "island", "myo_gap", "lv_bg_contact", "spike")
#: Where temporal spikes may go (``observation.spike_placement``).
SPIKE_PLACEMENTS = ("uniform", "interior")
#: Attributes with no planted effect (after covariate adjustment).
NEGATIVE_CONTROLS = ("lv_orientation", "lv_base_width")
#: HDF5 filters for the images of the ``store`` format.
IMAGE_COMPRESSIONS = ("none", "lzf", "gzip")
#: Output formats of :func:`echolatent.simulate.write_cohort`.
FORMATS = ("store", "camus-nifti", "camus-mhd")
#: Native geometries of the simulated images (``image.geometry``).
GEOMETRIES = ("fixed", "camus-like")


class ConfigError(ValueError):
    """An invalid simulator configuration; the message names the field."""


@dataclass(frozen=True)
class ImageConfig:
    """Native acquisition grid and B-mode image model.

    ``geometry`` ``fixed``: every patient on ``rows`` x ``cols`` at ``spacing``. ``camus-like``:
    per patient (seeded by the patient's own SeedSequence), an anisotropic pixel size ``h``
    (rows, axial) and ``w`` (columns, lateral) drawn uniformly from the ``spacing_*_range_mm``
    and a field of view (depth x width, mm) drawn from ``depth_range_mm`` x ``width_range_mm``;
    the grid is ``ceil(depth / h)`` x ``ceil(width / w)`` (``rows``, ``cols`` and ``spacing``
    are then unused). The defaults bracket CAMUS's typical 0.154 x 0.308 mm (unverified).
    """

    rows: int = 256
    cols: int = 256
    spacing: tuple[float, float] = (0.75, 0.75)  #: (h, w) pixel size in mm
    geometry: str = "fixed"  #: fixed | camus-like (per-patient native grid)
    spacing_h_range_mm: tuple[float, float] = (0.15, 0.25)  #: camus-like: row (axial) pixel size range
    spacing_w_range_mm: tuple[float, float] = (0.30, 0.45)  #: camus-like: column (lateral) pixel size range
    depth_range_mm: tuple[float, float] = (150.0, 180.0)  #: camus-like: imaged depth = rows x h
    width_range_mm: tuple[float, float] = (130.0, 160.0)  #: camus-like: imaged width = cols x w
    images: bool = True  #: synthesise B-mode images (False: masks only, faster)
    sector_angle_deg: float = 75.0  #: opening angle of the imaging sector
    dynamic_range_db: float = 55.0  #: log-compression dynamic range
    attenuation_db_per_mm: float = 0.04  #: residual depth attenuation after time-gain compensation
    psf_axial_mm: float = 0.3  #: axial PSF sigma
    psf_lateral_mm: tuple[float, float] = (1.0, 2.0)  #: lateral PSF sigma near the probe, at full depth
    quality_probabilities: tuple[float, float, float] = (0.5, 0.35, 0.15)  #: Good, Medium, Poor
    #: HDF5 filter of the images in the ``store`` format: none, lzf or gzip (level 1). Speckle
    #: hardly compresses (lzf: ~0.65) and compressing it costs more than simulating it.
    store_compression: str = "none"


@dataclass(frozen=True)
class PopulationConfig:
    """Covariates, groups and their (deliberate) confounding."""

    groups: tuple[str, str] = ("control", "hypertensive")
    case_fraction: float = 0.5
    female_fraction: float = 0.5
    age_range: tuple[float, float] = (30.0, 85.0)
    age_mean: tuple[float, float] = (50.0, 62.0)  #: control, case: cases are older (confounding)
    age_sd: float = 10.0
    bsa_mean: tuple[float, float] = (2.0, 1.75)  #: male, female (m^2)
    bsa_sd: float = 0.15
    bsa_case_shift: float = 0.12  #: cases have larger BSA (confounding)
    severity_beta_control: tuple[float, float] = (2.0, 8.0)  #: Beta(a, b) of the severity of controls
    severity_beta_case: tuple[float, float] = (8.0, 2.0)  #: Beta(a, b) of the severity of cases
    heart_rate_mean: float = 70.0
    heart_rate_sd: float = 10.0


@dataclass(frozen=True)
class HeartConfig:
    """Reference heart (BSA 1.9 m^2, age 55) and its biological variability."""

    edv_ml: float = 105.0
    edv_cv: float = 0.12
    ef: float = 0.62
    ef_sd: float = 0.04
    lv_length_mm: float = 86.0  #: apex to mitral-plane midpoint at ED
    lv_length_cv: float = 0.05
    base_truncation: float = 0.5  #: mitral plane below the LV equator, as a fraction of the semi-axis
    lv_aspect_2ch: float = 1.0  #: mean b2 / b4 ratio of the minor radii
    wall_thickness_mm: float = 10.0
    wall_thickness_cv: float = 0.08
    apex_thickness_ratio: float = 0.75
    gls: float = -0.19  #: long-axis strain at ES (fraction)
    gls_sd: float = 0.02
    la_volume_ml: float = 50.0  #: LA volume at LV end-systole (its maximum)
    la_volume_cv: float = 0.15
    la_emptying_fraction: float = 0.55
    la_aspect: float = 0.75  #: LA lateral / longitudinal semi-axis ratio
    la_annulus_ratio: float = 0.9  #: LA width at the mitral plane / LV base width
    e_a_ratio: float = 1.4
    systolic_duration_s: float = 0.30


@dataclass(frozen=True)
class EffectsConfig:
    """Planted case-vs-control differences (expected case mean minus control mean).

    Relative (fractions): ``wall_thickness``, ``la_volume``, ``edv``, ``e_a_ratio``.
    Absolute: ``gls`` (strain fraction, + = less negative), ``ef`` (fraction).
    """

    wall_thickness: float = 0.20
    la_volume: float = 0.15
    gls: float = 0.02
    ef: float = 0.0
    edv: float = -0.05
    e_a_ratio: float = -0.15


@dataclass(frozen=True)
class PoseConfig:
    """Acquisition nuisances of each view."""

    tilt_sd_deg: float = 5.0
    tilt_max_deg: float = 10.0
    apex_depth_mm: tuple[float, float] = (12.0, 24.0)
    lateral_offset_sd_mm: float = 4.0


@dataclass(frozen=True)
class DefectRates:
    """Per-frame probability of each injected defect (at most one defect per frame)."""

    hole: float = 0.025
    island: float = 0.025
    myo_gap: float = 0.025
    lv_bg_contact: float = 0.025
    spike: float = 0.025


@dataclass(frozen=True)
class ObservationConfig:
    """Observer-like boundary noise and injected defects of the observed masks."""

    noise_static_mm: float = 1.5  #: per-sequence systematic contour offset (SD)
    noise_dynamic_mm: float = 0.5  #: frame-to-frame AR(1) contour offset (SD)
    noise_rho: float = 0.85  #: AR(1) correlation between consecutive frames
    noise_correlation_mm: float = 15.0  #: correlation length along the contour
    endo_epi_correlation: float = 0.85
    mitral_noise_mm: float = 0.5  #: SD of the mitral-plane offset
    defect_rates: DefectRates = field(default_factory=DefectRates)
    spike_area_change: tuple[float, float] = (0.05, 0.10)  #: |relative LV area change| of a spike
    #: Frames a temporal spike may take: ``uniform`` (any frame, the first and last included, as
    #: a frame-by-frame segmentation network fails) or ``interior`` (the former rule: never an
    #: end frame, never next to another spike). See :mod:`echolatent.simulate.observation`.
    spike_placement: str = "uniform"
    #: Fraction of the spikes that last two consecutive frames (same failure on a frame and the
    #: next, same sign). 0 with ``interior`` reproduces the cohorts drawn before these options.
    spike_pair_rate: float = 0.2


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a synthetic cohort (with ``seed``, bit for bit)."""

    n_patients: int = 60
    seed: int = 0
    frames: int = 20  #: frames per full cycle
    start_phase_max: float = 0.1  #: the first frame lies up to this fraction of a cycle before ED
    views: tuple[str, ...] = VIEWS
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  #: train, val, test (CAMUS exports)
    image: ImageConfig = field(default_factory=ImageConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    heart: HeartConfig = field(default_factory=HeartConfig)
    effects: EffectsConfig = field(default_factory=EffectsConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    observation: ObservationConfig = field(default_factory=ObservationConfig)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_dict(cls, data: dict | None = None, **overrides) -> "SimulationConfig":
        """Build and validate a config from a (nested) mapping; ``overrides`` are top-level keys.

        Raises
        ------
        ConfigError
            Unknown keys, wrong types or values out of range (the message names the field).
        """
        data = dict(data or {})
        data.update(overrides)
        config = _build(cls, data, "")
        config.validate()
        return config

    def to_dict(self) -> dict:
        """Plain nested dict (tuples as lists), the inverse of :meth:`from_dict`."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **changes) -> "SimulationConfig":
        """A validated copy with top-level fields replaced (nested ones given as dicts or dataclasses)."""
        merged = self.to_dict()
        for key, value in changes.items():
            if dataclasses.is_dataclass(value):
                value = _plain(dataclasses.asdict(value))
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = _deep_update(merged[key], value)
            else:
                merged[key] = value
        return SimulationConfig.from_dict(merged)

    # ---------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` on values that make no sense."""
        _integer("n_patients", self.n_patients, 1)
        _integer("seed", self.seed, 0)
        _integer("frames", self.frames, 6, 1000)
        _range("start_phase_max", self.start_phase_max, 0.0, 0.25)
        if not self.views or len(set(self.views)) != len(self.views) or any(v not in VIEWS for v in self.views):
            raise ConfigError(f"views must be distinct values among {VIEWS}, got {list(self.views)}")
        _fractions("split_fractions", self.split_fractions, total=1.0)

        im = self.image
        _integer("image.rows", im.rows, 32, 4096)
        _integer("image.cols", im.cols, 32, 4096)
        _positive_pair("image.spacing", im.spacing)
        depth, width = im.rows * im.spacing[0], im.cols * im.spacing[1]
        if depth < 150.0:
            raise ConfigError(f"image.rows * image.spacing[0] = {depth:.1f} mm is too shallow to hold the LV and "
                              "LA (need >= 150 mm; lower the rows only together with a larger spacing)")
        if width < 110.0:
            raise ConfigError(f"image.cols * image.spacing[1] = {width:.1f} mm is too narrow (need >= 110 mm)")
        if im.geometry not in GEOMETRIES:
            raise ConfigError(f"image.geometry must be one of {GEOMETRIES}, got {im.geometry!r}")
        _ordered_pair("image.spacing_h_range_mm", im.spacing_h_range_mm, 0.05, 2.0)
        _ordered_pair("image.spacing_w_range_mm", im.spacing_w_range_mm, 0.05, 2.0)
        _ordered_pair("image.depth_range_mm", im.depth_range_mm, 150.0, 400.0)
        _ordered_pair("image.width_range_mm", im.width_range_mm, 110.0, 400.0)
        for axis, extent, pixel in (("rows", im.depth_range_mm, im.spacing_h_range_mm),
                                    ("cols", im.width_range_mm, im.spacing_w_range_mm)):
            if math.ceil(extent[1] / pixel[0]) > 4096:
                raise ConfigError(f"image.spacing_{'h' if axis == 'rows' else 'w'}_range_mm: the camus-like grid "
                                  f"would have up to {math.ceil(extent[1] / pixel[0])} {axis} (max 4096)")
        _bool("image.images", im.images)
        _range("image.sector_angle_deg", im.sector_angle_deg, 30.0, 120.0)
        _range("image.dynamic_range_db", im.dynamic_range_db, 20.0, 100.0)
        _range("image.attenuation_db_per_mm", im.attenuation_db_per_mm, 0.0, 1.0)
        _range("image.psf_axial_mm", im.psf_axial_mm, 0.0, 5.0)
        _positive_pair("image.psf_lateral_mm", im.psf_lateral_mm, allow_zero=True)
        _fractions("image.quality_probabilities", im.quality_probabilities, n=3, total=1.0)
        if im.store_compression not in IMAGE_COMPRESSIONS:
            raise ConfigError(f"image.store_compression must be one of {IMAGE_COMPRESSIONS}, "
                              f"got {im.store_compression!r}")

        po = self.population
        if (len(po.groups) != 2 or len(set(po.groups)) != 2
                or not all(isinstance(g, str) and g.strip() for g in po.groups)):
            raise ConfigError(f"population.groups must be two distinct non-empty names, got {list(po.groups)}")
        _range("population.case_fraction", po.case_fraction, 0.0, 1.0)
        _range("population.female_fraction", po.female_fraction, 0.0, 1.0)
        _ordered_pair("population.age_range", po.age_range, 0.0, 120.0)
        for i, name in enumerate(("control", "case")):
            _range(f"population.age_mean[{i}] ({name})", po.age_mean[i], 0.0, 120.0)
        _pair("population.age_mean", po.age_mean)
        _range("population.age_sd", po.age_sd, 0.0, 50.0)
        _pair("population.bsa_mean", po.bsa_mean)
        for i in range(2):
            _range(f"population.bsa_mean[{i}]", po.bsa_mean[i], 1.0, 3.0)
        _range("population.bsa_sd", po.bsa_sd, 0.0, 0.6)
        _range("population.bsa_case_shift", po.bsa_case_shift, -0.6, 0.6)
        for name in ("severity_beta_control", "severity_beta_case"):
            _positive_pair(f"population.{name}", getattr(po, name))
        mc, mh = (_beta_mean(po.severity_beta_control), _beta_mean(po.severity_beta_case))
        if abs(mh - mc) < 0.05:
            raise ConfigError("population.severity_beta_case and severity_beta_control must give mean severities "
                              f"at least 0.05 apart (got {mh:.3f} and {mc:.3f})")
        _range("population.heart_rate_mean", po.heart_rate_mean, 40.0, 150.0)
        _range("population.heart_rate_sd", po.heart_rate_sd, 0.0, 40.0)

        he = self.heart
        _range("heart.edv_ml", he.edv_ml, 30.0, 400.0, open_low=True)
        _range("heart.edv_cv", he.edv_cv, 0.0, 0.4)
        _range("heart.ef", he.ef, 0.0, 1.0, open_low=True, open_high=True)
        if not 0.2 <= he.ef <= 0.85:
            raise ConfigError(f"heart.ef must be in [0.2, 0.85] for the geometry to stay valid, got {he.ef}")
        _range("heart.ef_sd", he.ef_sd, 0.0, 0.15)
        _range("heart.lv_length_mm", he.lv_length_mm, 40.0, 140.0)
        _range("heart.lv_length_cv", he.lv_length_cv, 0.0, 0.2)
        _range("heart.base_truncation", he.base_truncation, 0.0, 0.8)
        _range("heart.lv_aspect_2ch", he.lv_aspect_2ch, 0.7, 1.4)
        _range("heart.wall_thickness_mm", he.wall_thickness_mm, 3.0, 25.0)
        _range("heart.wall_thickness_cv", he.wall_thickness_cv, 0.0, 0.3)
        _range("heart.apex_thickness_ratio", he.apex_thickness_ratio, 0.3, 1.5)
        _range("heart.gls", he.gls, -0.4, -0.02)
        _range("heart.gls_sd", he.gls_sd, 0.0, 0.08)
        _range("heart.la_volume_ml", he.la_volume_ml, 10.0, 250.0)
        _range("heart.la_volume_cv", he.la_volume_cv, 0.0, 0.4)
        _range("heart.la_emptying_fraction", he.la_emptying_fraction, 0.05, 0.8)
        _range("heart.la_aspect", he.la_aspect, 0.4, 1.5)
        _range("heart.la_annulus_ratio", he.la_annulus_ratio, 0.6, 0.98)
        _range("heart.e_a_ratio", he.e_a_ratio, 0.3, 4.0)
        _range("heart.systolic_duration_s", he.systolic_duration_s, 0.15, 0.5)

        ef = self.effects
        for name in ("wall_thickness", "la_volume", "edv", "e_a_ratio"):
            _range(f"effects.{name}", getattr(ef, name), -0.5, 1.0)
        _range("effects.gls", ef.gls, -0.1, 0.1)
        _range("effects.ef", ef.ef, -0.2, 0.2)

        ps = self.pose
        _range("pose.tilt_sd_deg", ps.tilt_sd_deg, 0.0, 30.0)
        _range("pose.tilt_max_deg", ps.tilt_max_deg, 0.0, 30.0)
        _ordered_pair("pose.apex_depth_mm", ps.apex_depth_mm, 0.0, 60.0)
        _range("pose.lateral_offset_sd_mm", ps.lateral_offset_sd_mm, 0.0, 30.0)

        ob = self.observation
        _range("observation.noise_static_mm", ob.noise_static_mm, 0.0, 5.0)
        _range("observation.noise_dynamic_mm", ob.noise_dynamic_mm, 0.0, 5.0)
        _range("observation.noise_rho", ob.noise_rho, 0.0, 1.0, open_high=True)
        _range("observation.noise_correlation_mm", ob.noise_correlation_mm, 1.0, 200.0)
        _range("observation.endo_epi_correlation", ob.endo_epi_correlation, -1.0, 1.0)
        _range("observation.mitral_noise_mm", ob.mitral_noise_mm, 0.0, 5.0)
        rates = ob.defect_rates
        for name in DEFECT_TYPES:
            _range(f"observation.defect_rates.{name}", getattr(rates, name), 0.0, 1.0)
        total = sum(getattr(rates, name) for name in DEFECT_TYPES)
        if total > 1.0 + 1e-12:
            raise ConfigError(f"observation.defect_rates must sum to at most 1 (one defect per frame), got {total:g}")
        lo, hi = _pair("observation.spike_area_change", ob.spike_area_change)
        if not 0.0 < lo <= hi <= 0.3:
            raise ConfigError("observation.spike_area_change must satisfy 0 < low <= high <= 0.3, "
                              f"got {list(ob.spike_area_change)}")
        if ob.spike_placement not in SPIKE_PLACEMENTS:
            raise ConfigError(f"observation.spike_placement must be one of {SPIKE_PLACEMENTS}, "
                              f"got {ob.spike_placement!r}")
        _range("observation.spike_pair_rate", ob.spike_pair_rate, 0.0, 1.0)

    @property
    def defect_rates(self) -> dict:
        """Per-frame rate of each of :data:`DEFECT_TYPES`, plus ``spike_placement`` and
        ``spike_pair_rate`` (what :func:`~echolatent.simulate.observation.draw_defects` needs)."""
        rates = {name: getattr(self.observation.defect_rates, name) for name in DEFECT_TYPES}
        rates.update(spike_placement=self.observation.spike_placement,
                     spike_pair_rate=self.observation.spike_pair_rate)
        return rates


# ---------------------------------------------------------------------- helpers
def _beta_mean(ab) -> float:
    return ab[0] / (ab[0] + ab[1])


def _build(cls, data, path: str):
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    where = path or "simulation config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where} (valid keys: {', '.join(known)})")
    kwargs = {}
    defaults = cls()
    for name, value in data.items():
        f = known[name]
        full = f"{path}.{name}" if path else name
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, full)
        else:
            kwargs[name] = _coerce(value, default, full)
    return cls(**kwargs)


def _coerce(value, default, name):
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        items = list(value)
        if default and not isinstance(default[0], str) and len(items) != len(default):
            raise ConfigError(f"{name} must have {len(default)} items, got {len(items)}")
        template = default[0] if default else None
        out = []
        for i, item in enumerate(items):
            if isinstance(template, str):
                if not isinstance(item, str):
                    raise ConfigError(f"{name}[{i}] must be a string, got {item!r}")
                out.append(item)
            else:
                out.append(_coerce(item, template if template is not None else 0.0, f"{name}[{i}]"))
        return tuple(out)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    return value


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _deep_update(base: dict, new: dict) -> dict:
    out = dict(base)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = value
    return out


def _finite(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")


def _integer(name, value, low=None, high=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{name} must be {bounds}, got {value}")


def _range(name, value, low, high, *, open_low=False, open_high=False):
    _finite(name, value)
    bad = value < low or value > high or (open_low and value == low) or (open_high and value == high)
    if bad:
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise ConfigError(f"{name} must be in {left}{low:g}, {high:g}{right}, got {value:g}")


def _bool(name, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")


def _pair(name, value):
    if len(value) != 2:
        raise ConfigError(f"{name} must have 2 items, got {len(value)}")
    for i, v in enumerate(value):
        _finite(f"{name}[{i}]", v)
    return value


def _positive_pair(name, value, allow_zero=False):
    _pair(name, value)
    for i, v in enumerate(value):
        if v < 0 or (v == 0 and not allow_zero):
            raise ConfigError(f"{name}[{i}] must be {'>= 0' if allow_zero else '> 0'}, got {v:g}")


def _ordered_pair(name, value, low, high):
    _pair(name, value)
    if not low <= value[0] <= value[1] <= high:
        raise ConfigError(f"{name} must satisfy {low:g} <= low <= high <= {high:g}, got {list(value)}")


def _fractions(name, value, *, n=3, total=None):
    if len(value) != n:
        raise ConfigError(f"{name} must have {n} items, got {len(value)}")
    for i, v in enumerate(value):
        _range(f"{name}[{i}]", v, 0.0, 1.0)
    if total is not None and abs(sum(value) - total) > 1e-6:
        raise ConfigError(f"{name} must sum to {total:g}, got {sum(value):g}")
