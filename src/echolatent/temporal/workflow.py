"""Input and output paths of the temporal-stage rules, from the workflow configuration.

Kept in the package (not in the Snakefiles) so the rule files hold rules only and the
path logic can be tested without Snakemake. ``settings`` is the ``temporal:`` section of the
configuration merged onto :data:`DEFAULTS`.
"""

from __future__ import annotations

from echolatent.temporal.pipeline import CorrectionConfig
from echolatent.temporal.thresholds import IMAGE_UNITS, image_attribute_names

__all__ = ["DEFAULTS", "CORRECTION_KEYS", "settings", "reference", "image_thresholds", "threshold_names",
           "threshold_inputs", "latent_threshold_inputs", "correction_inputs", "temporal_outputs", "latent_outputs"]

#: Defaults of the ``temporal:`` configuration section (the config schema holds the same).
DEFAULTS = {
    "thresholds": "derived",          # derived | published | path of a thresholds TSV
    "units": "physical",              # physical (mm, mm^2, degrees) | pixels: attributes of derived thresholds
    "reference": "auto",              # auto (observed if synthetic, else input) | truth | observed | input
    "reference_splits": ["train"],
    "latent_thresholds": "image",     # image (reference) | derived
    "method": "repair",               # repair (flagged frames only) | smooth (reference: every frame)
    "repair_rounds": 5,
    "decoder_weights": [1.0, 0.5, 0.0],
    "interpolation": "smooth",        # smooth (min. sum of squared deviations) | linear
    "fallback": "smooth",             # smooth | none: sequences the repair leaves inconsistent
    "weight": 4.0,                    # free dims, first round (reference: 50; see benchmarks/README.md)
    "max_weight": 128.0,
    "n_bisections": 5,
    "n_neighbours": 1,
    "margin": 0.0,
    "atrium": "keep",                 # keep | drop (models without an LA class)
    "scope": "all",                   # all | inconsistent | frames
    "output": "decoded",              # decoded | displacement
    "upsample": "bilinear",           # bilinear | nearest
    "max_rounds": 6,                  # 1 = reference; more: image-space check and re-smoothing
    "tighten": 0.5,
    "batch_size": 256,
    "export_nifti": True,
    "runtime_minutes": 60,
}
CORRECTION_KEYS = ("method", "repair_rounds", "decoder_weights", "interpolation", "fallback", "weight", "max_weight",
                   "n_bisections", "n_neighbours", "margin", "atrium", "scope", "output", "upsample", "max_rounds",
                   "tighten", "batch_size")


def settings(config: dict) -> dict:
    """The ``temporal:`` section merged onto the defaults; checked (the message names the key)."""
    section = dict(config.get("temporal") or {})
    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"config: unknown temporal key(s) {unknown}; allowed: {sorted(DEFAULTS)}")
    merged = {**DEFAULTS, **section}
    CorrectionConfig.from_dict({key: merged[key] for key in CORRECTION_KEYS})
    if merged["latent_thresholds"] not in ("image", "derived"):
        raise ValueError(f"config: temporal.latent_thresholds must be image or derived, "
                         f"got {merged['latent_thresholds']!r}")
    if merged["units"] not in IMAGE_UNITS:
        raise ValueError(f"config: temporal.units must be one of {list(IMAGE_UNITS)}, got {merged['units']!r}")
    if merged["reference"] not in ("auto", "truth", "observed", "input"):
        raise ValueError(f"config: temporal.reference must be auto, truth, observed or input, "
                         f"got {merged['reference']!r}")
    return merged


def reference(settings: dict, synthetic: bool) -> str:
    """Which masks are the reference sequences of the thresholds (see :mod:`echolatent.temporal.stages`)."""
    choice = settings["reference"]
    if choice == "auto":
        return "observed" if synthetic else "input"
    if choice in ("truth", "observed") and not synthetic:
        raise ValueError(f"config: temporal.reference {choice!r} needs a synthetic cohort")
    return choice


def image_thresholds(settings: dict) -> str:
    """The image-space thresholds file used by the metric."""
    choice = settings["thresholds"]
    if choice == "derived":
        return "results/temporal/thresholds.tsv"
    if choice == "published":
        return "resources/temporal_thresholds.tsv"
    return choice


def threshold_names(settings: dict) -> list[str]:
    """Attribute columns of the derived image-space thresholds (``temporal.units``).

    ``physical`` (default): mm, mm^2 and degrees measured in mm, so a frame's flag does not
    depend on its sequence's pixel spacing; ``pixels``: the grid's pixels (the pre-issue-12
    behaviour, meaningful only on one common grid). ``thresholds: published`` does not use
    them: the published table names the pixel columns (CAMUS native pixels).
    """
    return image_attribute_names(settings["units"])


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
    if settings["latent_thresholds"] == "derived":
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
    if settings["export_nifti"]:
        files += [f"results/temporal/{model}/nifti/shard-{k}.tsv" for k in shards]
    if synthetic:
        files.append("results/temporal/detection.tsv")
    return files


def latent_outputs(model: str, shards) -> list[str]:
    """Targets of the latent-encoding stage (for ``rule all``)."""
    return [f"results/latents/{model}/shard-{k}.{ext}" for k in shards for ext in ("parquet", "h5")]
