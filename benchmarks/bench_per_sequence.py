"""Per-sequence cost of the encoding and temporal-correction jobs: this tree against a baseline revision (issue 18).

    python benchmarks/bench_per_sequence.py --results RUN/results [--models RUN/results] [--baseline 4eaca1e]
        [--shards 0 1] [--repeat 1] [--threads 2] [--profile]

``RUN/results`` holds the cohort shards and the anatomy stage's tables; ``--models`` (default
the same folder) a finished run of the default study: trained ``arvae`` and its temporal
thresholds. A larger cohort's shards with the default run's model measure the cost per
sequence with the job's fixed costs (imports, loading) spread over more sequences. The baseline's package is exported with
``git archive`` into a temporary folder; every job runs in a fresh Python process, the
baseline and this tree alternating shard by shard (so that a change of load on a shared
machine falls on both), with the same settings (``config/config.yaml``). For each job: wall
and CPU time of the stage call (CPU time is the steadier one on a loaded machine), wall time
of the whole process, peak RSS, whether the outputs (table and HDF5 shard) are identical to
the baseline's to the bit, and how many values differ. ``--profile`` prints the 20 functions
of each version with the largest own time (cProfile) for the first shard.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The child: runs one stage on one shard and prints its timing as JSON on the last line.
CHILD = r"""
import json, resource, sys, time, cProfile, pstats, io
import torch, yaml
stage, results, shard, out, threads, profile, reuse, config, M = sys.argv[1:10]
torch.set_num_threads(int(threads))
R = results
start, cpu_start = time.perf_counter(), time.process_time()
profiler = cProfile.Profile() if profile == "1" else None
if profiler: profiler.enable()
if stage == "encode":
    from echolatent.stages.encode import encode_stage
    encode_stage(f"{M}/models/arvae/checkpoint.pt", f"{R}/cohort/shard-{shard}.h5", out_table=f"{out}.parquet",
                 out_h5=f"{out}.h5", device="cpu", model_name="arvae")
else:
    from echolatent.stages.temporal import correction_stage
    from echolatent.temporal import workflow as paths
    config = yaml.safe_load(open(config))
    extra = {"criteria": f"{R}/anatomy/input/shard-{shard}.parquet"} if reuse == "1" else {}
    correction_stage(f"{M}/models/arvae/checkpoint.pt", f"{R}/cohort/shard-{shard}.h5", f"{M}/temporal/thresholds.tsv",
                     f"{M}/temporal/arvae/latent_thresholds.tsv", settings=paths.correction_settings(config),
                     truth_shard=f"{R}/cohort/truth/shard-{shard}.h5", frames=f"{R}/cohort/truth/frames.tsv",
                     cycle="full", patients=f"{R}/cohort/patients.tsv", out_table=f"{out}.tsv", out_h5=f"{out}.h5",
                     model_name="arvae", device="cpu", **extra)
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
if profiler:
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
    print(text.getvalue())
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def export_baseline(revision: str, folder: Path) -> Path:
    """The baseline's ``src`` (its package) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "src"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src"


def threads_env(threads: int) -> dict:
    """The thread variables Snakemake sets for a job of ``threads`` threads (else OpenBLAS starts
    one thread per core, whose spinning adds ~40 % of CPU time to a one-thread job)."""
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                            "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}


def run_child(stage: str, results: Path, shard: int, out: Path, *, src: Path, threads: int, profile: bool,
              reuse: bool, models: Path) -> dict:
    env_path = str(src)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, stage, str(results), str(shard), str(out), str(threads),
                           "1" if profile else "0", "1" if reuse else "0", str(REPO / "config" / "config.yaml"), str(models)],
                          capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=env_path, **threads_env(threads)))
    if done.returncode:
        raise RuntimeError(f"{stage} shard {shard} ({src}) failed:\n{done.stderr[-3000:]}")
    lines = done.stdout.strip().splitlines()
    record = json.loads(lines[-1])
    record["process_seconds"] = time.perf_counter() - start
    if profile:
        print(f"--- profile: {stage}, shard {shard}, {src}\n" + "\n".join(lines[:-1]))
    return record


def identical(a: Path, b: Path, table_suffix: str) -> tuple[bool, int]:
    """Whether two jobs wrote the same table and the same HDF5 datasets, to the bit, and how
    many dataset values differ (0 when identical)."""
    import h5py
    import numpy as np
    import pandas as pd

    read = pd.read_parquet if table_suffix == ".parquet" else (lambda p: pd.read_csv(p, sep="\t"))
    if not read(a.with_suffix(table_suffix)).equals(read(b.with_suffix(table_suffix))):
        return False, -1

    def datasets(path):
        out = {}
        with h5py.File(path) as f:
            f.visititems(lambda name, item: out.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
        return out

    x, y = datasets(a.with_suffix(".h5")), datasets(b.with_suffix(".h5"))
    if x.keys() != y.keys() or any(x[k].shape != y[k].shape for k in x):
        return False, -1
    differ = sum(int((~((x[k] == y[k]) | (np.isnan(x[k]) & np.isnan(y[k])) if x[k].dtype.kind == "f"
                        else x[k] == y[k])).sum()) for k in x)
    return differ == 0, differ


def sequences_in(shard: Path) -> int:
    from echolatent.io.shards import shard_counts

    return int(shard_counts(shard)[0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--models", type=Path, default=None, help="results folder with models/ and temporal/")
    parser.add_argument("--baseline", default="4eaca1e", help="git revision measured against (before issue 18)")
    parser.add_argument("--shards", type=int, nargs="*", default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the models' num_threads)")
    parser.add_argument("--stages", nargs="*", default=["encode", "correct"])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    results = args.results.resolve()
    models = (args.models or args.results).resolve()
    shards = args.shards if args.shards is not None else sorted(
        int(p.stem.split("-")[1]) for p in (results / "cohort").glob("shard-*.h5"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        versions = {"baseline": export_baseline(args.baseline, tmp / "baseline"), "this tree": REPO / "src"}
        for repeat in range(args.repeat):
            for stage in args.stages:
                suffix = ".parquet" if stage == "encode" else ".tsv"
                for i, shard in enumerate(shards):
                    order = list(versions) if (i + repeat) % 2 == 0 else list(versions)[::-1]
                    records = {}
                    for name in order:
                        out = tmp / f"{stage}-{shard}-{name.replace(' ', '_')}"
                        records[name] = run_child(stage, results, shard, out, src=versions[name], threads=args.threads,
                                                  profile=args.profile and i == 0 and repeat == 0,
                                                  reuse=name == "this tree", models=models)
                    same, differ = identical(tmp / f"{stage}-{shard}-baseline", tmp / f"{stage}-{shard}-this_tree", suffix)
                    n = sequences_in(results / "cohort" / f"shard-{shard}.h5")
                    base, new = records["baseline"], records["this tree"]
                    rows.append({"stage": stage, "shard": shard, "repeat": repeat, "sequences": n,
                                 "baseline_s": base["seconds"], "new_s": new["seconds"],
                                 "baseline_ms_per_sequence": 1000 * base["seconds"] / n,
                                 "new_ms_per_sequence": 1000 * new["seconds"] / n,
                                 "ratio": base["seconds"] / new["seconds"],
                                 "baseline_cpu_s": base["cpu_seconds"], "new_cpu_s": new["cpu_seconds"],
                                 "cpu_ratio": base["cpu_seconds"] / new["cpu_seconds"],
                                 "process_ratio": base["process_seconds"] / new["process_seconds"],
                                 "baseline_rss_mb": base["max_rss_mb"], "new_rss_mb": new["max_rss_mb"],
                                 "identical": same, "values_differing": differ})
                    print(json.dumps(rows[-1]), flush=True)
    import pandas as pd

    table = pd.DataFrame(rows)
    totals = table.groupby("stage").agg(sequences=("sequences", "sum"), baseline_s=("baseline_s", "sum"),
                                        new_s=("new_s", "sum"), baseline_cpu_s=("baseline_cpu_s", "sum"),
                                        new_cpu_s=("new_cpu_s", "sum"), identical=("identical", "all"))
    totals["ratio"] = totals["baseline_s"] / totals["new_s"]
    totals["cpu_ratio"] = totals["baseline_cpu_s"] / totals["new_cpu_s"]
    print(table.to_markdown(index=False, floatfmt=".2f"))
    print(totals.to_markdown(floatfmt=".2f"))


if __name__ == "__main__":
    main()
