"""Benchmark of the anatomical guarantees (issue 16): densification, nearest-valid search, correction.

Measures, on the CPU (torch threads pinned, 2 by default), with a straightforward per-code
loop measured in the same run as the baseline of each step:

1. **densification**: codes sampled, decoded and checked (12 criteria on the model grid) per
   second by :func:`echolatent.guarantees.densify` (KDE target fitted on the encoded frames,
   rejection sampling, batched decoding and criteria) vs a loop decoding one of the same codes
   and checking one mask at a time; the loop's valid codes must be exactly those ``densify``
   kept among them;
2. **nearest-valid queries** per second against ``--n-codes`` (1,000,000) stored 16-dim codes
   (drawn from the Gaussian fitted on the encoded frames): :func:`~echolatent.guarantees.nearest_codes`
   on the numpy path and on the torch CPU path vs a per-query loop
   ``np.argmin(((codes - q) ** 2).sum(1))``; the indices must be identical;
3. **corrected frames** per second: :func:`~echolatent.guarantees.correct_frames` on native
   frames that fail a criterion (``anatomical_errors`` in the input anatomy tables), towards
   the valid codes of step 1 (plus the encoded frames whose reconstruction is valid on the
   model grid), all at once vs one frame at a time.

Usage::

    python benchmarks/bench_guarantees.py --checkpoint results/models/arvae/checkpoint.pt \\
        --latents results/latents/arvae [--results results] [--n-codes 1000000] [--out table.md]

``--results`` (cohort shards, ``cohort/sequences.tsv``, ``anatomy/input``) defaults to the
folder two levels above ``--latents``.

On the default cohort's AR-VAE the KDE of the 2,400 encoded frames (Scott's bandwidth) is so
peaked against the Gaussian proposal that the default envelope (``--bound-quantile 1``) accepts
~4e-17 of the proposals: the recorded run used ``--bandwidth 0.8 --bound-quantile 0.5``
(acceptance ~1.8 %). The script stops with a message when nothing is accepted.
"""

from __future__ import annotations

import os

_THREADS = "2"
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, _THREADS)

import argparse  # noqa: E402
import datetime  # noqa: E402
import glob  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _timed(fn, what=""):
    w0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - w0
    if what:
        print(f"  [{what}: {dt:.2f} s, load {_load()}]", file=sys.stderr, flush=True)
    return out, dt


def _shards(path, pattern):
    path = Path(path)
    files = sorted(glob.glob(str(path / pattern))) if path.is_dir() else sorted(glob.glob(str(path)))
    if not files:
        raise SystemExit(f"no {pattern} under {path}")
    return files


def load_codes(latents) -> tuple[np.ndarray, "object"]:
    import pandas as pd
    df = pd.concat([pd.read_parquet(f) for f in _shards(latents, "shard-*.parquet")], ignore_index=True)
    mu = [c for c in df.columns if c.startswith("mu_")]
    mu.sort(key=lambda c: int(c.split("_")[1]))
    return np.array(df[mu].to_numpy(np.float64)), df


def load_failing_frames(results, n_max):
    """Native masks (N, H, W), spacings (N, 2) of frames the input anatomy table flags, in table order."""
    import h5py
    import pandas as pd
    results = Path(results)
    seqs = pd.read_csv(results / "cohort" / "sequences.tsv", sep="\t")
    tables = [pd.read_parquet(f) for f in _shards(results / "anatomy" / "input", "shard-*.parquet")]
    bad = pd.concat(tables, ignore_index=True)
    bad = bad[bad.anatomical_errors.astype(bool)]
    shard_of = {(r.patient_id, r.view): int(r.shard) for r in seqs.itertuples()}
    masks, spacing, by_size = [], [], {}
    for r in bad.itertuples():
        k = shard_of[(r.patient_id, r.view)]
        with h5py.File(results / "cohort" / f"shard-{k}.h5", "r") as f:
            g = f[r.patient_id][r.view]
            m = g["mask_native"][int(r.frame)]
            sp = np.asarray(g.attrs["spacing_native"], np.float64)
        by_size.setdefault(m.shape, []).append(len(masks))
        masks.append(m)
        spacing.append(sp)
    # correct_frames takes frames of one size: the most common one
    shape, rows = max(by_size.items(), key=lambda kv: len(kv[1]))
    rows = rows[:n_max]
    return np.stack([masks[i] for i in rows]), np.stack([spacing[i] for i in rows]), len(bad)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--latents", required=True, help="folder of latent shard-*.parquet (mu_0..mu_{D-1})")
    parser.add_argument("--results", default=None, help="results folder (default: two levels above --latents)")
    parser.add_argument("--n-codes", type=int, default=1_000_000, help="stored codes for the nearest search")
    parser.add_argument("--n-densify", type=int, default=2000, help="codes densified in batches")
    parser.add_argument("--n-densify-loop", type=int, default=200, help="codes decoded/checked one at a time")
    parser.add_argument("--n-queries", type=int, default=1000, help="nearest queries, batched")
    parser.add_argument("--n-queries-loop", type=int, default=20, help="nearest queries, looped")
    parser.add_argument("--n-frames", type=int, default=40, help="failing frames corrected")
    parser.add_argument("--bandwidth", type=float, default=None, help="KDE bandwidth factor (default Scott's)")
    parser.add_argument("--bound-quantile", type=float, default=1.0, help="envelope quantile of log_bound")
    parser.add_argument("--threads", type=int, default=int(_THREADS), help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the Markdown table there")
    args = parser.parse_args(argv)

    import torch

    from echolatent.guarantees import (correct_frames, densify, fit_gaussian, fit_kde, log_bound, model_labels,
                                       nearest_codes, rejection_sample, valid_maps)
    from echolatent.models.checkpoint import load_model
    from echolatent.models.inference import decode_masks

    torch.set_num_threads(args.threads)
    results = Path(args.results) if args.results else Path(args.latents).resolve().parents[1]
    load_start = _load()
    model = load_model(args.checkpoint, device="cpu")
    labels = model_labels(model)
    codes, _ = load_codes(args.latents)
    import pandas as pd
    seqs = pd.read_csv(results / "cohort" / "sequences.tsv", sep="\t")
    model_spacing = (float(seqs.model_spacing_h.median()), float(seqs.model_spacing_w.median()))
    cohort_grid = int(round(float((seqs.height * seqs.spacing_h / seqs.model_spacing_h).median())))
    rows, notes = [], []

    # ---------------------------------------------------------------- 1. densification
    decode_masks(model, codes[:8])  # warm-up
    opts = dict(bandwidth=args.bandwidth, bound_quantile=args.bound_quantile)
    w0 = time.perf_counter()
    target, proposal = fit_kde(codes, args.bandwidth), fit_gaussian(codes)
    log_m = log_bound(target.log_pdf, proposal, target.points, quantile=args.bound_quantile)
    sampled = rejection_sample(target.log_pdf, proposal.mean, proposal.cov, args.n_densify,
                               np.random.default_rng(args.seed), log_m)
    samples = sampled.samples
    t_sample = time.perf_counter() - w0
    print(f"  [sampling: {t_sample:.2f} s, {len(samples)} samples of {sampled.n_proposed} proposals, "
          f"load {_load()}]", file=sys.stderr, flush=True)
    if len(samples) == 0:
        raise SystemExit(f"rejection sampling accepted nothing in {sampled.n_proposed} proposals "
                         f"(log M = {log_m:.1f}): raise --bound-quantile/--bandwidth")

    def batched_check():  # densify's decode + check loop, on the same codes
        return np.concatenate([valid_maps(decode_masks(model, samples[i:i + 4096]), model_spacing, labels=labels)
                               for i in range(0, len(samples), 4096)])

    ok, t_check = _timed(batched_check, "decode + check, batched")
    n_loop = min(args.n_densify_loop, len(samples))

    def loop_densify():
        out = np.zeros(n_loop, bool)
        for i in range(n_loop):
            m = decode_masks(model, samples[i:i + 1])
            out[i] = valid_maps(m, model_spacing, labels=labels)[0]
        return out

    loop_ok, t_loop = _timed(loop_densify, "decode + check, loop")
    dens, t_dens = _timed(lambda: densify(model, codes, args.n_densify, np.random.default_rng(args.seed),
                                          spacing=model_spacing, labels=labels, **opts), "densify end to end")
    agree = np.array_equal(ok[:n_loop], loop_ok) and np.array_equal(dens.codes, samples[ok])
    rows.append((f"densification: codes decoded + checked /s ({len(samples)} batched, {n_loop} looped)",
                 len(samples) / t_check, n_loop / t_loop,
                 "same validity; densify keeps exactly these" if agree else "VALIDITY DIFFERS"))
    rows.append((f"densification end to end (KDE fit + rejection sampling + decode + check) /s, "
                 f"loop = sampling + per-code decode/check", dens.n_sampled / t_dens,
                 1.0 / (t_sample / len(samples) + t_loop / n_loop), ""))
    notes.append(f"densification: bandwidth {args.bandwidth or 'Scott'}, bound quantile {args.bound_quantile}: "
                 f"acceptance {dens.acceptance_rate:.4f} ({sampled.n_proposed:,} proposals, sampling "
                 f"{t_sample:.1f} s), validity {dens.validity_rate:.3f} ({len(dens.codes)} valid of "
                 f"{dens.n_sampled}); criteria on the {int(model.config.input_size)}-px model grid at "
                 f"{model_spacing[0]:g} mm (grid='auto')")

    # ---------------------------------------------------------------- 2. nearest-valid queries
    rng = np.random.default_rng(args.seed + 1)
    stored = proposal.mean + rng.standard_normal((args.n_codes, codes.shape[1])) @ proposal.chol.T
    queries = codes[rng.permutation(len(codes))[:args.n_queries]]
    nq_loop = min(args.n_queries_loop, len(queries))
    nearest_codes(queries[:4], stored[:1000])  # warm-up
    (idx_np, _), t_np = _timed(lambda: nearest_codes(queries, stored), "nearest numpy")
    (idx_t, _), t_t = _timed(lambda: nearest_codes(queries, stored, device="cpu"), "nearest torch")

    def loop_nearest():
        return np.array([np.argmin(((stored - q) ** 2).sum(1)) for q in queries[:nq_loop]])

    idx_loop, t_ql = _timed(loop_nearest, "nearest loop")
    same_np = np.array_equal(idx_np[:nq_loop], idx_loop)
    same_t = np.array_equal(idx_np, idx_t)
    rows.append((f"nearest valid, numpy: queries/s vs {args.n_codes:,} codes ({len(queries)} batched, "
                 f"{nq_loop} looped)", len(queries) / t_np, nq_loop / t_ql,
                 "identical indices" if same_np else "INDICES DIFFER"))
    rows.append((f"nearest valid, torch CPU: queries/s vs {args.n_codes:,} codes", len(queries) / t_t,
                 nq_loop / t_ql, "identical to numpy" if same_t else "INDICES DIFFER"))
    del stored

    # ---------------------------------------------------------------- 3. correction
    frames, spacing, n_failing = load_failing_frames(results, args.n_frames)
    # valid codes: the densified ones, plus encoded frames whose model-grid reconstruction is valid
    recon_ok = valid_maps(decode_masks(model, codes), model_spacing, labels=labels)
    valid_codes = np.concatenate([dens.codes, codes[recon_ok]])
    kw = dict(cohort_grid=cohort_grid, labels=labels)
    corr, t_c = _timed(lambda: correct_frames(model, frames, spacing, valid_codes, **kw), "correct")

    def loop_correct():
        return [correct_frames(model, frames[i:i + 1], spacing[i], valid_codes, **kw) for i in range(len(frames))]

    per, t_cl = _timed(loop_correct, "correct loop")
    loop_masks = np.concatenate([p.masks for p in per])
    loop_status = np.concatenate([p.status for p in per])
    n_same = int(sum(np.array_equal(a, b) for a, b in zip(corr.masks, loop_masks)))
    status_same = np.array_equal(corr.status, loop_status)
    counts = {s: int((corr.status == s).sum()) for s in ("valid", "corrected", "uncorrectable")}
    rows.append((f"correction: failing frames corrected /s ({len(frames)} frames, all vs one at a time)",
                 len(frames) / t_c, len(frames) / t_cl,
                 f"{n_same}/{len(frames)} masks identical, statuses {'identical' if status_same else 'DIFFER'}"))
    notes.append(f"correction: {len(frames)} of the {n_failing} input frames flagged by the anatomy tables, "
                 f"native {frames.shape[1]}x{frames.shape[2]} at {spacing[0, 0]:g} mm, cohort grid {cohort_grid}; "
                 f"{len(valid_codes)} valid codes ({len(dens.codes)} densified + {int(recon_ok.sum())} encoded frames); "
                 f"outcome {counts}; 10 bisections")

    # ---------------------------------------------------------------- table
    lines = [
        f"Machine: {os.cpu_count()} CPUs (nproc), {_cpu_model()}; torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, numpy {np.__version__}, Python {platform.python_version()}; "
        f"{datetime.date.today().isoformat()}; load average {load_start} at start, {_load()} at end.",
        "",
        "| measure | batched /s | loop /s | ratio | check |",
        "|---|---:|---:|---:|---|",
    ]
    for name, fast, slow, check in rows:
        lines.append(f"| {name} | {fast:,.1f} | {slow:,.1f} | {fast / slow:,.1f}x | {check} |")
    lines.append("")
    lines.extend(f"* {n}" for n in notes)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return rows


if __name__ == "__main__":
    main()
