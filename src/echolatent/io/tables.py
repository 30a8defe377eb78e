"""Result tables: Parquet or TSV by the file's suffix, written atomically.

Every stage writes its tables through :func:`write_table` (a reader never sees a
half-written table, :mod:`echolatent.io.atomic`) and reads them back through
:func:`read_table`; ``.parquet`` files are Parquet, anything else tab-separated text.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from echolatent.io.atomic import atomic_path

__all__ = ["read_table", "write_table"]


def write_table(table: pd.DataFrame, path) -> None:
    """Write a table (``.parquet`` or ``.tsv``) under a temporary name, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, sep="\t", index=False)


def read_table(path) -> pd.DataFrame:
    """A table written by :func:`write_table` (``.parquet`` or tab-separated text)."""
    return pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path, sep="\t")
