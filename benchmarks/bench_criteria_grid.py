"""On which grid are the 12 anatomical criteria measured? (issue 12, item 6).

The criteria count pixels; the frontier ratios (9, 10) and the erosion ratio (12) change
under anisotropic resampling, and the small-object size ``s`` is a number of pixels. This
benchmark renders the SAME simulated hearts (``echolatent.simulate``, masks only) at several
CAMUS-like native geometries ``(rows, cols, spacing_h, spacing_w)``, clean and with defects,
and measures the criteria under several grid policies:

``native``
    the maps' own pixels (the reference code; ``s = H W / 2**14``);
``resize256``
    nearest-neighbour resize to 256 x 256 ignoring the spacing (the model grid of the
    reference pipeline), ``s = 4``;
``iso0.6``, ``iso0.3``
    nearest-neighbour resampling to an isotropic grid of 0.6 / 0.3 mm (same field of view;
    ``anatomical_metrics(masks, spacing, grid=g)``, ``s = 1.44 mm^2 / g^2``);
``isomin``
    isotropic at the finest native spacing (the coarse axis stretched, as the official
    CAMUS EF code does before Simpson's method), ``s = 1.44 mm^2 / g^2``;
``hybrid0.3`` (the package's default, ``anatomical_metrics(masks, spacing)``), ``hybrid0.6``
    criteria 1-8 (holes, gaps, fragments: valid iff 0) on the native grid, criteria 9-12
    (the thresholded ratios) on the isotropic 0.3 / 0.6 mm grid; ``s = 1.44 mm^2`` on both.

Frame sets per geometry
-----------------------
``clean``: the simulator's clean masks (every frame); ``noisy``: observed masks with
observer-like boundary noise and no defect (valid hearts); one set per injected defect
kind of the simulator (``hole_lv`` ... ``la_detached``); and two benchmark-made graded
defects on clean frames, defined in mm so that their truth does not depend on the grid:
``thin0.5``, ``thin1``, ``thin2``, ``thin3``: a 15 mm stretch of the lateral free wall
thinned to 0.5, 1, 2 or 3 mm (walls elsewhere ~ 10-12 mm, so criterion 12, erosions to
split / maximal half-thickness, is about 0.25 / 5.5 ~ 0.05, 0.09, 0.18, 0.27: the first two
must fail, ``thin3`` is a plausible wall and must pass, ``thin2`` lies near the threshold and
shows how finely each grid resolves criterion 12); and two defects of one native pixel, which only a grid at
least as fine as the native one can see: ``pinhole`` (one background pixel inside the LV)
and ``cut1row`` (the lateral wall cut by one row of native pixels: the MYO in two pieces).

Output: markdown tables of the share of frames flagged (``anatomical_errors``) per policy x
geometry x frame set; the spread of criteria 9-12 over geometries for the same clean frames
(a grid-invariant policy gives the same value whatever the acquisition grid); ms per frame.

Usage::

    python benchmarks/bench_criteria_grid.py [--patients 12] [--jobs 2] [--seed 3]

About 4 minutes with the defaults on 2 idle cores (6 patients: ~580 frames per geometry).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

#: name -> (rows, cols, spacing_h mm, spacing_w mm). CAMUS's headers give about 0.154 x 0.308
#: mm (depth finer than width); sizes and spacings vary per patient, so the set spans
#: anisotropies 2, 1.5, 1 (fine and coarse) and a reversed one (width finer than depth).
GEOMETRIES = {
    "camus 1000x600 .154x.308": (1000, 600, 0.154, 0.308),
    "camus 1200x560 .14x.28": (1200, 560, 0.140, 0.280),
    "780x520 .2x.3": (780, 520, 0.200, 0.300),
    "600x600 .3x.3": (600, 600, 0.300, 0.300),
    "256x256 .75x.75": (256, 256, 0.750, 0.750),
    "500x1000 .33x.165": (500, 1000, 0.330, 0.165),
}
POLICIES = ("native", "resize256", "iso0.6", "iso0.3", "isomin", "hybrid0.6", "hybrid0.3")
SIM_KINDS = ("hole_lv", "hole_myo", "hole_la", "island_lv", "island_myo", "island_la", "myo_gap", "la_detached")
SETS = ("clean", "noisy", *SIM_KINDS, "pinhole", "cut1row", "thin0.5", "thin1", "thin2", "thin3")
#: Sets of valid hearts (a flag is a false alarm); every other set is defective.
VALID_SETS = ("clean", "noisy", "thin3")
#: Sets near a threshold: reported, neither valid nor defective.
BORDERLINE_SETS = ("thin2",)
RATIOS = ("frontier_ratio_between_lv_and_bg", "frontier_ratio_between_myo_and_atrium",
          "width_ratio_between_lv_and_myo", "erosion_ratio_before_myo_split")
SHORT = {RATIOS[0]: "#9 LV-BG", RATIOS[1]: "#10 MYO-LA", RATIOS[2]: "#11 width", RATIOS[3]: "#12 erosion"}


# --------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------
def thin_wall(mask, spacing, thickness_mm, length_mm=15.0, above_mm=12.0):
    """Thin the lateral (larger column) free wall to ``thickness_mm`` over ``length_mm``.

    The stretch is centred ``above_mm`` above the LV centroid row (towards the apex, so the
    row of criterion 11 keeps its wall). MYO pixels of that wall farther than
    ``thickness_mm`` from the LV cavity (Euclidean, in mm) become background: the defect is
    defined in mm, whatever the grid.
    """
    lv = mask == 1
    if not lv.any():
        return None
    rows, cols = np.nonzero(lv)
    r0, c0 = rows.mean(), cols.mean()
    (a, b), (c, d) = _box(mask > 0, 2)  # the heart's bounding box: the distance map of a crop
    dist = ndi.distance_transform_edt(~lv[a:b, c:d], sampling=spacing)
    r, col = np.mgrid[a:b, c:d]
    band = (np.abs((r - r0) * spacing[0] + above_mm) <= length_mm / 2) & (col > c0)
    out = mask.copy()
    crop = out[a:b, c:d]
    crop[band & (crop == 2) & (dist > thickness_mm)] = 0
    return out


def _box(fg, margin):
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    return ((max(rows[0] - margin, 0), min(rows[-1] + margin + 1, fg.shape[0])),
            (max(cols[0] - margin, 0), min(cols[-1] + margin + 1, fg.shape[1])))


def pinhole(mask):
    """One background pixel of the native grid at the LV pixel farthest from the cavity's border."""
    lv = mask == 1
    if not lv.any():
        return None
    (a, b), (c, d) = _box(lv, 1)
    crop = lv[a:b, c:d]
    i, j = np.unravel_index(np.argmax(ndi.distance_transform_edt(crop)), crop.shape)
    out = mask.copy()
    out[a + i, c + j] = 0
    return out


def cut_one_row(mask):
    """The lateral free wall cut by one row of native pixels at the LV centroid row."""
    lv = mask == 1
    if not lv.any():
        return None
    rows, cols = np.nonzero(lv)
    r0, c0 = int(round(rows.mean())), cols.mean()
    out = mask.copy()
    line = out[r0]
    line[(np.arange(len(line)) > c0) & (line == 2)] = 0
    return out


def geometry_frames(name, patients, seed, frames):
    """The frame sets of one geometry: {set: (masks (n, H, W) uint8, ids (n,) 'patient/view/frame')}."""
    from echolatent.simulate import SimulationConfig, simulate_patient

    rows, cols, sh, sw = GEOMETRIES[name]
    rate = 0.2
    cfg = SimulationConfig.from_dict({
        "n_patients": patients, "seed": seed, "frames": frames,
        "image": {"rows": rows, "cols": cols, "spacing": [sh, sw], "images": False},
        "observation": {"defect_rates": {"hole": rate, "island": rate, "myo_gap": rate, "lv_bg_contact": rate,
                                         "spike": 0.0}},
    })
    sets = {k: ([], []) for k in SETS}
    for index in range(patients):
        sim = simulate_patient(cfg, index)
        for view, v in sim.views.items():
            for t in range(frames):
                key = f"{index}/{view}/{t}"
                sets["clean"][0].append(v.clean[t])
                sets["clean"][1].append(key)
                kind = v.frames["defect"][t]
                target = "noisy" if kind == "" else kind
                if target in sets:
                    sets[target][0].append(v.mask[t])
                    sets[target][1].append(key)
                if t % 5 == 0:
                    made = {f"thin{mm:g}": thin_wall(v.clean[t], (sh, sw), mm) for mm in (0.5, 1.0, 2.0, 3.0)}
                    made.update(pinhole=pinhole(v.clean[t]), cut1row=cut_one_row(v.clean[t]))
                    for label, frame in made.items():
                        if frame is not None:
                            sets[label][0].append(frame)
                            sets[label][1].append(key)
    return {k: (np.stack(m) if m else np.zeros((0, rows, cols), np.uint8), np.array(ids))
            for k, (m, ids) in sets.items()}


# --------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------
def _resize(masks, shape):
    """Nearest-neighbour resize ignoring the spacing (pixel centres, as the resampler of the package)."""
    from echolatent.shape.grid import grid_indices

    rows = grid_indices(masks.shape[1], 1.0 / masks.shape[1], 1.0 / shape[0])
    cols = grid_indices(masks.shape[2], 1.0 / masks.shape[2], 1.0 / shape[1])
    return np.ascontiguousarray(masks[:, rows[:, None], cols[None, :]])


def measure(policy, masks, spacing):
    from echolatent.shape.criteria import anatomical_metrics
    from echolatent.shape.grid import resample_to_grid

    if policy == "native":
        return anatomical_metrics(masks, spacing, grid="native")
    if policy == "resize256":
        return anatomical_metrics(_resize(masks, (256, 256)), grid="native")
    if policy.startswith("hybrid"):  # the package's grid=g: 1-8 on the native grid, 9-12 on the g grid
        return anatomical_metrics(masks, spacing, grid=float(policy[6:]))
    g = min(spacing) if policy == "isomin" else float(policy[3:])
    # all 12 on the isotropic grid (maps already on the g grid are measured in one pass, s = 1.44 mm^2)
    return anatomical_metrics(resample_to_grid(masks, spacing, g), (g, g), grid=g)


def run_geometry(args):
    name, patients, seed, frames, policies = args
    rows, cols, sh, sw = GEOMETRIES[name]
    t0 = time.perf_counter()
    sets = geometry_frames(name, patients, seed, frames)
    sim_s = time.perf_counter() - t0
    flagged, values, timing = [], [], []
    for policy in policies:
        n_total, secs = 0, 0.0
        for kind, (masks, ids) in sets.items():
            if not len(masks):
                continue
            c0 = time.process_time()
            df = measure(policy, masks, (sh, sw))
            secs += time.process_time() - c0
            n_total += len(masks)
            errors = df["anatomical_errors"].to_numpy()
            fired = {}
            if errors.any():
                from echolatent.shape.criteria import criteria_validity
                from echolatent.shape.criteria_definitions import CRITERIA

                valid = criteria_validity(df)
                fired = {c: int((~valid[c]).sum()) for c in CRITERIA if (~valid[c]).any()}
            flagged.append({"geometry": name, "policy": policy, "set": kind, "n": len(masks),
                            "flagged": int(errors.sum()), "fired": fired})
            if kind == "clean":
                part = df[list(RATIOS)].copy()
                part["id"], part["geometry"], part["policy"] = ids, name, policy
                values.append(part)
        timing.append({"geometry": name, "policy": policy, "ms_per_frame": 1000 * secs / max(n_total, 1)})
    return flagged, values, timing, sim_s


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------
def _pct(flagged, n):
    return "-" if n == 0 else f"{100 * flagged / n:.0f}" if flagged in (0, n) else f"{100 * flagged / n:.1f}"


def report(flagged, values, timing, policies, geometries):
    fl = pd.DataFrame(flagged)
    print("\n### Share of frames flagged (% with anatomical_errors)\n")
    print(f"Sets {', '.join(VALID_SETS)} are valid hearts (flags = false alarms, want 0); "
          f"{', '.join(BORDERLINE_SETS)} is near the threshold of criterion 12 (reported); every other set is "
          "defective (want 100). n = frames per geometry (the same for every policy).\n")
    for kind in SETS:
        sub = fl[fl["set"] == kind]
        if sub.empty:
            continue
        ns = sub.groupby("geometry")["n"].first()
        if kind == "clean":
            head = "| set | policy | " + " | ".join(f"{g} (n={ns.get(g, 0)})" for g in geometries) + " |"
            print(head)
            print("|" + "---|" * (2 + len(geometries)))
        for policy in policies:
            cells = []
            for g in geometries:
                row = sub[(sub["geometry"] == g) & (sub["policy"] == policy)]
                cells.append("-" if row.empty else _pct(int(row["flagged"].iloc[0]), int(row["n"].iloc[0])))
            label = f"{kind} (n={int(ns.min())}-{int(ns.max())})" if policy == policies[0] else ""
            print(f"| {label} | {policy} | " + " | ".join(cells) + " |")

    print("\n### Criteria that raise the false alarms (valid frames) and miss defects\n")
    for _, row in fl.iterrows():
        if row["set"] in BORDERLINE_SETS:
            continue
        valid_set = row["set"] in VALID_SETS
        if (valid_set and row["flagged"]) or (not valid_set and row["flagged"] < row["n"]):
            what = "false alarms" if valid_set else f"missed {row['n'] - row['flagged']}"
            print(f"- {row['policy']}, {row['geometry']}, {row['set']}: {what}; criteria failing: {row['fired']}")

    vals = pd.concat(values, ignore_index=True)
    print("\n### Criteria 9-12 on the clean frames: median per geometry, and spread over geometries\n")
    print("Spread = per frame, max - min over the geometries of the value measured on the same simulated "
          "frame; median (p95) over frames. A grid-invariant policy has a small spread.\n")
    print("| policy | criterion | " + " | ".join(geometries) + " | spread median (p95) |")
    print("|" + "---|" * (3 + len(geometries)))
    for policy in policies:
        sub = vals[vals["policy"] == policy]
        for crit in RATIOS:
            wide = sub.pivot_table(index="id", columns="geometry", values=crit, aggfunc="first")
            med = [f"{wide[g].median():.3f}" if g in wide else "-" for g in geometries]
            spread = (wide.max(axis=1) - wide.min(axis=1)).dropna()
            print(f"| {policy} | {SHORT[crit]} | " + " | ".join(med)
                  + f" | {spread.median():.3f} ({spread.quantile(0.95):.3f}) |")
    low = vals.groupby(["policy", "geometry"])[RATIOS[3]].min().unstack()
    print("\nMinimum of #12 (erosion ratio, valid iff >= 0.12) over the clean frames:\n")
    print("| policy | " + " | ".join(geometries) + " |")
    print("|" + "---|" * (1 + len(geometries)))
    for policy in policies:
        print(f"| {policy} | " + " | ".join(f"{low.loc[policy, g]:.3f}" if g in low.columns else "-"
                                            for g in geometries) + " |")
    high = vals.groupby(["policy", "geometry"])[[RATIOS[0], RATIOS[1], RATIOS[2]]].max()
    print("\nMaximum of #9 / #10 / #11 (valid iff <= 0.4 / 0.11 / 4.15) over the clean frames:\n")
    print("| policy | " + " | ".join(geometries) + " |")
    print("|" + "---|" * (1 + len(geometries)))
    for policy in policies:
        cells = []
        for g in geometries:
            if (policy, g) in high.index:
                r = high.loc[(policy, g)]
                cells.append(f"{r[RATIOS[0]]:.2f} / {r[RATIOS[1]]:.3f} / {r[RATIOS[2]]:.2f}")
            else:
                cells.append("-")
        print(f"| {policy} | " + " | ".join(cells) + " |")

    tm = pd.DataFrame(timing).pivot_table(index="policy", columns="geometry", values="ms_per_frame")
    print("\n### CPU time of the criteria, ms per frame (one core, resampling included)\n")
    print("| policy | " + " | ".join(geometries) + " |")
    print("|" + "---|" * (1 + len(geometries)))
    for policy in policies:
        print(f"| {policy} | " + " | ".join(f"{tm.loc[policy, g]:.1f}" for g in geometries) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=6, help="simulated patients per geometry (2 views each)")
    parser.add_argument("--frames", type=int, default=20, help="frames per sequence")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one geometry per task)")
    parser.add_argument("--geometries", default=",".join(GEOMETRIES),
                        help="comma-separated subset of: " + ", ".join(GEOMETRIES))
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help="comma-separated subset of " + ", ".join(POLICIES))
    args = parser.parse_args(argv)
    geometries = [g.strip() for g in args.geometries.split(",") if g.strip()]
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = sorted(set(geometries) - set(GEOMETRIES)) + sorted(set(policies) - set(POLICIES))
    if unknown:
        raise SystemExit(f"unknown geometries/policies: {unknown}")

    started = time.perf_counter()
    tasks = [(g, args.patients, args.seed, args.frames, policies) for g in geometries]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run_geometry, tasks))
    else:
        results = [run_geometry(t) for t in tasks]
    flagged = [r for res in results for r in res[0]]
    values = [v for res in results for v in res[1]]
    timing = [t for res in results for t in res[2]]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.patients} simulated patients x 2 views x {args.frames} frames per geometry, seed {args.seed}, "
          f"defect rates 0.2 per type; {args.jobs} worker(s)")
    report(flagged, values, timing, policies, geometries)
    print(f"\nwall time {time.perf_counter() - started:.0f} s (simulation "
          f"{sum(r[3] for r in results):.0f} s summed over geometries)", file=sys.stderr)
    return flagged, values, timing


if __name__ == "__main__":
    main()
