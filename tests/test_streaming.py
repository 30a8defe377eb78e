"""Statistics of a reference read pass by pass (echolatent.temporal.streaming), the thresholds
derived from shards without holding them, and the compact frames table (issue 18, memory)."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from echolatent.io.tables import write_table
from echolatent.temporal.evaluation import defects_of, injected_defects, read_frames_table
from echolatent.temporal.streaming import ExactMedian, RunningMoments, run_passes
from echolatent.temporal.thresholds import derive_thresholds, derive_thresholds_table

# --- ExactMedian: equal to numpy's nanmedian of |x|, bit for bit ---------------------------------


def _median_by_passes(x: np.ndarray, keep_limit: int, n_batches: int) -> tuple[np.ndarray, int]:
    median = ExactMedian(x.shape[1], keep_limit=keep_limit)
    batches = np.array_split(x, n_batches)
    passes = 0
    while True:
        passes += 1
        for batch in batches:
            median.add(batch)
        if median.end_pass():
            return median.median, passes


def _nanmedian_abs(x: np.ndarray) -> np.ndarray:
    # the truth: sort the finite |x| of each column, the middle value or the mean of the two middle ones
    out = []
    for column in np.abs(x.T):
        values = np.sort(column[~np.isnan(column)])
        n = len(values)
        out.append(np.nan if n == 0 else values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2)
    return np.array(out)


@pytest.mark.parametrize("keep_limit", [0, 1, 7, 1 << 16])
def test_exact_median_equals_the_sorted_middle(keep_limit):
    rng = np.random.default_rng(7)
    for trial in range(40):
        n = int(rng.integers(1, 2500))
        x = rng.normal(size=(n, 3)) * 10.0 ** rng.uniform(-6, 4)
        if trial % 4 == 1:
            x = np.round(x, 1)                      # many ties, and exact zeros
        if trial % 4 == 2:
            x[rng.random(x.shape) < 0.5] = 0.0
        x[rng.random(x.shape) < 0.1] = np.nan
        if trial % 5 == 0:
            x[:, 2] = np.nan                         # a column without values: NaN
        got, passes = _median_by_passes(x, keep_limit, int(rng.integers(1, 6)))
        np.testing.assert_array_equal(got, _nanmedian_abs(x))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)          # the all-NaN column
            np.testing.assert_array_equal(got, np.nanmedian(np.abs(x), axis=0))
        assert passes <= 7                           # 64 bits, 12 a pass, after the counting pass
        if keep_limit == 1 << 16:
            assert passes == 1                       # a small reference: kept and sorted at once


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=0, max_size=60),
       st.integers(0, 3), st.integers(1, 4))
def test_exact_median_on_any_values(values, keep_limit, n_batches):
    x = np.array(values, dtype=np.float64).reshape(-1, 1)
    got, _ = _median_by_passes(x, keep_limit, n_batches)
    np.testing.assert_array_equal(got, _nanmedian_abs(x))


def test_exact_median_keeps_only_a_bin_of_a_large_column():
    # a column of 200,000 values with a keep limit of 1,000: after the counting pass only the
    # values of the middle rank's bin are held, never the column
    rng = np.random.default_rng(3)
    x = rng.lognormal(size=(200_000, 1))
    median = ExactMedian(1, keep_limit=1000)
    for batch in np.array_split(x, 20):
        median.add(batch)
    assert not median.end_pass()
    held = [sum(len(a) for a in g["kept"]) for g in median.groups[0].values() if g["kept"] is not None]
    assert sum(held) == 0                            # counting only, not yet keeping
    for batch in np.array_split(x, 20):
        median.add(batch)
    finished = median.end_pass()
    held = [sum(len(a) for a in g["kept"]) for g in median.groups[0].values() if g["kept"] is not None]
    assert finished or sum(held) <= 1000
    while not finished:
        for batch in np.array_split(x, 20):
            median.add(batch)
        finished = median.end_pass()
    assert median.median[0] == np.median(x)


# --- RunningMoments: the covariance of batches merged pairwise -------------------------------------


def test_running_moments_match_numpy_on_offset_data():
    # a large offset: the naive sum of squares would lose the spread to cancellation
    rng = np.random.default_rng(11)
    x = 1e6 + rng.normal(size=(5000, 4)) @ rng.normal(size=(4, 4))
    moments = RunningMoments(4)
    for batch in np.array_split(x, 13):
        moments.add(batch)
    moments.add(np.empty((0, 4)))
    assert moments.n == 5000
    np.testing.assert_allclose(moments.covariance(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(moments.std(), x.std(axis=0), rtol=1e-10)


# --- thresholds from batches: the values of the whole reference at once ----------------------------


def _reference_curves(n_sequences=60, n_frames=20, seed=5):
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / n_frames
    curves = []
    for _ in range(n_sequences):
        base = np.stack([np.cos(2 * np.pi * t) * rng.uniform(5, 9), np.sin(2 * np.pi * t) * rng.uniform(1, 3),
                         0.3 * np.cos(4 * np.pi * t)], axis=1)
        curve = base + 0.05 * rng.normal(size=base.shape)
        if rng.random() < 0.2:
            curve[rng.integers(n_frames)] += rng.normal(size=3)     # a spike
        if rng.random() < 0.1:
            curve[rng.integers(n_frames)] = np.nan                   # a frame left out
        curves.append(curve)
    return curves


@pytest.mark.parametrize("rule", ["max", "robust"])
@pytest.mark.parametrize("cycle", ["full", "half", None])
def test_thresholds_from_batches_equal_those_of_the_whole_reference(rule, cycle):
    curves = _reference_curves()
    names = ["a", "b", "c"]
    whole = derive_thresholds(lambda: [curves], names, cycle=cycle, rule=rule)
    batches = [curves[:7], curves[7:8], [], curves[8:40], curves[40:]]
    reads = []

    def read():
        reads.append(1)
        return iter(batches)

    batched = derive_thresholds(read, names, cycle=cycle, rule=rule)
    assert len(reads) >= 2                                    # read again pass by pass
    # bounds, thresholds of the deviation and (robust) of the stencils: the same numbers; the
    # mean and spread of the maxima and the mixing (max rule) are sums: equal up to rounding
    exact = ["lo", "hi", "tau", "tau_end", "seq_max_min", "n_sequences"]
    if rule == "robust":
        exact += [c for c in whole.columns if c.startswith("tau_")]
    pd.testing.assert_frame_equal(batched[exact], whole[exact], check_exact=True)
    close = [c for c in whole.columns if c.startswith("tau_") and c not in exact] + ["seq_max_mean", "seq_max_std"]
    pd.testing.assert_frame_equal(batched[close], whole[close], check_exact=False, rtol=1e-12)
    for column in [c for c in whole.columns if c.startswith("mix_")]:
        a = np.array([list(map(float, str(v).split())) for v in whole[column]]) if whole[column].notna().all() else None
        b = np.array([list(map(float, str(v).split())) for v in batched[column]]) if batched[column].notna().all() else None
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


def test_thresholds_of_a_table_are_the_reference_maxima():
    # the max rule without ends (cycle None): tau is the largest |d_t| of the reference, here by hand
    curves = _reference_curves(n_sequences=12)
    rows = [pd.DataFrame({"patient_id": f"p{i:02d}", "view": "4CH", "frame": np.arange(len(c)),
                          "a": c[:, 0], "b": c[:, 1], "c": c[:, 2]}) for i, c in enumerate(curves)]
    table = derive_thresholds_table(pd.concat(rows), ["a", "b", "c"])
    values = np.concatenate(curves)
    lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    largest = np.full(3, -np.inf)
    for c in curves:
        x = (c - lo) / (hi - lo)
        d = x[1:-1] - (x[:-2] + x[2:]) / 2                    # the interior deviation, by hand
        largest = np.fmax(largest, np.nanmax(np.abs(d), axis=0))
    np.testing.assert_allclose(table["tau"], largest, rtol=1e-12)
    np.testing.assert_array_equal(table["lo"], lo)
    np.testing.assert_array_equal(table["hi"], hi)


def test_no_reference_sequence_is_an_error():
    with pytest.raises(ValueError, match="no reference sequences"):
        derive_thresholds(lambda: [[]], ["a"])
    with pytest.raises(ValueError, match="no reference sequences"):
        derive_thresholds(lambda: [], ["a"], bounds=([0.0], [1.0]))


def test_run_passes_reads_until_every_statistic_is_complete():
    median, reads = ExactMedian(1, keep_limit=0), []

    def read():
        reads.append(1)
        return [[np.array([[3.0], [1.0], [2.0]])]]

    class Batches:                                         # a statistic of whole batches
        def add(self, batch):
            median.add(np.concatenate(batch))

        def end_pass(self):
            return median.end_pass()

    passes = run_passes(read, [Batches()])
    assert passes == len(reads) > 1 and median.median[0] == 2.0


# --- the thresholds stage: shards read pass by pass, memory independent of their number -------------


def _write_cohort(root, n_shards, per_shard=40, n_frames=20, seed=0):
    """Attribute shards, patients.tsv and frames.tsv of a cohort with injected defects."""
    from echolatent.temporal.thresholds import image_attribute_names

    rng = np.random.default_rng(seed)
    names = image_attribute_names("physical")
    shards, patients, frames = [], [], []
    t = np.arange(n_frames) / n_frames
    for k in range(n_shards):
        rows = []
        for i in range(per_shard):
            pid = f"P{k:03d}{i:03d}"
            patients.append({"patient_id": pid, "split": ["train", "val", "test"][i % 3]})
            for view in ("2CH", "4CH"):
                curve = np.stack([(1 + j) * 10 + np.cos(2 * np.pi * t + j) * (2 + j) for j in range(len(names))],
                                 axis=1) + 0.05 * rng.normal(size=(n_frames, len(names)))
                defect = np.full(n_frames, "", dtype=object)
                spike = rng.integers(n_frames) if rng.random() < 0.3 else None
                if spike is not None:
                    curve[spike] += 3.0                        # an injected defect
                    defect[spike] = "hole"
                part = pd.DataFrame(curve, columns=names)
                part.insert(0, "frame", np.arange(n_frames))
                part.insert(0, "view", view)
                part.insert(0, "patient_id", pid)
                rows.append(part)
                frames.append(pd.DataFrame({"patient_id": pid, "view": view, "frame": np.arange(n_frames),
                                            "defect": defect, "defect_spike": (defect != "").astype(int),
                                            "is_ed": (np.arange(n_frames) == 0).astype(int), "other": 1.5}))
        shards.append(root / f"shard-{k}.parquet")
        write_table(pd.concat(rows, ignore_index=True), shards[-1])
    pd.DataFrame(patients).to_csv(root / "patients.tsv", sep="\t", index=False)
    pd.concat(frames).to_csv(root / "frames.tsv", sep="\t", index=False)
    return shards, names


@pytest.mark.parametrize("reference, rule", [("observed", "max"), ("input", "robust")])
def test_thresholds_stage_equals_the_whole_reference_table(tmp_path, reference, rule):
    from echolatent.stages.temporal import image_thresholds_stage

    shards, names = _write_cohort(tmp_path, n_shards=4)
    got = image_thresholds_stage(shards, tmp_path / "patients.tsv", reference=reference, splits=["train", "val"],
                                 names=names, rule=rule, frames=tmp_path / "frames.tsv", cycle="full",
                                 out=tmp_path / "thresholds.tsv")
    # the truth: the reference patients' rows of all shards at once, the defective frames left out
    table = pd.concat([pd.read_parquet(s) for s in shards], ignore_index=True)
    splits = pd.read_csv(tmp_path / "patients.tsv", sep="\t")
    members = set(splits.loc[splits["split"].isin(["train", "val"]), "patient_id"])
    table = table[table["patient_id"].isin(members)]
    frames = pd.read_csv(tmp_path / "frames.tsv", sep="\t", keep_default_na=False)
    table = table.merge(frames[["patient_id", "view", "frame", "defect"]], on=["patient_id", "view", "frame"])
    table["bad"] = (table["defect"] != "") if reference == "observed" else False
    expected = derive_thresholds_table(table, names, exclude="bad", cycle="full", rule=rule,
                                       reference=f"{reference}:train+val:{rule}")
    assert got["n_sequences"].iloc[0] == 2 * len(members)
    exact = ["name", "lo", "hi", "tau", "tau_end", "seq_max_min", "reference"]
    pd.testing.assert_frame_equal(got[exact], expected[exact], check_exact=True)
    numbers = [c for c in expected.columns if c.startswith("tau_") or c.startswith("seq_max")]
    pd.testing.assert_frame_equal(got[numbers], expected[numbers], check_exact=False, rtol=1e-12)


def test_thresholds_stage_memory_does_not_grow_with_the_shards(tmp_path, monkeypatch):
    """Four times the shards (the cohort), nearly the same peak of traced memory: the reference is
    read shard by shard at every pass, and only a few numbers per sequence and the reference
    patients' frames table in compact dtypes (~20 bytes a frame) are kept."""
    from echolatent.stages.temporal import image_thresholds_stage
    from echolatent.temporal import evaluation

    # frames.tsv is parsed 100,000 rows at a time: a small chunk makes these cohorts many chunks long
    monkeypatch.setattr(evaluation, "FRAMES_CHUNK_ROWS", 2_000)

    peaks = {}
    for n_shards in (3, 12):
        root = tmp_path / str(n_shards)
        root.mkdir()
        shards, names = _write_cohort(root, n_shards=n_shards, per_shard=60)
        image_thresholds_stage(shards[:1], root / "patients.tsv", reference="observed", splits=["train"], names=names,
                               frames=root / "frames.tsv", cycle="full")    # imports and caches first
        tracemalloc.start()
        image_thresholds_stage(shards, root / "patients.tsv", reference="observed", splits=["train"], names=names,
                               frames=root / "frames.tsv", cycle="full")
        peaks[n_shards] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # holding the reference (before): 1.9 -> 6.9 MB; read pass by pass: 0.67 -> 0.85 MB
    assert peaks[12] < 1.4 * peaks[3], peaks


# --- the compact frames table ---------------------------------------------------------------------


@pytest.mark.parametrize("cycle", ["full", "half"])
def test_compact_frames_table_gives_the_same_defects(tmp_path, cycle):
    _write_cohort(tmp_path, n_shards=2, per_shard=10)
    frames = pd.read_csv(tmp_path / "frames.tsv", sep="\t")
    frames["in_half"] = (frames["frame"] <= 8).astype(int)
    frames.to_csv(tmp_path / "frames.tsv", sep="\t", index=False)
    plain = injected_defects(tmp_path / "frames.tsv", cycle=cycle)
    compact_table = read_frames_table(tmp_path / "frames.tsv", chunksize=77)     # chunks cut sequences
    assert isinstance(compact_table["patient_id"].dtype, pd.CategoricalDtype)
    as_read = read_frames_table(tmp_path / "frames.tsv", compact=False)
    assert compact_table.memory_usage(deep=True).sum() < as_read.memory_usage(deep=True).sum() / 4
    compact = injected_defects(compact_table, cycle=cycle)
    patients = sorted(plain["patient_id"].unique())[3:9]
    expected = plain[plain["patient_id"].isin(patients)].reset_index(drop=True)
    pd.testing.assert_frame_equal(defects_of(compact, patients), expected, check_exact=True)
    only = read_frames_table(tmp_path / "frames.tsv", patients=set(patients), chunksize=50)
    assert set(only["patient_id"].astype(str)) == set(patients)


def test_frames_table_without_a_column_names_file_and_column(tmp_path):
    path = tmp_path / "frames.tsv"
    pd.DataFrame({"patient_id": ["a"], "view": ["4CH"], "frame": [0], "defect": [""]}).to_csv(path, sep="\t",
                                                                                               index=False)
    with pytest.raises(ValueError, match=r"frames\.tsv.*defect_spike"):
        read_frames_table(path)
