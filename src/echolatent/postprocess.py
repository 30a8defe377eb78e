"""The post-processing chain (temporal and anatomical corrections) and the anatomical-guarantee paths.

No Snakemake and no torch here: the workflow reads this module while it builds the DAG.

The ``guarantees`` config section names the model whose latent space is densified and the
post-processing order, ``postprocess``: a list of ``temporal`` and ``anatomical`` steps. Each
step reads the masks the step before it wrote (the first one reads the cohort's):

=====================  ==================================  ===================================
postprocess            anatomical correction reads         temporal correction reads
=====================  ==================================  ===================================
[temporal, anatomical] ``results/temporal/{t}/shard-k.h5``  the cohort shards
[anatomical, temporal] the cohort shards                   ``results/guarantees/{g}/shard-k.h5``
[anatomical]           the cohort shards                   the cohort shards (not chained)
=====================  ==================================  ===================================

``t`` is the chained AR-VAE (``guarantees.temporal_model``, default the first AR-VAE) and
``g`` the guarantee model. The last step's masks are the *final* masks
(``population.masks: final``).
"""

from __future__ import annotations

__all__ = ["Step", "postprocess_chain", "anatomical_input", "temporal_input", "temporal_input_criteria", "final_masks",
           "mask_source_shard", "guarantee_outputs"]

#: A step of the chain: (kind, model), kind ``temporal`` or ``guaranteed`` (the anatomical correction).
Step = tuple[str, str]

#: Mask folder of each step kind under ``results/``.
FOLDERS = {"temporal": "temporal", "guaranteed": "guarantees"}


def postprocess_chain(guarantees: dict, models: dict, temporal_models: list[str]) -> list[Step]:
    """The configured post-processing steps in order, each with its model.

    ``guarantees``: the config section; ``models``: the study's models (name -> settings);
    ``temporal_models``: the AR-VAEs. An ``anatomical`` step without ``guarantees.model`` is
    left out (the stage is off); a ``temporal`` step without any AR-VAE too.

    Raises
    ------
    ValueError
        ``guarantees.model`` or ``guarantees.temporal_model`` names no configured model (or a
        temporal model that is not an AR-VAE).
    """
    model = guarantees.get("model") or ""
    if model and model not in models:
        raise ValueError(f"config: guarantees.model {model!r} is not configured; the study's models "
                         f"(config models:) are {sorted(models)}")
    temporal = guarantees.get("temporal_model") or ""
    if temporal and temporal not in temporal_models:
        raise ValueError(f"config: guarantees.temporal_model {temporal!r} is not an AR-VAE of the study; the "
                         f"temporal stage corrects with {sorted(temporal_models)}")
    temporal = temporal or (temporal_models[0] if temporal_models else "")
    chain = []
    for step in guarantees.get("postprocess", ["temporal", "anatomical"]):
        if step == "anatomical" and model:
            chain.append(("guaranteed", model))
        elif step == "temporal" and temporal:
            chain.append(("temporal", temporal))
    return chain


def _previous(chain: list[Step], step: Step) -> Step | None:
    index = chain.index(step)
    return chain[index - 1] if index > 0 else None


def mask_source_shard(kind: str, model: str, shard) -> str:
    """The mask shard a step writes."""
    return f"results/{FOLDERS[kind]}/{model}/shard-{shard}.h5"


def anatomical_input(chain: list[Step], model: str, shard) -> tuple[str, str]:
    """``(shard path, masks name)`` the anatomical correction with ``model`` reads."""
    step = ("guaranteed", model)
    before = _previous(chain, step) if step in chain else None
    if before is None:
        return f"results/cohort/shard-{shard}.h5", "input"
    return mask_source_shard(*before, shard), f"{before[0]}/{before[1]}"


def temporal_input(chain: list[Step], model: str, shard) -> str:
    """The shard the temporal correction with ``model`` reads (the cohort's unless chained after
    the anatomical correction)."""
    step = ("temporal", model)
    before = _previous(chain, step) if step in chain else None
    return f"results/cohort/shard-{shard}.h5" if before is None else mask_source_shard(*before, shard)


def temporal_input_criteria(chain: list[Step], model: str, shard, grid) -> dict:
    """``{"criteria": path}``: the anatomy stage's table of the masks the temporal correction with
    ``model`` reads, which spares the correction measuring the frames it leaves unchanged; empty
    when ``anatomy.grid`` (``grid``) is not the grid the correction measures on (the default)."""
    from echolatent.shape.grid import CRITERIA_GRID_MM

    if grid not in ("auto", CRITERIA_GRID_MM):
        return {}
    step = ("temporal", model)
    before = _previous(chain, step) if step in chain else None
    source = "input" if before is None else f"{before[0]}/{before[1]}"
    return {"criteria": f"results/anatomy/{source}/shard-{shard}.parquet"}


def final_masks(chain: list[Step]) -> Step | None:
    """The last step of the chain (its masks are the final ones), or None without post-processing."""
    return chain[-1] if chain else None


def guarantee_outputs(model: str, shards, *, export_nifti: bool = True) -> list[str]:
    """Targets of the stage for ``rule all``."""
    folder = f"results/guarantees/{model}"
    files = [f"{folder}/valid_codes.h5", f"{folder}/densification.json", f"{folder}/summary.tsv"]
    files += [f"{folder}/shard-{k}.{ext}" for k in shards for ext in ("h5", "tsv")]
    if export_nifti:
        files += [f"{folder}/nifti/shard-{k}" for k in shards]
    return files
