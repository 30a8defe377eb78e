"""Smoothing latent trajectories along the cardiac cycle (the TMI 2022 "snake"), solved exactly.

The reference smoother minimises, for every latent dimension, a data term plus a
neighbour-average smoothness term by thousands of momentum gradient steps:

    g(s) = (s - s0) + w (s - A s),

with ``A`` the neighbour-averaging matrix (weights proportional to 1/k for the k-th
neighbour, normalised to sum to 1, edge padding). Its fixed point ``g = 0`` is the linear
system ``((1 + w) I - w A) s = s0``: a small banded, strictly diagonally dominant matrix
(its diagonal exceeds the off-diagonal sum by exactly 1; tridiagonal for one neighbour).
We solve that system directly by banded Gaussian elimination (:func:`solve_banded`, the
Thomas algorithm for one neighbour), vectorised over sequences and dimensions: O(T) per
trajectory and weight, the converged answer of the reference at a tiny fraction of its
cost (benchmarks/README.md).

For the attribute-regularised dimensions, the reference searches the smallest weight
``w`` in [0, 128] for which no frame violates the temporal threshold of its attribute
(5 bisection steps); we run the same search for all sequences and dimensions at once.
"""

from __future__ import annotations

import functools

import numpy as np

from echolatent.temporal.metric import consistency_deviation, frame_thresholds


def neighbour_average_matrix(n_frames: int, n_neighbours: int = 1) -> np.ndarray:
    """The (T, T) matrix ``A`` with ``(A s)_t`` = weighted mean of ``s_{t±k}``, k = 1..n.

    Weights are proportional to ``1/k`` and sum to 1; indices past either end are clamped
    (edge padding), as in the reference.
    """
    if n_frames < 1 or n_neighbours < 1:
        raise ValueError("need n_frames >= 1 and n_neighbours >= 1")
    weights = 1.0 / np.arange(1, n_neighbours + 1)
    weights = weights / (2.0 * weights.sum())
    matrix = np.zeros((n_frames, n_frames))
    rows = np.arange(n_frames)
    for k, weight in enumerate(weights, start=1):
        np.add.at(matrix, (rows, np.clip(rows - k, 0, n_frames - 1)), weight)
        np.add.at(matrix, (rows, np.clip(rows + k, 0, n_frames - 1)), weight)
    return matrix


def smoothing_band(n_frames: int, n_neighbours: int = 1) -> np.ndarray:
    """Band storage of ``L = I - A``: array (2n+1, T) with ``band[n + k, i] = L[i, i + k]`` (read-only)."""
    return _smoothing_band(int(n_frames), int(n_neighbours))


@functools.lru_cache(maxsize=64)
def _smoothing_band(n_frames: int, n_neighbours: int) -> np.ndarray:
    laplacian = np.eye(n_frames) - neighbour_average_matrix(n_frames, n_neighbours)
    band = np.zeros((2 * n_neighbours + 1, n_frames))
    for k in range(-n_neighbours, n_neighbours + 1):
        rows = np.arange(max(0, -k), min(n_frames, n_frames - k))
        band[n_neighbours + k, rows] = laplacian[rows, rows + k]
    band.flags.writeable = False
    return band


def solve_banded(band: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve banded systems ``M x = rhs``, batched, by Gaussian elimination without pivoting.

    Parameters
    ----------
    band : ndarray, shape (..., 2p+1, T)
        ``band[..., p + k, i] = M[i, i + k]``; its batch shape broadcasts against the one
        of ``rhs`` (one shared matrix for many right-hand sides costs nothing extra).
    rhs : ndarray, shape (..., T)

    Notes
    -----
    No pivoting is needed (nor done) for the snake systems: they are strictly diagonally
    dominant by rows, so every pivot is non-zero and elimination is stable (growth factor
    at most 2). The loops run over the T rows and the p sub-diagonals only; every step is
    vectorised over the batch, so the cost is O(T p^2) array operations whatever the
    number of systems. One shared matrix, or a few distinct ones, go to LAPACK's banded
    solver instead (cheaper when there is little to vectorise over).
    """
    band = np.asarray(band, dtype=np.float64)
    rhs = np.array(rhs, dtype=np.float64)  # copy: eliminated in place
    p = (band.shape[-2] - 1) // 2
    n = band.shape[-1]
    if band.shape[-2] != 2 * p + 1 or rhs.shape[-1] != n:
        raise ValueError(f"band {band.shape} and right-hand side {rhs.shape} do not match")
    if band.ndim == 2 or int(np.prod(band.shape[:-2])) <= _LAPACK_MAX_SYSTEMS:
        # One matrix (many right-hand sides) or a few: LAPACK's banded LU per matrix is
        # cheaper than the Python-level sweep below, whose cost is per row, not per system.
        return _solve_banded_lapack(band, rhs, p)
    # rows: u[..., i, p + k] = M[i, i + k]
    u = np.array(np.swapaxes(band, -1, -2))
    if p == 1:  # tridiagonal: the Thomas algorithm (the matrix sweep is shared by broadcasting rhs)
        sub, diag, sup = u[..., 0], u[..., 1], u[..., 2]
        c, m = np.empty_like(diag), np.empty_like(diag)
        m[..., 0] = diag[..., 0]
        rhs[..., 0] /= m[..., 0]
        for i in range(1, n):
            c[..., i - 1] = sup[..., i - 1] / m[..., i - 1]
            m[..., i] = diag[..., i] - sub[..., i] * c[..., i - 1]
            rhs[..., i] = (rhs[..., i] - sub[..., i] * rhs[..., i - 1]) / m[..., i]
        for i in range(n - 2, -1, -1):
            rhs[..., i] -= c[..., i] * rhs[..., i + 1]
        return rhs
    for i in range(n):
        pivot = u[..., i, p]
        for r in range(1, min(p, n - 1 - i) + 1):
            factor = u[..., i + r, p - r] / pivot
            u[..., i + r, p - r:2 * p - r + 1] -= factor[..., None] * u[..., i, p:]
            rhs[..., i + r] -= factor * rhs[..., i]
    for i in range(n - 1, -1, -1):
        for k in range(1, min(p, n - 1 - i) + 1):
            rhs[..., i] -= u[..., i, p + k] * rhs[..., i + k]
        rhs[..., i] /= u[..., i, p]
    return rhs


#: Up to this many distinct matrices, solve them one by one with LAPACK (gbsv).
_LAPACK_MAX_SYSTEMS = 48


def _solve_banded_lapack(band: np.ndarray, rhs: np.ndarray, p: int) -> np.ndarray:
    from scipy.linalg.lapack import dgbsv

    n = band.shape[-1]
    # LAPACK gbsv storage, with p extra rows for the LU fill-in:
    # ab[2p + i - j, j] = M[i, j], i.e. ab[2p - k, i + k] = band[p + k, i]
    ab = np.zeros(band.shape[:-2] + (3 * p + 1, n))
    for k in range(-p, p + 1):
        if abs(k) >= n:
            continue
        if k >= 0:
            ab[..., 2 * p - k, k:] = band[..., p + k, :n - k]
        else:
            ab[..., 2 * p - k, :n + k] = band[..., p + k, -k:]
    if band.ndim == 2:
        _, _, x, info = dgbsv(p, p, ab, rhs.reshape(-1, n).T)
        if info != 0:
            raise np.linalg.LinAlgError(f"banded solve failed (LAPACK info {info})")
        return x.T.reshape(rhs.shape)
    shape = np.broadcast_shapes(band.shape[:-2], rhs.shape[:-1])
    ab = np.broadcast_to(ab, shape + ab.shape[-2:]).reshape(-1, *ab.shape[-2:])
    flat = np.broadcast_to(rhs, shape + (n,)).reshape(-1, n)
    out = np.empty_like(flat)
    for j in range(len(flat)):
        _, _, x, info = dgbsv(p, p, ab[j], flat[j])
        if info != 0:
            raise np.linalg.LinAlgError(f"banded solve failed (LAPACK info {info})")
        out[j] = x
    return out.reshape(shape + (n,))


def snake(s0: np.ndarray, weight, *, n_neighbours: int = 1) -> np.ndarray:
    """Exact minimiser of the snake objective for each trajectory (banded solve).

    Parameters
    ----------
    s0 : ndarray, shape (..., T)
        Trajectories (time last).
    weight : float or ndarray broadcastable to ``s0.shape[:-1]``
        Smoothness weight ``w`` of each trajectory.

    Returns
    -------
    ndarray, shape (..., T)
        The solution of ``(I + w (I - A)) s = s0``.
    """
    s0 = np.asarray(s0, dtype=np.float64)
    n_frames = s0.shape[-1]
    laplacian = smoothing_band(n_frames, n_neighbours)
    identity = np.zeros_like(laplacian)
    identity[n_neighbours] = 1.0
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim == 0:
        # One matrix for all trajectories: eliminated once, applied to every right-hand side.
        return solve_banded(identity + float(weight) * laplacian, s0)
    weight = np.broadcast_to(weight, s0.shape[:-1])
    return solve_banded(identity + weight[..., None, None] * laplacian, s0)


def smooth_trajectories(z, *, weight: float = 50.0, constrained_dims=(), thresholds=None, lo=None, hi=None,
                        max_weight: float = 128.0, n_bisections: int = 5, n_neighbours: int = 1,
                        margin: float = 0.0, return_weights: bool = False, cycle=None, end_thresholds=None):
    """Smooth latent trajectories until the constrained dimensions are temporally consistent.

    Parameters
    ----------
    z : ndarray, shape (T, D) or (N, T, D)
        Latent means of the frames of one or N sequences (equal length T).
    weight : float
        Smoothness weight of the unconstrained dimensions (reference: 50).
    constrained_dims : sequence of int
        Attribute-regularised dimensions (AR-VAE: 0..6), each searched for its smallest
        feasible weight.
    thresholds : array_like, shape (len(constrained_dims),)
        Temporal threshold of the attribute tied to each constrained dimension.
    lo, hi : array_like, shape (len(constrained_dims),)
        Normalisation bounds of those dimensions (the latent min/max of training).
    max_weight, n_bisections : float, int
        Search interval [0, max_weight] and number of halvings (reference: 128 and 5).
        When even ``max_weight`` is infeasible, its solution is returned.
    n_neighbours : int
        Neighbours on each side in the average (reference: 1).
    margin : float
        Thresholds are scaled by ``1 + margin``.
    return_weights : bool
        Also return the weight used for each (sequence, dimension).
    cycle : {"full", "half", None}
        End-frame rule of the consistency check of the constrained dimensions
        (:func:`~echolatent.temporal.metric.consistency_deviation`); the snake itself keeps
        the reference's edge padding.
    end_thresholds : array_like, shape (len(constrained_dims),), optional
        Thresholds of the first and last frames (default: ``thresholds``).

    Returns
    -------
    smoothed : ndarray, same shape as ``z``
    weights : ndarray, shape (N, D) or (D,), only with ``return_weights``
    """
    z = np.asarray(z, dtype=np.float64)
    single = z.ndim == 2
    if single:
        z = z[None]
    if z.ndim != 3:
        raise ValueError(f"z must be (T, D) or (N, T, D), got shape {np.shape(z)}")
    n_seq, n_frames, n_dims = z.shape
    constrained = np.asarray(list(constrained_dims), dtype=int)
    if constrained.size and (constrained.min() < 0 or constrained.max() >= n_dims):
        raise ValueError(f"constrained_dims {constrained.tolist()} outside the {n_dims} latent dimensions")
    free = np.setdiff1d(np.arange(n_dims), constrained)
    trajectories = np.moveaxis(z, 1, 2)  # (N, D, T)
    smoothed = np.empty_like(trajectories)
    weights = np.full((n_seq, n_dims), float(weight))
    if free.size:
        smoothed[:, free] = snake(trajectories[:, free], weight, n_neighbours=n_neighbours)
    if constrained.size:
        if thresholds is None or lo is None or hi is None:
            raise ValueError("constrained dimensions need thresholds, lo and hi")
        tau = np.asarray(thresholds, dtype=np.float64) * (1.0 + margin)
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        if not tau.shape == lo.shape == hi.shape == constrained.shape:
            raise ValueError("thresholds, lo and hi need one value per constrained dimension")
        tau = frame_thresholds(n_frames, thresholds, end_thresholds, margin=margin)      # (T, K)
        signals = trajectories[:, constrained]  # (N, K, T)

        def feasible(candidate):
            deviation = consistency_deviation(np.moveaxis(candidate, 1, 2), lo, hi, cycle=cycle)  # (N, T, K)
            return (np.abs(deviation) <= tau).all(axis=1)  # (N, K)

        low = np.zeros(signals.shape[:2])
        high = np.full(signals.shape[:2], float(max_weight))
        for _ in range(n_bisections):
            mid = 0.5 * (low + high)
            ok = feasible(snake(signals, mid, n_neighbours=n_neighbours))
            high = np.where(ok, mid, high)
            low = np.where(ok, low, mid)
        smoothed[:, constrained] = snake(signals, high, n_neighbours=n_neighbours)
        weights[:, constrained] = high
    result = np.moveaxis(smoothed, 1, 2)
    if single:
        result, weights = result[0], weights[0]
    return (result, weights) if return_weights else result
