"""Result tables: Parquet or TSV by the file's suffix, written atomically.

Every stage writes its tables through :func:`write_table` (a reader never sees a
half-written table, :mod:`echolatent.io.atomic`) and reads them back through
:func:`read_table`; ``.parquet`` files are Parquet, anything else tab-separated text.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from echolatent.io.atomic import atomic_path

__all__ = ["read_table", "read_tables", "write_table"]


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


def read_tables(paths, columns=None) -> pd.DataFrame:
    """The rows of several tables (a stage's shards) as one, reading only the columns needed.

    Parameters
    ----------
    paths : sequence of path
        Tables written by :func:`write_table`, in the order their rows are wanted.
    columns : sequence of str or callable, optional
        The columns to read (names, or ``name -> bool``); all when None. Parquet shards are
        read column by column from disk (a cohort of 10,000 patients has 400,000 frame rows,
        of which a gathering step often needs a tenth of the columns).

    Returns
    -------
    DataFrame
        The selected columns of every table, rows in the order of ``paths``.
    """
    import pyarrow.parquet as pq

    parts = []
    for path in paths:
        if str(path).endswith(".parquet"):
            names = pq.read_schema(path).names
            chosen = names if columns is None else [c for c in names if (columns(c) if callable(columns)
                                                                         else c in columns)]
            parts.append(pd.read_parquet(path, columns=chosen))
        else:
            table = pd.read_csv(path, sep="\t")
            if columns is not None:
                table = table[[c for c in table.columns if (columns(c) if callable(columns) else c in columns)]]
            parts.append(table)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
