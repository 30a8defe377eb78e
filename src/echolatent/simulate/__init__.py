"""Synthetic cohort simulator: EchoLatent's default cohort and the oracle of every later stage.

Public API
----------
:class:`SimulationConfig`
    All knobs (nested dataclasses), ``SimulationConfig.from_dict(mapping)`` validates.
:func:`simulate_patient`
    ``simulate_patient(config, index) -> PatientSimulation``, deterministic in ``(seed, index)``.
:func:`write_cohort`
    ``write_cohort(config, out_dir, fmt="store", n_jobs=1)`` streams the cohort to disk.

Modules: :mod:`~.config`, :mod:`~.population` (covariates, groups, planted effects),
:mod:`~.dynamics` (cycle and 3-D heart), :mod:`~.geometry` (views and rasterisation),
:mod:`~.observation` (noise and defects), :mod:`~.bmode` (images), :mod:`~.export`
(formats), :mod:`~.cohort` (one patient), :mod:`~.cohort_writer` (the cohort to disk).
"""

from echolatent.simulate.cohort import PatientSimulation, ViewSimulation, simulate_patient
from echolatent.simulate.cohort_writer import iter_patients, write_cohort
from echolatent.simulate.config import (
    DEFECT_TYPES, FORMATS, NEGATIVE_CONTROLS, ConfigError, DefectRates, EffectsConfig, HeartConfig, ImageConfig,
    ObservationConfig, PopulationConfig, PoseConfig, SimulationConfig,
)

__all__ = [
    "SimulationConfig", "ImageConfig", "PopulationConfig", "HeartConfig", "EffectsConfig", "PoseConfig",
    "ObservationConfig", "DefectRates", "ConfigError", "DEFECT_TYPES", "FORMATS", "NEGATIVE_CONTROLS",
    "simulate_patient", "write_cohort", "iter_patients", "PatientSimulation", "ViewSimulation",
]
