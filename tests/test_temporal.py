"""Temporal metric and latent-trajectory smoothing against closed forms and the reference iteration."""

from __future__ import annotations

import numpy as np
import pytest

from echolatent.temporal import consistency_deviation, neighbour_average_matrix, smooth_trajectories, snake
from echolatent.temporal.metric import derive_thresholds, temporal_consistency


def gradient_descent_snake(s0, weight, *, n_neighbours=1, step=1e-2, momentum=0.9, max_iterations=200_000,
                           eps=np.finfo(np.float32).eps):
    """The reference scheme, written from its description: momentum descent on g = (s - s0) + w (s - avg(s))."""
    s0 = np.asarray(s0, dtype=np.float64)
    s, velocity = s0.copy(), np.zeros_like(s0)
    k = np.arange(1, n_neighbours + 1)
    kernel = (1.0 / k) / (2.0 * (1.0 / k).sum())
    n = len(s0)
    for _ in range(max_iterations):
        padded = np.concatenate([np.full(n_neighbours, s[0]), s, np.full(n_neighbours, s[-1])])
        average = sum(kernel[j] * (padded[n_neighbours - (j + 1): n_neighbours - (j + 1) + n]
                                   + padded[n_neighbours + (j + 1): n_neighbours + (j + 1) + n])
                      for j in range(n_neighbours))
        gradient = (s - s0) + weight * (s - average)
        velocity = momentum * velocity + (1 - momentum) * gradient
        s = s - step * velocity
        if np.linalg.norm(step * velocity) <= eps:
            break
    return s


def test_deviation_is_distance_to_neighbour_interpolation():
    curve = np.array([[0.0], [1.0], [4.0], [9.0], [10.0]])
    d = consistency_deviation(curve, lo=[0.0], hi=[10.0])[:, 0]
    np.testing.assert_allclose(d, [0, 0.1 - 0.2, 0.4 - 0.5, 0.9 - 0.7, 0])
    linear = np.linspace(3, 7, 9)[:, None]
    assert np.abs(consistency_deviation(linear, [0], [1])).max() < 1e-12


def test_single_frame_spike_is_flagged_and_nothing_else():
    t = np.linspace(0, 1, 20)
    curves = np.stack([np.sin(np.pi * t), np.cos(np.pi * t)], axis=1)
    spiked = curves.copy()
    spiked[7, 0] += 0.1
    result = temporal_consistency(np.stack([curves, spiked]), lo=[-1, -1], hi=[1, 1], thresholds=[0.02, 0.02])
    assert result["sequence_inconsistent"].tolist() == [False, True]
    # The spike (0.05 normalised) deviates 0.05 - curvature; its neighbours only about -0.025 + 0.006.
    assert np.flatnonzero(result["frame_inconsistent"][1]).tolist() == [7]
    assert result["attribute_ratio"][1].tolist() == [1 / 20, 0.0]


def test_derived_thresholds_make_references_consistent():
    rng = np.random.default_rng(1)
    refs = [np.cumsum(rng.normal(size=(rng.integers(10, 30), 3)), axis=0) for _ in range(5)]
    tau = derive_thresholds(refs, lo=[-20] * 3, hi=[20] * 3)
    for ref in refs:
        assert not temporal_consistency(ref, [-20] * 3, [20] * 3, tau)["sequence_inconsistent"]


@pytest.mark.parametrize("n_neighbours", [1, 2, 3])
def test_neighbour_average_rows_sum_to_one(n_neighbours):
    matrix = neighbour_average_matrix(12, n_neighbours)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    assert np.all(np.diag(matrix)[n_neighbours:-n_neighbours] == 0)


@pytest.mark.parametrize("weight,n_neighbours", [(50.0, 1), (4.0, 1), (20.0, 2)])
def test_exact_snake_matches_gradient_descent(weight, n_neighbours):
    rng = np.random.default_rng(0)
    s0 = np.cumsum(rng.normal(size=30))
    reference = gradient_descent_snake(s0, weight, n_neighbours=n_neighbours)
    np.testing.assert_allclose(snake(s0, weight, n_neighbours=n_neighbours), reference, atol=1e-4)


def test_snake_is_the_whittaker_minimiser():
    rng = np.random.default_rng(2)
    s0, w = rng.normal(size=15), 7.0
    s = snake(s0, w)

    def objective(x):
        return 0.5 * np.sum((x - s0) ** 2) + (w / 4) * np.sum(np.diff(x) ** 2)

    for _ in range(20):
        assert objective(s) <= objective(s + 1e-3 * rng.normal(size=15))


def test_smooth_trajectories_constrained_dims_meet_thresholds_with_smallest_weight():
    rng = np.random.default_rng(3)
    t = np.linspace(0, 2 * np.pi, 40)
    clean = np.stack([np.sin(t + p) for p in rng.uniform(0, 6, 16)], axis=1)
    z = np.stack([clean + 0.05 * rng.normal(size=clean.shape) for _ in range(8)])
    z[:, 13, :7] += 0.4  # a single-frame spike on every constrained dim
    tau, lo, hi = np.full(7, 0.02), np.full(7, -1.5), np.full(7, 1.5)
    smoothed, weights = smooth_trajectories(z, constrained_dims=range(7), thresholds=tau, lo=lo, hi=hi,
                                            return_weights=True)
    assert smoothed.shape == z.shape
    before = temporal_consistency(z[..., :7], lo, hi, tau)["sequence_inconsistent"]
    after = temporal_consistency(smoothed[..., :7], lo, hi, tau)["sequence_inconsistent"]
    assert before.all() and not after.any()
    assert np.all(weights[:, 7:] == 50.0)
    # Smallest feasible weight, to the bisection's resolution of 128 / 2**5 = 4.
    for n in range(8):
        for k in range(7):
            w = weights[n, k]
            assert w in np.arange(4, 129, 4)
            less = snake(z[n, :, k], w - 4)[:, None]
            assert temporal_consistency(less, lo[k:k + 1], hi[k:k + 1], tau[k:k + 1])["sequence_inconsistent"]
    # Unconstrained dims get the plain snake with w = 50, batched or not.
    np.testing.assert_allclose(smoothed[2, :, 9], snake(z[2, :, 9], 50.0))
    np.testing.assert_allclose(smooth_trajectories(z[2], constrained_dims=range(7), thresholds=tau, lo=lo, hi=hi),
                               smoothed[2])


def test_smooth_trajectories_rejects_bad_arguments():
    with pytest.raises(ValueError, match="constrained dimensions need"):
        smooth_trajectories(np.zeros((5, 4)), constrained_dims=[0])
    with pytest.raises(ValueError, match="outside the 4 latent"):
        smooth_trajectories(np.zeros((5, 4)), constrained_dims=[4], thresholds=[1], lo=[0], hi=[1])


@pytest.mark.parametrize("n_neighbours", [1, 2, 3])
def test_banded_solver_matches_dense_solves(n_neighbours):
    from echolatent.temporal.smoothing import smoothing_band, solve_banded

    rng = np.random.default_rng(n_neighbours)
    for n_frames in (1, 2, 3, 17):
        laplacian = np.eye(n_frames) - neighbour_average_matrix(n_frames, n_neighbours)
        band = smoothing_band(n_frames, n_neighbours)
        for k in range(-n_neighbours, min(n_neighbours, n_frames - 1) + 1):
            if abs(k) < n_frames:
                np.testing.assert_array_equal(band[n_neighbours + k, max(0, -k):n_frames - max(0, k)],
                                              np.diagonal(laplacian, k))
        for batch in ((3, 4), (10, 7)):  # a few matrices (LAPACK one by one) and many (vectorised sweep)
            weights = rng.uniform(0, 130, size=batch)
            s0 = rng.normal(size=(*batch, n_frames))
            dense = np.linalg.solve(np.eye(n_frames) + weights[..., None, None] * laplacian, s0[..., None])[..., 0]
            np.testing.assert_allclose(snake(s0, weights, n_neighbours=n_neighbours), dense, atol=1e-12)
        shared = np.linalg.solve(np.eye(n_frames) + 9.0 * laplacian, s0.reshape(-1, n_frames).T).T
        np.testing.assert_allclose(snake(s0, 9.0, n_neighbours=n_neighbours), shared.reshape(s0.shape), atol=1e-12)
        identity = np.zeros_like(band)
        identity[n_neighbours] = 1
        with pytest.raises(ValueError, match="do not match"):
            solve_banded(identity + band, np.zeros(n_frames + 1))


def reference_smoothing(z, *, constrained, tau, lo, hi, weight=50.0, max_weight=128.0, n_bisections=5,
                        max_iterations=200_000):
    """smooth_trajectories written plainly: gradient-descent snake per dimension, bisection per dimension."""
    out = np.empty_like(z)
    for d in range(z.shape[1]):
        if d not in constrained:
            out[:, d] = gradient_descent_snake(z[:, d], weight, max_iterations=max_iterations)
            continue
        k = constrained.index(d)
        low, high = 0.0, max_weight
        for _ in range(n_bisections):
            mid = (low + high) / 2
            candidate = gradient_descent_snake(z[:, d], mid, max_iterations=max_iterations)
            check = temporal_consistency(candidate[:, None], lo[k:k + 1], hi[k:k + 1], tau[k:k + 1])
            if not check["sequence_inconsistent"]:
                high = mid
            else:
                low = mid
        out[:, d] = gradient_descent_snake(z[:, d], high, max_iterations=max_iterations)
    return out


def test_smooth_trajectories_matches_the_gradient_descent_reference():
    rng = np.random.default_rng(7)
    t = np.linspace(0, 2 * np.pi, 30)
    z = np.stack([np.sin(t + p) for p in rng.uniform(0, 6, 5)], axis=1) + 0.03 * rng.normal(size=(30, 5))
    z[11, :2] += 0.5
    tau, lo, hi = np.array([0.03, 0.05]), np.array([-1.5, -1.5]), np.array([1.5, 1.5])
    fast = smooth_trajectories(z, constrained_dims=[0, 3], thresholds=tau, lo=lo, hi=hi)
    slow = reference_smoothing(z, constrained=[0, 3], tau=tau, lo=lo, hi=hi)
    np.testing.assert_allclose(fast, slow, atol=1e-4)
    assert not temporal_consistency(fast[:, [0, 3]], lo, hi, tau)["sequence_inconsistent"]


def test_robust_thresholds_are_not_inflated_by_defects_among_the_references():
    """Truth-free references hold defects: the max rule takes them as the threshold, the robust
    rule estimates the clean deviations' spread (k robust SDs)."""
    import pandas as pd

    from echolatent.temporal.thresholds import derive_thresholds_table

    rng = np.random.default_rng(7)
    sigma, n_seq, T = 0.5, 200, 40
    rows = []
    for s in range(n_seq):
        curve = 100.0 + sigma * rng.standard_normal(T)      # flat curve: d_t is noise only
        if s % 5 == 0:
            curve[rng.integers(1, T - 1)] += 10.0           # a defect in 20 % of the references
        rows.append(pd.DataFrame({"patient_id": f"P{s:03d}", "view": "4CH", "frame": np.arange(T), "a": curve}))
    table = pd.concat(rows)
    bounds = ([90.0], [110.0])                               # normalised = mm / 20
    robust = derive_thresholds_table(table, ["a"], bounds=bounds, cycle="full", rule="robust", robust_k=4.0)
    maximum = derive_thresholds_table(table, ["a"], bounds=bounds, cycle="full", rule="max")
    # iid noise: d_t = x_t - (x_{t-1} + x_{t+1}) / 2 has SD sigma * sqrt(1.5); 4 SDs in normalised units
    expected = 4.0 * sigma * np.sqrt(1.5) / 20.0
    assert robust["tau"].iloc[0] == pytest.approx(expected, rel=0.06)
    assert maximum["tau"].iloc[0] > 2.5 * expected           # set by a defect: (10 mm) / 20
    # the defect (10 mm) plus at most ~3 noise SDs (0.61 mm each) of the frames around it
    assert maximum["tau"].iloc[0] == pytest.approx(10.0 / 20.0, abs=3 * sigma * np.sqrt(1.5) / 20.0 + 0.01)
    with pytest.raises(ValueError, match="rule"):
        derive_thresholds_table(table, ["a"], rule="median")
