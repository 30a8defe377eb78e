"""Patient level: covariates, group, severity and the heart's parameters with planted effects.

Population model
----------------
* **Group** (``control`` / case, the second name of ``population.groups``): patient ``i`` is a
  case iff ``frac(u0 + (i + 1) / golden_ratio) < case_fraction``, a low-discrepancy sequence
  (``u0`` from the seed), so any prefix of the cohort is balanced to within a patient or two
  and the assignment depends on ``(seed, i)`` only.
* **Covariates** given the group: sex ~ Bernoulli(``female_fraction``); age ~ N(``age_mean``
  of the group, ``age_sd``) clipped to ``age_range``; BSA ~ N(``bsa_mean`` of the sex +
  ``bsa_case_shift`` for cases, ``bsa_sd``). Cases are older and larger on purpose
  (confounding): the heart depends on age and BSA, so unadjusted group comparisons are
  biased while covariate-adjusted ones are not.
* **Severity** s in [0, 1]: Beta(``severity_beta_control``) or Beta(``severity_beta_case``).
  Planted effects are linear in ``z = (s - m_c) / (m_h - m_c)`` (``m`` the two Beta means),
  so ``E[z | case] - E[z | control] = 1`` and the configured effect is exactly the expected
  case-minus-control difference (relative effects multiply by ``1 + effect * z``).
* **Heart** (reference BSA 1.9 m^2, age 55): lengths scale with ``(BSA/1.9)^0.5``, volumes
  with ``(BSA/1.9)^1.5``; wall thickness and LA volume grow with age, E/A falls with age.
  Biological variability is Gaussian (clipped at 2.5 SD). The cavity effect (``effects.edv``)
  acts through the LV length only, so the ED minor radii, hence the LV base width, carry no
  group effect: ``lv_base_width`` and ``lv_orientation`` are the negative controls.

The draws never depend on the effect sizes, so re-simulating with ``effects`` set to zero
gives each patient's exact counterfactual (same covariates, same noise).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from echolatent.simulate.config import SimulationConfig

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
#: Planted quantities, how they act, and their configured sizes' field names.
EFFECT_KINDS = {"wall_thickness": "relative", "la_volume": "relative", "edv": "relative",
                "e_a_ratio": "relative", "gls": "absolute", "ef": "absolute"}
#: Largest LV minor radius / wall thickness at ED (criterion 11 needs LV width / walls <= 4.15).
MAX_RADIUS_TO_WALL = 3.0
#: Spawn-key tag of cohort-level (not per-patient) random streams.
COHORT_KEY = 0x5EED


def patient_id(index: int) -> str:
    """``patient0001`` for index 0."""
    return f"patient{index + 1:04d}"


def patient_seed_sequence(seed: int, index: int) -> np.random.SeedSequence:
    """The SeedSequence of patient ``index``: child ``index`` of ``SeedSequence(seed)``."""
    return np.random.SeedSequence(seed, spawn_key=(index,))


def cohort_uniform(seed: int, tag: int) -> float:
    """A cohort-level uniform number in [0, 1) (independent of the patient streams)."""
    return float(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(COHORT_KEY, tag))).random())


def is_case(config: SimulationConfig, index: int) -> bool:
    u0 = cohort_uniform(config.seed, 0)
    return (u0 + (index + 1) * GOLDEN) % 1.0 < config.population.case_fraction


@dataclass(frozen=True)
class Patient:
    """One synthetic patient: covariates, planted effects and heart parameters at ED."""

    index: int
    patient_id: str
    group: str
    is_case: bool
    severity: float
    severity_z: float
    age: float
    sex: str
    bsa: float
    heart_rate: float
    cycle_s: float
    systolic_fraction: float
    # planted effect actually applied to this patient (relative: factor - 1; absolute: shift)
    effect_wall_thickness: float
    effect_la_volume: float
    effect_edv: float
    effect_e_a_ratio: float
    effect_gls: float
    effect_ef: float
    # heart at ED
    edv_ml: float
    ef: float
    lv_length_mm: float
    base_truncation: float
    lv_aspect_2ch: float
    wall_thickness_mm: float
    apex_thickness_ratio: float
    gls: float
    la_volume_max_ml: float
    la_emptying_fraction: float
    la_aspect: float
    la_annulus_ratio: float
    e_a_ratio: float
    thickness_clamped: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _beta_mean(ab) -> float:
    return ab[0] / (ab[0] + ab[1])


def draw_patient(config: SimulationConfig, index: int, rng: np.random.Generator) -> Patient:
    """Draw patient ``index`` from its own generator (a fixed number of draws, in a fixed order)."""
    po, he, ef = config.population, config.heart, config.effects
    case = is_case(config, index)
    g = int(case)
    u_sex = rng.random()
    z = np.clip(rng.standard_normal(16), -2.5, 2.5)
    beta = po.severity_beta_case if case else po.severity_beta_control
    severity = float(rng.beta(*beta))

    sex = "F" if u_sex < po.female_fraction else "M"
    age = float(np.clip(po.age_mean[g] + po.age_sd * z[0], *po.age_range))
    bsa = float(np.clip(po.bsa_mean[1 if sex == "F" else 0] + po.bsa_case_shift * g + po.bsa_sd * z[1], 1.3, 2.8))
    heart_rate = float(np.clip(po.heart_rate_mean + po.heart_rate_sd * z[2], 45.0, 130.0))
    cycle_s = 60.0 / heart_rate
    systolic_fraction = float(np.clip(he.systolic_duration_s / cycle_s, 0.25, 0.5))

    mc, mh = _beta_mean(po.severity_beta_control), _beta_mean(po.severity_beta_case)
    sz = (severity - mc) / (mh - mc)
    shift = {name: getattr(ef, name) * sz for name in EFFECT_KINDS}
    factor = {name: max(0.3, 1.0 + shift[name]) for name, kind in EFFECT_KINDS.items() if kind == "relative"}

    a10 = (age - 55.0) / 10.0
    kb = bsa / 1.9
    female = sex == "F"
    edv = he.edv_ml * kb ** 1.5 * (1.0 - 0.03 * a10) * (0.93 if female else 1.0) * (1.0 + he.edv_cv * z[3])
    edv *= factor["edv"]
    ejection = float(np.clip(he.ef + he.ef_sd * z[4] + shift["ef"], 0.2, 0.85))
    # The cavity effect acts through the length only: minor radii (base width) carry no effect.
    lax = he.lv_length_mm * kb ** 0.5 * (0.97 if female else 1.0) * (1.0 + he.lv_length_cv * z[5]) * factor["edv"]
    f = float(np.clip(he.base_truncation + 0.04 * z[6], 0.0, 0.8))
    aspect = he.lv_aspect_2ch * (1.0 + 0.04 * z[7])
    thickness = (he.wall_thickness_mm * kb ** 0.5 * (1.0 + 0.04 * a10) * (1.0 + he.wall_thickness_cv * z[8])
                 * factor["wall_thickness"])
    gls = float(np.clip(he.gls + he.gls_sd * z[9] + 0.004 * a10 + shift["gls"], -0.35, -0.03))
    la_max = he.la_volume_ml * kb ** 1.5 * (1.0 + 0.06 * a10) * (1.0 + he.la_volume_cv * z[10]) * factor["la_volume"]
    la_ef = float(np.clip(he.la_emptying_fraction + 0.05 * z[11], 0.1, 0.8))
    ea = float(np.clip(he.e_a_ratio * (1.0 - 0.12 * a10) * (1.0 + 0.15 * z[12]) * factor["e_a_ratio"], 0.3, 4.0))
    la_aspect = he.la_aspect * (1.0 + 0.06 * z[13])

    # Keep LV width / summed wall width (anatomical criterion 11, <= 4.15) clear of its limit.
    L = lax / (1.0 + f)
    kappa = 2.0 / 3.0 + f - f ** 3 / 3.0
    b = math.sqrt(edv * 1000.0 / (math.pi * L * kappa))  # geometric mean of b4, b2
    clamped = b / thickness > MAX_RADIUS_TO_WALL
    if clamped:
        thickness = b / MAX_RADIUS_TO_WALL

    return Patient(
        index=index, patient_id=patient_id(index), group=po.groups[g], is_case=case,
        severity=severity, severity_z=float(sz), age=age, sex=sex, bsa=bsa,
        heart_rate=heart_rate, cycle_s=cycle_s, systolic_fraction=systolic_fraction,
        effect_wall_thickness=factor["wall_thickness"] - 1.0, effect_la_volume=factor["la_volume"] - 1.0,
        effect_edv=factor["edv"] - 1.0, effect_e_a_ratio=factor["e_a_ratio"] - 1.0,
        effect_gls=shift["gls"], effect_ef=shift["ef"],
        edv_ml=float(edv), ef=ejection, lv_length_mm=float(lax), base_truncation=f, lv_aspect_2ch=float(aspect),
        wall_thickness_mm=float(thickness), apex_thickness_ratio=he.apex_thickness_ratio, gls=gls,
        la_volume_max_ml=float(la_max), la_emptying_fraction=la_ef, la_aspect=float(la_aspect),
        la_annulus_ratio=he.la_annulus_ratio, e_a_ratio=ea, thickness_clamped=bool(clamped),
    )
