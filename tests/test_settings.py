"""One source of configuration truth: the Python API's defaults are the workflow's (issue 13).

The schema (``echolatent/config.schema.yaml``) holds the workflow's defaults. Each stage
function a rule calls takes its settings as keyword arguments; where such an argument has a
default, it must be the schema's default of the config key the rule passes to it, so that a
stage run from Python without arguments is the workflow's default stage.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from echolatent.ingest.plan import plan_cohort
from echolatent.ingest.shard import ingest_shard
from echolatent.models.config import LossConfig, TrainConfig, study_models
from echolatent.settings import SCHEMA_PATH, defaults, validated
from echolatent.stages import encode, shape, stats, temporal
from echolatent.stages.ingest import open_source
from echolatent.temporal.config import FIELDS, CorrectionConfig
from echolatent.temporal.workflow import correction_settings

REPO = Path(__file__).resolve().parents[1]

#: (stage function, keyword) -> the config key (path) whose value the workflow passes to it.
BOUND = {
    (open_source, "cycle"): ("cohort", "cycle"),
    (open_source, "layout"): ("cohort", "layout"),
    (plan_cohort, "seed"): ("cohort", "seed"),
    (plan_cohort, "n_shards"): ("cohort", "shards"),
    (plan_cohort, "split_source"): ("cohort", "split", "source"),
    (ingest_shard, "image_size"): ("cohort", "image_size"),
    (ingest_shard, "on_bad_sequence"): ("qc", "on_bad_sequence"),
    (shape.shard_anatomy_tables, "grid"): ("anatomy", "grid"),
    (shape.cohort_clinical_indices, "rule"): ("clinical", "disc_rule"),
    (encode.encode_stage, "batch_size"): ("encoding", "batch_size"),
    (temporal.image_thresholds_stage, "cycle"): ("cohort", "cycle"),
    (temporal.image_thresholds_stage, "robust_k"): ("temporal", "thresholds", "robust_k"),
    (temporal.detection_stage, "cycle"): ("cohort", "cycle"),
    (temporal.detection_stage, "margin"): ("temporal", "thresholds", "margin"),
    (temporal.detection_stage, "detector"): ("temporal", "thresholds", "detector"),
    (temporal.latent_thresholds_stage, "mode"): ("temporal", "thresholds", "latent"),
    (temporal.latent_thresholds_stage, "splits"): ("temporal", "thresholds", "reference_splits"),
    (temporal.latent_thresholds_stage, "cycle"): ("cohort", "cycle"),
    (temporal.latent_thresholds_stage, "batch_size"): ("encoding", "batch_size"),
    (temporal.correction_stage, "cycle"): ("cohort", "cycle"),
    (stats.patients_stage, "groups"): ("population", "groups"),
    (stats.patients_stage, "splits"): ("population", "splits"),
    (stats.patients_stage, "covariates"): ("population", "covariates"),
    (stats.patients_stage, "min_group_size"): ("population", "min_group_size"),
    (stats.table1_stage, "groups"): ("population", "groups"),
    (stats.table1_stage, "skewed"): ("population", "skewed"),
    (stats.table1_stage, "min_group_size"): ("population", "min_group_size"),
    (stats.effects_stage, "families"): ("population", "families"),
    (stats.effects_stage, "covariates"): ("population", "covariates"),
    (stats.effects_stage, "groups"): ("population", "groups"),
    (stats.effects_stage, "min_group_size"): ("population", "min_group_size"),
}


def schema_default(path):
    value = validated({})
    for key in path:
        value = value[key]
    return value


@pytest.mark.parametrize("bound", list(BOUND), ids=lambda b: f"{b[0].__name__}.{b[1]}")
def test_stage_keyword_defaults_are_the_schema_defaults(bound):
    function, keyword = bound
    parameter = inspect.signature(function).parameters[keyword]
    expected = schema_default(BOUND[bound])
    if parameter.default is inspect.Parameter.empty:
        return  # required: the caller always states it, nothing can differ
    default = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
    assert default == expected, f"{function.__name__}({keyword}={parameter.default!r}) but the workflow's " \
                                f"default {'.'.join(BOUND[bound])} is {expected!r}"


def test_correction_defaults_are_the_workflow_defaults():
    workflow = correction_settings({})            # what rule temporal_correction passes by default
    assert CorrectionConfig() == CorrectionConfig.from_settings(workflow["temporal"], workflow["encoding"])
    # every setting of the correction sections is a field, and every field is a setting
    covered = {path for path in FIELDS.values()}
    sections = {("temporal", s): defaults("temporal")[s] for s in ("repair", "smooth")}
    for (top, section), values in sections.items():
        assert {(top, section, key) for key in values} <= covered, section
    assert CorrectionConfig().weight == 4.0 and CorrectionConfig().max_rounds == 6  # the workflow's, not 50 and 1


def test_training_defaults_are_the_workflow_defaults():
    entry = study_models({"models": {"m": {"kind": "ar-vae"}}})["m"]
    assert TrainConfig.from_dict(entry["training"]) == TrainConfig(loss=LossConfig(kind="ar-vae"))
    assert TrainConfig().model.input_size == defaults("cohort")["image_size"]   # one image-size fact
    assert entry["attributes"] == list(TrainConfig().attribute_name(k, 7) for k in range(7))


@pytest.mark.slow
def test_dag_build_imports_no_torch(tmp_path):
    """Building the default DAG must not load torch: the driver may run without it (per-rule envs)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "snakemake", "-n", "--snakefile",
                             str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
                             str(REPO / "config/config.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "import time:" in line]
    assert "snakemake" in imported and "echolatent.settings" in imported      # the probe sees imports
    assert not [name for name in imported if name == "torch" or name.startswith("torch.")]


@pytest.mark.slow
def test_unconfigured_model_is_refused_naming_the_configured_ones(tmp_path):
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "results/models/not_configured/checkpoint.pt",
                             "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
                             str(REPO / "config/config.yaml")], capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "model 'not_configured' is not configured" in output and "['arvae', 'cvae']" in output


def test_schema_file_is_the_workflow_schema():
    assert (REPO / "workflow/schemas/config.schema.yaml").resolve() == SCHEMA_PATH.resolve()


def _leaf_keys(node, path=()):
    """Every configurable key of the schema (the simulator's section is the simulator's own)."""
    properties = node.get("properties", {})
    if not properties or path == ("cohort", "synthetic"):
        yield path
        return
    for key, sub in properties.items():
        yield from _leaf_keys(sub, (*path, key))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _leaf_keys(extra, path)


def test_every_schema_key_is_described_and_documented():
    from echolatent.settings import schema

    readme = (REPO / "config/README.md").read_text()
    tree = schema()
    keys = list(_leaf_keys(tree))
    assert len(keys) > 40
    for path in keys:
        node = tree
        for key in path:
            node = node["properties"][key] if key in node.get("properties", {}) else \
                node["additionalProperties"]["properties"][key]
        where = ".".join(path)
        assert node.get("description"), f"{where}: no description in the schema"
        # a key is named in a table as `key`, or with its parents as `parent.key`
        assert re.search(rf"`([\w.{{}}]*\.)?{re.escape(path[-1])}`", readme), f"{where}: not in config/README.md"
