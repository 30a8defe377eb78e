"""Training throughput of the mask VAE (issue 5): frames/s for forward + backward + Adam step.

Measures the full AR-VAE training step (reconstruction + KL + attribute terms) on
synthetic label maps for three configurations:

* ``default``  the CPU default of :class:`echolatent.models.TrainConfig`;
* ``ref128``   the reference architecture (4 blocks, 48 channels, latent 16) at 128x128;
* ``ref256``   the reference architecture at 256x256 (TMI 2022 setting).

Usage::

    python benchmarks/bench_training.py                     # CPU, 2 threads
    python benchmarks/bench_training.py --device cuda       # GPU: AMP fp16 + channels_last
    python benchmarks/bench_training.py --configs default --steps 20 --json out.json

``--device cuda`` on a machine without a GPU prints that no GPU is available and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

# OMP_WAIT_POLICY: the workflow sets PASSIVE for its jobs (workflow/rules/common.smk); set it here the same way
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from echolatent.models import LossConfig, MaskVAE, TrainConfig, VAEConfig, compute_losses, one_hot
from echolatent.models.vae import REFERENCE_VAE, reparameterize

import numpy as np
import torch

CONFIGS = {
    "default": lambda: TrainConfig().model,
    "ref128": lambda: VAEConfig(**{**REFERENCE_VAE, "n_classes": 4, "input_size": 128}),
    "ref256": lambda: VAEConfig(**{**REFERENCE_VAE, "n_classes": 4, "input_size": 256}),
}
#: (CPU batch, GPU batch) per configuration
BATCH = {"default": (32, 128), "ref128": (16, 128), "ref256": (4, 128)}


def synthetic_masks(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Ellipse LV / MYO band / LA label maps, enough for timing."""
    rng = np.random.default_rng(seed)
    rows, cols = (np.mgrid[0:size, 0:size] + 0.5) / size
    out = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx, ry, rx, h = 0.4, rng.uniform(0.45, 0.55), rng.uniform(0.2, 0.3), 0.12, 0.04
        base = cy + 0.6 * ry
        r_in = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2
        r_out = ((rows - cy) / (ry + h)) ** 2 + ((cols - cx) / (rx + h)) ** 2
        la = ((rows - base - 0.1) / 0.1) ** 2 + ((cols - cx) / rx) ** 2 <= 1
        out[i][la & (rows > base)] = 3
        out[i][(r_out <= 1) & (rows <= base)] = 2
        out[i][(r_in <= 1) & (rows <= base)] = 1
    return out


def bench(name: str, device: torch.device, steps: int, warmup: int, batch: int | None,
          amp: bool, channels_last: bool) -> dict:
    cfg = CONFIGS[name]()
    b = batch or BATCH[name][device.type == "cuda"]
    torch.manual_seed(0)
    memfmt = torch.channels_last if channels_last else torch.contiguous_format
    model = MaskVAE(cfg).to(device=device, memory_format=memfmt).train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=5e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_cfg = LossConfig(kind="ar-vae")
    masks = torch.from_numpy(synthetic_masks(b, cfg.input_size)).to(device)
    attrs = torch.randn(b, 7, device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        target = masks.long()
        x = one_hot(target, cfg.n_classes, check=False).contiguous(memory_format=memfmt)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            mu, logvar = model.encode(x)
            z = reparameterize(mu.float(), logvar.float(), gen)
            out = {"logits": model.decode(z), "mu": mu, "logvar": logvar, "z": z}
        loss = compute_losses(out, target, loss_cfg, attrs)["total"]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {
        "config": name, "input_size": cfg.input_size, "blocks": cfg.blocks,
        "init_channels": cfg.init_channels, "latent_dim": cfg.latent_dim,
        "params": sum(p.numel() for p in model.parameters()), "batch": b, "steps": steps,
        "frames_per_s": steps * b / dt, "ms_per_step": 1000 * dt / steps,
        "device": str(device), "amp": amp, "channels_last": channels_last,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--configs", default="default,ref128,ref256")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: per config)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print(f"no GPU: CUDA is not available in this torch build/machine "
                  f"(torch {torch.__version__}); nothing to measure with --device cuda")
            return 0
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        amp = True
        label = torch.cuda.get_device_name(device)
    else:
        device, amp = torch.device("cpu"), False
        label = f"{platform.machine()} CPU, {args.threads} torch threads"
    channels_last = not args.no_channels_last
    print(f"# torch {torch.__version__}, Python {platform.python_version()}, {label}; "
          f"amp={amp} channels_last={channels_last}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| config | input | blocks/ch/latent | params | batch | frames/s | ms/step |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for name in args.configs.split(","):
        default_steps = {"default": 20, "ref128": 6, "ref256": 3}[name]
        if device.type == "cuda":
            default_steps = 50
        r = bench(name, device, args.steps or default_steps, args.warmup, args.batch, amp,
                  channels_last)
        results.append(r)
        print(f"| {name} | {r['input_size']}x{r['input_size']} | {r['blocks']}/"
              f"{r['init_channels']}/{r['latent_dim']} | {r['params']:,} | {r['batch']} | "
              f"{r['frames_per_s']:.1f} | {r['ms_per_step']:.0f} |", flush=True)
    print(f"# load average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "python": platform.python_version(),
                       "device": label, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
