"""Benchmarks and measured figures of the temporal stage (issue 6).

    python benchmarks/bench_temporal.py smoothing [--sequences 2000] [--reference 2]
    python benchmarks/bench_temporal.py encoding [--checkpoint results/models/arvae/checkpoint.pt] [--frames 2000]
    python benchmarks/bench_temporal.py detection --cohort results/cohort --attributes results/attributes
    python benchmarks/bench_temporal.py correction --cohort results/cohort --attributes results/attributes \\
        --model results/models/arvae [--settings '{"max_rounds": 6}']

``smoothing``: sequences/s on one core (BLAS/OpenMP threads pinned to 1 before numpy is
imported) of :func:`echolatent.temporal.smooth_trajectories` for T = 40 frames, 16 latent
dims of which 7 constrained (bisection), in one batch and one sequence per call; the
gradient-descent reference (momentum descent, reference defaults: step 1e-2, momentum 0.9,
at most 10,000 iterations, float32-eps stop, the same bisection) timed in the same run on
a few sequences; the largest difference between the two.
``encoding``: frames/s of the encoder (mu) and of encode + decode on the CPU.
``detection``: how often the metric flags spiked / neighbouring / clean frames of a
synthetic cohort's ingested masks, for thresholds derived from each reference.
``correction``: the before/after figures of the temporal correction on a synthetic cohort.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_name] = "1"  # one core, before numpy (and torch) read them

import numpy as np  # noqa: E402


# --------------------------------------------------------------------------- smoothing
def _load_reference():
    """The plain gradient-descent smoother, kept in one place: the tests (tests/test_temporal.py)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tests" / "test_temporal.py"
    spec = importlib.util.spec_from_file_location("test_temporal_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_smoothing


def reference_smoothing(z, constrained, tau, lo, hi):
    """The reference with its own iteration cap (10,000), as the published code runs it."""
    return _load_reference()(z, constrained=constrained, tau=tau, lo=lo, hi=hi, max_iterations=10_000)


def synthetic_trajectories(n, n_frames=40, n_dims=16, seed=0):
    """Cyclic latent trajectories with noise and a single-frame spike on the constrained dims."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, n_frames)[None, :, None]
    z = np.sin(t + rng.uniform(0, 2 * np.pi, (n, 1, n_dims))) * rng.uniform(0.5, 2, (n, 1, n_dims))
    z += 0.05 * rng.normal(size=z.shape)
    z[np.arange(n), rng.integers(2, n_frames - 2, n), :7] += 0.4
    return z


def bench_smoothing(args):
    from echolatent.temporal import smooth_trajectories

    constrained = list(range(7))
    tau, lo, hi = np.full(7, 0.02), np.full(7, -2.5), np.full(7, 2.5)
    kwargs = dict(constrained_dims=constrained, thresholds=tau, lo=lo, hi=hi)
    z = synthetic_trajectories(args.sequences)
    smooth_trajectories(z[:8], **kwargs)  # warm-up
    rows = []
    for batch in (1, 64, args.sequences):
        n = min(args.sequences, max(batch, 200 if batch == 1 else batch))
        start = time.perf_counter()
        for first in range(0, n, batch):
            smooth_trajectories(z[first:first + batch], **kwargs)
        seconds = time.perf_counter() - start
        rows.append((batch, n / seconds))
    cpu0 = time.process_time()
    start = time.perf_counter()
    slow = [reference_smoothing(z[i], constrained, tau, lo, hi) for i in range(args.reference)]
    ref_seconds = time.perf_counter() - start
    ref_cpu = time.process_time() - cpu0
    fast = smooth_trajectories(z[:args.reference], **kwargs)
    diff = max(float(np.abs(fast[i] - slow[i]).max()) for i in range(args.reference))
    ref_rate = args.reference / ref_seconds
    print(f"smooth_trajectories, T=40, 16 dims, 7 constrained, 1 thread (load average {os.getloadavg()[0]:.1f})")
    for batch, rate in rows:
        print(f"  batch {batch:>5}: {rate:10.0f} sequences/s  ({rate / ref_rate:,.0f} x reference)")
    print(f"  gradient-descent reference: {ref_rate:.3f} sequences/s wall, {args.reference / ref_cpu:.3f} CPU "
          f"({args.reference} sequences)")
    print(f"  max |exact - reference| = {diff:.2e}")


# --------------------------------------------------------------------------- encoding
def bench_encoding(args):
    import torch

    from echolatent.models import MaskVAE, VAEConfig, load_model
    from echolatent.models.inference import decode_masks, encode_mu

    torch.set_num_threads(args.threads)
    if args.checkpoint:
        model = load_model(args.checkpoint)
    else:
        model = MaskVAE(VAEConfig(n_classes=4, input_size=64, blocks=3, init_channels=16, latent_dim=16)).eval()
    size = model.config.input_size
    rng = np.random.default_rng(0)
    masks = rng.integers(0, model.config.n_classes, size=(args.frames, size, size)).astype(np.uint8)
    encode_mu(model, masks[:64])
    start = time.perf_counter()
    mu = encode_mu(model, masks, batch_size=256)
    encode_rate = args.frames / (time.perf_counter() - start)
    start = time.perf_counter()
    decode_masks(model, mu, batch_size=256)
    decode_rate = args.frames / (time.perf_counter() - start)
    native = decode_masks(model, mu[:256], batch_size=64, size=(256, 256))
    start = time.perf_counter()
    decode_masks(model, mu[:256], batch_size=64, size=(256, 256))
    native_rate = 256 / (time.perf_counter() - start)
    both = 1 / (1 / encode_rate + 1 / decode_rate)
    print(f"{model.config} on CPU, {args.threads} thread(s) (load average {os.getloadavg()[0]:.1f}):")
    print(f"  encode (mu):            {encode_rate:8.0f} frames/s")
    print(f"  decode (argmax):        {decode_rate:8.0f} frames/s")
    print(f"  encode + decode:        {both:8.0f} frames/s")
    print(f"  decode to 256x256 (bilinear logits): {native_rate:8.0f} frames/s  ({native.shape})")


# --------------------------------------------------------------------------- detection
def bench_detection(args):
    import pandas as pd

    from echolatent.shape.attributes import TEMPORAL_ATTRIBUTES
    from echolatent.stages.temporal import detection_stage, image_thresholds_stage

    cohort = args.cohort
    shards = sorted(p for p in os.listdir(cohort) if p.startswith("shard-") and p.endswith(".h5"))
    tables = {source: [os.path.join(args.attributes, source, s.replace(".h5", ".parquet")) for s in shards]
              for source in ("input", "truth")}
    frames = os.path.join(cohort, "truth", "frames.tsv")
    patients = os.path.join(cohort, "patients.tsv")
    out = args.out or "."
    for reference in ("truth", "observed"):
        for splits in (["train"], ["train", "val", "test"]):
            path = os.path.join(out, f"thresholds-{reference}-{'+'.join(splits)}.tsv")
            image_thresholds_stage(tables["truth" if reference == "truth" else "input"], patients,
                                   reference=reference, splits=splits, names=TEMPORAL_ATTRIBUTES, frames=frames,
                                   out=path)
            rates = detection_stage(tables["input"], frames, path).set_index("frames")
            held = ""
            if splits == ["train"]:
                # frames of the patients whose sequences did not serve as reference
                from echolatent.temporal.evaluation import detection_rates, injected_defects
                from echolatent.temporal.thresholds import read_thresholds

                attributes = pd.concat([pd.read_parquet(t) for t in tables["input"]])
                split = pd.read_csv(patients, sep="\t", dtype={"patient_id": str}).set_index("patient_id")["split"]
                _, per_frame = detection_rates(attributes, injected_defects(frames), read_thresholds(path))
                other = per_frame[per_frame["patient_id"].map(split) != "train"]
                spike, clean = other.loc[other["spike"], "flagged"], other.loc[other["clean_window"], "flagged"]
                held = f" | non-train: spike {spike.mean():.3f} ({len(spike)}), clean-window {clean.mean():.4f}"
            flagged, count = rates["flagged"], rates["n_frames"].astype(int)
            print(f"{reference:>8} {'+'.join(splits):<15} spike {flagged['spike']:.3f} ({count['spike']}), "
                  f"neighbour {flagged['spike_neighbour']:.3f}, clean-window {flagged['clean_window']:.4f} "
                  f"({count['clean_window']}), no-defect {flagged['no_defect']:.4f}{held}")
            if args.verbose:
                print(rates.round(4).to_string())


# --------------------------------------------------------------------------- correction
def bench_correction(args):
    import pandas as pd
    import torch

    from echolatent.shape.attributes import TEMPORAL_ATTRIBUTES
    from echolatent.stages.temporal import (correction_stage, image_thresholds_stage, latent_thresholds_stage,
                                            summary_stage)

    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")  # the stages' lines, per shard
    torch.set_num_threads(args.threads)
    cohort, out = args.cohort, args.out or "."
    os.makedirs(out, exist_ok=True)
    shards = sorted(p for p in os.listdir(cohort) if p.startswith("shard-") and p.endswith(".h5"))
    frames = os.path.join(cohort, "truth", "frames.tsv")
    patients = os.path.join(cohort, "patients.tsv")
    image = os.path.join(out, "thresholds.tsv")
    image_thresholds_stage([os.path.join(args.attributes, "input", s.replace(".h5", ".parquet")) for s in shards],
                           patients, reference="observed", splits=["train"], names=TEMPORAL_ATTRIBUTES,
                           frames=frames, out=image)
    latent = os.path.join(out, f"latent-{args.latent}.tsv")
    latent_thresholds_stage(os.path.join(args.model, "checkpoint.pt"), os.path.join(args.model, "latent_bounds.tsv"),
                            image, mode=args.latent, reference="observed",
                            reference_shards=[os.path.join(cohort, s) for s in shards],
                            cohort_shards=[os.path.join(cohort, s) for s in shards], patients=patients,
                            splits=["train"], frames=frames, device="cpu", out=latent)
    settings = json.loads(args.settings)
    tables = []
    start = time.perf_counter()
    for shard in shards:
        table = os.path.join(out, shard.replace(".h5", ".tsv"))
        correction_stage(os.path.join(args.model, "checkpoint.pt"), os.path.join(cohort, shard), image, latent,
                         settings=settings, truth_shard=os.path.join(cohort, "truth", shard), frames=frames,
                         out_table=table, device="cpu")
        tables.append(table)
    print(f"settings {settings}, latent thresholds {args.latent}: {time.perf_counter() - start:.0f} s")
    print(summary_stage(tables).set_index("sequences").T.to_string())
    per_sequence = pd.concat([pd.read_csv(t, sep="\t") for t in tables])
    print("mean Dice per structure before -> after:",
          {c: f"{per_sequence[f'dice_{c}_before'].mean():.4f} -> {per_sequence[f'dice_{c}_after'].mean():.4f}"
           for c in ("lv", "myo", "la") if f"dice_{c}_before" in per_sequence})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("smoothing")
    p.add_argument("--sequences", type=int, default=2000)
    p.add_argument("--reference", type=int, default=2, help="sequences smoothed by the gradient-descent reference")
    p = sub.add_parser("encoding")
    p.add_argument("--checkpoint", default="")
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    for name in ("detection", "correction"):
        p = sub.add_parser(name)
        p.add_argument("--cohort", required=True)
        p.add_argument("--attributes", required=True, help="folder with input/ and truth/ attribute tables")
        p.add_argument("--out", default="")
        p.add_argument("--verbose", action="store_true")
        if name == "correction":
            p.add_argument("--model", required=True, help="folder with checkpoint.pt and latent_bounds.tsv")
            p.add_argument("--settings", default="{}")
            p.add_argument("--latent", default="derived", choices=["derived", "image"])
            p.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    {"smoothing": bench_smoothing, "encoding": bench_encoding, "detection": bench_detection,
     "correction": bench_correction}[args.command](args)


if __name__ == "__main__":
    main()
