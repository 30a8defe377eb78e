"""Input manifests: the content of a cohort's input files, as a file a workflow can depend on.

Snakemake decides what to re-run from file modification times. A cohort folder (CAMUS) or a
sheet is a single input, so a mask edited in place, or fixed after
``qc.on_bad_sequence: skip``, was never re-read. The ingestion rules therefore also depend on
manifests that list the SHA-256 of every input file:

``results/cohort/manifest/cohort.tsv``
    The files that the planning step reads: the sheet, a covariate table, the CAMUS split
    lists and ``Info_*.cfg`` files (covariates, ED/ES), a simulator store's tables.
``results/cohort/manifest/shard-{k}.tsv``
    The sequence files (masks, images, an MHD's ``.raw``) of the patients of shard ``k``.

A manifest holds content only (``file``, ``bytes``, ``sha256``; ``missing`` for a file that
is listed but absent, so that creating it counts as a change). It is rewritten only when
that content changes, so a touched but unchanged file never triggers a re-run, and a changed
one re-runs exactly the stages that read it. :func:`refresh_manifest` runs when the workflow
is parsed; it re-hashes only the files whose size or modification time changed since the
last look (kept in a sidecar ``.{name}.stat``), so checking 10,000 patients costs a few
``stat`` calls per file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from echolatent import VIEWS
from echolatent.io import camus
from echolatent.io.atomic import atomic_path
from echolatent.io.itk import data_files
from echolatent.io.sources import sha256_file

MISSING = "missing"
COLUMNS = ["file", "bytes", "sha256"]
_STAT_COLUMNS = ["file", "size", "mtime_ns", "sha256"]


# --------------------------------------------------------------------------- what to list
def _with_data_files(paths) -> list[str]:
    """Each path (as a string: pathlib costs more than the stat for 10,000 patients),
    followed by the data file of an existing MetaImage header."""
    listed = []
    for path in map(str, paths):
        listed.append(path)
        if path.endswith(".mhd") and os.path.isfile(path):  # NIfTI: one file, nothing to look up
            try:
                listed += [str(p) for p in data_files(path) if str(p) != path]
            except ValueError:  # a broken header: ingestion reports it; the header is listed
                pass
    return listed


def cohort_files(source) -> list[Path]:
    """Files read when a cohort is planned (patients, covariates, splits), for ``cohort.tsv``.

    Parameters
    ----------
    source : a cohort source (:func:`echolatent.stages.ingest.open_source`)
    """
    kind = getattr(source, "name", "")
    if kind == "sheet":
        return [Path(source.path)]
    if kind == "store":
        return list(source.input_files())
    if kind == "camus":
        files = [camus.split_file(source.root, split) for split in camus.SPLIT_NAMES]
        for patient in _camus_patient_folders(source):
            files += [camus.cfg_file(source.root, patient, view, source.layout) for view in VIEWS]
        return files
    raise ValueError(f"no manifest for a cohort source of kind {kind!r}")


def patient_files(source, patient_ids) -> list[str]:
    """Sequence files (masks, images, MHD data) of the given patients, present or not.

    One pass over the source's listing for all the patients (a shard of a 10,000-patient
    sheet is not filtered patient by patient).
    """
    kind = getattr(source, "name", "")
    patient_ids = sorted(str(p) for p in patient_ids)
    if kind == "store":
        return []  # one HDF5 file for the whole cohort, in cohort.tsv
    if kind == "sheet":
        sheet = source.sheet
        rows = sheet[sheet["patient_id"].isin(set(patient_ids))].sort_values(["patient_id", "view"], kind="stable")
        base = os.path.dirname(str(source.path))
        paths = []
        for column in [c for c in ("mask", "image") if c in rows]:
            values = rows[column]
            paths += [os.path.join(base, v) for v in values[values.notna()].astype(str).str.strip() if v]
        return _with_data_files(paths)
    if kind == "camus":
        sequence = "full" if (source.cycle == "full" or source.layout == "ted") else "half"
        paths = [camus.sequence_file(source.root, patient, view, sequence, source.layout, gt=gt)
                 for patient in patient_ids for view in VIEWS for gt in (True, False)]
        return _with_data_files(paths)
    raise ValueError(f"no manifest for a cohort source of kind {kind!r}")


def shard_files(source, plan: pd.DataFrame, shard: int) -> list[str]:
    """Sequence files of the patients that ``plan`` puts in ``shard``."""
    return patient_files(source, plan.loc[plan["shard"] == int(shard), "patient_id"].astype(str))


def _camus_patient_folders(source) -> list[str]:
    root = camus.patient_dir(source.root, "", source.layout)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("patient"))


# --------------------------------------------------------------------------- the manifest
def _stat_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.stat")


def _read_stat_cache(path: Path) -> dict:
    try:
        table = pd.read_csv(_stat_path(path), sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError):
        return {}
    if list(table.columns) != _STAT_COLUMNS:
        return {}
    return {row.file: (row.size, row.mtime_ns, row.sha256) for row in table.itertuples(index=False)}


def hash_files(files, cache: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SHA-256 of each file, re-using ``cache`` entries whose size and mtime still match.

    Returns
    -------
    manifest : DataFrame
        ``file``, ``bytes``, ``sha256`` (``missing`` for an absent file), in the given order.
    stats : DataFrame
        The stat cache to keep for next time.
    """
    cache = cache or {}
    rows, stats = [], []
    for path in dict.fromkeys(str(f) for f in files):  # unique, order kept
        try:
            info = os.stat(path)
        except OSError:
            rows.append((path, "0", MISSING))
            continue
        size, mtime = str(info.st_size), str(info.st_mtime_ns)
        cached = cache.get(path)
        digest = cached[2] if cached and cached[:2] == (size, mtime) else sha256_file(path)
        rows.append((path, size, digest))
        stats.append((path, size, mtime, digest))
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(stats, columns=_STAT_COLUMNS)


def _write_atomic(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def write_manifest(path, files) -> bool:
    """Write the manifest of ``files`` to ``path`` unless it already holds that content.

    Returns True when ``path`` was (re)written. The stat cache beside it is updated always.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest, stats = hash_files(files, _read_stat_cache(path))
    changed = True
    if path.is_file():
        try:
            old = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
            changed = not old.equals(manifest.astype(str))
        except (OSError, ValueError, pd.errors.ParserError):
            changed = True
    if changed:
        _write_atomic(manifest, path)
    _write_atomic(stats, _stat_path(path))
    return changed


def refresh_manifests(source, manifest_dir, plan_path, shards) -> list[Path]:
    """Bring the existing manifests of a cohort up to date (at workflow parse time).

    Manifests that do not exist yet are left to their rules, and shard manifests are only
    refreshed while the plan they derive from exists.

    Returns
    -------
    list of Path
        The manifests whose content changed (their stages will re-run).
    """
    manifest_dir, plan_path = Path(manifest_dir), Path(plan_path)
    changed = []
    cohort = manifest_dir / "cohort.tsv"
    if cohort.is_file() and write_manifest(cohort, cohort_files(source)):
        changed.append(cohort)
    if plan_path.is_file():
        plan = pd.read_csv(plan_path, sep="\t", dtype={"patient_id": str})
        for shard in shards:
            path = manifest_dir / f"shard-{shard}.tsv"
            if path.is_file() and write_manifest(path, shard_files(source, plan, shard)):
                changed.append(path)
    return changed
