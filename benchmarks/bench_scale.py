"""How the non-training stages grow with the cohort: 100, 1,000 and 10,000 synthetic patients (issue 18).

    python benchmarks/bench_scale.py --models RUN/results --workdir SCALE [--patients 100 1000 10000]
        [--patients-per-shard 125] [--cores 2] [--torch-threads 1] [--plot benchmarks/scale.png]

Each cohort is the default study (``config/config.yaml``) with ``cohort.synthetic.n_patients``
set, ``cohort.shards`` = patients / ``--patients-per-shard`` (the rule of thumb of
``config/README.md``) and the AR-VAE on the CPU with ``num_threads`` = ``--torch-threads`` (1: a
network job asks for one core and no GPU token, so ``--cores`` jobs run side by side; with the
default 2 threads and ``device: auto`` the encoding and correction jobs of a 2-core machine
would run one at a time, half idle), run by the real workflow in ``SCALE/{patients}``:

1. ``snakemake`` up to the cohort and the anatomy of its masks (simulation, ingestion,
   criteria and attributes of every frame);
2. the default run's trained AR-VAE (``RUN/results/models/arvae``) is put in place of
   training (newer than the cohort, so ``--rerun-triggers mtime`` keeps it): the stages to
   measure are the non-training ones;
3. ``snakemake --rerun-triggers mtime`` up to the latent encoding of every frame and the
   temporal correction of every sequence (with its thresholds, summary and detection table).

Every job's wall time and peak RSS come from the rule's ``benchmark:`` file
(``logs/benchmarks/``). Per rule and cohort: jobs, job-seconds (sum over jobs; the jobs of a
stage run ``--cores`` at a time), frames per job-second, the largest peak RSS of a job; then
the log-log slope of job-seconds between consecutive cohort sizes (1 = linear). The DAG's
planning time (``snakemake -n``) is recorded too. Cohorts already run in ``SCALE`` are read
back, not re-run, so the 10,000-patient run can be started on its own and the table rebuilt.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
FRAMES_PER_PATIENT = 2 * 20  # two views of a 20-frame cycle (the default simulator)
MODEL_FILES = ("checkpoint.pt", "history.tsv", "latent_bounds.tsv", "config.json", "summary.json")
#: The rules measured, in pipeline order (rule name -> stage shown in the table).
STAGES = {
    "simulate_cohort": "simulation",
    "cohort_manifest": "ingestion",
    "shard_manifest": "ingestion",
    "plan_cohort": "ingestion",
    "ingest_shard": "ingestion",
    "merge_cohort": "ingestion",
    "anatomical_metrics": "anatomy (criteria, attributes)",
    "encode_latents": "encoding",
    "temporal_thresholds": "image thresholds",
    # with the default `temporal.thresholds.latent: image` the latent thresholds are the image
    # ones carried through the model: work that does not depend on the cohort's size
    "latent_thresholds": "latent thresholds (cohort-independent)",
    "temporal_correction": "temporal correction",
    "temporal_summary": "temporal tables",
    "temporal_detection": "temporal tables",
}


def snakemake(workdir: Path, config: Path, *targets, extra=()) -> float:
    start = time.perf_counter()
    # targets first: --configfile and --rerun-triggers take every value that follows them
    subprocess.run([sys.executable, "-m", "snakemake", *targets, "--snakefile", str(REPO / "Snakefile"),
                    "--directory", str(workdir), *extra, "--configfile", str(config)], check=True, cwd=REPO)
    return time.perf_counter() - start


def run_cohort(patients: int, *, models: Path, workdir: Path, per_shard: int, cores: int,
               torch_threads: int = 1) -> dict:
    """Run one cohort's non-training stages (module docstring); returns the planning and run times."""
    workdir.mkdir(parents=True, exist_ok=True)
    shards = max(1, math.ceil(patients / per_shard))
    config = workdir / "scale.yaml"
    arvae = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["models"]["arvae"]
    # on the CPU: a network job then takes no GPU token, so --cores jobs run side by side
    arvae.setdefault("training", {}).update(num_threads=torch_threads, device="cpu")
    config.write_text(yaml.safe_dump({"cohort": {"shards": shards, "synthetic": {"n_patients": patients}},
                                      "models": {"arvae": arvae}}))
    ks = range(shards)
    first = ["results/cohort/sequences.tsv"] + [f"results/anatomy/input/shard-{k}.parquet" for k in ks]
    second = ([f"results/latents/arvae/shard-{k}.parquet" for k in ks] +
              [f"results/temporal/arvae/shard-{k}.tsv" for k in ks] +
              ["results/temporal/arvae/summary.tsv", "results/temporal/detection.tsv"])
    times = {"patients": patients, "shards": shards}
    times["plan_s"] = snakemake(workdir, config, *first, *second, extra=("--dry-run", "--quiet"))
    # (--rerun-incomplete: a cohort whose run was stopped is taken up where it stood)
    run = ("--cores", str(cores), "--resources", "gpu=1", "--rerun-incomplete")
    times["first_s"] = snakemake(workdir, config, *first, extra=run)
    folder = workdir / "results" / "models" / "arvae"
    folder.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:  # copied now, so newer than the cohort they were not trained on
        # (not again when a stopped run is taken up: a newer model would redo every encoding)
        if not (folder / name).exists() or (folder / name).read_bytes() != (models / "models" / "arvae" / name).read_bytes():
            shutil.copyfile(models / "models" / "arvae" / name, folder / name)
    times["second_s"] = snakemake(workdir, config, *second, extra=(*run, "--rerun-triggers", "mtime"))
    (workdir / "times.yaml").write_text(yaml.safe_dump(times))
    return times


def job_table(workdir: Path, patients: int) -> pd.DataFrame:
    """One row per job: rule, wall seconds, peak RSS (MB), from the rules' benchmark files.

    (Not their ``cpu_time``: Snakemake samples a job every 30 s, so it misses the CPU time
    after the last sample, up to 30 s of a job of one or two minutes.)"""
    rows = []
    for path in sorted((workdir / "logs" / "benchmarks").rglob("*.tsv")):
        parts = path.relative_to(workdir / "logs" / "benchmarks").parts
        rule = parts[0] if len(parts) > 1 else path.stem  # a rule of one job: logs/benchmarks/{rule}.tsv
        if rule not in STAGES:
            continue
        record = pd.read_csv(path, sep="\t").iloc[-1]
        rows.append({"patients": patients, "rule": rule, "stage": STAGES[rule], "s": float(record["s"]),
                     "max_rss_mb": float(record["max_rss"])})
    return pd.DataFrame(rows)


def summarise(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per cohort size and stage: jobs, job-seconds, frames per job-second, largest peak RSS,
    log-log slope of job-seconds from the previous size."""
    table = jobs.groupby(["stage", "patients"], sort=False).agg(
        jobs=("s", "size"), job_seconds=("s", "sum"), peak_rss_mb=("max_rss_mb", "max")).reset_index()
    table["frames_per_s"] = table["patients"] * FRAMES_PER_PATIENT / table["job_seconds"]
    slopes = []
    for stage, part in table.groupby("stage", sort=False):
        part = part.sort_values("patients")
        x, y = part["patients"].to_numpy(float), part["job_seconds"].to_numpy(float)
        slope = [math.nan] + [math.log(y[i] / y[i - 1]) / math.log(x[i] / x[i - 1]) for i in range(1, len(x))]
        slopes.append(pd.Series(slope, index=part.index))
    table["slope_from_previous"] = pd.concat(slopes)
    return table


def plot(table: pd.DataFrame, out: Path) -> None:
    from echolatent.figures.style import new_figure, save_figure

    fig = new_figure(height=3.2)
    ax = fig.add_subplot(1, 1, 1)
    for stage, part in table.groupby("stage", sort=False):
        part = part.sort_values("patients")
        ax.plot(part["patients"], part["job_seconds"], marker="o", label=stage)
    sizes = sorted(table["patients"].unique())
    reference = table.groupby("patients")["job_seconds"].sum().loc[sizes[0]]
    ax.plot(sizes, [reference * s / sizes[0] for s in sizes], color="grey", linestyle=":", label="linear")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("patients (40 frames each)")
    ax.set_ylabel("job-seconds")
    ax.legend(fontsize=6, frameon=False)
    save_figure(fig, out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True, help="results/ of a default run (trained arvae)")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--patients", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--patients-per-shard", type=int, default=125)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--torch-threads", type=int, default=1, help="num_threads of the AR-VAE's jobs")
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args(argv)
    jobs, times = [], []
    for patients in args.patients:
        workdir = (args.workdir / str(patients)).resolve()
        done = workdir / "times.yaml"
        times.append(yaml.safe_load(done.read_text()) if done.exists() else
                     run_cohort(patients, models=args.models.resolve(), workdir=workdir,
                                per_shard=args.patients_per_shard, cores=args.cores,
                                torch_threads=args.torch_threads))
        jobs.append(job_table(workdir, patients))
    table = summarise(pd.concat(jobs, ignore_index=True))
    print(pd.DataFrame(times).to_markdown(index=False, floatfmt=".1f"))
    print(table.to_markdown(index=False, floatfmt=".3g"))
    if args.plot:
        plot(table, args.plot)


if __name__ == "__main__":
    main()
