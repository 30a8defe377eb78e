"""The temporal-consistency metric of TMI 2022 on attribute curves, with measured end frames.

For a curve ``a_1..a_T`` min-max normalised with bounds ``(lo, hi)``, the deviation of
frame ``t`` is ``d_t = â_t - (â_{t-1} + â_{t+1}) / 2``, i.e. how far the frame lies from the
linear interpolation of its neighbours. A frame is inconsistent for an attribute when
``|d_t| > τ``; a sequence is inconsistent when any frame is, for any attribute.

End frames
----------
The reference sets ``d = 0`` at the first and last frames: a defect there is never seen
(only its inner neighbour deviates, by half of it), and the repair never re-estimates them.
Here the end frames get a deviation of their own, chosen by the cohort's ``cycle``:

``cycle="full"`` (ED -> ES -> ED) -- **periodic neighbours**.
    A full cycle is *closed*: its last frame is its first one beat later. The simulator
    samples frame ``k`` at phase ``φ0 + k / (T - 1)`` (:mod:`echolatent.simulate.dynamics`), so
    frames ``0`` and ``T - 1`` have the same phase, and TED / CAMUS-like full cycles run from one
    ED to the next. The cycle then has ``T - 1`` distinct phases: the neighbours of frame 0 are
    frames ``T - 2`` (one beat earlier) and 1, those of frame ``T - 1`` frames ``T - 2`` and 1
    (one beat later)::

        d_0     = â_0     - (â_{T-2} + â_1) / 2
        d_{T-1} = â_{T-1} - (â_{T-2} + â_1) / 2

    Both are the centred stencil of the interior, on frames one sampling step apart, so the
    scale (curvature, noise) and the response to a spike (``d = h`` for a spike ``h``) are
    those of an interior frame, and the thresholds derived on reference sequences need not
    change. (Ingestion's ``frame_positions`` wraps with period ``T``, i.e. as if the last frame
    preceded the next ED by one frame; if a source does so, ``T - 2`` is two steps before frame
    0 instead of one: the stencil is then off-centre by one step, which costs little because
    frame 0 lies near ED, where the curves are at their extremum.)

``cycle="half"`` (ED -> ES) -- **mirror** (zero slope at the ends).
    Frame 0 is ED (the largest LV) and the last frame ES (the smallest): both are extrema of
    the volume curve, where the attribute curves have about zero slope (the simulator's ejection
    profile ``(1 - cos(π τ / Ts)) / 2`` has exactly zero slope at ED and ES). Reflecting the
    curve there (``â_{-1} = â_1``, ``â_T = â_{T-2}``) gives::

        d_0     = â_0     - â_1
        d_{T-1} = â_{T-1} - â_{T-2}

    A spike ``h`` at an end frame gives ``d = h`` (as in the interior); on a smooth curve with
    zero end slope ``d_0 ≈ -a''/2`` (as in the interior), and independent frame noise of SD σ
    gives SD ``1.41 σ`` (interior: ``1.22 σ``): the scale is comparable, so one threshold
    serves all frames. The alternatives are worse: linear extrapolation from the two inner
    frames, ``â_0 - (2 â_1 - â_2)``, has twice the interior curvature and noise (SD ``2.45 σ``)
    and would inflate the thresholds; scaled by 1/2 to match them it is exactly ``-d_1``, i.e.
    it adds nothing to what frame 1 already sees (a spike ``h`` at frame 0 shows as ``h / 2``).

``cycle=None`` -- the reference: ``d = 0`` at the first and last frames.

Every function of the metric takes ``cycle`` (thresholds derived with one rule are only
valid with the same rule); the workflow passes the cohort's ``cohort.cycle``.

End thresholds
--------------
The end stencils have the interior's response to a spike, but not quite its spread on clean
sequences: on a full cycle frames ``T - 2`` and 0 are a beat apart in time, so a frame-to-frame
correlated observer noise does not cancel across the wrap as it does between adjacent frames,
and frame 0 often lies in the atrial kick; on a half cycle the attributes other than the
volumes need not have zero slope at ED and ES. On the synthetic cohort's observed reference
sequences (AR(1) noise, correlation 0.85) the largest end deviation is 1.0-1.4 times the
largest interior one (full and half cycles; 100 and 200 patients). One threshold for all
frames would then be set by the ends and lose 2-8 points of interior spike detection; so the
ends get their own threshold,
derived the same way (the largest ``|d|`` of the reference sequences' end frames:
:func:`derive_thresholds` with ``frames="ends"``), passed as ``end_thresholds`` (default: the
interior one). That is the calibration: each frame is compared with what reference frames
at the same position reach.

Two adjacent spiked frames
--------------------------
A defect on two consecutive frames ``t, t+1`` with the same sign and size ``h`` shows as
``d ≈ h / 2`` on both (and ``-h / 2`` on ``t - 1`` and ``t + 2``): half the response of a single
spike, whatever the end rule. The metric flags them when ``h / 2 > τ``; the repair planner
(:func:`echolatent.temporal.correction.planning.plan_repairs`) re-estimates such a pair together.
The spike detector (:mod:`echolatent.temporal.detection`, ``temporal.thresholds.detector``) tests
such a pair as a unit and reads ``h``; this module stays the paper's metric.
"""

from __future__ import annotations

import numpy as np

#: Cycles of the cohort (``cohort.cycle``) and the rule they give the end frames.
END_RULES = {"full": "periodic", "half": "mirror", None: "zero"}

#: Published thresholds (normalised units, CAMUS native grid and bounds). Re-derive them
#: for another grid, frame rate or cohort (:func:`derive_thresholds`).
TEMPORAL_THRESHOLDS = {
    "lv_area": 1.60e-2,
    "lv_base_width": 9.69e-2,
    "lv_length": 2.62e-2,
    "lv_orientation": 2.29e-2,
    "myo_area": 3.21e-2,
    "epi_center_x": 4.56e-3,
    "epi_center_y": 1.10e-2,
}

#: Normalisation bounds (min, max) of the published thresholds: CAMUS native pixels and degrees.
CAMUS_BOUNDS = {
    "lv_area": (19632.0, 112404.0),
    "lv_base_width": (53.76, 172.88),
    "lv_length": (301.42, 612.86),
    "lv_orientation": (-7.04, 15.26),
    "myo_area": (23228.0, 64134.0),
    "epi_center_x": (183.37, 479.37),
    "epi_center_y": (285.86, 609.21),
}


def end_rule(cycle) -> str:
    """The end-frame rule of a cycle: ``"periodic"`` (full), ``"mirror"`` (half), ``"zero"`` (None)."""
    try:
        return END_RULES[cycle]
    except (KeyError, TypeError):
        raise ValueError(f"cycle must be 'full', 'half' or None, got {cycle!r}") from None


def deviation_stencil(n_frames: int, cycle=None) -> tuple[np.ndarray, np.ndarray]:
    """The metric as a 3-point stencil per frame: ``d_t = Σ_k weight[t, k] · â[index[t, k]]``.

    Returns ``index`` (T, 3) int and ``weight`` (T, 3) float. Interior frames use
    ``(t, t - 1, t + 1)`` with weights ``(1, -1/2, -1/2)``; the end frames follow ``cycle``
    (module docstring). Rows of frames without a deviation (the ends with ``cycle=None``, every
    frame of a sequence shorter than 3) are all zero.
    """
    rule = end_rule(cycle)
    T = int(n_frames)
    t = np.arange(T)
    index = np.stack([t, t - 1, t + 1], axis=1)
    weight = np.tile([1.0, -0.5, -0.5], (T, 1))
    if T < 3:
        return np.stack([t, t, t], axis=1), np.zeros((T, 3))
    if rule == "periodic":
        index[0] = (0, T - 2, 1)
        index[T - 1] = (T - 1, T - 2, 1)
    elif rule == "mirror":
        index[0] = (0, 1, 1)
        index[T - 1] = (T - 1, T - 2, T - 2)
    else:
        for end in (0, T - 1):
            index[end] = end
            weight[end] = 0.0
    return index, weight


def neighbour_frames(n_frames: int, cycle=None) -> np.ndarray:
    """(T, T) bool: ``u`` and ``t`` are neighbours when either one's deviation involves the other.

    A defect at ``t`` moves the deviations of its neighbours; re-estimating ``t`` changes them.
    """
    index, weight = deviation_stencil(n_frames, cycle)
    T = len(index)
    out = np.zeros((T, T), bool)
    rows = np.repeat(np.arange(T), 3)
    used = weight.reshape(-1) != 0
    out[rows[used], index.reshape(-1)[used]] = True
    out |= out.T
    np.fill_diagonal(out, False)
    return out


def deviation_matrix(n_frames: int, cycle=None) -> np.ndarray:
    """The metric as a (T, T) matrix ``D``: ``d = D â`` on finite curves (zero rows where no deviation)."""
    index, weight = deviation_stencil(n_frames, cycle)
    matrix = np.zeros((len(index), len(index)))
    np.add.at(matrix, (np.repeat(np.arange(len(index)), 3), index.reshape(-1)), weight.reshape(-1))
    return matrix


def consistency_deviation(curves: np.ndarray, lo, hi, *, cycle=None) -> np.ndarray:
    """Signed deviation ``d_t`` of every frame from the interpolation of its neighbours.

    Parameters
    ----------
    curves : ndarray, shape (T, K) or (N, T, K)
        Attribute (or latent) curves over time, one column per attribute.
    lo, hi : array_like, shape (K,)
        Normalisation bounds per attribute.
    cycle : {"full", "half", None}
        The end-frame rule (module docstring): periodic neighbours (full cycles), mirror (half
        cycles), or ``d = 0`` at the first and last frames (None, the reference).

    Returns
    -------
    ndarray, same shape as ``curves``
        ``d_t`` in normalised units. A NaN value makes NaN the deviations that involve it.
    """
    curves = np.asarray(curves, dtype=np.float64)
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    if np.any(hi <= lo):
        raise ValueError("normalisation bounds need hi > lo for every attribute")
    normalised = (curves - lo) / (hi - lo)
    index, weight = deviation_stencil(curves.shape[-2], cycle)
    deviation = np.zeros_like(normalised)
    measured = np.flatnonzero(weight.any(axis=1))
    for k in range(3):
        deviation[..., measured, :] += weight[measured, k, None] * normalised[..., index[measured, k], :]
    return deviation


def frame_thresholds(n_frames: int, thresholds, end_thresholds=None, *, margin: float = 0.0) -> np.ndarray:
    """(T, K) threshold of every frame: ``end_thresholds`` on the first and last frames (default:
    ``thresholds``), ``thresholds`` elsewhere, both scaled by ``1 + margin``."""
    tau = np.asarray(thresholds, dtype=np.float64) * (1.0 + margin)
    out = np.repeat(tau.reshape(1, -1), int(n_frames), axis=0)
    if end_thresholds is not None and n_frames:
        end = np.asarray(end_thresholds, dtype=np.float64) * (1.0 + margin)
        end = np.where(np.isnan(end), tau, end)          # NaN: the interior threshold
        out[[0, n_frames - 1]] = end
    return out


def temporal_consistency(curves: np.ndarray, lo, hi, thresholds, *, margin: float = 0.0,
                         nan_inconsistent: bool = True, cycle=None, end_thresholds=None) -> dict:
    """Frame- and sequence-level temporal consistency.

    Parameters
    ----------
    curves : ndarray, shape (T, K) or (N, T, K)
    lo, hi, thresholds : array_like, shape (K,)
    margin : float
        Thresholds are scaled by ``1 + margin``.
    nan_inconsistent : bool
        A frame whose deviation is NaN (the attribute could not be measured on it or on a
        neighbour, e.g. a structure is missing) counts as inconsistent; with False it counts
        as consistent.
    cycle : {"full", "half", None}
        End-frame rule of :func:`consistency_deviation`.
    end_thresholds : array_like, shape (K,), optional
        Thresholds of the first and last frames (module docstring; NaN or None: ``thresholds``).

    Returns
    -------
    dict
        ``deviation`` (|d_t|, same shape as curves), ``inconsistent`` (bool, same shape),
        ``frame_inconsistent`` (any attribute, shape (..., T)), ``attribute_ratio``
        (fraction of inconsistent frames per attribute, shape (..., K)), ``frame_ratio``
        (fraction of frames inconsistent for any attribute, shape (...)),
        ``error_to_threshold`` (|d_t| / τ of the frame) and ``sequence_inconsistent`` (bool,
        shape (...)).
    """
    deviation = np.abs(consistency_deviation(curves, lo, hi, cycle=cycle))
    tau = frame_thresholds(deviation.shape[-2], thresholds, end_thresholds, margin=margin)
    with np.errstate(invalid="ignore"):
        inconsistent = deviation > tau
    if nan_inconsistent:
        inconsistent |= np.isnan(deviation)
    frame_inconsistent = inconsistent.any(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((tau == 0) & (deviation == 0), 0.0, deviation / tau)
    return {
        "deviation": deviation,
        "inconsistent": inconsistent,
        "frame_inconsistent": frame_inconsistent,
        "attribute_ratio": inconsistent.mean(axis=-2),
        "frame_ratio": frame_inconsistent.mean(axis=-1),
        "error_to_threshold": ratio,
        "sequence_inconsistent": frame_inconsistent.any(axis=-1),
    }


#: Which frames' deviations :func:`sequence_maxima` and :func:`derive_thresholds` take.
FRAME_SETS = ("all", "interior", "ends")


def derive_thresholds(reference_curves, lo, hi, *, cycle=None, frames: str = "all") -> np.ndarray:
    """Thresholds from reference sequences: the largest ``|d_t|`` per attribute over all of them.

    ``reference_curves`` is an iterable of (T_i, K) arrays (sequences may differ in length).
    ``frames="all"``: one threshold for every frame, every reference sequence is then
    consistent by construction (with the same ``cycle``); ``"interior"`` and ``"ends"``: the
    thresholds of the interior and of the first and last frames (``end_thresholds``, module
    docstring), which together keep the references consistent too.
    """
    maxima = sequence_maxima(reference_curves, lo, hi, cycle=cycle, frames=frames)
    if not len(maxima):
        raise ValueError("no reference sequences to derive thresholds from")
    with np.errstate(all="ignore"):
        return np.nanmax(maxima, axis=0)


def sequence_maxima(curves, lo, hi, *, cycle=None, frames: str = "all") -> np.ndarray:
    """``max_t |d_t|`` per sequence and attribute, shape (N, K) (NaN frames are ignored).

    ``frames``: over all frames, the interior ones (``1 .. T - 2``) or the first and last. The
    reference tool reports these maxima (max/min/mean/std over sequences) when run on
    reference data without thresholds.
    """
    if frames not in FRAME_SETS:
        raise ValueError(f"frames must be one of {FRAME_SETS}, got {frames!r}")
    rows = [deviation_peak(np.abs(consistency_deviation(c, lo, hi, cycle=cycle)), frames) for c in curves]
    return np.array(rows, dtype=np.float64).reshape(len(rows), -1)


def deviation_peak(d: np.ndarray, frames: str = "all") -> np.ndarray:
    """``max |d_t|`` per attribute of one sequence's (T, K) ``|d|`` over ``frames`` (all, interior:
    ``1 .. T - 2``, ends: first and last); NaN values are ignored, NaN where none is left."""
    if frames == "interior":
        d = d[1:-1]
    elif frames == "ends":
        d = d[[0, -1]] if len(d) else d
    d = np.where(np.isnan(d), -np.inf, d)
    peak = d.max(axis=0) if len(d) else np.full(d.shape[1:], -np.inf)
    return np.where(np.isneginf(peak), np.nan, peak)
