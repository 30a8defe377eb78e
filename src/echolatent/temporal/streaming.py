"""Statistics of a reference read pass by pass, in memory that does not grow with the cohort.

The thresholds of the temporal metric are statistics of every reference frame of a cohort: the
bounds (min, max), the largest deviations, the covariance of the stencil readings (the spike
detector's mixing) and, for truth-free references, medians of the deviations
(:mod:`echolatent.temporal.thresholds`). Held in memory, the reference of a 10,000-patient
cohort costs a few hundred MB and grows with every patient. Instead, the reference is read
shard by shard, once per pass, and each statistic keeps only what it needs between shards:

* :class:`RunningMoments`: count, mean and centred cross-products (Chan, Golub & LeVeque's
  pairwise update), the covariance in ``K x K`` numbers;
* :class:`ExactMedian`: the exact median of ``|x|`` per column by radix selection on the
  IEEE-754 bit patterns (for non-negative doubles the order of the patterns is the order of the
  values): each pass counts the values in 4,096 bins of the next 12 bits below the prefix
  already fixed, until the bin of the middle rank holds few enough values to be kept and
  sorted. The result equals :func:`numpy.nanmedian` to the bit (the mean of the two middle
  values for an even count);
* :func:`run_passes`: reads the reference again while any statistic needs another pass.

A statistic of curves follows one protocol: ``add(batch)`` for every batch of reference curves
of a pass (a shard's), then ``end_pass()``, which returns True when the statistic is complete.
"""

from __future__ import annotations

from typing import Callable, Iterable, Protocol

import numpy as np

__all__ = ["PassStatistic", "run_passes", "RunningMoments", "ExactMedian"]


class PassStatistic(Protocol):
    def add(self, batch: list[np.ndarray]) -> None: ...

    def end_pass(self) -> bool: ...


def run_passes(read: Callable[[], Iterable[Iterable[np.ndarray]]], statistics) -> int:
    """Feed every batch of curves of ``read()`` to the statistics, pass after pass, until all are complete.

    ``read`` returns a fresh iterable of batches (a shard's curves, say) at every call: the
    reference is read again for each pass rather than held. Returns the number of passes.
    """
    pending, passes = list(statistics), 0
    while pending:
        passes += 1
        for batch in read():
            batch = list(batch)
            for statistic in pending:
                statistic.add(batch)
        pending = [statistic for statistic in pending if not statistic.end_pass()]
    return passes


class RunningMoments:
    """Count, mean and centred cross-products of rows (n, K) added batch by batch.

    Batches are merged by the pairwise update of Chan, Golub & LeVeque (1979), which keeps the
    precision of the two-pass formula (no cancellation of large sums of squares).
    """

    def __init__(self, n_columns: int):
        self.n = 0
        self.mean = np.zeros(n_columns)
        self.m2 = np.zeros((n_columns, n_columns))

    def add(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.float64)
        if not len(rows):
            return
        n_b, mean_b = len(rows), rows.mean(axis=0)
        centred = rows - mean_b
        m2_b = centred.T @ centred
        if self.n == 0:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + np.outer(delta, delta) * (self.n * n_b / n)
        self.n = n

    def std(self) -> np.ndarray:
        """Standard deviation per column (``ddof=0``, as :meth:`numpy.ndarray.std`)."""
        return np.sqrt(np.diag(self.m2) / self.n)

    def covariance(self) -> np.ndarray:
        """Covariance matrix (``ddof=1``, as :func:`numpy.cov`)."""
        return self.m2 / (self.n - 1)


_DIGIT = 12                                  # bits fixed per pass: 4,096 bins
_BINS = 1 << _DIGIT


class ExactMedian:
    """Exact ``nanmedian(|x|, axis=0)`` of rows (n, K) added pass after pass, in bounded memory.

    Parameters
    ----------
    n_columns : int
    keep_limit : int
        Values of one column kept in memory to be sorted: the first pass keeps them all while a
        column holds no more (a small reference takes one pass), later passes once the bin of
        the middle rank holds no more. Between, a pass holds 4,096 counts per column and
        middle rank.

    NaN values are left out; a column without values has a NaN median. After a pass, the
    middle ranks are known (the count of the first pass); each following pass narrows the
    bit prefix of each middle value by 12 bits, or keeps and sorts the values of its bin.
    """

    def __init__(self, n_columns: int, *, keep_limit: int = 1 << 16):
        self.n_columns, self.keep_limit = n_columns, int(keep_limit)
        self.count = np.zeros(n_columns, np.int64)
        self.first = True
        self.median = np.full(n_columns, np.nan)
        self.done = np.zeros(n_columns, bool)
        # per column, the groups of this pass: {(prefix, n_bits): group}; a group counts the
        # next digit of the values under its prefix (hist) and/or keeps them (kept)
        self.groups = [{(0, 0): self._group(keep=True)} for _ in range(n_columns)]
        # per column, the middle ranks still sought: [slot, rank within its group, (prefix, n_bits)]
        self.targets: list[list] = [[] for _ in range(n_columns)]
        self.values = np.full((n_columns, 2), np.nan)   # the middle values found, by slot

    @staticmethod
    def _group(keep: bool, hist: bool = True) -> dict:
        return {"hist": np.zeros(_BINS, np.int64) if hist else None, "kept": [] if keep else None, "n_kept": 0}

    def add(self, values: np.ndarray) -> None:
        values = np.abs(np.asarray(values, np.float64)).reshape(-1, self.n_columns)
        for j in range(self.n_columns):
            if self.done[j]:
                continue
            column = values[:, j]
            column = column[~np.isnan(column)]
            if self.first:
                self.count[j] += len(column)
            if not len(column):
                continue
            bits = column.view(np.uint64)
            for (prefix, n_bits), group in self.groups[j].items():
                if n_bits:
                    bits_in = bits[(bits >> np.uint64(64 - n_bits)) == np.uint64(prefix)]
                else:
                    bits_in = bits
                if group["kept"] is not None:
                    group["n_kept"] += len(bits_in)
                    if self.first and group["n_kept"] > self.keep_limit:
                        group["kept"] = None        # too many for the first pass: counts only
                    else:
                        group["kept"].append(bits_in.copy())
                if group["hist"] is not None:
                    shift = 64 - n_bits - min(_DIGIT, 64 - n_bits)
                    digits = (bits_in >> np.uint64(shift)) & np.uint64((1 << min(_DIGIT, 64 - n_bits)) - 1)
                    group["hist"] += np.bincount(digits.astype(np.int64), minlength=_BINS)[:_BINS]

    def end_pass(self) -> bool:
        for j in range(self.n_columns):
            if self.done[j]:
                continue
            if self.first:
                n = int(self.count[j])
                if n == 0:
                    self.done[j] = True
                    continue
                ranks = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
                self.targets[j] = [[slot, rank, (0, 0)] for slot, rank in enumerate(ranks)]
            next_groups = {}
            for target in self.targets[j]:
                slot, rank, key = target
                group = self.groups[j][key]
                if group["kept"] is not None:               # the values themselves: sort and pick
                    kept = np.sort(np.concatenate(group["kept"]) if group["kept"] else np.empty(0, np.uint64))
                    self.values[j, slot] = kept[rank:rank + 1].view(np.float64)[0]
                    target[2] = None
                    continue
                prefix, n_bits = key
                width = min(_DIGIT, 64 - n_bits)
                cumulative = np.cumsum(group["hist"][:1 << width])
                digit = int(np.searchsorted(cumulative, rank, side="right"))
                below = int(cumulative[digit - 1]) if digit else 0
                in_bin = int(cumulative[digit]) - below
                new_key = ((prefix << width) | digit, n_bits + width)
                target[1], target[2] = rank - below, new_key
                if new_key[1] == 64:                        # every bit fixed: the value itself
                    self.values[j, slot] = np.array([new_key[0]], np.uint64).view(np.float64)[0]
                    target[2] = None
                elif new_key not in next_groups:
                    keep = in_bin <= self.keep_limit
                    next_groups[new_key] = self._group(keep=keep, hist=not keep)
            self.targets[j] = [t for t in self.targets[j] if t[2] is not None]
            self.groups[j] = next_groups
            if not self.targets[j]:
                self.done[j] = True
                n = int(self.count[j])
                self.median[j] = self.values[j, 0] if n % 2 else (self.values[j, 0] + self.values[j, 1]) / 2
        self.first = False
        return bool(self.done.all())
