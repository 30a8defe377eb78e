"""Step 1 of ingestion: the split (train/val/test, by patient) and the shard of every patient.

:func:`plan_cohort` checks every setting before any data is read, and checks that the plan
is usable by the later stages (every shard holds a patient; train and val are not empty).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from echolatent.io.errors import InputError
from echolatent.io.sources import SPLITS, read_patient_table

__all__ = ["assign_splits", "plan_cohort", "read_plan", "split_fractions"]


def split_fractions(fractions) -> dict:
    """Check the split fractions (``cohort.split``); return ``{split: float}``.

    Raises
    ------
    InputError
        Unless train, val and test are finite numbers >= 0 that sum to 1.
    """
    try:
        values = {split: float(fractions[split]) for split in SPLITS}
    except (KeyError, TypeError, ValueError):
        raise InputError(None, f"cohort.split fractions must give train, val and test as numbers, got {fractions!r}") \
            from None
    total = sum(values.values())
    if not np.isclose(total, 1.0) or not all(np.isfinite(v) and v >= 0 for v in values.values()):
        shown = ", ".join(f"{split}={value:g}" for split, value in values.items())
        raise InputError(None, f"cohort.split fractions must be >= 0 and sum to 1, got {shown} (sum {total:g})")
    return values


def assign_splits(patients: pd.DataFrame, fractions: dict, seed: int, *, stratify: str = "group") -> pd.Series:
    """Random split by patient, stratified on ``stratify`` (when present), reproducible by seed.

    In each stratum (sorted), patients (sorted by id) are permuted by a generator seeded
    from ``seed`` and the stratum's position, then cut into train/val/test by rounding the
    fractions, so the split depends only on the ids, the strata and the seed. When rounding
    leaves a split with a fraction > 0 without any patient (small cohorts, small strata),
    it receives one patient from the largest split, in the stratum where that split is
    largest (first in order on ties), provided the largest split keeps at least one.
    """
    values = split_fractions(fractions)
    strata = patients[stratify].fillna("NA").astype(str) if stratify in patients else pd.Series("all", patients.index)
    orders, counts = [], []
    for position, stratum in enumerate(sorted(strata.unique())):
        members = patients.index[strata == stratum]
        order = members[np.argsort(patients.loc[members, "patient_id"].to_numpy(), kind="stable")]
        rng = np.random.default_rng([int(seed), position])
        order = order[rng.permutation(len(order))]
        n_val = int(round(values["val"] * len(order)))
        n_test = int(round(values["test"] * len(order)))
        n_train = max(len(order) - n_val - n_test, 0)
        n_val = min(n_val, len(order) - n_train)
        orders.append(order)
        counts.append({"train": n_train, "val": n_val, "test": len(order) - n_train - n_val})
    for split in SPLITS:
        totals = {name: sum(count[name] for count in counts) for name in SPLITS}
        if values[split] > 0 and totals[split] == 0:
            donor = max(SPLITS, key=totals.get)
            if totals[donor] >= 2:
                stratum = max(range(len(counts)), key=lambda i: counts[i][donor])
                counts[stratum][donor] -= 1
                counts[stratum][split] += 1
    split = pd.Series("", index=patients.index, dtype=object)
    for order, count in zip(orders, counts):
        start = 0
        for name in SPLITS:
            split.loc[order[start:start + count[name]]] = name
            start += count[name]
    return split


def _check_dataset_split(patients: pd.DataFrame, origin) -> None:
    """The dataset's own split must list every patient and give train and val patients."""
    path, field = origin
    missing = patients["patient_id"][patients["split"].isna()]
    if len(missing):
        raise InputError(path, f"the dataset's split{field} does not list {len(missing)} patient(s), "
                               f"e.g. {missing.iloc[0]}: give every patient a split, "
                               "or set cohort.split.source: random")
    for name in ("train", "val"):  # what training needs; test may be empty
        if not (patients["split"] == name).any():
            raise InputError(path, f"the dataset's split{field} puts no patient in {name!r}: training needs train "
                                   "and val patients; assign some, or set cohort.split.source: random")


def _check_random_split(split: pd.Series, values: dict) -> None:
    """Every split with a fraction > 0 got a patient; training needs train and val."""
    for name in ("train", "val"):
        if values[name] == 0:
            raise InputError(None, f"cohort.split.{name}=0: training needs {name} patients; give it a fraction > 0")
    wanted = [name for name in SPLITS if values[name] > 0]
    empty = [name for name in wanted if not (split == name).any()]
    if not empty:
        return
    if len(split) < len(wanted):
        hint = " (or set cohort.split.test: 0)" if "test" in wanted else ""
        raise InputError(None, f"cohort.split: the cohort has {len(split)} patients, too few for the {len(wanted)} "
                               f"splits with a fraction > 0 ({', '.join(wanted)}): ingest at least {len(wanted)} "
                               f"patients{hint}")
    raise InputError(None, f"cohort.split.{empty[0]}={values[empty[0]]:g} gives split {empty[0]!r} no patient out of "
                           f"{len(split)}: raise its fraction")


def plan_cohort(source, *, n_shards: int, seed: int, fractions: dict, split_source: str = "auto",
                covariates=None) -> pd.DataFrame:
    """List patients, merge covariates, assign splits and shards.

    Every setting is checked here, before any data is read, and the plan is checked to be
    usable by the later stages (every shard holds a patient; train and val are not empty).

    Parameters
    ----------
    source : a cohort source (:func:`echolatent.stages.ingest.open_source`)
    n_shards : int
        Number of shards (at most the number of patients); patients are dealt round-robin
        after sorting by (split, group, patient_id) so every shard holds a similar mix.
    seed : int
    fractions : dict
        ``{"train": f, "val": f, "test": f}`` (>= 0, sum 1) for the random split; train
        and val must be > 0 (training needs both), test may be 0.
    split_source : {"auto", "dataset", "random"}
        ``auto`` uses the dataset's own split (CAMUS ``database_split/``, a sheet's
        ``split`` column) when present, else a random stratified split. A dataset split
        must list every patient and put patients in train and val.
    covariates : path, optional
        A per-patient TSV (``patient_id`` + covariates) merged onto the source's patients;
        its values take precedence.

    Returns
    -------
    DataFrame
        One row per patient: ``patient_id``, covariates, ``split``, ``shard``.

    Raises
    ------
    InputError
        A bad setting (the message names it and says what to change) or bad input.
    """
    if int(n_shards) < 1:
        raise InputError(None, f"cohort.shards must be >= 1, got {n_shards}")
    values = split_fractions(fractions)
    if split_source not in ("auto", "dataset", "random"):
        raise InputError(None, f"cohort.split.source must be auto, dataset or random, got {split_source!r}")
    patients = source.patients()
    split_origin = getattr(source, "split_origin", (None, ""))
    if covariates:
        extra = read_patient_table(covariates)
        unknown = sorted(set(extra["patient_id"]) - set(patients["patient_id"]))
        if unknown:
            raise InputError(covariates, f"{len(unknown)} patient(s) not in the cohort, e.g. {unknown[0]}")
        patients = patients.drop(columns=[c for c in extra.columns if c != "patient_id" and c in patients])
        patients = patients.merge(extra, on="patient_id", how="left")
        if "split" in extra:
            split_origin = (covariates, " (column 'split')")
    duplicated = patients["patient_id"][patients["patient_id"].duplicated()]
    if len(duplicated):
        raise InputError(None, f"duplicate patient id {duplicated.iloc[0]!r} in the cohort")
    if patients.empty:
        raise InputError(None, "the cohort lists no patient")
    if int(n_shards) > len(patients):
        raise InputError(None, f"cohort.shards={n_shards} but the cohort has {len(patients)} patients: "
                               f"use at most {len(patients)} shards")
    has_dataset_split = "split" in patients and patients["split"].notna().any()
    if split_source == "dataset" and not has_dataset_split:
        raise InputError(None, "cohort.split.source is 'dataset' but the cohort provides no split")
    if split_source in ("auto", "dataset") and has_dataset_split:
        _check_dataset_split(patients, split_origin)
    else:
        patients["split"] = assign_splits(patients, values, seed)
        _check_random_split(patients["split"], values)
    order = patients.assign(_split=patients["split"].map({s: i for i, s in enumerate(SPLITS)}),
                            _group=patients["group"].astype(str) if "group" in patients else "")
    order = order.sort_values(["_split", "_group", "patient_id"], kind="stable").index
    patients.loc[order, "shard"] = np.arange(len(order)) % int(n_shards)
    patients["shard"] = patients["shard"].astype(int)
    return patients.sort_values("patient_id", kind="stable").reset_index(drop=True)


def read_plan(path) -> pd.DataFrame:
    """The plan :func:`plan_cohort` returned, as rule ``plan_cohort`` wrote it (``results/cohort/plan.tsv``)."""
    return pd.read_csv(path, sep="\t", dtype={"patient_id": str})
