"""Which frames are inconsistent: one definition for detection, the repair's plan and its check.

Two detectors (``temporal.thresholds.detector``):

``"spikes"`` (ours; the default for full cycles, :func:`resolve_detector`) -- a search for
single-, two- and three-frame spikes.
    Three stencils, each exact on quadratics (a smooth stretch of the cycle gives 0) and each
    answering a defect of height ``h`` on its own frames with ``h``:

    ``single``  ``s_t = a_t - 2/3 (a_{t-1} + a_{t+1}) + 1/6 (a_{t-2} + a_{t+2})``
                (the frame minus the quadratic through its two neighbours on each side);
    ``pair``    ``p_t = (a_t + a_{t+1}) / 2 - 3/4 (a_{t-1} + a_{t+2}) + 1/4 (a_{t-2} + a_{t+3})``
                (the two frames' mean minus the quadratic through the two frames on each side);
    ``triple``  ``(a_t + a_{t+1} + a_{t+2}) / 3 - 5/6 (a_{t-1} + a_{t+3}) + 1/3 (a_{t-2} + a_{t+4})``
                (full cycles only: a failure that lasts three frames; thresholds derived for
                half cycles have none).

    Mixing (thresholds of clean references, max rule, full cycles; :func:`stencil_thresholds`):
    a window's statistic of attribute ``k`` is its reading minus the part the other
    attributes' readings of the same window predict (their noise is shared: the cycle's shape
    the quadratic does not follow moves LV area, length and the epicardial centre together).

    The search takes, at each step, one of the windows (a frame, or two or three consecutive
    frames) whose largest ratio ``|stat| / tau`` over the attributes exceeds 1: of the
    :data:`LOOKAHEAD` highest, each is removed in turn and the plain greedy search (always the
    highest ratio) run to its end; the one whose explanation costs least (:data:`WINDOW_COST`
    per window plus the squared ratios left) is taken. Its frames are flagged (for the
    attributes whose ratio exceeds 1) and its estimated defect removed (the readings subtracted
    from those frames, so the window then reads 0), until no ratio exceeds 1
    (:func:`detect_spikes`). The plain greedy search alone starts from the largest reading,
    which next to a second defect is often a window between them (a pair on 4, 5 and a spike on
    8 make the window of 5-7 read ``-4/3 h``).

``"deviation"`` -- the TMI 2022 three-point deviation (:mod:`echolatent.temporal.metric`).
    ``d_t = a_t - (a_{t-1} + a_{t+1}) / 2`` against ``tau``; the paper's metric.

Why not the three-point deviation alone
---------------------------------------
A same-sign defect on two consecutive frames of height ``h`` gives ``d = h / 2`` on each of
them and ``-h / 2`` on the frames around them: half a single spike's response, spread over
four frames. On the 200-patient recorded run (``benchmarks/README.md``) the deviation flags
0.55-0.68 of such pair frames; a test that answers ``h`` to a pair must look at the pair as a
unit. The three-point pair stencil ``(a_t + a_{t+1})/2 - (a_{t-1} + a_{t+2})/2`` does, but it is
not exact on the curvature of the cycle (it answers ``a''`` on a parabola), so its threshold
is set by the systolic curvature; the five- and six-point stencils above cancel it and gained
10-18 points on pairs. The greedy search puts the flag on the defect rather than on its
neighbours (removing a spike's estimate clears the ``-2/3 h`` and ``-3/4 h`` readings of the
windows around it), which is also what the repair must re-estimate. Held out it flags about
ten times more clean frames than the deviation (1 % against 0.1 %; ``benchmarks/README.md``).

What the look-ahead, the three-frame stencil and the mixing bought (1,000-patient recorded run,
``observed`` thresholds, chosen on the train split, val confirming; ``benchmarks/README.md``):
pair frames 0.922 -> 0.986 on train and 0.904 -> 1.000 on val, single spikes 0.926 -> 0.985 and
0.963 -> 0.991, clean windows flagged 0.2 % -> 0.2 % and 0.2 % -> 0.5 %. Of the 23 train pair
frames the greedy search missed, 14 read under their threshold on both pair windows holding
them (the mixing), 8 belonged to runs of three or four spiked frames (the triple stencil; the
two groups overlap), and the others were taken apart next to another defect (the look-ahead).

Windows and end frames
----------------------
A window's statistic is its frames' mean minus the value the quadratic (least squares)
through the two nearest frames on each side predicts there. Near the ends those frames come
from the cohort's ``cycle`` (as for the deviation, :mod:`echolatent.temporal.metric`):

``"full"``  the cycle is closed, frame ``T - 1`` is frame 0 one beat later: positions beyond
            either end wrap with period ``T - 1``, and a frame of the same phase as the
            window's own frames (0 and ``T - 1``) is never its neighbour. Every window is then
            the interior stencil.
``"half"``  mirror at ED and ES (zero slope there): position ``-x`` is frame ``x`` and
            ``T - 1 + x`` is ``T - 1 - x``; a mirror image of the window's own frames is
            skipped (the next frame outward is taken), so the response to the window's defect
            stays exactly ``h`` and the fit is exact on quadratics with zero end slope. The
            window of an end frame then reads a defect on the next frame 4/3 as strongly
            (that frame counts twice): in the search a window competes with its ratio divided
            by its largest response to a defect outside it, when that exceeds 1, so the defect's
            own window wins.
``None``    the reference's ends: no frame beyond the sequence; windows holding the first or
            last frame are not measured (never flagged), the others near the ends take their
            four neighbours from the side that has them (one-sided fit).

Windows whose neighbours differ from the interior pattern (they use the end rule, or hold
an end frame) are *end windows*. Each stencil has a threshold for the interior and one for
the end windows (``tau_single``, ``tau_single_end``, ``tau_pair``, ``tau_pair_end``,
``tau_triple``, ``tau_triple_end`` columns of the thresholds table), derived from the reference
sequences by the rule of ``tau`` (:func:`stencil_thresholds`): one value for both with the max
rule, a robust spread of each with the robust rule (the end windows of a full cycle straddle
the beat gap, where correlated observer noise does not cancel). The mixing of each stencil is
the ``mix_{stencil}`` column (text: row ``k`` holds the ``K`` weights of attribute ``k``'s
statistic, in the order of the rows it was derived with; empty without mixing). Tables derived
before the triple stencil and the mixing existed still work: without ``tau_triple`` there are
no three-frame windows, without ``mix_*`` the readings are not mixed.

Missing values: a frame with an attribute that could not be measured (NaN) is inconsistent for
that attribute (as with the deviation's ``nan_inconsistent``); for the search its value is
linearly interpolated from the frames that have one, so its neighbours are still checked.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import pandas as pd

from echolatent.temporal.metric import end_rule, temporal_consistency
from echolatent.temporal.streaming import ExactMedian, RunningMoments, run_passes

__all__ = [
    "DETECTORS",
    "DETECTOR_CHOICES",
    "resolve_detector",
    "STENCILS",
    "OPTIONAL_STENCILS",
    "STENCIL_COLUMNS",
    "TAU_COLUMNS",
    "MIX_COLUMNS",
    "Windows",
    "stencil_windows",
    "stencil_statistics",
    "stencil_thresholds",
    "StencilReference",
    "detect_spikes",
    "encode_mixing",
    "decode_mixing",
    "Detector",
]

#: The detectors: the spike search, or the TMI 2022 deviation.
DETECTORS = ("spikes", "deviation")
#: ``temporal.thresholds.detector`` values: a detector, or ``auto`` (:func:`resolve_detector`).
DETECTOR_CHOICES = ("auto", *DETECTORS)
#: Stencil name -> (own frames of a window, neighbours on each side). With two neighbours a
#: side the prediction is the quadratic through them (least squares), with one the line.
STENCILS = {"single": (1, 2), "pair": (2, 2), "triple": (3, 2)}
#: Stencils a thresholds table may lack (derived before they existed, or for a cycle that does not
#: use them): the search then leaves them out.
OPTIONAL_STENCILS = ("triple",)
#: Stencils derived for full cycles only (:func:`stencil_thresholds`): on half cycles (6-11 frames)
#: a seven-frame window leans on the mirror at ED and ES.
FULL_CYCLE_ONLY = ("triple",)
#: Thresholds-table columns of the stencils: ``tau_{stencil}`` (interior windows), ``..._end``, and
#: ``mix_{stencil}`` (the attribute mixing of the max rule, :func:`stencil_thresholds`; text).
TAU_COLUMNS = tuple(f"tau_{s}{end}" for s in STENCILS for end in ("", "_end"))
MIX_COLUMNS = tuple(f"mix_{s}" for s in STENCILS)
STENCIL_COLUMNS = TAU_COLUMNS + MIX_COLUMNS
#: The search's look-ahead (:func:`detect_spikes`): candidates weighed at each step, and the cost
#: of one more window in units of squared ratio (chosen on the 1,000-patient run's train split).
LOOKAHEAD = 5
WINDOW_COST = 6.0
#: The fewest reference windows per attribute for a mixing (fewer: none, the readings as they are).
MIN_MIXING_WINDOWS = 10


def resolve_detector(choice: str, cycle=None) -> str:
    """The detector ``temporal.thresholds.detector`` names: ``auto`` is ``spikes`` for full cycles,
    ``deviation`` otherwise.

    Half cycles (ED -> ES) hold half the frames of a cycle (6-11 on the default synthetic
    cohort): the five- and six-frame stencils then span most of the sequence and most of their
    windows lean on the mirror at ED and ES. On half cycles cut from the recorded 200-patient
    run (val split, ``observed`` thresholds) the greedy spike search of issue 12 found 2 of 10
    pair frames where the deviation found 6, at 1.6 % of clean frames flagged against 1.0 %
    (``benchmarks/README.md``). With the look-ahead (the only addition half cycles get) the
    1,000-patient run's half-cycle test pairs rose from 0.43 to 0.68: still short of a default.
    """
    if choice not in DETECTOR_CHOICES:
        raise ValueError(f"detector must be one of {DETECTOR_CHOICES}, got {choice!r}")
    if choice == "auto":
        return "spikes" if cycle == "full" else "deviation"
    return choice


class Windows(NamedTuple):
    """The windows of one stencil on a sequence of ``T`` frames (:func:`stencil_windows`).

    ``stat[w] = sum_s weight[w, s] * a[index[w, s]]``; ``own[w]`` are the window's frames
    (acquisition order), ``end[w]`` whether it uses the end rule.
    """

    own: np.ndarray      # (W, width) int
    index: np.ndarray    # (W, S) int
    weight: np.ndarray   # (W, S) float
    end: np.ndarray      # (W,) bool


def _frame_at(x: int, T: int, rule: str):
    """The frame observed at position ``x`` of the extended sequence, or None."""
    if 0 <= x <= T - 1:
        return x
    if rule == "periodic":
        return x % (T - 1)               # frame T - 1 is frame 0: period T - 1
    if rule == "mirror":
        period = 2 * (T - 1)
        x = x % period
        return x if x <= T - 1 else period - x
    return None


def _window(start: int, width: int, side: int, T: int, rule: str):
    """(index, weight, end) of the window of frames ``start .. start + width - 1``, or None."""
    own = list(range(start, start + width))
    phase = (lambda f: f % (T - 1)) if rule == "periodic" else (lambda f: f)
    taken = {phase(f) for f in own}
    sides = []
    for step, first in ((-1, start - 1), (1, start + width)):
        found, x = [], first
        while len(found) < (2 * side if rule == "zero" else side) and abs(x - first) <= 2 * T:
            f = _frame_at(x, T, rule)
            if f is None:
                break
            if phase(f) not in taken:
                found.append((x, f))
            x += step
        sides.append(found)
    left, right = sides
    if rule == "zero":
        # no frame beyond the sequence: the four nearest, two a side where the side has them
        n_left = min(len(left), max(side, 2 * side - len(right)))
        left, right = left[:n_left], right[:2 * side - n_left]
    support = left + right
    if len(support) < 2 * side or (rule != "zero" and (len(left) < side or len(right) < side)):
        return None
    if rule == "periodic" and len({phase(f) for _, f in support}) < len(support):
        return None                        # the cycle is too short: a phase would count twice
    positions = np.array([x for x, _ in support], float)
    degree = min(2, 2 * side - 1)
    if len(np.unique(positions)) < degree + 1:
        return None
    design = np.vander(positions, degree + 1)
    predictor = np.vander(np.array(own, float), degree + 1).mean(axis=0) @ np.linalg.pinv(design)
    index = np.array(own + [f for _, f in support])
    weight = np.concatenate([np.full(width, 1.0 / width), -predictor])
    interior = [start - k for k in range(1, side + 1)] + [start + width - 1 + k for k in range(1, side + 1)]
    end = sorted(x for x, _ in support) != sorted(interior) or any(
        not 0 <= x <= T - 1 for x, _ in support) or 0 in own or T - 1 in own
    return index, weight, end


@lru_cache(maxsize=256)
def _cached_windows(n_frames: int, stencil: str, rule: str) -> Windows:
    width, side = STENCILS[stencil]
    rows = []
    for start in range(n_frames - width + 1):
        if rule == "zero" and (start == 0 or start + width - 1 == n_frames - 1):
            continue                       # the reference never measures the first and last frames
        window = _window(start, width, side, n_frames, rule)
        if window is not None:
            rows.append((np.arange(start, start + width), *window))
    if not rows:
        empty = np.zeros((0, width), int)
        return Windows(empty, np.zeros((0, width + 2 * side), int), np.zeros((0, width + 2 * side)),
                       np.zeros(0, bool))
    own, index, weight, end = (np.array(part) for part in zip(*rows))
    for array in (own, index, weight, end):
        array.setflags(write=False)
    return Windows(own, index, weight, end.astype(bool))


def stencil_windows(n_frames: int, stencil: str, cycle=None) -> Windows:
    """The windows of ``stencil`` (``"single"``, ``"pair"`` or ``"triple"``) on a sequence of ``n_frames``.

    Every frame (single), pair (pair) or run of three (triple) of consecutive frames in
    acquisition order is a window, with its neighbours by the end rule of ``cycle`` (module docstring); windows
    that cannot be formed (a cycle too short, or an end frame with ``cycle=None``) are left
    out. Arrays are read-only and cached.
    """
    if stencil not in STENCILS:
        raise ValueError(f"stencil must be one of {tuple(STENCILS)}, got {stencil!r}")
    return _cached_windows(int(n_frames), stencil, end_rule(cycle))


def _readings(normalised: np.ndarray, index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``sum_s weight[w, s] * a[index[w, s]]`` for curves (..., T, K): (..., W, K).

    Summed term by term in a fixed order, so a window reads the same value whatever the batch
    it is computed in: the max rule's reference windows then stay within their thresholds.
    """
    out = np.zeros((*normalised.shape[:-2], index.shape[0], normalised.shape[-1]))
    for s in range(index.shape[1]):
        out += weight[:, s, None] * normalised[..., index[:, s], :]
    return out


def stencil_statistics(normalised: np.ndarray, stencil: str, cycle=None) -> tuple[np.ndarray, Windows]:
    """Statistic of every window: ``(..., W, K)`` for curves ``(..., T, K)`` (normalised units).

    A NaN value makes NaN the windows that involve it.
    """
    normalised = np.asarray(normalised, np.float64)
    windows = stencil_windows(normalised.shape[-2], stencil, cycle)
    return _readings(normalised, windows.index, windows.weight), windows


def stencil_thresholds(curves, lo, hi, *, cycle=None, rule: str = "max", robust_k: float = 4.0) -> dict:
    """Thresholds of the stencils from reference curves (normalised units).

    Parameters
    ----------
    curves : iterable of ndarray (T_i, K)
        Reference curves (raw units); NaN values (frames left out as defective, say) make the
        windows that involve them drop out.
    lo, hi : array_like (K,)
        Normalisation bounds.
    cycle : {"full", "half", None}
    rule : {"max", "robust"}
        ``max`` (clean references): the attributes' readings are first mixed (below), then the
        threshold is the largest ``|mixed reading|`` over all the reference windows of the
        stencil, interior and end windows alike, so every reference sequence is consistent by
        construction (the published rule of the deviation, applied to the stencil);
        ``robust`` (references that may hold defects): no mixing, and ``robust_k`` robust SDs
        (``1.4826 * median |stat|``) of the interior windows, and of the end windows for the
        end threshold.

    Returns
    -------
    dict
        ``tau_{stencil}``, ``tau_{stencil}_end`` (K,) arrays for each stencil of
        :data:`STENCILS` (NaN for a class without any window: the interior threshold then
        serves; ``triple`` for full cycles only), and with the max rule on a full cycle and
        ``K >= 2`` ``mix_{stencil}`` (K,) text: row ``k`` holds column ``k`` of the mixing
        matrix (``K`` numbers, :func:`decode_mixing`).

    Notes
    -----
    Mixing (max rule). A stencil's readings of the ``K`` attributes share much of their noise:
    on the 1,000-patient recorded run the clean pair readings of LV area, LV length and the
    epicardial centre's y correlate at 0.6-0.8 (the cycle's shape the local quadratic does not
    follow moves them together), the myocardial area at -0.3 to -0.6. Each attribute's
    statistic is therefore its reading minus the part the other attributes' readings predict
    (a partial residual): ``m_k = sum_j M[j, k] s_j`` with ``M = P / diag(P)`` column by column
    and ``P`` the inverse covariance of the reference readings. ``M[k, k] = 1``, so a defect on
    attribute ``k`` alone still reads its height on ``m_k``. Attributes without spread keep
    their reading. With fewer than :data:`MIN_MIXING_WINDOWS` reference windows per attribute
    there is no mixing. The robust rule does not mix: a covariance of references holding
    defects is pulled by them (on the train split it cost pairs 0.94 -> 0.81). Half cycles do
    not mix either, nor have the three-frame stencil (train split of half cycles cut from the
    same run: with the mixing, end-frame spikes 0.93 -> 0.89 and pairs 0.78 -> 0.74; with the
    triple stencil and the robust rule, 7.5 % of clean windows flagged instead of 0.9 %).

    Why the rules differ at the ends (``benchmarks/README.md``, chosen on the train and val
    splits of the 200-patient recorded run): the end windows of a full cycle read 1.1-2x the
    spread of the interior ones (they straddle the beat gap). A robust SD is a typical spread,
    so one shared value would be set by the end windows and blunt the interior (pairs 0.79
    instead of 0.88 on train). The max is an extreme of the reference, and there the shared
    value did better on train + val pooled: pairs 0.95 against 0.94, end frames 1.0 against
    0.95, clean windows flagged 0.7 % against 1.1 %.
    """
    reference = StencilReference(lo, hi, cycle=cycle, rule=rule, robust_k=robust_k)
    run_passes(lambda: [curves], [reference])
    return reference.result()


class StencilReference:
    """The stencils' thresholds of :func:`stencil_thresholds`, from reference curves read pass
    by pass (:func:`~echolatent.temporal.streaming.run_passes`): the memory of a few numbers
    per attribute, not of every reference window.

    Max rule: a first pass accumulates the readings' moments (the mixing, full cycles), a second
    takes the largest ``|mixed reading|``. Robust rule: the exact medians of ``|reading|``
    (:class:`~echolatent.temporal.streaming.ExactMedian`, one to a few passes).
    """

    def __init__(self, lo, hi, *, cycle=None, rule: str = "max", robust_k: float = 4.0):
        if rule not in ("max", "robust"):
            raise ValueError(f"threshold rule must be 'max' or 'robust', got {rule!r}")
        self.lo, self.hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        self.cycle, self.rule, self.robust_k = cycle, rule, robust_k
        K = self.K = len(self.lo)
        self.full = end_rule(cycle) == "periodic"
        self.stencils = [s for s in STENCILS if self.full or s not in FULL_CYCLE_ONLY]
        if rule == "max":
            # the mixing needs the moments of every reading first (full cycles only)
            self.moments = {s: RunningMoments(K) for s in self.stencils} if self.full else None
            self.mixing = {s: None for s in self.stencils}
            self.largest = {s: np.full(K, -np.inf) for s in self.stencils}
        else:
            self.medians = {(s, end): ExactMedian(K) for s in self.stencils for end in (False, True)}

    def _readings(self, batch):
        """Per stencil, the (windows, K) readings of the batch's curves and their end flags."""
        readings = {s: ([], []) for s in self.stencils}
        for curve in batch:
            normalised = (np.asarray(curve, np.float64) - self.lo) / (self.hi - self.lo)
            for stencil in self.stencils:
                values, windows = stencil_statistics(normalised, stencil, self.cycle)
                readings[stencil][0].append(values)
                readings[stencil][1].append(windows.end)
        return {s: (np.concatenate(v) if v else np.empty((0, self.K)), np.concatenate(e) if e else np.empty(0, bool))
                for s, (v, e) in readings.items()}

    def add(self, batch) -> None:
        for stencil, (values, end) in self._readings(batch).items():
            if self.rule == "robust":
                self.medians[stencil, False].add(values[~end])
                self.medians[stencil, True].add(values[end])
            elif self.moments is not None:
                self.moments[stencil].add(values[~np.isnan(values).any(axis=1)])
            else:
                self.largest[stencil] = np.fmax(self.largest[stencil], _largest(_mix(values, self.mixing[stencil]),
                                                                                self.K))

    def end_pass(self) -> bool:
        if self.rule == "robust":
            return all([median.end_pass() for median in self.medians.values() if not median.done.all()])
        if self.moments is not None:
            self.mixing = {s: _mixing_matrix(moments) for s, moments in self.moments.items()}
            self.moments = None
            return False
        return True

    def result(self) -> dict:
        out = {}
        for stencil in self.stencils:
            if self.rule == "max":
                if self.mixing[stencil] is not None:
                    out[f"mix_{stencil}"] = encode_mixing(self.mixing[stencil])
                largest = np.where(np.isneginf(self.largest[stencil]), np.nan, self.largest[stencil])
                out[f"tau_{stencil}"] = out[f"tau_{stencil}_end"] = largest
            else:
                from echolatent.temporal.thresholds import MAD_TO_SD

                for end, suffix in ((False, ""), (True, "_end")):
                    out[f"tau_{stencil}{suffix}"] = self.robust_k * (MAD_TO_SD * self.medians[stencil, end].median)
        return out


def _mixing_matrix(moments: RunningMoments) -> np.ndarray | None:
    """(K, K) mixing from the moments of the reference readings without NaN: column k = partial
    residual of attribute k, or None."""
    K = len(moments.mean)
    if K < 2 or moments.n < MIN_MIXING_WINDOWS * K:
        return None
    spread = moments.std()
    keep = np.flatnonzero(np.isfinite(spread) & (spread > 0))
    if len(keep) < 2:
        return None
    # the correlation of the readings scaled by their spread
    correlation = moments.covariance()[np.ix_(keep, keep)] / np.outer(spread[keep], spread[keep])
    if not np.all(np.isfinite(correlation)) or np.linalg.cond(correlation) > 1e10:
        return None
    precision = np.linalg.inv(correlation)
    # back to the readings' units: M[j, k] = P[j, k] / P[k, k] with P the raw precision
    block = precision / np.diag(precision)[None, :] * spread[keep][None, :] / spread[keep][:, None]
    mixing = np.eye(K)
    mixing[np.ix_(keep, keep)] = block
    mixing[keep, keep] = 1.0                                   # exactly: a defect on k alone reads h on k
    return mixing


def _mix(values: np.ndarray, mixing: np.ndarray | None) -> np.ndarray:
    """``m[..., k] = sum_j values[..., j] * mixing[..., j, k]``, summed term by term in a fixed order.

    ``mixing`` is (K, K), or (W, K, K) for readings (..., W, K); None: the readings as they are.
    """
    if mixing is None:
        return values
    out = np.zeros(values.shape)
    for j in range(values.shape[-1]):
        out += values[..., j, None] * mixing[..., j, :]
    return out


def encode_mixing(mixing: np.ndarray) -> np.ndarray:
    """(K,) text of a (K, K) mixing matrix: row ``k`` = column ``k``, numbers that read back exactly."""
    mixing = np.asarray(mixing, np.float64)
    return np.array([" ".join(repr(float(v)) for v in mixing[:, k]) for k in range(mixing.shape[1])], object)


def decode_mixing(value, n: int) -> np.ndarray | None:
    """The (n, n) mixing matrix of a ``mix_{stencil}`` entry: text per attribute (a thresholds-table
    column), a matrix, or None / NaN (no mixing: None).

    Raises ValueError when the text does not fit ``n`` attributes in the order it was derived in
    (every attribute's own weight is 1: rows reordered or dropped after the derivation break this).
    """
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.dtype != object and value.ndim == 2:
        matrix = np.asarray(value, np.float64)
    else:
        entries = list(np.atleast_1d(np.asarray(value, object)))
        missing = [e is None or (isinstance(e, float) and np.isnan(e)) for e in entries]
        if all(missing):
            return None
        if any(missing) or len(entries) != n:
            raise ValueError(f"a mixing needs one entry per attribute ({n}), got {len(entries)} "
                             f"({sum(missing)} missing): derive the thresholds again")
        columns = [np.array(str(e).split(), np.float64) for e in entries]
        if any(len(c) != n for c in columns):
            raise ValueError(f"a mixing entry does not hold {n} numbers: derive the thresholds again")
        matrix = np.stack(columns, axis=1)
    if matrix.shape != (n, n) or not np.allclose(np.diag(matrix), 1.0, rtol=0, atol=1e-9):
        raise ValueError("the mixing does not fit the attributes (rows reordered or dropped since it was "
                         "derived?): derive the thresholds again")
    return matrix


def _largest(values: np.ndarray, n: int) -> np.ndarray:
    """Largest ``|value|`` per column, NaN ignored (NaN for a column without a value)."""
    if not len(values):
        return np.full(n, np.nan)
    peak = np.max(np.where(np.isnan(values), -np.inf, np.abs(values)), axis=0)
    return np.where(np.isneginf(peak), np.nan, peak)


def _fill_missing(a: np.ndarray) -> np.ndarray:
    """Linear interpolation over frames of the NaN values of (N, T, K) curves (all-NaN: 0)."""
    out = a.copy()
    T = a.shape[1]
    frames = np.arange(T)
    for n, k in zip(*np.nonzero(np.isnan(a).any(axis=1))):
        known = ~np.isnan(a[n, :, k])
        out[n, :, k] = np.interp(frames, frames[known], a[n, known, k]) if known.any() else 0.0
    return out


def _window_thresholds(thresholds: dict, stencil: str, windows: Windows, margin: float, n: int) -> np.ndarray:
    """(W, K) threshold of every window: the end threshold on end windows (NaN there: interior)."""
    tau = np.broadcast_to(np.asarray(thresholds[f"tau_{stencil}"], np.float64), (n,))
    end = np.broadcast_to(np.asarray(thresholds.get(f"tau_{stencil}_end", tau), np.float64), (n,))
    end = np.where(np.isnan(end), tau, end)
    return np.where(windows.end[:, None], end[None, :], tau[None, :]) * (1.0 + margin)


def _ratios(values: np.ndarray, tau: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(values) / tau
    return np.nan_to_num(np.where((tau == 0) & (values == 0), 0.0, ratio), nan=0.0, posinf=np.inf)


class _Operator(NamedTuple):
    """Every window of every stencil on sequences of one length (padded to one support size)."""

    index: np.ndarray    # (W, S) frames of each window's reading
    weight: np.ndarray   # (W, S) their weights (0 on padding)
    own: np.ndarray      # (W, T) bool: the window's own frames
    tau: np.ndarray      # (W, K): its threshold
    gain: np.ndarray     # (W,): its largest reading of a unit defect on one frame outside it
    mixing: np.ndarray | None   # (W, K, K): its stencil's attribute mixing (None: no stencil mixes)

    def readings(self, normalised: np.ndarray) -> np.ndarray:
        return _readings(normalised, self.index, self.weight)

    def assess(self, normalised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Readings (..., W, K) of curves (..., T, K) and the ratios of their mixed values to the thresholds."""
        stats = self.readings(normalised)
        return stats, _ratios(_mix(stats, self.mixing), self.tau)


def _has_stencil(thresholds: dict, name: str) -> bool:
    value = thresholds.get(f"tau_{name}")
    return value is not None and not np.isnan(np.asarray(value, np.float64)).all()


def _operator(n_frames: int, thresholds: dict, cycle, margin: float, n_attributes: int) -> _Operator:
    parts = []
    for name in STENCILS:
        if not _has_stencil(thresholds, name):
            if name in OPTIONAL_STENCILS:
                continue                   # a table derived before this stencil existed
            raise ValueError(f"the spike detector needs the thresholds tau_{name}")
        windows = stencil_windows(n_frames, name, cycle)
        mixing = decode_mixing(thresholds.get(f"mix_{name}"), n_attributes)
        parts.append((windows, _window_thresholds(thresholds, name, windows, margin, n_attributes), mixing))
    size = max(w.index.shape[1] for w, _, _ in parts)
    index, weight, own, tau, mixing = [], [], [], [], []
    for windows, window_tau, matrix in parts:
        pad = size - windows.index.shape[1]
        # padding reads the window's own frame with weight 0: adds an exact 0.0
        index.append(np.hstack([windows.index, np.repeat(windows.index[:, :1], pad, axis=1)]))
        weight.append(np.hstack([windows.weight, np.zeros((len(windows.weight), pad))]))
        mine = np.zeros((len(windows.own), n_frames), bool)
        mine[np.arange(len(windows.own))[:, None], windows.own] = True
        own.append(mine)
        tau.append(window_tau)
        mixing.append(np.broadcast_to(np.eye(n_attributes) if matrix is None else matrix,
                                      (len(windows.own), n_attributes, n_attributes)))
    mixes = any(matrix is not None for _, _, matrix in parts)
    index, weight, own, tau, mixing = (np.concatenate(part) for part in (index, weight, own, tau, mixing))
    response = np.zeros((len(own), n_frames))
    np.add.at(response, (np.arange(len(own))[:, None], index), weight)
    gain = np.abs(np.where(own, 0.0, response)).max(axis=1) if n_frames else np.zeros(len(own))
    return _Operator(index, weight, own, tau, gain, mixing if mixes else None)


def _greedy(op: _Operator, work: np.ndarray, handicap: np.ndarray, steps: int) -> int:
    """The plain greedy search on one curve (T, K), in place: windows taken until none exceeds."""
    for n in range(steps):
        stats, ratio = op.assess(work)
        top = ratio.max(axis=1)
        if not (top > 1.0).any():
            return n
        best = int(np.where(top > 1.0, top / handicap, -np.inf).argmax())
        work[op.own[best]] -= stats[best]
    return steps


def _search(op: _Operator, work: np.ndarray, handicap: np.ndarray, steps: int):
    """The search with look-ahead on one curve (T, K), in place: yields (window, reading, ratios) taken."""
    for _ in range(steps):
        stats, ratio = op.assess(work)
        top = ratio.max(axis=1)
        score = np.where(top > 1.0, top / handicap, -np.inf)
        candidates = [int(w) for w in np.argsort(-score, kind="stable")[:LOOKAHEAD] if score[w] > -np.inf]
        if not candidates:
            return
        best = candidates[0]
        if len(candidates) > 1:
            # each candidate is taken and the plain search run to its end: the candidate whose
            # explanation costs least (WINDOW_COST per window plus the squared ratios left) wins
            costs = []
            for w in candidates:
                trial = work.copy()
                trial[op.own[w]] -= stats[w]
                n = _greedy(op, trial, handicap, steps)
                costs.append(WINDOW_COST * (1 + n) + float(np.square(op.assess(trial)[1]).sum()))
            best = candidates[int(np.argmin(costs))]
        work[op.own[best]] -= stats[best]
        yield best, stats[best], ratio[best]


def detect_spikes(curves: np.ndarray, lo, hi, thresholds: dict, *, cycle=None, margin: float = 0.0,
                  nan_inconsistent: bool = True) -> dict:
    """Frame- and sequence-level consistency by the spike search (module docstring).

    Parameters
    ----------
    curves : ndarray, shape (T, K) or (N, T, K)
        Attribute (raw units) curves; the N sequences are searched one by one (same length).
    lo, hi : array_like (K,)
        Normalisation bounds.
    thresholds : dict
        ``tau_single`` and ``tau_pair`` (K,), optionally ``tau_triple`` (absent or NaN: no
        three-frame windows), ``tau_{stencil}_end`` (NaN or absent: the interior ones), in
        normalised units, and ``mix_{stencil}`` (the attribute mixing; absent or NaN: none)
        (:func:`stencil_thresholds`).
    cycle : {"full", "half", None}
        End rule of the windows.
    margin : float
        Thresholds are scaled by ``1 + margin``.
    nan_inconsistent : bool
        A frame whose attribute is NaN is inconsistent for it.

    Returns
    -------
    dict
        The keys of :func:`~echolatent.temporal.metric.temporal_consistency`: ``inconsistent``
        (bool, curves' shape: the frame was flagged for the attribute), ``frame_inconsistent``
        (..., T), ``attribute_ratio`` (..., K), ``frame_ratio`` (...), ``sequence_inconsistent``
        (...), ``error_to_threshold`` (curves' shape: ``|amplitude| / tau`` of the window that
        flagged the frame, or for a frame not flagged the largest ratio left on a window
        holding it; mixed amplitudes when the thresholds mix), and ``estimate`` (curves'
        shape): the defect removed from each frame, normalised units.
    """
    curves = np.asarray(curves, np.float64)
    single = curves.ndim == 2
    a = curves[None] if single else curves
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if np.any(hi <= lo):
        raise ValueError("normalisation bounds need hi > lo for every attribute")
    N, T, K = a.shape
    normalised = (a - lo) / (hi - lo)
    missing = np.isnan(normalised)
    filled = _fill_missing(normalised) if missing.any() else normalised
    op = _operator(T, thresholds, cycle, margin, K)
    flagged = np.zeros((N, T, K), bool)
    ratio_at = np.zeros((N, T, K))
    estimate = np.zeros((N, T, K))
    work = filled.copy()
    # Sequence by sequence: of the windows above their threshold, the LOOKAHEAD with the highest
    # ratio are candidates; each is removed in turn and the plain greedy search (always the highest
    # ratio) run to its end, and the candidate whose explanation costs least is taken: its frames
    # flagged for the attributes it exceeds on, and its reading subtracted from its frames (it then
    # reads 0), until no window exceeds its threshold. Each step flags a window, so T steps
    # suffice. A window that reads a defect beside it more strongly than its own (gain > 1: on a
    # half cycle, the mirror at ED or ES counts frame 1 twice in the window of frame 0) competes
    # with its ratio divided by that gain, so the defect's own window wins.
    handicap = np.maximum(1.0, op.gain * (1.0 + 1e-9))                   # ties go to the gain <= 1 window
    if len(op.own):
        _, ratio = op.assess(work)
        for n in np.flatnonzero((ratio > 1.0).any(axis=(1, 2))):
            for w, value, over in _search(op, work[n], handicap, T):
                own = op.own[w][:, None]
                estimate[n] += own * value
                flagged[n] |= own & (over > 1.0)
                ratio_at[n] = np.where(own, np.maximum(ratio_at[n], over), ratio_at[n])
    residual = work
    # what is left on the frames: the largest ratio of a window holding them
    left = np.zeros((N, T, K))
    if len(op.own):
        _, ratio = op.assess(residual)
        for w in range(len(op.own)):
            frames = op.own[w]
            left[:, frames] = np.maximum(left[:, frames], ratio[:, w, None, :])
    error = np.maximum(ratio_at, left)
    inconsistent = flagged | missing if nan_inconsistent else flagged
    frame_inconsistent = inconsistent.any(axis=-1)
    out = {
        "inconsistent": inconsistent,
        "frame_inconsistent": frame_inconsistent,
        "attribute_ratio": inconsistent.mean(axis=-2),
        "frame_ratio": frame_inconsistent.mean(axis=-1),
        "error_to_threshold": error,
        "sequence_inconsistent": frame_inconsistent.any(axis=-1),
        "estimate": estimate,
    }
    return {key: value[0] for key, value in out.items()} if single else out


@dataclass
class Detector:
    """The image-space thresholds with the detector that applies them (what a frame check needs).

    Attributes
    ----------
    names : list of str
        Attribute columns, in the order of the curves.
    lo, hi, tau : ndarray (K,)
        Bounds and the deviation's thresholds (:mod:`echolatent.temporal.metric`).
    tau_end : ndarray (K,) or None
        The deviation's thresholds of the first and last frames (None: ``tau``).
    stencils : dict
        ``tau_{stencil}``, ``tau_{stencil}_end`` (K,) and ``mix_{stencil}`` ((K, K) mixing, absent
        without one) of the stencils of :data:`STENCILS` (``"spikes"`` only; ``tau_triple``
        optional). Mixings given as text (:func:`encode_mixing`) are read into matrices.
    kind : {"spikes", "deviation"}
    margin : float
        Thresholds are scaled by ``1 + margin``.
    """

    names: list
    lo: np.ndarray
    hi: np.ndarray
    tau: np.ndarray
    tau_end: np.ndarray | None = None
    stencils: dict = field(default_factory=dict)
    kind: str = "spikes"
    margin: float = 0.0

    def __post_init__(self):
        if self.kind not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {self.kind!r}")
        self.names = list(self.names)
        self.lo, self.hi, self.tau = (np.asarray(v, np.float64) for v in (self.lo, self.hi, self.tau))
        if self.tau_end is not None:
            self.tau_end = np.asarray(self.tau_end, np.float64)
        if self.kind == "spikes":
            missing = [c for c in ("tau_single", "tau_pair") if c not in self.stencils
                       or np.isnan(np.asarray(self.stencils[c], float)).all()]
            if missing:
                raise ValueError(f"the spike detector needs the stencil thresholds {missing} (a thresholds table "
                                 "derived by this version: temporal.thresholds.source: derived); the published "
                                 "TMI 2022 table has the deviation's only (temporal.thresholds.detector: deviation)")
            stencils = {}
            for key, value in self.stencils.items():
                if key.startswith("mix_"):
                    matrix = decode_mixing(value, len(self.names))
                    if matrix is not None:
                        stencils[key] = matrix
                else:
                    stencils[key] = np.asarray(value, np.float64)
            self.stencils = stencils

    @classmethod
    def from_table(cls, table: pd.DataFrame, kind: str = "spikes", margin: float = 0.0) -> "Detector":
        """From the image-space rows of a thresholds table (:mod:`echolatent.temporal.thresholds`)."""
        from echolatent.temporal.evaluation import end_thresholds

        stencils = {}
        for column in TAU_COLUMNS:
            if column in table.columns:
                stencils[column] = pd.to_numeric(table[column], errors="coerce").to_numpy(float)
        for column in MIX_COLUMNS:
            if column in table.columns:
                stencils[column] = table[column].to_numpy(object)
        return cls(table["name"].tolist(), table["lo"].to_numpy(float), table["hi"].to_numpy(float),
                   table["tau"].to_numpy(float), end_thresholds(table), stencils, kind, margin)

    def with_margin(self, margin: float) -> "Detector":
        """The same detector with another margin."""
        return Detector(self.names, self.lo, self.hi, self.tau, self.tau_end, self.stencils, self.kind, margin)

    def check(self, curves: np.ndarray, cycle=None) -> dict:
        """Frame- and sequence-level consistency of curves (T, K) or (N, T, K) in the columns ``names``.

        ``"deviation"``: :func:`~echolatent.temporal.metric.temporal_consistency`; ``"spikes"``:
        :func:`detect_spikes` (same keys).
        """
        if self.kind == "deviation":
            return temporal_consistency(curves, self.lo, self.hi, self.tau, margin=self.margin, cycle=cycle,
                                        end_thresholds=self.tau_end)
        return detect_spikes(curves, self.lo, self.hi, self.stencils, cycle=cycle, margin=self.margin)
