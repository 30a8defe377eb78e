"""Exact nearest-neighbour search of latent codes against a large stored set (TMI 2020 correction).

The correction replaces an implausible code by its nearest valid code (Euclidean) among the
millions a densification keeps. :func:`nearest_codes` is an exact brute force organised for
throughput: squared distances by the expansion ``||q||^2 - 2 q.c + ||c||^2`` (one matrix
product per block of stored codes, memory bounded by ``query_batch x block_size``), on the
CPU with numpy or on a torch device.

Exactness. The expansion loses precision when ``||q||^2 + ||c||^2`` dwarfs the distance
(cancellation), so it is only used to *shortlist*: every stored code whose expanded distance
is within a rounding bound of the block's best is re-measured directly as ``sum((q - c)^2)``,
and the minimum of those direct distances wins, the lowest index on a tie. The answer is
therefore the brute-force argmin (as ``scipy.spatial.distance.cdist(...).argmin(1)``), ties
included, not an approximation of it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["nearest_codes"]

# Relative rounding bound of the expanded squared distance, in units of ||q||^2 + ||c||^2: the
# float64 error of a D-term dot product is ~ D * eps * sum|q_i c_i|; 64 * D * eps is far above it.
_REL_TOL = 64 * np.finfo(np.float64).eps


def nearest_codes(queries: np.ndarray, codes: np.ndarray, *, block_size: int = 65536, query_batch: int = 1024,
                  device=None) -> tuple[np.ndarray, np.ndarray]:
    """Index and Euclidean distance of the nearest stored code to each query.

    Parameters
    ----------
    queries : ndarray (Q, D)
    codes : ndarray (N, D)
        The stored codes (e.g. millions of valid codes); N >= 1.
    block_size : int
        Stored codes compared at once.
    query_batch : int
        Queries compared at once; memory is about ``query_batch * block_size * 8`` bytes.
    device : str or torch.device, optional
        None: numpy on the CPU. Otherwise torch (float64) on that device, the stored codes
        moved there block by block (each block once for all queries).

    Returns
    -------
    index : ndarray (Q,) int64
        Row of ``codes`` nearest to each query (lowest row on a tie).
    distance : ndarray (Q,) float64
        Its Euclidean distance.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    codes = np.atleast_2d(np.asarray(codes, dtype=np.float64))
    if len(codes) == 0:
        raise ValueError("nearest_codes: the stored set of codes is empty")
    if queries.shape[1] != codes.shape[1]:
        raise ValueError(f"nearest_codes: queries have {queries.shape[1]} dimensions, codes {codes.shape[1]}")
    if block_size < 1 or query_batch < 1:
        raise ValueError("block_size and query_batch must be positive")
    if len(queries) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    if device is None:
        best_d2, best_i = _search(queries, codes, block_size, query_batch, _NumpyOps())
    else:
        best_d2, best_i = _search(queries, codes, block_size, query_batch, _TorchOps(device))
    return best_i, np.sqrt(best_d2)


def _search(queries, codes, block_size, query_batch, ops):
    """Blocks of stored codes (outer) x batches of queries (inner); running best per query."""
    n_q = len(queries)
    best_d2 = np.full(n_q, np.inf)
    best_i = np.full(n_q, -1, np.int64)
    q_all = ops.put(queries)
    q_sq_all = (q_all ** 2).sum(1)
    for c_start in range(0, len(codes), block_size):
        c = ops.put(codes[c_start:c_start + block_size])
        c_sq = (c ** 2).sum(1)
        c_sq_max = float(c_sq.max())
        for q_start in range(0, n_q, query_batch):
            q, q_sq = q_all[q_start:q_start + query_batch], q_sq_all[q_start:q_start + query_batch]
            d2 = q_sq[:, None] - 2.0 * (q @ c.T) + c_sq[None, :]
            # shortlist: within the rounding bound of the block's smallest expanded distance
            slack = _REL_TOL * q.shape[1] * (q_sq + c_sq_max) + 1e-300
            rows, cols = ops.nonzero(d2 <= (ops.min(d2) + 2.0 * slack)[:, None])
            exact = ((q[rows] - c[cols]) ** 2).sum(1)  # the direct distance, no cancellation
            rows, cols, exact = ops.cpu(rows), ops.cpu(cols) + c_start, ops.cpu(exact)
            # per query: smallest exact distance, then smallest index (lexsort: last key first)
            order = np.lexsort((cols, exact, rows))
            rows, cols, exact = rows[order], cols[order], exact[order]
            first = np.ones(len(rows), bool)
            first[1:] = rows[1:] != rows[:-1]
            rows, cols, exact = rows[first] + q_start, cols[first], exact[first]
            # blocks come in increasing index: an equal distance from a later block never wins
            better = exact < best_d2[rows]
            best_d2[rows[better]] = exact[better]
            best_i[rows[better]] = cols[better]
    return best_d2, best_i


class _NumpyOps:
    @staticmethod
    def put(x):
        return x

    @staticmethod
    def nonzero(mask):
        return np.nonzero(mask)

    @staticmethod
    def min(d2):
        return d2.min(axis=1)

    @staticmethod
    def cpu(x):
        return np.asarray(x)


class _TorchOps:
    def __init__(self, device):
        import torch
        self.torch = torch
        self.device = torch.device(device)

    def put(self, x):
        return self.torch.as_tensor(np.ascontiguousarray(x), dtype=self.torch.float64, device=self.device)

    def nonzero(self, mask):
        return self.torch.nonzero(mask, as_tuple=True)

    @staticmethod
    def min(d2):
        return d2.min(dim=1).values

    @staticmethod
    def cpu(x):
        return x.cpu().numpy()
