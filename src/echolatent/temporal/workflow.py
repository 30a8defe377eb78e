"""Input and output paths of the temporal-stage rules, from the workflow configuration.

Kept in the package (not in the Snakefiles) so the rule files hold rules only and the
path logic can be tested without Snakemake. ``settings`` is the ``temporal:`` section of the
configuration with the schema's defaults (:mod:`echolatent.settings`). Imports no torch:
the workflow reads this module when it builds the DAG.
"""

from __future__ import annotations

from echolatent.settings import check_section
from echolatent.temporal.thresholds import image_attribute_names

__all__ = ["settings", "correction_settings", "reference", "threshold_rule", "image_thresholds", "threshold_names",
           "threshold_inputs", "latent_threshold_inputs", "correction_inputs", "temporal_outputs", "latent_outputs"]


def settings(config: dict) -> dict:
    """The ``temporal:`` section with its defaults; checked (the message names the key)."""
    return check_section(config.get("temporal") or {}, "temporal")


def correction_settings(config: dict) -> dict:
    """What the correction rule passes to :func:`echolatent.stages.temporal.correction_stage`:
    the ``temporal:`` and ``encoding:`` sections (defaults filled in)."""
    return {"temporal": settings(config), "encoding": check_section(config.get("encoding") or {}, "encoding")}


def reference(settings: dict, synthetic: bool) -> str:
    """Which masks are the reference sequences of the thresholds (see :mod:`echolatent.stages.temporal`)."""
    choice = settings["thresholds"]["reference"]
    if choice == "auto":
        return "observed" if synthetic else "input"
    if choice in ("truth", "observed") and not synthetic:
        raise ValueError(f"config: temporal.thresholds.reference {choice!r} needs a synthetic cohort")
    return choice


def threshold_rule(settings: dict, synthetic: bool) -> str:
    """How the derived thresholds come from the reference (``temporal.thresholds.rule``):
    ``auto`` is ``max`` for clean references (truth, observed) and ``robust`` for ``input``."""
    choice = settings["thresholds"]["rule"]
    if choice == "auto":
        return "robust" if reference(settings, synthetic) == "input" else "max"
    return choice


def image_thresholds(settings: dict) -> str:
    """The image-space thresholds file used by the metric."""
    choice = settings["thresholds"]["source"]
    if choice == "derived":
        return "results/temporal/thresholds.tsv"
    if choice == "published":
        return "resources/temporal_thresholds.tsv"
    return choice


def threshold_names(settings: dict) -> list[str]:
    """Attribute columns of the derived image-space thresholds (``temporal.thresholds.units``).

    ``physical`` (default): mm, mm^2 and degrees measured in mm, so a frame's flag does not
    depend on its sequence's pixel spacing; ``pixels``: the grid's pixels (the pre-issue-12
    behaviour, meaningful only on one common grid). ``thresholds.source: published`` does not use
    them: the published table names the pixel columns (CAMUS native pixels).
    """
    return image_attribute_names(settings["thresholds"]["units"])


def threshold_inputs(settings: dict, synthetic: bool, shards) -> dict:
    ref = reference(settings, synthetic)
    source = "truth" if ref == "truth" else "input"
    files = {"attributes": [f"results/attributes/{source}/shard-{k}.parquet" for k in shards],
             "patients": "results/cohort/patients.tsv"}
    if ref == "observed":
        files["frames"] = "results/cohort/truth/frames.tsv"
    return files


def latent_threshold_inputs(model: str, settings: dict, synthetic: bool, shards) -> dict:
    files = {"checkpoint": f"results/models/{model}/checkpoint.pt",
             "bounds": f"results/models/{model}/latent_bounds.tsv",
             "image": image_thresholds(settings)}
    if settings["thresholds"]["latent"] == "derived":
        ref = reference(settings, synthetic)
        folder = "results/cohort/truth" if ref == "truth" else "results/cohort"
        files["reference_shards"] = [f"{folder}/shard-{k}.h5" for k in shards]
        files["cohort_shards"] = [f"results/cohort/shard-{k}.h5" for k in shards]
        files["patients"] = "results/cohort/patients.tsv"
        if ref == "observed":
            files["frames"] = "results/cohort/truth/frames.tsv"
    return files


def correction_inputs(model: str, shard, settings: dict, synthetic: bool) -> dict:
    files = {"checkpoint": f"results/models/{model}/checkpoint.pt",
             "shard": f"results/cohort/shard-{shard}.h5",
             "image": image_thresholds(settings),
             "latent": f"results/temporal/{model}/latent_thresholds.tsv",
             "patients": "results/cohort/patients.tsv"}
    if synthetic:
        files["truth"] = f"results/cohort/truth/shard-{shard}.h5"
        files["frames"] = "results/cohort/truth/frames.tsv"
    return files


def temporal_outputs(model: str, settings: dict, synthetic: bool, shards) -> list[str]:
    """Targets of the temporal stage (for ``rule all``)."""
    files = [f"results/temporal/{model}/summary.tsv"]
    files += [f"results/temporal/{model}/shard-{k}.{ext}" for k in shards for ext in ("tsv", "h5")]
    if settings["correction"]["export_nifti"]:
        files += [f"results/temporal/{model}/nifti/shard-{k}" for k in shards]
    if synthetic:
        files.append("results/temporal/detection.tsv")
    return files


def latent_outputs(model: str, shards) -> list[str]:
    """Targets of the latent-encoding stage (for ``rule all``)."""
    return [f"results/latents/{model}/shard-{k}.{ext}" for k in shards for ext in ("parquet", "h5")]
