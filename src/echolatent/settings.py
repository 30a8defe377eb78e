"""The workflow's configuration: its schema is the one place where defaults and allowed values live.

``config.schema.yaml`` (this package; ``workflow/schemas/config.schema.yaml`` is the same file)
describes every key of ``config/config.yaml``: type, allowed values, default and meaning.
Snakemake validates the workflow's configuration against it, and the Python API reads its
defaults from it (:func:`defaults`), so that a stage run from Python and the same stage run by
the workflow cannot use different settings. This module imports neither Snakemake nor torch:
the workflow reads it when it builds the DAG.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import jsonschema
import yaml

__all__ = ["SCHEMA_PATH", "schema", "validated", "defaults", "allowed", "check_section"]

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def schema() -> dict:
    """A copy of the configuration schema."""
    return copy.deepcopy(_schema())


def _fill_defaults(instance, node: dict):
    """Set the ``default`` of every absent property, recursively (entries of a mapping too)."""
    if not isinstance(instance, dict) or node.get("type") != "object":
        return instance
    for key, sub in node.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        for key in set(instance) - set(node.get("properties", {})):
            _fill_defaults(instance[key], extra)
    return instance


def _node(path: tuple[str, ...]) -> dict:
    node = _schema()
    for key in path:
        try:
            node = node["properties"][key]
        except KeyError:
            raise KeyError(f"the configuration schema has no section {'.'.join(path)!r}") from None
    return node


def check_section(section: dict, *path: str) -> dict:
    """``section`` (the part of the config at ``path``, e.g. ``"temporal"``) with its defaults, checked.

    ``None`` stands for an absent section (its default).

    Raises ``ValueError`` naming the key and what the schema allows.
    """
    node = _node(path)
    if section is None:  # an absent section: its own default
        section = node.get("default", {})
    filled = _fill_defaults(copy.deepcopy(section), node)
    errors = sorted(jsonschema.Draft202012Validator(node).iter_errors(filled), key=lambda e: list(e.path))
    if errors:
        error = errors[0]
        where = ".".join([*path, *map(str, error.path)]) or "config"
        raise ValueError(f"config: {where}: {error.message}")
    return filled


def validated(config: dict) -> dict:
    """The whole configuration with its defaults, checked against the schema."""
    return check_section(config, *())


def defaults(*path: str) -> dict:
    """The defaults of a configuration section, e.g. ``defaults("temporal")``."""
    return check_section(None, *path)


def allowed(*path: str) -> tuple:
    """The allowed values (``enum``) of the key at ``path``, e.g. ``allowed("temporal", "smooth", "scope")``."""
    return tuple(_node(path)["enum"])
