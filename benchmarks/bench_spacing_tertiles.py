"""Detection rates of the temporal metric per pixel-spacing tertile, pixel vs physical units (issue 12).

    python benchmarks/bench_spacing_tertiles.py [--patients 480] [--frames 20] [--jobs 2]
        [--ranges camus wide] [--spike-rate 0.08] [--paired 100] [--seed 12]

**Cohort.** A synthetic cohort with a per-patient native grid (``image.geometry:
camus-like``, masks only) is simulated with the observation model's boundary noise and
injected defects (the default rates of holes, islands, MYO gaps and LV-background contacts,
and single-frame LV spikes at ``--spike-rate``). The shape attributes of every observed
frame are measured on its native grid with its spacing
(:func:`echolatent.shape.attributes.shape_attributes`). The patients are split 50/50 (seeded) into
train and test; the thresholds are derived from the train split's observed sequences,
leaving out the frames with an injected defect (the workflow's ``observed`` reference,
:func:`echolatent.stages.temporal.image_thresholds_stage`), and the metric is evaluated on
the test split (:func:`echolatent.temporal.evaluation.detection_rates`) in two units:

``pixels``    the seven attributes in pixels of each patient's grid (the old behaviour);
``physical``  the same attributes in mm, mm^2 and degrees measured in mm (the default now).

**Tertiles.** Patients are grouped in tertiles of their pixel size ``sqrt(h * w)`` (cut
points over the whole cohort). Per tertile of the test split: the spike frames and the
fraction flagged (sensitivity, with a 95 % Wilson interval), the same for the interior spike
frames (the metric sets ``d = 0`` on the first and last frames, so a spike there cannot be
flagged), the spikes' neighbours, and the fraction of clean-window frames flagged (false
positives: frames whose 3-frame window holds no injected defect).

**Paired check.** Tertiles hold different patients, so their rates differ by sampling
alone by a few points (binomial). To measure the effect of the grid itself, the first
``--paired`` test patients are rendered again, same heart, noise and spikes (the grid draw
is a separate random stream), on the finest grid of the range (smallest h and w) and on
the coarsest (largest h and w), same field of view, and the cohort's thresholds are applied
to both: the rates at each grid and the number of frames flagged on one grid only.

``--ranges``: ``camus`` = the simulator's camus-like defaults (h 0.15-0.25 mm, w 0.30-0.45
mm, depth 150-180 mm, width 130-160 mm); ``wide`` = a stress range (h 0.15-0.60 mm, w
0.25-0.90 mm). Simulation and measurement run in ``--jobs`` processes (one BLAS thread
each); the figures do not depend on it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_name] = "1"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

RANGES = {
    "camus": {},  # the simulator's camus-like defaults
    "wide": {"spacing_h_range_mm": [0.15, 0.60], "spacing_w_range_mm": [0.25, 0.90]},
}
TERTILES = ("fine", "middle", "coarse")


def make_config(args, ranges: str, **image):
    from echolatent.simulate import SimulationConfig

    return SimulationConfig.from_dict({
        "n_patients": args.patients, "seed": args.seed, "frames": args.frames,
        "image": {"geometry": "camus-like", "images": False, **RANGES[ranges], **image},
        "observation": {"defect_rates": {"spike": args.spike_rate}},
    })


def extreme_grid(config, which: str) -> dict:
    """Fixed-geometry image keys of the finest or coarsest grid of a camus-like config (largest field of view)."""
    im = config.image
    k = 0 if which == "fine" else 1
    h, w = im.spacing_h_range_mm[k], im.spacing_w_range_mm[k]
    return {"geometry": "fixed", "spacing": [h, w], "rows": math.ceil(im.depth_range_mm[1] / h - 1e-9),
            "cols": math.ceil(im.width_range_mm[1] / w - 1e-9)}


def measure(payload):
    """Simulate patient ``index`` and measure its observed frames: (attributes, defect records, grid row)."""
    from echolatent.shape.attributes import shape_attributes
    from echolatent.simulate import SimulationConfig, simulate_patient

    config_dict, index = payload
    sim = simulate_patient(SimulationConfig.from_dict(config_dict), index)
    tables, frames = [], []
    for view, v in sim.views.items():
        n = v.mask.shape[0]
        ids = pd.DataFrame({"patient_id": sim.patient_id, "view": view, "frame": np.arange(n)})
        tables.append(pd.concat([ids, shape_attributes(v.mask, v.spacing)], axis=1))
        frames.append(ids.assign(defect=[k or "none" for k in v.frames["defect"]],
                                 defect_spike=v.frames["defect_spike"], is_ed=v.frames["is_ed"]))
    grid = {"patient_id": sim.patient_id, "h": sim.truth["spacing_h_mm"], "w": sim.truth["spacing_w_mm"],
            "rows": sim.truth["rows"], "cols": sim.truth["cols"]}
    return pd.concat(tables, ignore_index=True), pd.concat(frames, ignore_index=True), grid


def simulate_and_measure(config, indices, jobs: int):
    from concurrent.futures import ProcessPoolExecutor

    payloads = [(config.to_dict(), int(i)) for i in indices]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(measure, payloads, chunksize=4))
    else:
        results = [measure(p) for p in payloads]
    return (pd.concat([r[0] for r in results], ignore_index=True),
            pd.concat([r[1] for r in results], ignore_index=True), pd.DataFrame([r[2] for r in results]))


def wilson(k: int, n: int) -> str:
    if n == 0:
        return "-"
    p, z = k / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"[{100 * (centre - half):.1f}, {100 * (centre + half):.1f}]"


def rates(per_frame: pd.DataFrame) -> dict:
    """Flag rates of the frame classes of a :func:`detection_rates` per-frame table (percent)."""
    last = per_frame.groupby(["patient_id", "view"])["frame"].transform("max")
    interior = (per_frame["frame"] > 0) & (per_frame["frame"] < last)
    out = {}
    for name, members in (("spike", per_frame["spike"]), ("interior_spike", per_frame["spike"] & interior),
                          ("neighbour", per_frame["spike_neighbour"]), ("clean", per_frame["clean_window"])):
        flags = per_frame.loc[members.astype(bool), "flagged"]
        out[f"n_{name}"] = len(flags)
        out[name] = 100 * flags.mean() if len(flags) else np.nan
        out[f"{name}_ci"] = wilson(int(flags.sum()), len(flags))
    return out


def derive(attributes, frames, patients, units):
    from echolatent.stages.temporal import image_thresholds_stage
    from echolatent.temporal.thresholds import image_attribute_names

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "attributes.parquet")
        attributes.to_parquet(path, index=False)
        return image_thresholds_stage([path], patients, reference="observed", splits=["train"],
                                      names=image_attribute_names(units), frames=frames)


def run_range(args, ranges: str) -> None:
    from echolatent.temporal.evaluation import detection_rates, injected_defects

    start = time.perf_counter()
    config = make_config(args, ranges)
    attributes, frames, grid = simulate_and_measure(config, range(config.n_patients), args.jobs)
    simulated = time.perf_counter() - start
    ids = grid["patient_id"].to_numpy()
    rng = np.random.default_rng(args.seed)
    train_index = np.sort(rng.permutation(len(ids))[: len(ids) // 2])
    train = set(ids[train_index])
    patients = pd.DataFrame({"patient_id": ids, "split": ["train" if p in train else "test" for p in ids]})
    grid = grid.assign(pixel=np.sqrt(grid["h"] * grid["w"]))
    cuts = np.quantile(grid["pixel"], [1 / 3, 2 / 3])
    grid["tertile"] = np.searchsorted(cuts, grid["pixel"], side="right")
    tertile = grid.set_index("patient_id")["tertile"]
    defects = injected_defects(frames)
    thresholds = {units: derive(attributes, frames, patients, units) for units in ("pixels", "physical")}
    rows = []
    for units, table in thresholds.items():
        _, per_frame = detection_rates(attributes, defects, table)
        per_frame = per_frame[~per_frame["patient_id"].isin(train)]
        per_frame = per_frame.assign(tertile=per_frame["patient_id"].map(tertile))
        for k, members in per_frame.groupby("tertile"):
            group = grid[grid["tertile"] == k]
            rows.append({"units": units, "tertile": TERTILES[k],
                         "sqrt_hw_mm": f"{group['pixel'].min():.3f}-{group['pixel'].max():.3f}",
                         "rows x cols": f"{int(group['rows'].min())}-{int(group['rows'].max())} x "
                                        f"{int(group['cols'].min())}-{int(group['cols'].max())}",
                         **rates(members)})
    table = pd.DataFrame(rows)
    print(f"\n## ranges {ranges}: {args.patients} patients ({len(ids) - len(train)} test) x {len(config.views)} views "
          f"x {args.frames} frames; h {grid['h'].min():.3f}-{grid['h'].max():.3f} mm, w {grid['w'].min():.3f}-"
          f"{grid['w'].max():.3f} mm; spike rate {args.spike_rate}; simulated and measured in {simulated:.0f} s "
          f"({args.jobs} processes)\n")
    columns = ["units", "tertile", "sqrt_hw_mm", "rows x cols", "n_spike", "spike", "spike_ci", "n_interior_spike",
               "interior_spike", "interior_spike_ci", "neighbour", "n_clean", "clean", "clean_ci"]
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print()
    for units, part in table.groupby("units", sort=False):
        part = part.set_index("tertile")
        diff = {c: part.loc["fine", c] - part.loc["coarse", c] for c in ("spike", "interior_spike", "clean")}
        print(f"{units:>8}: fine - coarse tertile: spike {diff['spike']:+.1f}, interior spike "
              f"{diff['interior_spike']:+.1f}, clean-window {diff['clean']:+.2f} points")

    if args.paired:
        test = [i for i in range(config.n_patients) if ids[i] not in train][: args.paired]
        renders = {}
        for which in ("fine", "coarse"):
            fixed = make_config(args, ranges, **extreme_grid(config, which))
            renders[which] = simulate_and_measure(fixed, test, args.jobs)
        spec = {w: extreme_grid(config, w) for w in ("fine", "coarse")}
        print(f"\nPaired: {len(test)} test patients rendered on the finest grid {spec['fine']['spacing']} mm "
              f"({spec['fine']['rows']} x {spec['fine']['cols']}) and the coarsest {spec['coarse']['spacing']} mm "
              f"({spec['coarse']['rows']} x {spec['coarse']['cols']}), the cohort's thresholds:\n")
        rows = []
        for units, table in thresholds.items():
            flags = {}
            for which, (att, fr, _) in renders.items():
                _, per_frame = detection_rates(att, injected_defects(fr), table)
                flags[which] = per_frame
                rows.append({"units": units, "grid": which, **rates(per_frame)})
            a, b = flags["fine"], flags["coarse"]
            if not (a[["patient_id", "view", "frame"]].equals(b[["patient_id", "view", "frame"]])
                    and a["spike"].equals(b["spike"])):
                raise RuntimeError("the two renders of the paired check do not hold the same frames and spikes")
            for name, members in (("spike", a["spike"]), ("clean", a["clean_window"])):
                only_fine = int((a["flagged"] & ~b["flagged"] & members).sum())
                only_coarse = int((~a["flagged"] & b["flagged"] & members).sum())
                rows[-1][f"{name}: fine only / coarse only"] = f"{only_fine} / {only_coarse}"
        paired = pd.DataFrame(rows).fillna("")
        columns = ["units", "grid", "n_spike", "spike", "spike_ci", "interior_spike", "n_clean", "clean",
                   "spike: fine only / coarse only", "clean: fine only / coarse only"]
        print(paired[columns].to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print(f"\n(range {ranges}: {time.perf_counter() - start:.0f} s)")
    sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=480)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--ranges", nargs="+", choices=sorted(RANGES), default=["camus", "wide"])
    parser.add_argument("--spike-rate", type=float, default=0.08)
    parser.add_argument("--paired", type=int, default=100, help="test patients of the paired check (0: none)")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    for ranges in args.ranges:
        run_range(args, ranges)
    print(f"\ntotal {time.perf_counter() - start:.0f} s (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
