"""The tables of a finished synthetic-cohort run that the detection benchmarks read."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from echolatent.temporal.evaluation import injected_defects
from echolatent.temporal.thresholds import image_attribute_names


@dataclass
class RecordedRun:
    """``results/`` of a finished run: attribute shards, patients (with splits), injected defects."""

    names: list            # the physical attribute columns the thresholds measure
    tables: list           # results/attributes/input/shard-*.parquet
    patients: pd.DataFrame
    frames: Path           # the simulator's truth/frames.tsv
    attributes: pd.DataFrame
    defects: pd.DataFrame

    @classmethod
    def read(cls, results) -> "RecordedRun":
        results = Path(results)
        tables = sorted(glob.glob(str(results / "attributes/input/shard-*.parquet")))
        if not tables:
            raise FileNotFoundError(f"{results}: no attributes/input/shard-*.parquet (a finished run?)")
        patients = pd.read_csv(results / "cohort/patients.tsv", sep="\t", dtype={"patient_id": str})
        frames = results / "cohort/truth/frames.tsv"
        attributes = pd.concat([pd.read_parquet(t) for t in tables], ignore_index=True)
        attributes["patient_id"] = attributes["patient_id"].astype(str)
        return cls(image_attribute_names("physical"), tables, patients, frames, attributes,
                   injected_defects(frames, cycle="full"))
