"""Compare two ``results/`` folders table by table: are two runs the same study?

    python benchmarks/compare_results.py BEFORE/results AFTER/results [--atol 0]

For every TSV, Parquet and HDF5 file present in either folder: ``identical`` (same columns,
rows and values, or for HDF5 the same datasets with equal arrays and attributes), ``differs``
(with the columns or datasets that differ and the largest absolute difference), ``only in A``
or ``only in B``. Checkpoints (``.pt``) and logs are skipped: their bytes hold timestamps and
paths. Used to show that a refactoring leaves the default run's numbers unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

TABLES = (".tsv", ".parquet")


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""], low_memory=False)


def compare_tables(a: Path, b: Path, atol: float = 0.0) -> str:
    x, y = _read_table(a), _read_table(b)
    if list(x.columns) != list(y.columns):
        return f"differs: columns {sorted(set(x.columns) ^ set(y.columns)) or 'in another order'}"
    if len(x) != len(y):
        return f"differs: {len(x)} vs {len(y)} rows"
    bad = []
    for column in x.columns:
        u, v = x[column], y[column]
        if pd.api.types.is_numeric_dtype(u) and pd.api.types.is_numeric_dtype(v):
            u, v = u.to_numpy(float), v.to_numpy(float)
            same = (np.isnan(u) & np.isnan(v)) | (np.abs(u - v) <= atol)
            if not same.all():
                bad.append(f"{column} (max |diff| {np.nanmax(np.abs(u - v)):.3g})")
        elif not u.astype(str).equals(v.astype(str)):
            bad.append(column)
    return "identical" if not bad else "differs: " + ", ".join(bad)


def compare_h5(a: Path, b: Path, atol: float = 0.0) -> str:
    bad = []
    with h5py.File(a, "r") as x, h5py.File(b, "r") as y:
        names_x, names_y = [], []
        x.visit(names_x.append)
        y.visit(names_y.append)
        if sorted(names_x) != sorted(names_y):
            return f"differs: {len(set(names_x) ^ set(names_y))} objects present in one file only"
        for name in names_x:
            u, v = x[name], y[name]
            if isinstance(u, h5py.Dataset):
                p, q = u[()], v[()]
                if p.shape != q.shape or (np.abs(p.astype(float) - q.astype(float)) > atol).any():
                    bad.append(name)
            for key in set(u.attrs) | set(v.attrs):
                p, q = u.attrs.get(key), v.attrs.get(key)
                if not np.array_equal(np.asarray(p), np.asarray(q)):
                    bad.append(f"{name}@{key}")
    return "identical" if not bad else f"differs: {len(bad)} datasets/attributes, e.g. {bad[:3]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--atol", type=float, default=0.0)
    args = parser.parse_args(argv)
    files = sorted({p.relative_to(root) for root in (args.a, args.b) for p in root.rglob("*")
                    if p.is_file() and p.suffix in (*TABLES, ".h5")})
    differing = 0
    for rel in files:
        a, b = args.a / rel, args.b / rel
        if not a.exists() or not b.exists():
            verdict = "only in " + ("B" if not a.exists() else "A")
        elif rel.suffix == ".h5":
            verdict = compare_h5(a, b, args.atol)
        else:
            verdict = compare_tables(a, b, args.atol)
        differing += verdict != "identical"
        print(f"{rel}\t{verdict}")
    print(f"{len(files)} files, {len(files) - differing} identical, {differing} not")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
