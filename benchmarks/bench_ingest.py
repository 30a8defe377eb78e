"""Ingestion throughput (sequences/s) and peak memory against cohort size.

Simulates a synthetic cohort in the simulator's store format, then ingests it with the
same three steps the workflow runs (plan, one job per shard, merge), each size in a fresh
process so that its peak resident memory (ru_maxrss) is its own. Memory must not grow with
the number of patients: ingestion streams patient by patient.

Usage: python benchmarks/bench_ingest.py [--sizes 100 500] [--frames 20] [--native 256]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def child(store: Path, out: Path, image_size: int, shards: int) -> None:
    from echolatent.ingest.cohort import ingest_cohort
    from echolatent.stages.ingest import open_source

    # Baseline in the same process: only reading every sequence of the store.
    source = open_source("store", store)
    start = time.perf_counter()
    for patient in source.patients()["patient_id"]:
        source.read_patient(patient)
    read_seconds = time.perf_counter() - start
    start = time.perf_counter()
    table = ingest_cohort(source, out, image_size=image_size, n_shards=shards)
    seconds = time.perf_counter() - start
    print(json.dumps({"sequences": len(table), "seconds": seconds, "read_seconds": read_seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def simulate(store: Path, n_patients: int, frames: int, native: int) -> None:
    from echolatent.simulate import SimulationConfig, write_cohort

    config = SimulationConfig.from_dict({"n_patients": n_patients, "seed": 7, "frames": frames,
                                         "image": {"rows": native, "cols": native,
                                                   "spacing": [192.0 / native] * 2}})
    write_cohort(config, store, fmt="store")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--native", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.image_size, args.shards)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            store = Path(tmp) / f"store-{n}"
            simulate(store, n, args.frames, args.native)
            out = Path(tmp) / f"cohort-{n}"
            result = subprocess.run([sys.executable, __file__, "--child", str(store), str(out),
                                     "--image-size", str(args.image_size), "--shards", str(args.shards)],
                                    check=True, capture_output=True, text=True)
            stats = json.loads(result.stdout.strip().splitlines()[-1])
            stats |= {"patients": n, "sequences_per_s": stats["sequences"] / stats["seconds"]}
            rows.append(stats)
            print(f"{n:6d} patients  {stats['sequences']:6d} sequences  {stats['seconds']:7.1f} s  "
                  f"{stats['sequences_per_s']:7.1f} seq/s  (reading alone {stats['read_seconds']:6.1f} s, "
                  f"ingestion/read {stats['seconds'] / stats['read_seconds']:4.1f}x)  "
                  f"peak RSS {stats['peak_rss_mb']:7.1f} MB", flush=True)
    if len(rows) > 1:
        print(f"peak memory ratio largest/smallest cohort: {rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
