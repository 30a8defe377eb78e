"""Phase-resolved curves over the cardiac cycle: group means with bands, and where the groups differ.

Frame-level measures (physical attributes, latent means) are brought onto a common normalised
cycle per sequence (:func:`normalised_curves`), then compared between groups with the patient as
the unit (:func:`curve_statistics`): one curve per patient, view and cycle type, never frames as
samples. Half (ED -> ES) and full (ED -> ES -> ED) cycles are never mixed: every table carries a
``cycle`` key and every statistic is computed within one cycle type.

Time normalisation
------------------
Each (patient, view) sequence is warped piecewise-linearly, anchored at ED and ES (the systolic
fraction varies with heart rate, so a plain time scaling would misalign systole and diastole),
then resampled by linear interpolation on ``n_points`` equally spaced phases of ``[0, 1]``
(both ends included; 64 points as in the CARDINAL work).

``cycle="full"``: phase 0 = ED, ``es_phase`` = ES, 1 = the next ED. Full cycles are *closed*
    (:mod:`echolatent.temporal.metric`): the last frame ``T - 1`` is frame 0 one beat later, the
    period is ``T - 1`` frame steps, and a sequence may start anywhere in the cycle (ES may come
    before ED in index order). Frame ``k`` lies ``(k - ed) mod (T - 1)`` steps after ED; the
    walk from ED wraps from frame ``T - 1`` to frame 1 (frame 0 is frame ``T - 1``'s phase, so
    it is used only when it is the ED frame, or in place of a missing frame ``T - 1``), and
    phase 1 is the ED frame again, or frame ``T - 1`` when ED is frame 0.
    **The ES anchor** is common to all sequences: by default (``es_phase="median"``) the median
    systolic fraction ``((es - ed) mod (T - 1)) / (T - 1)`` over the full-cycle sequences given,
    a cohort property that needs no setting; a number fixes it (e.g. to compare cohorts). Either
    is moved to the nearest grid phase, so that ES is a grid point and the curve passes through
    each sequence's ES frame value. The value used is the ``es_phase`` column of the outputs
    (the figures' ES marker). Curves of different measures are comparable only with the same
    anchor: compute them from the same ``sequences`` table, or pass the number.
``cycle="half"``: phase 0 = ED, 1 = ES, linear between; frames outside ``[ed, es]`` are not used.

Missing frames (NaN values, or frames absent from the frames table) are interpolated over only
when bracketed: a phase point gets a value when the sequence has a finite frame at or before it
and one at or after it, along the cycle; for a full cycle that walk is periodic (a missing ED
frame is bracketed by the last frame before it and the first after it, a beat apart), for a
half cycle it stops at ED and ES (a missing ED or ES frame leaves the curve's end NaN). A column
with no finite frame gives a NaN curve. :func:`curve_statistics` lists incomplete curves as
exclusions rather than analysing part of a curve.

Inference (family-wise over the phase points)
---------------------------------------------
Per (family, model, outcome, view, cycle), on the patients with a complete curve and every
covariate: at each phase point, the OLS model ``y(phase) ~ group + covariates`` gives the
covariate-adjusted case-minus-control difference and its (pooled-variance) t. The family-wise
error over the phase points is controlled by a patient-level permutation max-|t| test:

* **Freedman-Lane** permutation: the curves are residualised on the covariates alone (the
  reduced model, :func:`echolatent.stats.design.covariate_matrix` plus an intercept), the
  residual curves are permuted between patients (each patient's whole curve moves together,
  keeping the correlation along the cycle), added back to the covariate fit, and the full model
  is refitted. Plain residualisation followed by a test of the raw labels removes the part of
  the group effect that the covariates share with the group (cases older and larger:
  attenuated, biased differences) and ignores the degrees of freedom the covariates used; the
  Freedman-Lane statistic is the adjusted t of the same model as ``effects.tsv``, and among
  permutation schemes with nuisance covariates it keeps the error rate closest to nominal
  (Anderson & Legendre 1999; Winkler et al. 2014, NeuroImage 92:381).
* The statistic of a permutation is the maximum over the phase points of ``|t|``. With ``N``
  permutations and the observed labels counted in the reference set, ``p_fwe = (1 + #{maxima >=
  |t|}) / (N + 1)`` and the threshold is the ``floor(alpha (N + 1))``-th largest maximum (the
  ``1 - alpha`` quantile of the maxima, 95th percentile at ``alpha = 0.05``): a point is
  significant when ``|t| > threshold``, exactly when ``p_fwe <= alpha``.
* The permutations are one ``(N, n_patients)`` label matrix: every permuted statistic of every
  phase point and outcome comes from matrix products of the permuted residualised group
  indicator (and covariate basis) with the residual curves (:func:`permutation_max_t`).

The bands are those of the raw group means (what the figure shows): ``mean +/- t_{n-1, 0.975}
SD / sqrt(n)`` over the patients of the group (:func:`mean_band`); the test, not the bands,
is covariate-adjusted.

Tables (``results/stats/``)
---------------------------
``curves.tsv``: one row per (family, model, outcome, view, cycle, phase point, group):
    ``family`` (``attributes``, ``latent``), ``model`` (latent model, else empty), ``outcome``
    (the frame-level column: ``lv_area_mm2``, ``mu_3``), ``view``, ``cycle`` (``full``,
    ``half``), ``phase_index`` (0 .. ``n_points - 1``), ``phase`` (normalised phase in [0, 1]:
    0 = ED; ES at ``es_phase``; 1 = next ED (full) or ES (half)), ``group`` (the control or the
    case group name), ``n`` (patients of the group with a complete curve and every covariate:
    those tested), ``mean`` (mean over those patients, outcome units), ``ci_low``, ``ci_high``
    (95 % t-based confidence band of the mean, pointwise), ``es_phase`` (phase of ES: the
    anchor of the warp; 1 for half cycles).

``curve_tests.tsv``: one row per (family, model, outcome, view, cycle, phase point):
    ``family, model, outcome, view, cycle, phase_index, phase``, ``n_control``, ``n_case``,
    ``difference`` (case minus control, adjusted for the covariates: the OLS group coefficient,
    outcome units), ``t`` (its pooled-variance t), ``p_fwe`` (family-wise adjusted p over the
    phase points of the curve, permutation max-|t|), ``significant`` (``p_fwe <= alpha``, i.e.
    ``|t| > threshold``), ``threshold`` (the family-wise critical ``|t|``, one per curve),
    ``n_permutations``. A curve with fewer than ``min_group_size`` patients in a group has NaN
    statistics (logged).

``curve_intervals.tsv``: the significant phase intervals, one row per run of consecutive
    significant points: ``family, model, outcome, view, cycle``, ``index_start``, ``index_end``
    (phase indices, inclusive), ``phase_start``, ``phase_end``, ``n_points``, ``direction``
    (``+1``: case above control, ``-1``: below), ``max_abs_t``, ``min_p_fwe``. On a full cycle
    a run reaching phase 1 and one starting at phase 0 are one interval through ED
    (``index_start > index_end``).

Exclusions (``patient_id, variable, reason``, as ``exclusions.tsv``): a patient of another
    group (empty ``variable``), missing a covariate (the covariate), without a curve of a
    (view, cycle) that others have (``{family}[.{model}].*.{view}.{cycle}_curve``), or whose
    curve of an outcome is NaN-only or incomplete (``{family}[.{model}].{outcome}.{view}.
    {cycle}_curve``). Nothing is dropped without a row here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from echolatent.stats.design import covariate_exclusions, covariate_matrix, resolve_groups

__all__ = ["CYCLES", "CURVE_COLUMNS", "TEST_COLUMNS", "INTERVAL_COLUMNS", "EXCLUSION_COLUMNS", "CurveStatistics",
           "normalised_curves", "mean_band", "permutation_max_t", "curve_statistics", "significant_intervals"]

logger = logging.getLogger(__name__)

CYCLES = ("full", "half")
#: Keys of the long table of :func:`normalised_curves` (the value columns follow).
CURVE_KEYS = ["patient_id", "view", "cycle", "phase_index", "phase", "es_phase"]
CURVE_COLUMNS = ["family", "model", "outcome", "view", "cycle", "phase_index", "phase", "group", "n", "mean",
                 "ci_low", "ci_high", "es_phase"]
TEST_COLUMNS = ["family", "model", "outcome", "view", "cycle", "phase_index", "phase", "n_control", "n_case",
                "difference", "t", "p_fwe", "significant", "threshold", "n_permutations"]
INTERVAL_COLUMNS = ["family", "model", "outcome", "view", "cycle", "index_start", "index_end", "phase_start",
                    "phase_end", "n_points", "direction", "max_abs_t", "min_p_fwe"]
EXCLUSION_COLUMNS = ["patient_id", "variable", "reason"]
_CURVE_ID = ["family", "model", "outcome", "view", "cycle"]
#: Sequences interpolated together (bounds the temporaries: chunk x points x columns floats).
_SEQUENCE_CHUNK = 4096
#: Floats of one block of permuted statistics (chunks over outcomes keep memory at ~100 MB).
_PERMUTATION_BLOCK = 12_000_000


# --------------------------------------------------------------------------------------------
# Time normalisation
# --------------------------------------------------------------------------------------------

def _require(table: pd.DataFrame, columns, name: str) -> None:
    missing = [c for c in columns if c not in table]
    if missing:
        raise ValueError(f"{name} table lacks column(s) {missing} (columns: {list(table.columns)})")


def _check_sequences(sequences: pd.DataFrame) -> pd.DataFrame:
    """The sequences with integer ``n_frames, ed, es``; errors name the field and the sequences."""
    _require(sequences, ["patient_id", "view", "cycle", "n_frames", "ed", "es"], "sequences")
    seq = sequences[["patient_id", "view", "cycle", "n_frames", "ed", "es"]].reset_index(drop=True)

    def where(mask) -> str:
        bad = seq.loc[np.asarray(mask), ["patient_id", "view"]].astype(str).agg("/".join, axis=1).tolist()
        return f"{len(bad)} sequence(s): {bad[:5]}{' ...' if len(bad) > 5 else ''}"

    unknown = ~seq["cycle"].isin(CYCLES)
    if unknown.any():
        raise ValueError(f"sequences: unknown 'cycle' {sorted(seq.loc[unknown, 'cycle'].astype(str).unique())} "
                         f"(expected one of {list(CYCLES)}) in {where(unknown)}")
    for field in ("n_frames", "ed", "es"):
        values = pd.to_numeric(seq[field], errors="coerce")
        missing = values.isna()
        if missing.any():
            label = {"ed": "ED frame 'ed'", "es": "ES frame 'es'"}.get(field, f"'{field}'")
            raise ValueError(f"sequences: missing {label} in {where(missing)}; a curve needs both ED and ES")
        if (values != np.round(values)).any():
            raise ValueError(f"sequences: non-integer '{field}' in {where(values != np.round(values))}")
        seq[field] = values.astype(np.int64)
    dup = seq.duplicated(["patient_id", "view"], keep=False)
    if dup.any():
        raise ValueError(f"sequences: several rows per (patient_id, view) in {where(dup)}")
    full = (seq["cycle"] == "full").to_numpy()
    T, ed, es = (seq[c].to_numpy() for c in ("n_frames", "ed", "es"))
    short = T < np.where(full, 3, 2)
    if short.any():
        raise ValueError(f"sequences: 'n_frames' too small for a cycle (full >= 3, half >= 2) in {where(short)}")
    for field, values in (("ed", ed), ("es", es)):
        out = (values < 0) | (values >= T)
        if out.any():
            raise ValueError(f"sequences: '{field}' outside [0, n_frames) in {where(out)}")
    period = np.maximum(T - 1, 1)
    same = full & ((es - ed) % period == 0)
    if same.any():
        raise ValueError(f"sequences: 'ed' and 'es' at the same phase of a full cycle in {where(same)}")
    backwards = ~full & (es <= ed)
    if backwards.any():
        raise ValueError(f"sequences: half cycles run ED -> ES, but 'es' <= 'ed' in {where(backwards)}")
    return seq


def _grid_es_phase(es_phase, seq: pd.DataFrame, grid: np.ndarray) -> float:
    """The common ES phase of full cycles, moved to the nearest inner grid point."""
    full = seq[seq["cycle"] == "full"]
    if isinstance(es_phase, str):
        if es_phase != "median":
            raise ValueError(f"es_phase must be 'median' or a number in (0, 1), got {es_phase!r}")
        if full.empty:
            return np.nan
        period = full["n_frames"].to_numpy() - 1
        value = float(np.median(((full["es"] - full["ed"]).to_numpy() % period) / period))
    else:
        value = float(es_phase)
        if not 0.0 < value < 1.0:
            raise ValueError(f"es_phase must lie strictly between 0 (ED) and 1 (next ED), got {es_phase!r}")
    step = grid[1] - grid[0]
    index = int(np.clip(np.rint(value / step), 1, len(grid) - 2))  # ES strictly inside the cycle
    return float(grid[index])


def _bracketed_interp(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values`` (n, L, C) at fractional sample ``positions`` (n, G).

    Only between the nearest finite samples on either side; NaN where a side has none.
    """
    n, L, C = values.shape
    finite = np.isfinite(values)
    if finite.all():  # the common case: plain linear interpolation between the neighbouring samples
        rows = np.arange(n)[:, None]
        lo = np.clip(np.floor(positions), 0, L - 1).astype(np.intp)
        hi = np.minimum(lo + 1, L - 1)
        v_left, v_right = values[rows, lo], values[rows, hi]
        return v_left + (positions - lo)[:, :, None] * (v_right - v_left)
    index = np.arange(L)[None, :, None]
    prev = np.maximum.accumulate(np.where(finite, index, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(finite, index, L)[:, ::-1], axis=1)[:, ::-1]
    lo = np.clip(np.floor(positions), 0, L - 1).astype(np.intp)[:, :, None]
    hi = np.clip(np.ceil(positions), 0, L - 1).astype(np.intp)[:, :, None]
    left = np.take_along_axis(prev, np.broadcast_to(lo, (n, lo.shape[1], C)), axis=1)
    right = np.take_along_axis(nxt, np.broadcast_to(hi, (n, hi.shape[1], C)), axis=1)
    valid = (left >= 0) & (right < L)
    left_c, right_c = np.clip(left, 0, L - 1), np.clip(right, 0, L - 1)
    v_left = np.take_along_axis(values, left_c, axis=1)
    v_right = np.take_along_axis(values, right_c, axis=1)
    span = (right_c - left_c).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(span > 0, (positions[:, :, None] - left_c) / span, 0.0)
    return np.where(valid, v_left + weight * (v_right - v_left), np.nan)


def _full_samples(values: np.ndarray, ed: np.ndarray, es: np.ndarray, grid: np.ndarray, es_phase: float):
    """Closed-cycle samples from one period before ED to one after the next, and the query positions."""
    n, T, _ = values.shape
    P = T - 1
    values = values.copy()
    # frames 0 and T-1 are the same phase a beat apart: each stands in for the other when missing
    first, last = values[:, 0], values[:, P]
    values[:, 0] = np.where(np.isfinite(first), first, last)
    values[:, P] = np.where(np.isfinite(last), last, first)
    # offset c (0..P) after ED -> frame: ED itself at 0, else the walk ed+1, ..., T-1, 1, 2, ...
    offset = np.arange(-P, 2 * P + 1)
    closed = np.where(offset < 0, offset + P, np.where(offset > P, offset - P, offset))
    frame = np.where(closed[None, :] == 0, ed[:, None], (ed[:, None] + closed[None, :] - 1) % P + 1)
    samples = np.take_along_axis(values, frame[:, :, None], axis=1)
    s = ((es - ed) % P).astype(np.float64)[:, None]  # ES, in frame steps after ED
    g = grid[None, :]
    position = np.where(g <= es_phase, s * g / es_phase, s + (P - s) * (g - es_phase) / (1.0 - es_phase))
    return samples, position + P


def _half_samples(values: np.ndarray, ed: np.ndarray, es: np.ndarray, grid: np.ndarray):
    """The frames with those outside ED..ES blanked (they never bracket), and the query positions."""
    frame = np.arange(values.shape[1])[None, :]
    inside = (frame >= ed[:, None]) & (frame <= es[:, None])
    samples = np.where(inside[:, :, None], values, np.nan)
    return samples, ed[:, None] + grid[None, :] * (es - ed)[:, None]


def normalised_curves(frames: pd.DataFrame, sequences: pd.DataFrame, columns, *, n_points: int = 64,
                      es_phase="median") -> pd.DataFrame:
    """Each sequence's frame-level columns warped onto a common normalised cycle (ED/ES-anchored).

    Parameters
    ----------
    frames : DataFrame
        One row per frame: ``patient_id, view, frame`` (0-based) and ``columns``. A frame absent
        from the table counts as missing (NaN).
    sequences : DataFrame
        One row per (patient, view): ``patient_id, view, cycle`` (``"full"`` or ``"half"``),
        ``n_frames, ed, es`` (0-based frame indices; see the module docstring for full cycles
        starting anywhere in the cycle).
    columns : list of str
        Frame-level columns to resample (attributes, latent means ``mu_k``).
    n_points : int
        Phase points of the common cycle, ``linspace(0, 1, n_points)``.
    es_phase : ``"median"`` or float
        ES anchor of full cycles: the median systolic fraction of the full-cycle sequences, or a
        fixed phase in (0, 1); moved to the nearest grid point either way.

    Returns
    -------
    DataFrame
        One row per (sequence, phase point), in the order of ``sequences``: ``patient_id, view,
        cycle, phase_index, phase, es_phase`` (1 for half cycles), then ``columns``. Points not
        bracketed by finite frames are NaN.

    Raises
    ------
    ValueError
        A missing table column; a sequence with an unknown ``cycle``, a missing or out-of-range
        ``ed``/``es``, ED and ES at the same phase, ``es <= ed`` on a half cycle, or several rows
        for one (patient, view); frames of a sequence not in ``sequences``, out of
        ``[0, n_frames)`` or duplicated.
    """
    columns = list(columns)
    if int(n_points) < 3:
        raise ValueError(f"n_points must be >= 3 (ED, ES and the end of the cycle), got {n_points}")
    _require(frames, ["patient_id", "view", "frame", *columns], "frames")
    seq = _check_sequences(sequences)
    grid = np.linspace(0.0, 1.0, int(n_points))
    full_es = _grid_es_phase(es_phase, seq, grid)

    # every frame row -> (sequence, frame) cell of one (n_sequences, max_frames, columns) array
    keys = pd.MultiIndex.from_frame(seq[["patient_id", "view"]])
    row = keys.get_indexer(pd.MultiIndex.from_frame(frames[["patient_id", "view"]]))
    if (row < 0).any():
        orphans = frames.loc[row < 0, ["patient_id", "view"]].drop_duplicates().astype(str)
        raise ValueError(f"frames of {len(orphans)} (patient_id, view) pair(s) without a row in sequences: "
                         f"{orphans.agg('/'.join, axis=1).tolist()[:5]}; filter the frames to the sequences analysed")
    frame = pd.to_numeric(frames["frame"], errors="coerce").to_numpy()
    n_frames = seq["n_frames"].to_numpy()
    bad = ~np.isfinite(frame) | (frame < 0) | (frame >= n_frames[row]) | (frame != np.round(frame))
    if bad.any():
        example = frames.loc[bad, ["patient_id", "view", "frame"]].head(3).to_dict("records")
        raise ValueError(f"frames: {int(bad.sum())} 'frame' value(s) outside [0, n_frames) of their sequence "
                         f"(or not integers), e.g. {example}")
    frame = frame.astype(np.intp)
    cell = row.astype(np.int64) * int(n_frames.max()) + frame
    if pd.Index(cell).has_duplicates:
        dup = frames.loc[pd.Index(cell).duplicated(keep=False), ["patient_id", "view", "frame"]].head(3)
        raise ValueError(f"frames: several rows for one (patient_id, view, frame), e.g. {dup.to_dict('records')}")
    values = np.full((len(seq), int(n_frames.max()), len(columns)), np.nan)
    values[row, frame] = frames[columns].to_numpy(np.float64)

    out = np.full((len(seq), len(grid), len(columns)), np.nan)
    full = (seq["cycle"] == "full").to_numpy()
    ed, es = seq["ed"].to_numpy(), seq["es"].to_numpy()
    # one vectorised pass per (cycle, length) and chunk of sequences: no Python loop per sequence
    for (is_full, T), members in seq.groupby([full, n_frames], sort=False).groups.items():
        members = np.asarray(members)
        for start in range(0, len(members), _SEQUENCE_CHUNK):
            idx = members[start:start + _SEQUENCE_CHUNK]
            block = values[idx, :T]
            if is_full:
                samples, position = _full_samples(block, ed[idx], es[idx], grid, full_es)
            else:
                samples, position = _half_samples(block, ed[idx], es[idx], grid)
            out[idx] = _bracketed_interp(samples, position)

    n_seq, G = len(seq), len(grid)
    table = pd.DataFrame({
        "patient_id": np.repeat(seq["patient_id"].to_numpy(), G),
        "view": np.repeat(seq["view"].to_numpy(), G),
        "cycle": np.repeat(seq["cycle"].to_numpy(), G),
        "phase_index": np.tile(np.arange(G), n_seq),
        "phase": np.tile(grid, n_seq),
        "es_phase": np.repeat(np.where(full, full_es, 1.0), G),
    })
    return pd.concat([table, pd.DataFrame(out.reshape(n_seq * G, len(columns)), columns=columns)], axis=1)


# --------------------------------------------------------------------------------------------
# Bands and the permutation test (arrays)
# --------------------------------------------------------------------------------------------

def mean_band(values, alpha: float = 0.05):
    """Mean over patients and its pointwise ``1 - alpha`` t-based confidence band.

    Parameters
    ----------
    values : array_like, shape (n_patients, ...)
        Complete curves (no NaN).

    Returns
    -------
    mean, low, high : ndarray, shape (...)
        ``mean -/+ t_{n-1, 1-alpha/2} SD / sqrt(n)``; NaN bounds when ``n < 2``.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    mean = values.mean(axis=0) if n else np.full(values.shape[1:], np.nan)
    if n < 2:
        nan = np.full(values.shape[1:], np.nan)
        return mean, nan, nan.copy()
    half = stats.t.ppf(1.0 - alpha / 2.0, n - 1) * values.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def _orthonormal_basis(design: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the column space (rank-revealing: a covariate constant within a subset is harmless)."""
    u, s, _ = np.linalg.svd(design, full_matrices=False)
    return u[:, s > s.max() * max(design.shape) * np.finfo(np.float64).eps]


def permutation_max_t(curves, is_case, covariates=None, *, n_permutations: int = 999, seed=0,
                      alpha: float = 0.05) -> dict:
    """Covariate-adjusted pointwise group t with family-wise control by Freedman-Lane max-|t| permutation.

    Parameters
    ----------
    curves : array_like, shape (n_patients, n_points) or (n_patients, n_outcomes, n_points)
        Complete curves (no NaN). Family-wise control is over the points of each outcome.
    is_case : array_like of bool, shape (n_patients,)
    covariates : array_like, shape (n_patients, k), optional
        Covariate model columns (an intercept is added).
    n_permutations : int
        Random permutations of the patients (the observed labels are counted too); at least
        ``1 / alpha - 1`` so that a point can be significant.
    seed : int or numpy Generator
    alpha : float

    Returns
    -------
    dict
        ``difference, t, p_fwe, significant`` (shape (n_outcomes, n_points), or (n_points,) for
        2-D ``curves``), ``threshold`` (per outcome), ``maxima`` (n_permutations, n_outcomes),
        ``n_permutations``, ``df`` (residual degrees of freedom).
    """
    Y = np.asarray(curves, dtype=np.float64)
    squeeze = Y.ndim == 2
    if squeeze:
        Y = Y[:, None, :]
    if Y.ndim != 3:
        raise ValueError(f"curves must be (patients, points) or (patients, outcomes, points), got {Y.shape}")
    if not np.isfinite(Y).all():
        raise ValueError("curves contain NaN or infinite values: leave incomplete curves out first")
    n, K, G = Y.shape
    g = np.asarray(is_case, dtype=bool).astype(np.float64)
    if g.shape != (n,):
        raise ValueError(f"is_case has shape {g.shape}, expected ({n},)")
    N = int(n_permutations)
    k_crit = int(np.floor(alpha * (N + 1) + 1e-9))
    if k_crit < 1:
        raise ValueError(f"n_permutations = {N} cannot reach alpha = {alpha}: use at least "
                         f"{int(np.ceil(1 / alpha - 1))}")
    Z = np.ones((n, 1))
    if covariates is not None:
        Z = np.column_stack([Z, np.asarray(covariates, dtype=np.float64).reshape(n, -1)])
    U = _orthonormal_basis(Z)
    g_r = g - U @ (U.T @ g)  # the group indicator with the covariates (and intercept) removed
    gg = float(g_r @ g_r)
    df = n - U.shape[1] - 1
    if gg < 1e-10 * n or df < 1:
        raise ValueError(f"the group is not estimable: {int(g.sum())} case(s) among {n} patients, "
                         f"{U.shape[1]} covariate column(s) (group collinear with the covariates, or too few patients)")

    flat = Y.reshape(n, K * G)
    R = flat - U @ (U.T @ flat)  # residuals of the reduced model y ~ covariates (Freedman-Lane)
    ss = np.einsum("ij,ij->j", R, R)

    def t_of(num, proj_ss, ss):
        # full model y* ~ group + covariates with y* = fit + permuted residuals: ||residual||^2 =
        # ||R||^2 - ||U' R*||^2 - (g_r' R*)^2 / gg, the group coefficient num / gg
        rss = np.maximum(ss - proj_ss - num ** 2 / gg, 0.0)
        se = np.sqrt(rss / df / gg)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(se > 0, num / gg / np.where(se > 0, se, 1.0), 0.0)

    num_obs = g_r @ R
    t_obs = t_of(num_obs, 0.0, ss)  # U' R = 0 for the observed labels

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    order = rng.permuted(np.tile(np.arange(n), (N, 1)), axis=1)
    # row p of the label matrix is a permutation sigma: sum_j g_r[sigma(j)] R[j] is the group
    # projection of the residuals permuted by sigma^-1 (uniform as well); the covariate basis
    # rows move with the same sigma
    A = np.concatenate([g_r[order][:, None, :], np.transpose(U[order], (0, 2, 1))], axis=1)  # (N, 1 + r, n)
    A = A.reshape(N * (1 + U.shape[1]), n)
    maxima = np.empty((N, K))
    per_outcome = N * (1 + U.shape[1]) * G
    step = max(1, _PERMUTATION_BLOCK // per_outcome)
    for start in range(0, K, step):
        cols = slice(start * G, min(K, start + step) * G)
        B = (A @ R[:, cols]).reshape(N, 1 + U.shape[1], -1)
        t_perm = t_of(B[:, 0], np.einsum("pkm,pkm->pm", B[:, 1:], B[:, 1:]), ss[cols])
        maxima[:, start:start + step] = np.abs(t_perm).reshape(N, -1, G).max(axis=2)

    t_obs = t_obs.reshape(K, G)
    ranked = np.sort(maxima, axis=0)  # ascending, per outcome
    exceed = np.stack([N - np.searchsorted(ranked[:, k], np.abs(t_obs[k]), side="left") for k in range(K)])
    p_fwe = (1.0 + exceed) / (N + 1.0)
    threshold = ranked[N - k_crit]  # the k_crit-th largest maximum
    result = {
        "difference": (num_obs / gg).reshape(K, G), "t": t_obs, "p_fwe": p_fwe,
        "significant": np.abs(t_obs) > threshold[:, None], "threshold": threshold, "maxima": maxima,
        "n_permutations": N, "df": df,
    }
    if squeeze:
        for key in ("difference", "t", "p_fwe", "significant"):
            result[key] = result[key][0]
        result["threshold"] = float(threshold[0])
    return result


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

@dataclass
class CurveStatistics:
    """The tables of :func:`curve_statistics` (columns: module docstring)."""

    curves: pd.DataFrame
    tests: pd.DataFrame
    intervals: pd.DataFrame
    exclusions: pd.DataFrame


def _variable(family: str, model: str, outcome: str, view, cycle) -> str:
    return ".".join(str(p) for p in (family, model, outcome, view) if p != "") + f".{cycle}_curve"


def significant_intervals(tests: pd.DataFrame) -> pd.DataFrame:
    """The runs of consecutive significant phase points of ``curve_tests`` (:data:`INTERVAL_COLUMNS`).

    A run is cut where the sign of the difference changes; on a full cycle the runs touching
    phase 1 and phase 0 (the same ED) are merged into one interval through ED.
    """
    rows = []
    for key, curve in tests.groupby(_CURVE_ID, sort=False, dropna=False):
        curve = curve.sort_values("phase_index")
        sig = curve["significant"].to_numpy(dtype=bool)
        sign = np.sign(curve["difference"].to_numpy())
        runs, start = [], None
        for i in range(len(sig) + 1):
            if start is not None and (i == len(sig) or not sig[i] or sign[i] != sign[start]):
                runs.append([start, i - 1])
                start = None
            if i < len(sig) and sig[i] and start is None:
                start = i
        last = len(sig) - 1
        if (key[4] == "full" and len(runs) > 1 and runs[0][0] == 0 and runs[-1][1] == last
                and sign[0] == sign[last]):
            runs[0][0] = runs.pop()[0]
        index, phase = curve["phase_index"].to_numpy(), curve["phase"].to_numpy()
        t, p = np.abs(curve["t"].to_numpy()), curve["p_fwe"].to_numpy()
        for a, b in runs:
            members = np.r_[a:b + 1] if a <= b else np.r_[a:last + 1, 0:b + 1]
            rows.append(dict(zip(_CURVE_ID, key), index_start=int(index[a]), index_end=int(index[b]),
                             phase_start=phase[a], phase_end=phase[b], n_points=len(members),
                             direction=int(sign[a]), max_abs_t=float(t[members].max()),
                             min_p_fwe=float(p[members].min())))
    return pd.DataFrame(rows, columns=INTERVAL_COLUMNS)


def _curve_sets(curves: pd.DataFrame, family, model):
    """``family, model`` per row: the table's columns or the arguments, not both."""
    table = curves
    for name, value in (("family", family), ("model", model)):
        if name in table:
            if value is not None:
                raise ValueError(f"curves has a '{name}' column and {name}={value!r} was given: give one")
        else:
            if value is None and name == "family":
                raise ValueError("curves has no 'family' column: pass family= (e.g. 'attributes', 'latent')")
            table = table.assign(**{name: "" if value is None else str(value)})
    return table


def curve_statistics(curves: pd.DataFrame, patients: pd.DataFrame, *, control: str, case: str,
                     covariates=("age", "sex", "bsa"), seed, columns=None, family=None, model=None,
                     n_permutations: int = 999, alpha: float = 0.05, min_group_size: int = 2) -> CurveStatistics:
    """Group mean curves with 95 % bands, and the phases where the groups differ (family-wise).

    Parameters
    ----------
    curves : DataFrame
        The long table of :func:`normalised_curves` (``patient_id, view, cycle, phase_index,
        phase``, optionally ``es_phase``, ``family``, ``model``), with the value columns. Curves
        of several families or models may be stacked with ``family``/``model`` columns.
    patients : DataFrame
        The analysed patients: ``patient_id, group`` and the covariates. Curves of patients not
        in it are not used.
    control, case : str
        The compared groups (``population.groups``).
    covariates : list of str
        Adjustment covariates (:func:`echolatent.stats.design.covariate_matrix`); empty for none.
    seed : int
        Seeds the permutations (the same for every curve, so curves with the same patients share
        their label matrix).
    columns : list of str, optional
        Value columns to analyse; default every column of ``curves`` that is not a key.
    family, model : str, optional
        For a ``curves`` table without ``family``/``model`` columns (model defaults to empty).
    n_permutations, alpha : int, float
        Of the max-|t| test (:func:`permutation_max_t`).
    min_group_size : int
        Patients per group below which a curve gets NaN statistics (logged).

    Returns
    -------
    CurveStatistics
        ``curves``, ``tests``, ``intervals``, ``exclusions`` (columns: module docstring).

    Raises
    ------
    ValueError
        A group with no patient in ``patients`` (naming the ``group`` column), a covariate absent
        or constant, a duplicated patient, no curve of any analysed patient, an unknown ``cycle``,
        a curve with duplicated or inconsistent phase points.
    """
    _require(patients, ["patient_id", "group", *covariates], "patients")
    _require(curves, ["patient_id", "view", "cycle", "phase_index", "phase"], "curves")
    if patients["patient_id"].duplicated().any():
        raise ValueError(f"patients: duplicated patient_id "
                         f"{patients.loc[patients['patient_id'].duplicated(), 'patient_id'].tolist()[:5]}")
    try:
        resolve_groups(patients["group"], (control, case))
    except ValueError as err:
        raise ValueError(f"patients 'group' column: {err}") from None
    unknown = ~curves["cycle"].isin(CYCLES)
    if unknown.any():
        raise ValueError(f"curves: unknown 'cycle' {sorted(curves.loc[unknown, 'cycle'].astype(str).unique())} "
                         f"(expected one of {list(CYCLES)})")
    table = _curve_sets(curves, family, model)
    keys = set(CURVE_KEYS) | {"family", "model"}
    columns = [c for c in table.columns if c not in keys] if columns is None else list(columns)
    _require(table, columns, "curves")

    exclusions = []
    groups = patients["group"].astype(str)
    other = ~groups.isin([control, case])
    exclusions += [(pid, "", f"group {grp!r} not compared ({control} vs {case})")
                   for pid, grp in zip(patients.loc[other, "patient_id"], groups[other])]
    kept = patients[~other]
    missing_cov = covariate_exclusions(kept, covariates)
    exclusions += [(pid, var, "missing covariate: left out of the curve statistics")
                   for pid, var in zip(missing_cov["patient_id"], missing_cov["variable"])]
    analysed = kept[~kept["patient_id"].isin(missing_cov["patient_id"])].reset_index(drop=True)
    for name in (control, case):  # every patient of a group lost to missing covariates
        if not (analysed["group"].astype(str) == name).any():
            raise ValueError(f"patients 'group' column: no {name!r} patient with every covariate {list(covariates)}")
    Z_all = covariate_matrix(analysed, covariates).to_numpy() if covariates else np.zeros((len(analysed), 0))
    ids = analysed["patient_id"].to_numpy()
    is_case_all = (analysed["group"].astype(str) == case).to_numpy()

    curve_rows, test_rows = [], []
    table = table[table["patient_id"].isin(ids)]
    if table.empty:  # no (view, cycle) to report the patients under: an error, not an empty result
        raise ValueError(f"curves: no curve of any of the {len(ids)} analysed patients (patient_id values of "
                         f"curves and patients do not match, or no sequence was resampled)")
    for (fam, mod, view, cycle), block in table.groupby(["family", "model", "view", "cycle"], sort=True):
        phases = block.groupby("phase_index")["phase"]
        if (phases.max() - phases.min()).max() > 1e-9:
            raise ValueError(f"curves {fam}/{mod}/{view}/{cycle}: phase points differ between patients "
                             f"(curves of different n_points or anchors)")
        grid = phases.first().sort_index()
        G = len(grid)
        if not np.array_equal(grid.index.to_numpy(), np.arange(G)):
            raise ValueError(f"curves {fam}/{mod}/{view}/{cycle}: phase_index must run 0..{G - 1}")
        es_col = block["es_phase"].dropna() if "es_phase" in block else pd.Series(dtype=float)
        es_value = float(es_col.iloc[0]) if len(es_col) else np.nan
        if block.duplicated(["patient_id", "phase_index"]).any():
            raise ValueError(f"curves {fam}/{mod}/{view}/{cycle}: several rows per (patient_id, phase_index)")
        # (patient, point, outcome) over the analysed patients; a patient without rows stays NaN
        position = pd.Index(ids).get_indexer(block["patient_id"])
        Y = np.full((len(ids), G, len(columns)), np.nan)
        Y[position, block["phase_index"].to_numpy()] = block[columns].to_numpy(np.float64)
        present = np.zeros(len(ids), bool)
        present[position] = True
        counts = np.bincount(position, minlength=len(ids))
        incomplete_rows = present & (counts < G)
        prefix = ".".join(p for p in (fam, mod) if p)
        exclusions += [(pid, f"{prefix}.*.{view}.{cycle}_curve",
                        f"no {view} {cycle}-cycle sequence: left out of these curves") for pid in ids[~present]]
        finite = np.isfinite(Y)
        # curves complete per outcome; outcomes with the same patients share one permutation run
        complete = finite.all(axis=1) & present[:, None]
        for k, name in enumerate(columns):
            for i in np.flatnonzero(present & ~complete[:, k]):
                n_nan = int((~finite[i, :, k]).sum())
                reason = ("NaN-only curve (no finite frame)" if n_nan == G else
                          f"incomplete curve ({n_nan} of {G} phase points NaN: missing frames not bracketed"
                          f"{' or missing phase rows' if incomplete_rows[i] else ''})")
                exclusions.append((ids[i], _variable(fam, mod, name, view, cycle), reason + ": left out of this curve"))
        patterns = {}
        for k in range(len(columns)):
            patterns.setdefault(complete[:, k].tobytes(), []).append(k)
        for outcome_idx in patterns.values():
            use = complete[:, outcome_idx[0]]
            case_mask = is_case_all[use]
            n_case, n_control = int(case_mask.sum()), int((~case_mask).sum())
            sub = Y[use][:, :, outcome_idx]  # (n, G, k)
            for grp, mask in ((control, ~case_mask), (case, case_mask)):
                mean, low, high = mean_band(sub[mask], alpha)
                for j, k in enumerate(outcome_idx):
                    curve_rows.append(pd.DataFrame({
                        "family": fam, "model": mod, "outcome": columns[k], "view": view, "cycle": cycle,
                        "phase_index": np.arange(G), "phase": grid.to_numpy(), "group": grp, "n": int(mask.sum()),
                        "mean": mean[:, j], "ci_low": low[:, j], "ci_high": high[:, j], "es_phase": es_value}))
            if min(n_case, n_control) < max(int(min_group_size), 1):
                logger.warning(f"curves {fam}/{mod}/{view}/{cycle} {[columns[k] for k in outcome_idx]}: "
                               f"{n_control} {control} and {n_case} {case} patient(s) with a complete curve, "
                               f"below {min_group_size}: no test")
                result = None
            else:
                try:
                    result = permutation_max_t(np.transpose(sub, (0, 2, 1)), case_mask,
                                               Z_all[use] if covariates else None,
                                               n_permutations=n_permutations, seed=seed, alpha=alpha)
                except ValueError as err:
                    if "not estimable" not in str(err):
                        raise
                    logger.warning(f"curves {fam}/{mod}/{view}/{cycle}: no test: {err}")
                    result = None
            for j, k in enumerate(outcome_idx):
                part = {"family": fam, "model": mod, "outcome": columns[k], "view": view, "cycle": cycle,
                        "phase_index": np.arange(G), "phase": grid.to_numpy(), "n_control": n_control,
                        "n_case": n_case, "n_permutations": int(n_permutations)}
                if result is None:
                    part.update(difference=np.nan, t=np.nan, p_fwe=np.nan, significant=False, threshold=np.nan)
                else:
                    part.update(difference=result["difference"][j], t=result["t"][j], p_fwe=result["p_fwe"][j],
                                significant=result["significant"][j], threshold=result["threshold"][j])
                test_rows.append(pd.DataFrame(part))

    def concat(parts, names):
        return (pd.concat(parts, ignore_index=True)[names] if parts else pd.DataFrame(columns=names))

    curves_out = concat(curve_rows, CURVE_COLUMNS)
    tests_out = concat(test_rows, TEST_COLUMNS)
    if len(tests_out):
        order = {"family": 0, "model": 1, "outcome": 2, "view": 3, "cycle": 4, "phase_index": 5}
        tests_out = tests_out.sort_values(list(order), kind="stable", ignore_index=True)
        curves_out = curves_out.sort_values([*order, "group"], kind="stable", ignore_index=True)
    return CurveStatistics(curves=curves_out, tests=tests_out, intervals=significant_intervals(tests_out),
                           exclusions=pd.DataFrame(exclusions, columns=EXCLUSION_COLUMNS))
