"""Cost of the input manifests (issue 11): checking a 10,000-patient cohort for changed files.

The ingestion rules depend on manifests of the SHA-256 of every input file, refreshed each
time the workflow is parsed (``echolatent.io.manifest.refresh_manifests``). This benchmark
builds a sheet cohort of N patients x 2 views (mask + image files of a given size), writes
the manifests as the workflow does, then times, each against the same-run baseline of
hashing every file (what a naive content check would cost at every parse):

* ``refresh, nothing changed``: the cost paid by every ``snakemake`` invocation;
* ``refresh, one file changed``: one file re-hashed, one shard manifest rewritten.

Usage: python benchmarks/bench_manifest.py [--patients 10000] [--shards 8] [--kib 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def build(root: Path, patients: int, kib: int) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    (root / "data").mkdir()
    for i in range(patients):
        for view in ("2CH", "4CH"):
            for kind in ("gt", "img"):
                (root / "data" / f"p{i}_{view}_{kind}.nii.gz").write_bytes(rng.bytes(kib * 1024))
            rows.append({"patient_id": f"P{i:05d}", "view": view, "mask": f"data/p{i}_{view}_gt.nii.gz",
                         "image": f"data/p{i}_{view}_img.nii.gz", "ed": 0, "es": 4})
    sheet = root / "sheet.tsv"
    pd.DataFrame(rows).to_csv(sheet, sep="\t", index=False)
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--kib", type=int, default=64, help="size of each mask/image file")
    args = parser.parse_args()

    from echolatent.ingest.plan import plan_cohort
    from echolatent.stages.ingest import open_source
    from echolatent.io.manifest import cohort_files, refresh_manifests, shard_files, write_manifest
    from echolatent.io.sources import sha256_file

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        sheet = build(root, args.patients, args.kib)
        print(f"built {args.patients} patients, {4 * args.patients} files of {args.kib} KiB "
              f"in {time.perf_counter() - start:.1f} s")
        source = open_source("sheet", sheet)
        plan = plan_cohort(source, n_shards=args.shards, seed=0, fractions={"train": 0.7, "val": 0.15, "test": 0.15})
        plan_path = root / "plan.tsv"
        plan.to_csv(plan_path, sep="\t", index=False)
        manifests = root / "manifest"
        files = [f for k in range(args.shards) for f in shard_files(source, plan, k)]

        start = time.perf_counter()
        for path in files:
            sha256_file(path)
        baseline = time.perf_counter() - start

        start = time.perf_counter()
        write_manifest(manifests / "cohort.tsv", cohort_files(source))
        for k in range(args.shards):
            write_manifest(manifests / f"shard-{k}.tsv", shard_files(source, plan, k))
        first = time.perf_counter() - start

        def refresh():
            start = time.perf_counter()
            changed = refresh_manifests(open_source("sheet", sheet), manifests, plan_path, range(args.shards))
            return time.perf_counter() - start, changed

        unchanged, changed_none = refresh()
        edited = Path(files[len(files) // 2])
        data = bytearray(edited.read_bytes())
        data[0] ^= 0xFF
        edited.write_bytes(bytes(data))
        one, changed_one = refresh()
        assert not changed_none and len(changed_one) == 1, (changed_none, changed_one)

        print(f"| what | seconds | / baseline |")
        print(f"|---|---:|---:|")
        print(f"| baseline: SHA-256 of all {len(files)} sequence files | {baseline:.2f} | 1 |")
        print(f"| first manifests (every file hashed) | {first:.2f} | {first / baseline:.2f} |")
        print(f"| refresh, nothing changed (every parse) | {unchanged:.2f} | {unchanged / baseline:.3f} |")
        print(f"| refresh, one file changed | {one:.2f} | {one / baseline:.3f} |")
        print(f"changed manifests: {[p.name for p in changed_one]}; "
              f"{sum(1 for _ in manifests.iterdir())} files in manifest/")


if __name__ == "__main__":
    main()
