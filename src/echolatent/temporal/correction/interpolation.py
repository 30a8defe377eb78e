"""Re-estimating the latent codes of repaired frames from the trusted frames (step 4 of the repair).

:func:`trusted_neighbours` gives, for every frame, the two trusted frames it is interpolated
from (the end frames by the rule of the cohort's ``cycle``, :mod:`echolatent.temporal.metric`);
:func:`interpolate_codes` re-estimates the untrusted frames' codes (or any curves) from the
trusted ones, linearly or, by default, continuing the curvature of the cycle.
"""

from __future__ import annotations

import numpy as np

from echolatent.temporal.metric import deviation_matrix, end_rule

__all__ = ["trusted_neighbours", "interpolate_codes"]


def trusted_neighbours(trusted: np.ndarray, cycle=None):
    """For every frame, the two trusted frames it is interpolated from, and the weight of the first.

    Returns ``(first, second, a)`` such that frame ``t`` is ``a * frame[first] + (1 - a) *
    frame[second]``: between two trusted frames, the nearest on each side with
    ``a = (second - t) / (second - first)``; trusted frames (and sequences with a single
    trusted frame) use that frame alone (``a = 1``). Before the first or after the last
    trusted frame it depends on ``cycle``:

    ``None`` (the reference's ends)
        the two nearest trusted frames on the one side, extrapolated linearly (``a > 1``);
    ``"half"``
        the nearest trusted frame alone: the mirror rule of the metric (the curves have about
        zero slope at ED and ES, :mod:`echolatent.temporal.metric`) reflects the sequence at its
        ends, and between a trusted frame and its mirror image the interpolation is that frame;
        a linear extrapolation would double the frame-to-frame noise of the two frames it uses;
    ``"full"``
        periodic neighbours: the cycle is closed (frame ``T - 1`` is frame 0 one beat later), so
        the frames before frame 0 are ``T - 2, T - 3, ...`` and those after frame ``T - 1`` are
        ``1, 2, ...``; the weight follows the distances along the cycle.

    Raises ValueError when no frame is trusted.
    """
    trusted = np.asarray(trusted, bool)
    rule = end_rule(cycle)
    index = np.flatnonzero(trusted)
    if not len(index):
        raise ValueError("no trusted frame to interpolate from")
    T = len(trusted)
    if rule == "periodic" and T >= 3:
        return _periodic_neighbours(trusted)
    t = np.arange(T)
    before = np.searchsorted(index, t, side="right") - 1      # position of the last trusted <= t
    after = np.searchsorted(index, t, side="left")            # position of the first trusted >= t
    first = index[np.clip(before, 0, None)]
    second = index[np.clip(after, None, len(index) - 1)]
    if len(index) >= 2 and rule == "zero":
        head, tail = before < 0, after >= len(index)           # no trusted frame before / after
        first = np.where(head, index[1], first)
        second = np.where(head, index[0], second)
        first = np.where(tail, index[-1], first)
        second = np.where(tail, index[-2], second)
    elif len(index) < 2:
        first = second = np.full(T, index[0])
    span = (second - first).astype(float)
    a = np.where(span != 0, (second - t) / np.where(span != 0, span, 1), 1.0)
    return first, second, a


def _periodic_neighbours(trusted: np.ndarray):
    """:func:`trusted_neighbours` on a closed cycle of ``T - 1`` phases (frames 0 and ``T - 1`` share one)."""
    T = len(trusted)
    P = T - 1
    phase = np.arange(T) % P
    first, second = np.arange(T), np.arange(T)
    a = np.ones(T)
    for t in np.flatnonzero(~trusted):
        found = []
        for step in (-1, 1):
            for k in range(1, P + 1):
                u = (phase[t] + step * k) % P
                # phase 0 holds frames 0 and T - 1: the one adjacent in time comes first
                frames = (u,) if u else ((0, T - 1) if step < 0 else (T - 1, 0))
                hit = [f for f in frames if trusted[f]]
                if hit:
                    found.append((hit[0], k))
                    break
        if len(found) < 2:                 # every trusted frame shares the phase of t
            only = np.flatnonzero(trusted)[0]
            first[t] = second[t] = only
            continue
        (p, dp), (n, dn) = found
        first[t], second[t], a[t] = p, n, dn / (dp + dn)
    return first, second, a


def interpolate_codes(z: np.ndarray, trusted: np.ndarray, *, method: str = "smooth",
                      regularisation: float = 1e-6, cycle=None) -> np.ndarray:
    """Codes (T, D) (or any curves) with the untrusted frames re-estimated from the trusted ones.

    Parameters
    ----------
    z : ndarray (T, D)
    trusted : ndarray (T,) bool
        Frames kept as they are.
    method : {"smooth", "linear"}
        ``"linear"``: straight lines between the nearest trusted frames (linear extrapolation
        beyond the first / last, :func:`trusted_neighbours`). ``"smooth"`` (default): the
        values minimising the sum of the squared deviations ``d_t`` of the temporal metric
        over all interior frames, trusted ones included, i.e. the snake's smoothness term with
        the trusted frames held fixed. A straight line zeroes ``d`` on the repaired frames but
        puts a kink at the trusted frames on either side, which then look like outliers
        themselves (a cardiac cycle is curved); the smooth fill continues the curvature of the
        trusted frames (a discrete cubic spline).
    regularisation : float
        Weight of a small pull towards the linear fill, which fixes the values the deviations
        do not determine.
    cycle : {"full", "half", None}
        End-frame rule of the metric: the deviations summed by ``"smooth"`` include those of the
        first and last frames (periodic neighbours for ``"full"``, mirror for ``"half"``), and
        the linear fill uses :func:`trusted_neighbours` with the same ``cycle``. An end frame is
        so re-estimated from both sides on a full cycle (frames 0 and ``T - 1`` being two
        observations of one phase, the deviations of frames 1 and ``T - 2`` are also taken with
        the other one, so an end frame enters three deviations as an interior frame does, and
        its fill is as good); on a half cycle the smooth fill of a
        lone end frame is ``1.2 z_1 - 0.2 z_2`` (between holding ``z_1``, the mirror's zero slope,
        and the linear extrapolation ``2 z_1 - z_2``).
    """
    z = np.asarray(z, np.float64)
    trusted = np.asarray(trusted, bool)
    prev, nxt, a = trusted_neighbours(trusted, cycle)
    shape = (-1,) + (1,) * (z.ndim - 1)
    linear = a.reshape(shape) * z[prev] + (1 - a.reshape(shape)) * z[nxt]
    if method == "linear":
        return linear
    if method != "smooth":
        raise ValueError(f"interpolation method must be 'smooth' or 'linear', got {method!r}")
    T = len(z)
    unknown = np.flatnonzero(~trusted)
    if not len(unknown) or T < 3 or trusted.sum() < 2:
        return linear
    # d = L z with L the operator of the metric (its rows of the measured frames):
    # d_t = z_t - (z_{t-1} + z_{t+1}) / 2 inside, the cycle's rule at the ends.
    L = deviation_matrix(T, cycle)
    L = L[np.abs(L).sum(axis=1) > 0]
    if end_rule(cycle) == "periodic" and T >= 4:
        # Frames 0 and T - 1 are two observations of one phase: add the deviations of frames 1
        # and T - 2 taken with the other one, so that each end frame enters three deviations, as
        # an interior frame does (otherwise the fill of frame 0 sees the cycle on one side only).
        extra = np.zeros((2, T))
        extra[0, [1, T - 1, 2]] = 1.0, -0.5, -0.5
        extra[1, [T - 2, T - 3, 0]] = 1.0, -0.5, -0.5
        L = np.vstack([L, extra])
    L_u, L_k = L[:, unknown], L[:, trusted]
    flat = z.reshape(T, -1)
    lhs = L_u.T @ L_u + regularisation * np.eye(len(unknown))
    rhs = -L_u.T @ (L_k @ flat[trusted]) + regularisation * linear.reshape(T, -1)[unknown]
    out = flat.copy()
    out[unknown] = np.linalg.solve(lhs, rhs)
    return out.reshape(z.shape)

