"""Settings of the temporal correction, with the defaults of the workflow's configuration schema.

:class:`CorrectionConfig` is the Python API's view of the ``temporal:`` and ``encoding:``
sections of the configuration: one flat field per setting, the default of each field read from
the schema (:mod:`echolatent.settings`), and its values checked by the schema too. A
correction run from Python with ``CorrectionConfig()`` is therefore the workflow's default
correction. (The TMI 2022 reference smoothing is ``method="smooth", weight=50.0,
max_rounds=1``.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from echolatent.settings import allowed, check_section, defaults

__all__ = ["CorrectionConfig", "FIELDS", "METHODS", "SCOPES"]

#: Field of :class:`CorrectionConfig` -> (section, key) of the configuration it comes from.
FIELDS = {
    "method": ("temporal", "correction", "method"),
    "atrium": ("temporal", "correction", "atrium"),
    "margin": ("temporal", "thresholds", "margin"),
    "detector": ("temporal", "thresholds", "detector"),
    "repair_rounds": ("temporal", "repair", "rounds"),
    "decoder_weights": ("temporal", "repair", "decoder_weights"),
    "interpolation": ("temporal", "repair", "interpolation"),
    "fallback": ("temporal", "repair", "fallback"),
    "weight": ("temporal", "smooth", "weight"),
    "max_weight": ("temporal", "smooth", "max_weight"),
    "n_bisections": ("temporal", "smooth", "n_bisections"),
    "n_neighbours": ("temporal", "smooth", "n_neighbours"),
    "scope": ("temporal", "smooth", "scope"),
    "output": ("temporal", "smooth", "output"),
    "upsample": ("temporal", "smooth", "upsample"),
    "max_rounds": ("temporal", "smooth", "max_rounds"),
    "tighten": ("temporal", "smooth", "tighten"),
    "batch_size": ("encoding", "batch_size"),
}


def _default(name: str):
    section, *keys = FIELDS[name]
    value = defaults(section)
    for key in keys:
        value = value[key]
    return tuple(value) if isinstance(value, list) else value


def _field(name: str):
    return field(default=_default(name))


@dataclass
class CorrectionConfig:
    """Parameters of the temporal correction (defaults: the workflow's, from the schema).

    ``method="repair"`` repairs the flagged frames only (:mod:`echolatent.temporal.correction.repair`);
    sequences it leaves inconsistent go to the smoothing when ``fallback="smooth"``.
    ``method="smooth"`` is the TMI 2022 pipeline with the smoothing options. Each field is
    described in the schema under the key :data:`FIELDS` names.
    """

    method: str = _field("method")
    repair_rounds: int = _field("repair_rounds")
    decoder_weights: tuple = _field("decoder_weights")
    fallback: str = _field("fallback")
    interpolation: str = _field("interpolation")
    weight: float = _field("weight")
    max_weight: float = _field("max_weight")
    n_bisections: int = _field("n_bisections")
    n_neighbours: int = _field("n_neighbours")
    margin: float = _field("margin")
    detector: str = _field("detector")
    atrium: str = _field("atrium")
    scope: str = _field("scope")
    max_rounds: int = _field("max_rounds")
    tighten: float = _field("tighten")
    batch_size: int = _field("batch_size")
    upsample: str = _field("upsample")
    output: str = _field("output")

    def __post_init__(self):
        self.decoder_weights = tuple(float(w) for w in self.decoder_weights)
        self.settings()  # checked by the schema: one statement of the allowed values

    def settings(self) -> dict:
        """The configuration sections this config stands for (``{"temporal": ..., "encoding": ...}``), checked."""
        out: dict = {}
        for name, (section, *keys) in FIELDS.items():
            node = out.setdefault(section, {})
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            value = getattr(self, name)
            node[keys[-1]] = list(value) if isinstance(value, tuple) else value
        return {section: check_section(values, section) for section, values in out.items()}

    @classmethod
    def from_settings(cls, temporal: dict | None = None, encoding: dict | None = None) -> "CorrectionConfig":
        """From the ``temporal:`` and ``encoding:`` sections of a configuration (absent keys: defaults)."""
        sections = {"temporal": check_section(temporal or {}, "temporal"),
                    "encoding": check_section(encoding or {}, "encoding")}
        values = {}
        for name, (section, *keys) in FIELDS.items():
            value = sections[section]
            for key in keys:
                value = value[key]
            values[name] = value
        return cls(**values)

    @classmethod
    def from_dict(cls, data) -> "CorrectionConfig":
        """From flat field names (unknown names are an error)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown temporal correction key(s) {unknown}; allowed: {sorted(known)}")
        return cls(**dict(data))


METHODS = allowed("temporal", "correction", "method")
SCOPES = allowed("temporal", "smooth", "scope")
