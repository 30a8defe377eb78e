"""Benchmark of the anatomical criteria and shape attributes (issue 4).

Measures masks/s on ONE core (BLAS/OpenMP threads pinned to 1) at 256 x 256 on a seeded,
realistic mix of clean and defective apical label maps, and compares, in the same run,
:func:`echolatent.shape.criteria.anatomical_metrics` with ``baseline_metrics``, a straightforward
per-mask implementation written directly from the definitions (one
``scipy.ndimage.label`` per structure, Python loops over labels as in the reference,
the erosion loop relabelling the whole map at every erosion). Every mask must give
identical criteria in both.

Usage::

    python benchmarks/bench_anatomy.py [--n 600] [--baseline-n 150] [--seed 0]

``make_masks`` and ``baseline_metrics`` are imported by the tests.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

CRITERIA = (
    "holes_in_lv", "holes_in_epi", "holes_in_atrium", "holes_between_lv_and_myo",
    "holes_between_lv_and_atrium", "disconnectivity_in_lv", "disconnectivity_in_myo",
    "disconnectivity_in_atrium", "frontier_ratio_between_lv_and_bg",
    "frontier_ratio_between_myo_and_atrium", "width_ratio_between_lv_and_myo",
    "erosion_ratio_before_myo_split",
)
_S8 = np.ones((3, 3), bool)


# --------------------------------------------------------------------------------------
# Straightforward baseline, one mask at a time, straight from the definitions
# --------------------------------------------------------------------------------------
def _holes(S):
    comp = np.pad(~S, 1, constant_values=True)
    lab, n = ndi.label(comp, _S8)
    outside = lab[0, 0]
    total = 0
    for k in range(1, n + 1):
        if k != outside:
            total += int(np.sum(lab == k))
    return total


def _complement_components_4(S):
    lab, n = ndi.label(np.pad(~S, 1, constant_values=True))
    return lab, n, lab[0, 0]


def _gap(A, B, s):
    labA, nA, outA = _complement_components_4(A)
    labB, nB, outB = _complement_components_4(B)
    Ap, Bp = np.pad(A, 1), np.pad(B, 1)
    filledA, filledB = Ap.copy(), Bp.copy()
    for k in range(1, nA + 1):
        if k != outA and not np.any(Bp & (labA == k)):
            filledA |= labA == k
    for k in range(1, nB + 1):
        if k != outB and not np.any(Ap & (labB == k)):
            filledB |= labB == k
    lab, n = ndi.label(~(filledA | filledB))
    outside = lab[0, 0]
    total = 0
    for k in range(1, n + 1):
        if k != outside:
            total += int(np.sum(lab == k))
    return total if total > s else 0


def _fragmentation(S):
    lab, n = ndi.label(S, _S8)
    if n <= 1:
        return 0
    sizes = [int(np.sum(lab == k)) for k in range(1, n + 1)]
    return sum(sizes) - max(sizes)


def _frontier_ratio(A, B):
    frontier = int(np.sum(A & ndi.binary_dilation(B, _S8)))
    if frontier <= 1:
        frontier = 0
    cols = np.flatnonzero(A.any(axis=0))
    return frontier / (cols[-1] - cols[0] + 1)


def _width_ratio(lv, myo):
    row = int(ndi.center_of_mass(lv | myo)[0])
    a, b = int(lv[row].sum()), int(myo[row].sum())
    return a / b if a and b else math.nan


def _erosion_ratio(myo, s):
    if myo.all():  # MYO covers the image: it never erodes (pixels outside the image do not erode)
        return 0.0  # and its distance to a non-MYO pixel is infinite
    dmax = float(ndi.distance_transform_edt(myo).max())
    X = myo
    n = 0
    while ndi.label(X, _S8)[1] == 1:
        X = ndi.binary_erosion(X, _S8, border_value=1)
        lab, k = ndi.label(X)
        if k:
            sizes = np.bincount(lab.ravel())
            small = sizes < s
            small[0] = False
            X = X & ~small[lab]
        n += 1
    return n / dmax


def baseline_metrics(mask, labels=(1, 2, 3)):
    """The 12 criteria of one (H, W) label map, straight from the definitions (dict)."""
    H, W = mask.shape
    s = H * W / 2**14
    lv, myo, la, bg = mask == 1, mask == 2, mask == 3, mask == 0
    has = {1: lv.any(), 2: myo.any(), 3: la.any()}
    nan = math.nan
    out = {
        "holes_in_lv": _holes(lv) if has[1] else nan,
        "holes_in_epi": _holes(lv | myo) if has[1] and has[2] else nan,
        "holes_in_atrium": _holes(la) if has[3] else nan,
        "holes_between_lv_and_myo": _gap(lv, myo, s) if has[1] and has[2] else nan,
        "holes_between_lv_and_atrium": _gap(lv, la, s) if has[1] and has[3] else nan,
        "disconnectivity_in_lv": _fragmentation(lv) if has[1] else nan,
        "disconnectivity_in_myo": _fragmentation(myo) if has[2] else nan,
        "disconnectivity_in_atrium": _fragmentation(la) if has[3] else nan,
        "frontier_ratio_between_lv_and_bg": _frontier_ratio(lv, bg) if has[1] else nan,
        "frontier_ratio_between_myo_and_atrium": _frontier_ratio(myo, la) if has[2] and has[3] else nan,
        "width_ratio_between_lv_and_myo": _width_ratio(lv, myo) if has[1] and has[2] else nan,
        "erosion_ratio_before_myo_split": _erosion_ratio(myo, s) if has[2] else nan,
    }
    need = {
        "holes_in_lv": (1,), "holes_in_epi": (1, 2), "holes_in_atrium": (3,), "holes_between_lv_and_myo": (1, 2),
        "holes_between_lv_and_atrium": (1, 3), "disconnectivity_in_lv": (1,), "disconnectivity_in_myo": (2,),
        "disconnectivity_in_atrium": (3,), "frontier_ratio_between_lv_and_bg": (1, 3),
        "frontier_ratio_between_myo_and_atrium": (2, 3), "width_ratio_between_lv_and_myo": (1, 2),
        "erosion_ratio_before_myo_split": (2,),
    }
    for name, req in need.items():
        if not set(req) <= set(labels):
            out[name] = nan
    return out


# --------------------------------------------------------------------------------------
# Realistic synthetic masks: bullet LV, MYO band open at the base, LA beyond the base
# --------------------------------------------------------------------------------------
DEFECTS = ("lv_hole", "myo_split", "lv_island", "myo_island", "la_island", "gap_lv_myo", "gap_lv_la",
           "open_apex", "thin_wall", "wide_lv", "closed_ring", "salt", "no_la", "edge")


def _smooth_profile(rng, u, amplitude, n_terms=3):
    out = np.zeros_like(u)
    for _ in range(n_terms):
        out += rng.normal(0, amplitude / n_terms) * np.sin(rng.uniform(0.5, 3.5) * np.pi * u + rng.uniform(0, 2 * np.pi))
    return out


def make_heart(rng, size=256, *, defect=None):
    """One apical label map (apex up, LA below the base) with an optional named defect."""
    H = W = size
    k = size / 256
    L = rng.uniform(85, 125) * k
    b = rng.uniform(22, 34) * k
    t = b * rng.uniform(0.28, 0.4)  # wall thickness relative to the cavity half-width
    la_len = rng.uniform(30, 48) * k
    la_b = b * rng.uniform(0.85, 1.0)
    theta = np.deg2rad(rng.uniform(-15, 15))
    base_r = rng.uniform(0.58, 0.68) * H
    base_c = W / 2 + rng.uniform(-15, 15) * k
    if defect == "edge":
        base_r = (L + t) * math.cos(theta) + rng.uniform(-3, 1)  # apex reaches the top border
    rows, cols = np.mgrid[0:H, 0:W].astype(float)
    dr, dc = rows - base_r, cols - base_c
    u = -(dr * math.cos(theta) - dc * math.sin(theta))  # along the long axis, apex at u = L
    v = dr * math.sin(theta) + dc * math.cos(theta)  # lateral
    un = np.clip(u / L, 0, 1)
    left_b = b * (1 + _smooth_profile(rng, un, 0.05))
    right_b = b * (1 + _smooth_profile(rng, un, 0.05))
    thick_l = t * (1 + _smooth_profile(rng, un, 0.15))
    thick_r = t * (1 + _smooth_profile(rng, un, 0.15))
    if defect == "wide_lv":
        left_b, right_b = left_b * 1.5, right_b * 1.5
        thick_l, thick_r = thick_l * 0.25, thick_r * 0.25
    half = np.where(v < 0, left_b, right_b)
    thick = np.where(v < 0, thick_l, thick_r)
    if defect == "thin_wall":
        where = rng.uniform(0.2, 0.8)
        thin = np.exp(-((un - where) / 0.06) ** 2)
        side = rng.integers(2)
        thick = np.where((v < 0) == bool(side), thick * (1 - 0.8 * thin), thick)
    shape = np.sqrt(np.clip(1 - (u / L) ** 2, 0, None))
    lv = (u >= 0) & (u <= L) & (np.abs(v) <= half * shape)
    outer = np.sqrt(np.clip(1 - (u / (L + thick)) ** 2, 0, None)) * (half + thick)
    myo = (u >= 0) & (u <= L + thick) & (np.abs(v) <= outer) & ~lv
    la = (u < 0) & (u > -la_len) & (np.abs(v) <= la_b * np.sqrt(np.clip(1 - (u / la_len) ** 2, 0, None)))
    m = np.zeros((H, W), np.uint8)
    m[myo] = 2
    m[lv] = 1
    if defect != "no_la":
        m[la & (m == 0)] = 3
    if defect == "closed_ring":  # MYO closing under the LV: a ring
        band = (u < 0) & (u > -t * 0.7) & (np.abs(v) <= half + thick)
        m[band & (m != 1)] = 2
        m[band & (m == 3)] = 2
    if defect is None or defect in ("thin_wall", "wide_lv", "no_la", "edge", "closed_ring"):
        return m

    def disc(cr, cc, radius):
        return (rows - cr) ** 2 + (cols - cc) ** 2 <= radius**2

    def point(uu, vv):
        r = base_r - uu * math.cos(theta) + vv * math.sin(theta)
        c = base_c + uu * math.sin(theta) + vv * math.cos(theta)
        return r, c

    if defect == "lv_hole":
        r, c = point(rng.uniform(0.2, 0.7) * L, rng.uniform(-0.4, 0.4) * b)
        m[disc(r, c, rng.uniform(1, 4) * k) & (m == 1)] = rng.choice([0, 2, 3])
    elif defect == "myo_split":
        uu = rng.uniform(0.1, 1.0) * L
        cut = (np.abs(u - uu) <= rng.uniform(0.5, 2.5)) & (m == 2)
        if rng.random() < 0.5:
            cut &= v < 0
        m[cut] = rng.choice([0, 1])
    elif defect == "lv_island":
        r, c = point(rng.uniform(-0.2, 1.3) * L, rng.uniform(1.5, 2.5) * b * rng.choice([-1, 1]))
        m[disc(r, c, rng.uniform(1, 5) * k)] = 1
    elif defect == "myo_island":
        r, c = point(rng.uniform(-0.3, 0.2) * L, rng.uniform(-2.5, 2.5) * b)
        m[disc(r, c, rng.uniform(1, 5) * k) & (m == 0)] = 2
    elif defect == "la_island":
        r, c = point(rng.uniform(0.2, 1.4) * L, rng.uniform(1.6, 2.5) * b * rng.choice([-1, 1]))
        m[disc(r, c, rng.uniform(1, 5) * k)] = 3
    elif defect == "gap_lv_myo":
        uu = rng.uniform(0.1, 0.9) * L
        side = rng.choice([-1, 1])
        r, c = point(uu, side * b * math.sqrt(max(1 - (uu / L) ** 2, 0.05)))
        m[disc(r, c, rng.uniform(1, 3.5) * k) & ((m == 1) | (m == 2))] = 0
    elif defect == "gap_lv_la":
        r, c = point(0, rng.uniform(-0.6, 0.6) * b)
        m[disc(r, c, rng.uniform(1, 3.5) * k) & ((m == 1) | (m == 3))] = 0
    elif defect == "open_apex":
        r, c = point(L + t / 2, rng.uniform(-0.3, 0.3) * b)
        m[disc(r, c, rng.uniform(3, 8) * k) & (m == 2)] = rng.choice([0, 1])
    elif defect == "salt":
        for _ in range(rng.integers(1, 6)):
            r, c = rng.integers(0, H), rng.integers(0, W)
            m[max(r - 1, 0):r + rng.integers(1, 3), max(c - 1, 0):c + rng.integers(1, 3)] = rng.integers(0, 4)
    return m


def make_masks(n, *, seed=0, size=256, defective_fraction=0.4):
    """A seeded mix of clean and defective maps, (n, size, size) uint8, and the defect names."""
    rng = np.random.default_rng(seed)
    masks = np.empty((n, size, size), np.uint8)
    kinds = []
    for i in range(n):
        defect = DEFECTS[rng.integers(len(DEFECTS))] if rng.random() < defective_fraction else None
        masks[i] = make_heart(rng, size, defect=defect)
        kinds.append(defect or "clean")
    return masks, kinds


# --------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------
def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def _rate(fn, n, repeat):
    """Best masks/s over ``repeat`` runs, by process (CPU) time and by wall time."""
    best_cpu = best_wall = math.inf
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    return n / best_cpu, n / best_wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600, help="number of 256 x 256 masks")
    parser.add_argument("--baseline-n", type=int, default=None,
                        help="masks (a prefix) run through the baseline (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions of the fast paths (best kept)")
    args = parser.parse_args(argv)

    from echolatent.shape.attributes import shape_attributes
    from echolatent.shape.criteria import anatomical_metrics

    masks, kinds = make_masks(args.n, seed=args.seed)
    n_base = args.n if args.baseline_n is None else min(args.baseline_n, args.n)

    anatomical_metrics(masks[:32])  # warm-up (imports, caches)
    shape_attributes(masks[:32])
    fast_cpu, fast_wall = _rate(lambda: anatomical_metrics(masks), args.n, args.repeat)
    attr_cpu, attr_wall = _rate(lambda: shape_attributes(masks), args.n, args.repeat)
    df = anatomical_metrics(masks)

    base = []
    base_cpu, base_wall = _rate(lambda: base.extend(baseline_metrics(m) for m in masks[:n_base]), n_base, 1)

    mismatches = []
    for i, ref in enumerate(base):
        for name in CRITERIA:
            if not _same(float(df[name].iloc[i]), float(ref[name])):
                mismatches.append((i, kinds[i], name, df[name].iloc[i], ref[name]))
    if mismatches:
        for row in mismatches[:20]:
            print("MISMATCH", row, file=sys.stderr)
        raise SystemExit(f"{len(mismatches)} mismatches between the fast and the baseline criteria")

    n_def = sum(k != "clean" for k in kinds)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"single-threaded (OMP/OPENBLAS/MKL threads = 1)")
    print(f"masks: {args.n} at 256x256, seed {args.seed}: {args.n - n_def} clean, {n_def} defective "
          f"({len(set(kinds)) - 1} defect kinds); {int(df.anatomical_errors.sum())} flagged invalid")
    print(f"{'':44}{'masks/s (CPU)':>15}{'masks/s (wall)':>16}")
    print(f"{'criteria, baseline per mask (' + str(n_base) + ' masks)':<44}{base_cpu:>15.1f}{base_wall:>16.1f}")
    print(f"{'criteria, anatomical_metrics':<44}{fast_cpu:>15.1f}{fast_wall:>16.1f}")
    print(f"{'  speed-up':<44}{fast_cpu / base_cpu:>14.1f}x{fast_wall / base_wall:>15.1f}x")
    print(f"{'attributes, shape_attributes':<44}{attr_cpu:>15.1f}{attr_wall:>16.1f}")
    print(f"equality: all 12 criteria identical (NaN-aware, exact floats) on {n_base} masks")
    return {"fast": fast_cpu, "baseline": base_cpu, "attributes": attr_cpu, "fast_wall": fast_wall,
            "baseline_wall": base_wall, "attributes_wall": attr_wall}


if __name__ == "__main__":
    main()
