"""Stage "cohort": the functions the ingestion rules call (``workflow/rules/ingest.smk``).

Rules, their files and their function
-------------------------------------
``simulate_cohort``   the config's ``cohort.synthetic`` -> ``results/synthetic/`` (simulator store);
                      :func:`simulate_stage`
``cohort_manifest``   the cohort source -> ``results/cohort/manifest/cohort.tsv``;
                      :func:`manifest_stage`
``shard_manifest``    the source and ``results/cohort/plan.tsv`` ->
                      ``results/cohort/manifest/shard-{k}.tsv``; :func:`manifest_stage`
``plan_cohort``       the source (and covariates TSV) -> ``results/cohort/plan.tsv``;
                      :func:`plan_stage`
``ingest_shard``      the source and the plan -> ``results/cohort/shard-{k}.h5``, the
                      shard's tables in ``results/cohort/parts/`` and, for synthetic cohorts,
                      ``results/cohort/truth/shard-{k}.h5``; :func:`ingest_stage`
``merge_cohort``      the plan and ``results/cohort/parts/*`` -> ``patients.tsv``,
                      ``sequences.tsv``, ``qc.tsv``, ``provenance.json`` (and ``truth/*.tsv``)
                      in ``results/cohort/``; :func:`merge_stage`

The logic is in :mod:`echolatent.ingest` (plan, shard, cohort; the files' contract is its
docstring), :mod:`echolatent.io.manifest` and :mod:`echolatent.simulate`. The cohort source
is named by the rules' ``source``, ``cycle`` and ``layout`` params and opened by
:func:`open_source`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from echolatent.ingest.cohort import merge_cohort
from echolatent.ingest.plan import plan_cohort, read_plan
from echolatent.ingest.shard import ingest_shard
from echolatent.io.sheet import SheetSource
from echolatent.io.sources import CamusSource, StoreSource
from echolatent.io.tables import write_table

__all__ = ["open_source", "simulate_stage", "manifest_stage", "plan_stage", "ingest_stage", "merge_stage"]

logger = logging.getLogger(__name__)


def open_source(kind: str, path, *, cycle: str = "full", layout: str = "auto"):
    """Open a cohort source.

    Parameters
    ----------
    kind : {"synthetic", "store", "camus", "sheet"}
        ``synthetic`` and ``store`` both read a simulator store folder.
    path : path
        The store folder, the CAMUS/TED root folder, or the sheet TSV.
    cycle : {"full", "half"}
    layout : str
        CAMUS layout (``auto``, ``camus-nifti``, ``camus-mhd``, ``ted``).
    """
    if kind in ("synthetic", "store"):
        return StoreSource(path, cycle=cycle)
    if kind == "camus":
        return CamusSource(path, layout=layout, cycle=cycle)
    if kind == "sheet":
        return SheetSource(path, cycle=cycle)
    raise ValueError(f"unknown cohort source {kind!r}; expected synthetic, store, camus or sheet")


def simulate_stage(settings: dict, out) -> None:
    """The synthetic cohort of the config's ``cohort.synthetic`` section, as a simulator store
    with its truth (rule ``simulate_cohort``; :func:`echolatent.simulate.write_cohort`)."""
    from echolatent.progress import Progress
    from echolatent.simulate import SimulationConfig, write_cohort

    config = SimulationConfig.from_dict(settings)
    progress = Progress(config.n_patients, "patients", "simulating", logger=logger)
    write_cohort(config, out, fmt="store", progress=lambda done, total: progress.update(done - progress.done))


def manifest_stage(source_kind: str, source_path, *, cycle: str, layout: str, out, plan=None, shard=None,
                   extra_files=()) -> None:
    """SHA-256 of the input files a cohort step reads (rules ``cohort_manifest`` and ``shard_manifest``).

    Without ``plan``: the files planning reads (:func:`echolatent.io.manifest.cohort_files`)
    and ``extra_files`` (the covariates TSV); with ``plan`` (``plan.tsv``) and ``shard``: the
    sequence files of that shard's patients (:func:`echolatent.io.manifest.shard_files`).
    """
    from echolatent.io.manifest import cohort_files, shard_files, write_manifest

    source = open_source(source_kind, source_path, cycle=cycle, layout=layout)
    if plan is not None:
        files = shard_files(source, read_plan(plan), int(shard))
    else:
        files = cohort_files(source) + list(extra_files)
    write_manifest(out, files)


def plan_stage(source_kind: str, source_path, *, cycle: str, layout: str, n_shards: int, seed: int,
               fractions: dict, split_source: str, covariates=None, out) -> pd.DataFrame:
    """Patients, covariates, split and shard of every patient (rule ``plan_cohort``;
    :func:`echolatent.ingest.plan.plan_cohort`), written to ``out`` (``plan.tsv``)."""
    source = open_source(source_kind, source_path, cycle=cycle, layout=layout)
    plan = plan_cohort(source, n_shards=n_shards, seed=seed, fractions=fractions, split_source=split_source,
                       covariates=covariates or None)
    write_table(plan, out)
    return plan


def ingest_stage(source_kind: str, source_path, plan, shard, *, cycle: str, layout: str, image_size: int,
                 on_bad_sequence: str, out_h5, out_sequences, out_qc, out_inputs, out_truth_h5=None) -> pd.DataFrame:
    """Read, check, resample and write the patients of one shard (rule ``ingest_shard``;
    :func:`echolatent.ingest.shard.ingest_shard`).

    ``plan``: ``plan.tsv``; with ``out_truth_h5`` (synthetic cohorts) the clean masks of the
    simulator store's ``truth/clean_masks.h5`` are written there on the same grids.
    """
    source = open_source(source_kind, source_path, cycle=cycle, layout=layout)
    return ingest_shard(source, read_plan(plan), int(shard), image_size=image_size, out_h5=out_h5,
                        out_sequences=out_sequences, out_qc=out_qc, out_inputs=out_inputs,
                        on_bad_sequence=on_bad_sequence,
                        truth_masks=Path(source_path) / "truth" / "clean_masks.h5" if out_truth_h5 else None,
                        out_truth_h5=out_truth_h5)


def merge_stage(source_kind: str, source_path, plan, sequence_tables, qc_tables, input_tables, *, cycle: str,
                layout: str, config: dict, out_dir) -> None:
    """The cohort tables and provenance from the per-shard parts (rule ``merge_cohort``;
    :func:`echolatent.ingest.cohort.merge_cohort`).

    The files every shard reads (a sheet, a store) are hashed here once; a synthetic cohort's
    truth tables (the store's ``truth/*.tsv``) are copied into ``out_dir/truth/``.
    """
    source = open_source(source_kind, source_path, cycle=cycle, layout=layout)
    merge_cohort(read_plan(plan), sequence_tables, qc_tables, input_tables, out_dir=out_dir, config=config,
                 global_inputs=source.input_files(),
                 truth_dir=Path(source_path) / "truth" if source_kind == "synthetic" else None)
