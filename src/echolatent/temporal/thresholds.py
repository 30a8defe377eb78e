"""Temporal-consistency thresholds: the published ones, and re-deriving them on a cohort.

A threshold is only meaningful in the units of the curves it is applied to: the attribute
(or latent dimension), the normalisation bounds, the grid and the frame rate. The published
values (:data:`~echolatent.temporal.metric.TEMPORAL_THRESHOLDS`) hold for CAMUS
native-pixel attributes normalised by the CAMUS bounds
(:data:`~echolatent.temporal.metric.CAMUS_BOUNDS`); on any other data re-derive both the
bounds and the thresholds from reference sequences of the cohort itself, as the reference
does (:func:`derive_thresholds_table`):

* bounds ``lo, hi`` = min and max of each attribute over the reference frames;
* ``tau`` = max over reference sequences of ``max_t |d_t|`` (every reference sequence is
  then consistent by construction).

Robust rule (truth-free references)
-----------------------------------
The max rule needs clean references: one segmentation failure among them becomes the
threshold. A user without annotations derives thresholds from the ingested masks themselves
(``reference: input``), where a few percent of the frames carry defects; the max rule then
sets thresholds as large as the defects and flags almost nothing (5.6 % of held-out spikes on
the 200-patient recorded run, ``benchmarks/README.md``). ``rule="robust"`` estimates the
spread of the clean deviations instead: ``tau = k * 1.4826 * median_t |d_t|`` over the
reference frames (interior frames for ``tau``, end frames for ``tau_end``). The median
ignores defective frames as long as they are a minority, and ``1.4826 * median |d|`` is the
standard deviation of Gaussian deviations, so ``k`` says how many standard deviations a
frame may deviate (the largest of ``N`` Gaussian values is about ``sqrt(2 ln N)`` standard
deviations: 4 for ``N`` = 3,000). The reference sequences are then not all consistent by
construction: a defect among them is flagged, as it should be.

Reference sequences are the clean truth masks of a synthetic cohort, and the ingested
masks of the training split otherwise (the manual segmentations of CAMUS-like data).

Memory (issue 18)
-----------------
:func:`derive_thresholds` reads the reference curves pass by pass (a cohort's shards, read
again at each pass) and keeps per attribute a few numbers, per sequence its peaks: the bounds
in a first pass, then the peaks, the stencils' moments and, for the robust rule, exact medians
(:mod:`echolatent.temporal.streaming`), then the stencils' mixed maxima or the medians' next
digits. The bounds, ``tau``, ``tau_end`` and the robust rule's values equal those of the
whole reference held at once, bit for bit; the mean and spread of the per-sequence maxima and
the max rule's mixing (and the stencil thresholds it scales) are sums whose order follows the
shards, equal up to rounding (1e-15 relative on the 1,000-patient cohort, detection table
identical). :func:`derive_thresholds_table` is the same derivation on a table in memory.

Units (issue 12)
----------------
Derived thresholds are in **physical units** by default (:data:`IMAGE_UNITS`,
:func:`image_attribute_names`): the curves are the physical columns of the attribute tables
(:data:`~echolatent.shape.attributes.PHYSICAL_ATTRIBUTES`: ``lv_area_mm2``, ``lv_base_width_mm``,
``lv_length_mm``, ``lv_orientation_deg``, ``myo_area_mm2``, ``epi_center_x_mm``,
``epi_center_y_mm``) and the table's ``name`` is that column. CAMUS and sheet cohorts have a
pixel spacing that differs from patient to patient; in pixels the same physical change of
the heart is a larger deviation on a finer grid, so a pixel threshold flags fine-grid
patients more readily than coarse-grid ones. In mm the flag of a frame does not depend on
its grid (up to the rasterisation error).

The bounds ``lo, hi`` stay the min and max over the reference frames (now in mm): with
derived thresholds they only fix the unit of ``d_t`` and ``tau`` (``tau`` is itself a
maximum of normalised deviations, so ``|d_t| > tau`` is ``|Δ_t| > max_ref |Δ|`` in mm
whatever the bounds), and the reference's min-max convention keeps the latent transfer
(``latent_thresholds: image``) meaningful. Fixed physiological ranges would add nothing to
the detection and have no natural value for the epicardial centre (a position in the image).

``thresholds: published`` keeps the **pixel convention**: the TMI 2022 values are
normalised by CAMUS native-pixel bounds (:data:`~echolatent.temporal.metric.CAMUS_BOUNDS`)
and their rows name the pixel columns, so they reproduce the paper on CAMUS native masks.
They are not converted to mm: the CAMUS spacing is not one value (it is read per file and
the circulating 0.154 x 0.308 mm is unverified), and under anisotropy neither the lengths
(direction dependent) nor the orientation (an angle of a stretched shape) convert by one
factor, so a converted table would be neither the published one nor a derived one. On any
other grid, derive the thresholds.

Table format (TSV, one row per attribute or latent dimension)
-------------------------------------------------------------
``space``        ``image`` (shape attributes) or ``latent`` (latent dimensions)
``name``         attribute column, with its unit suffix (``lv_area_mm2``; pixel columns have
                 none); for a latent dimension: the attribute it is tied to
``dim``          latent dimension (empty in image space)
``lo``, ``hi``   normalisation bounds
``tau``          threshold in normalised units
``n_sequences``  number of reference sequences
``seq_max_min``, ``seq_max_mean``, ``seq_max_std``  statistics of the per-sequence maxima
``reference``    where the values come from (e.g. ``published:CAMUS``, ``truth``,
                 ``input:train``, ``latent:truth``)
``tau_end``      threshold of the first and last frames (:mod:`echolatent.temporal.metric`)
``tau_single``, ``tau_single_end``, ``tau_pair``, ``tau_pair_end``, ``tau_triple``, ``tau_triple_end``
                 thresholds of the spike detector's stencils, interior and end windows
                 (:mod:`echolatent.temporal.detection`; the three-frame stencil for full cycles
                 only); empty in the published table, which serves the TMI 2022 deviation only
``mix_single``, ``mix_pair``, ``mix_triple``
                 the spike detector's attribute mixing (max rule, full cycles; text, row ``k``
                 holds attribute ``k``'s weights in the row order of the table: keep the rows
                 as derived)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from echolatent.io.atomic import atomic_path
from echolatent.shape.attributes import PHYSICAL_ATTRIBUTES, TEMPORAL_ATTRIBUTES, temporal_attribute
from echolatent.temporal.detection import STENCIL_COLUMNS, StencilReference
from echolatent.temporal.metric import CAMUS_BOUNDS, TEMPORAL_THRESHOLDS, consistency_deviation, deviation_peak
from echolatent.temporal.streaming import ExactMedian, run_passes

__all__ = [
    "RULES",
    "THRESHOLD_COLUMNS",
    "IMAGE_UNITS",
    "image_attribute_names",
    "by_attribute",
    "published_thresholds",
    "sequence_curves",
    "derive_thresholds_table",
    "derive_thresholds",
    "read_thresholds",
    "write_thresholds",
    "threshold_arrays",
]

THRESHOLD_COLUMNS = ["space", "name", "dim", "lo", "hi", "tau", "n_sequences", "seq_max_min", "seq_max_mean",
                     "seq_max_std", "reference", "tau_end", *STENCIL_COLUMNS]
SEQUENCE_KEY = ["patient_id", "view"]
#: How thresholds are derived from the reference sequences (module docstring).
RULES = ("max", "robust")
#: Gaussian standard deviation = this factor x median absolute value (of centred values).
MAD_TO_SD = 1.4826
#: Units of the derived image-space thresholds: physical (mm, mm^2, degrees; default) or pixels.
IMAGE_UNITS = ("physical", "pixels")


def image_attribute_names(units: str = "physical") -> list[str]:
    """The attribute columns the image-space metric measures in ``units`` (TMI 2022 order)."""
    if units == "physical":
        return list(PHYSICAL_ATTRIBUTES)
    if units == "pixels":
        return list(TEMPORAL_ATTRIBUTES)
    raise ValueError(f"image-space units must be one of {IMAGE_UNITS}, got {units!r}")


def by_attribute(table: pd.DataFrame) -> pd.DataFrame:
    """Image-space rows indexed by the temporal attribute they measure (``lv_area_mm2`` -> ``lv_area``).

    Rows naming no temporal attribute are dropped; two rows for one attribute are an error.
    """
    attribute = table["name"].map(temporal_attribute)
    out = table[attribute.notna()].set_axis(attribute[attribute.notna()].tolist(), axis=0)
    if out.index.has_duplicates:
        raise ValueError(f"more than one thresholds row for {sorted(set(out.index[out.index.duplicated()]))}")
    return out


def published_thresholds() -> pd.DataFrame:
    """The published thresholds with the CAMUS bounds (image space, CAMUS native pixels).

    The rows name the pixel columns (:data:`~echolatent.shape.attributes.TEMPORAL_ATTRIBUTES`): the
    published values keep the pixel convention (see the module docstring).
    """
    rows = [{"space": "image", "name": name, "dim": pd.NA, "lo": CAMUS_BOUNDS[name][0], "hi": CAMUS_BOUNDS[name][1],
             "tau": TEMPORAL_THRESHOLDS[name], "n_sequences": pd.NA, "seq_max_min": np.nan, "seq_max_mean": np.nan,
             "seq_max_std": np.nan, "reference": "published:CAMUS"} for name in TEMPORAL_ATTRIBUTES]
    return _typed(pd.DataFrame(rows, columns=THRESHOLD_COLUMNS))


def sequence_curves(table: pd.DataFrame, columns) -> tuple[list[tuple[str, str]], list[np.ndarray]]:
    """Split a per-frame table (``patient_id, view, frame`` + columns) into per-sequence curves.

    Returns the sorted ``(patient_id, view)`` keys and the (T_i, K) arrays in frame order.
    """
    missing = [c for c in [*SEQUENCE_KEY, "frame", *columns] if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}")
    ordered = table.sort_values([*SEQUENCE_KEY, "frame"], kind="stable")
    keys, curves = [], []
    for key, group in ordered.groupby(SEQUENCE_KEY, sort=True):
        keys.append((str(key[0]), str(key[1])))
        curves.append(group[list(columns)].to_numpy(dtype=np.float64))
    return keys, curves


def derive_thresholds_table(table: pd.DataFrame, columns, *, names=None, space: str = "image", dims=None,
                            bounds=None, reference: str = "", exclude: str | None = None,
                            cycle=None, rule: str = "max", robust_k: float = 4.0) -> pd.DataFrame:
    """Bounds and thresholds from the reference sequences of a per-frame table.

    Parameters
    ----------
    table : DataFrame
        One row per reference frame: ``patient_id, view, frame`` and the curve columns.
    columns : sequence of str
        Curve columns (attributes, or ``mu_k`` latent columns).
    names : sequence of str, optional
        Name of each curve in the output (default: the column names).
    space : {"image", "latent"}
    dims : sequence of int, optional
        Latent dimension of each curve (latent space).
    bounds : (lo, hi), optional
        Normalisation bounds to use (e.g. the latent min/max of training); default: min and
        max over the reference frames.
    reference : str
        Recorded in the ``reference`` column.
    exclude : str, optional
        Boolean column of frames that are not reference material (e.g. frames with an
        injected defect): such a frame is left out of the bounds, and its deviation and its
        two neighbours' (which involve it) out of the maxima; the rest of its sequence counts.
    cycle : {"full", "half", None}
        The cohort's cycle, the end-frame rule of the metric (:mod:`echolatent.temporal.metric`).
        With ``"full"`` or ``"half"``, ``tau`` is the largest deviation of the interior frames
        and ``tau_end`` that of the first and last frames; with None (the reference, ``d = 0``
        at the ends) ``tau_end`` is NaN. Thresholds are only valid with the rule they were
        derived with.
    rule : {"max", "robust"}
        ``max``: the largest deviation of the reference (the published rule, for clean
        references); ``robust``: ``robust_k`` robust standard deviations of the reference
        deviations (for references that may hold defects; module docstring). The thresholds
        of the spike detector's stencils (``tau_{single,pair,triple}[_end]``) and its mixing
        (``mix_*``) come from the same references by the same rule
        (:func:`~echolatent.temporal.detection.stencil_thresholds`).
    robust_k : float
        Standard deviations of the robust rule.
    """
    columns = list(columns)
    if len(names if names is not None else columns) != len(columns):
        raise ValueError("need one name per column")
    _, curves = sequence_curves(table, columns)
    if exclude is not None:
        # A flagged frame becomes NaN: its deviation and its neighbours' are then NaN, which
        # the maxima ignore, and it drops out of the bounds.
        _, flags = sequence_curves(table, [exclude])
        curves = [np.where(flag.astype(bool), np.nan, curve) for curve, flag in zip(curves, flags)]
    return derive_thresholds(lambda: [curves], columns if names is None else names, space=space, dims=dims,
                             bounds=bounds, reference=reference, cycle=cycle, rule=rule, robust_k=robust_k)


def derive_thresholds(read_curves, names, *, space: str = "image", dims=None, bounds=None, reference: str = "",
                      cycle=None, rule: str = "max", robust_k: float = 4.0) -> pd.DataFrame:
    """Bounds and thresholds from reference curves read pass by pass (:func:`derive_thresholds_table`).

    ``read_curves()`` returns, at every call, a fresh iterable of batches of reference curves
    ((T_i, K) arrays in the order of ``names``, raw units, NaN for frames left out): a cohort's
    shards are read once per pass (:mod:`echolatent.temporal.streaming`; three passes for the
    max rule; for the robust rule one more per 12 bits its medians need, three or four at
    10,000 patients) rather than held, so the memory does not grow with the cohort. The other
    parameters are those of :func:`derive_thresholds_table`; the values equal the in-memory
    derivation's, those of the spike detector's mixing up to rounding (moments merged shard by
    shard).
    """
    if rule not in RULES:
        raise ValueError(f"threshold rule must be one of {RULES}, got {rule!r}")
    if not robust_k > 0:
        raise ValueError(f"robust_k must be > 0, got {robust_k!r}")
    names = list(names)
    if bounds is None:
        extent = _Bounds(len(names))
        run_passes(read_curves, [extent])
        if not extent.n_sequences:
            raise ValueError("no reference sequences to derive thresholds from")
        lo, hi = extent.lo, extent.hi
    else:
        lo, hi = (np.asarray(b, dtype=np.float64).reshape(len(names)) for b in bounds)
    if not np.all(np.isfinite(lo) & np.isfinite(hi) & (hi > lo)):
        bad = [n for n, a, b in zip(names, lo, hi) if not (np.isfinite(a) and np.isfinite(b) and b > a)]
        raise ValueError(f"degenerate reference range for {bad}: the reference curves do not vary")
    deviations = _Deviations(lo, hi, cycle=cycle, rule=rule)
    stencils = StencilReference(lo, hi, cycle=cycle, rule=rule, robust_k=robust_k)
    run_passes(read_curves, [deviations, stencils])
    if not deviations.n_sequences:
        raise ValueError("no reference sequences to derive thresholds from")
    maxima = deviations.maxima("all")
    with np.errstate(all="ignore"):
        tau, tau_end = np.nanmax(maxima, axis=0), np.full(len(names), np.nan)
        if rule == "robust":
            tau = robust_k * (MAD_TO_SD * deviations.medians["interior"].median)
            if cycle is not None:
                tau_end = robust_k * (MAD_TO_SD * deviations.medians["ends"].median)
        elif cycle is not None:  # the ends have their own threshold (echolatent.temporal.metric)
            tau = np.nanmax(deviations.maxima("interior"), axis=0)
            tau_end = np.nanmax(deviations.maxima("ends"), axis=0)
        rows = {
            "space": space, "name": names,
            "dim": pd.array(list(dims) if dims is not None else [pd.NA] * len(names), dtype="Int64"),
            "lo": lo, "hi": hi, "tau": tau, "tau_end": tau_end, "n_sequences": deviations.n_sequences,
            "seq_max_min": np.nanmin(maxima, axis=0), "seq_max_mean": np.nanmean(maxima, axis=0),
            "seq_max_std": np.nanstd(maxima, axis=0), "reference": reference,
            **stencils.result(),
        }
    return _typed(pd.DataFrame(rows, columns=THRESHOLD_COLUMNS))


class _Bounds:
    """Min and max of every attribute over the reference frames (NaN ignored), one pass."""

    def __init__(self, n_columns: int):
        self.lo, self.hi = np.full(n_columns, np.inf), np.full(n_columns, -np.inf)
        self.n_sequences = 0

    def add(self, batch) -> None:
        for curve in batch:
            self.n_sequences += 1
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)       # an all-NaN column
                self.lo = np.fmin(self.lo, np.nanmin(curve, axis=0) if len(curve) else self.lo)
                self.hi = np.fmax(self.hi, np.nanmax(curve, axis=0) if len(curve) else self.hi)

    def end_pass(self) -> bool:
        return True


class _Deviations:
    """Per-sequence maxima of ``|d_t|`` (all, interior, end frames) and, for the robust rule, the
    exact medians of ``|d_t|`` (interior, end frames), read pass by pass."""

    def __init__(self, lo, hi, *, cycle=None, rule: str = "max"):
        self.lo, self.hi, self.cycle = lo, hi, cycle
        self.peaks = {frames: [] for frames in ("all", "interior", "ends")}
        self.n_sequences, self.first = 0, True
        self.medians = {}
        if rule == "robust":
            self.medians["interior"] = ExactMedian(len(lo))
            if cycle is not None:
                self.medians["ends"] = ExactMedian(len(lo))

    def add(self, batch) -> None:
        parts = {frames: [] for frames in self.medians}
        peaks = {frames: [] for frames in self.peaks}
        for curve in batch:
            d = np.abs(consistency_deviation(curve, self.lo, self.hi, cycle=self.cycle))
            if self.first:
                # the peak of each sequence (K numbers per sequence, kept for the statistics
                # of the maxima)
                for frames in peaks:
                    peaks[frames].append(deviation_peak(d, frames))
            for frames in parts:
                parts[frames].append(d[1:-1] if frames == "interior" else d[[0, -1]] if len(d) else d)
        if self.first and batch:
            self.n_sequences += len(batch)
            for frames, values in peaks.items():       # one array per batch, not one per sequence
                self.peaks[frames].append(np.array(values, dtype=np.float64).reshape(len(values), -1))
        for frames, values in parts.items():
            if values and not self.medians[frames].done.all():
                self.medians[frames].add(np.concatenate(values))

    def maxima(self, frames: str) -> np.ndarray:
        """(sequences, K) peaks, in the order the sequences were read."""
        return np.concatenate(self.peaks[frames]) if self.peaks[frames] else np.empty((0, len(self.lo)))

    def end_pass(self) -> bool:
        self.first = False
        return all([median.end_pass() for median in self.medians.values() if not median.done.all()])


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    table["dim"] = pd.array(table["dim"], dtype="Int64")
    table["n_sequences"] = pd.array(table["n_sequences"], dtype="Int64")
    return table


def write_thresholds(table: pd.DataFrame, path) -> None:
    """Write a thresholds table (TSV) under a temporary name, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        # shortest representation that reads back exactly (a rounded tau would flag its own references)
        table[THRESHOLD_COLUMNS].to_csv(tmp, sep="\t", index=False, float_format=lambda v: repr(float(v)))


def read_thresholds(path, space: str | None = None) -> pd.DataFrame:
    """Read a thresholds table, optionally keeping one space; checks the columns and values."""
    table = pd.read_csv(path, sep="\t", dtype={"name": str, "space": str, "reference": str})
    missing = [c for c in ("space", "name", "lo", "hi", "tau") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: thresholds table lacks column(s) {missing}")
    for column in THRESHOLD_COLUMNS:
        if column not in table.columns:
            table[column] = np.nan
    table = _typed(table)
    if space is not None:
        table = table[table["space"] == space].reset_index(drop=True)
        if table.empty:
            raise ValueError(f"{path}: no {space}-space thresholds")
    bad = table[~((table["hi"] > table["lo"]) & (table["tau"] > 0))]
    if len(bad):
        raise ValueError(f"{path}: need hi > lo and tau > 0, not so for {bad['name'].tolist()}")
    return table[THRESHOLD_COLUMNS]


def threshold_arrays(table: pd.DataFrame, names=None) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """``(names, lo, hi, tau)`` of a thresholds table, in the order of ``names`` when given."""
    if names is not None:
        indexed = table.set_index("name")
        missing = [n for n in names if n not in indexed.index]
        if missing:
            raise ValueError(f"no thresholds for {missing}")
        table = indexed.loc[list(names)].reset_index()
    return (table["name"].tolist(), table["lo"].to_numpy(float), table["hi"].to_numpy(float),
            table["tau"].to_numpy(float))
