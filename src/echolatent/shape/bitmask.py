"""Packed-bit planes: binary images as 64-bit words, for morphology and Euler numbers in bulk.

A plane of a ``(rows, w)`` bool image is a ``(n_words, rows)`` uint64 array: bit ``j % 64`` of
word ``j // 64`` of a row holds column ``j``. Word-major storage keeps every operation on
contiguous vectors. On a mosaic (:mod:`echolatent.shape.mosaic`) the per-tile sums of bit
counts give, for many maps at once, areas and Euler numbers (E4 = V - E_h - E_v + F and
E8 = E4 - QD), i.e. the numbers of components minus holes that certify most anatomical
criteria without labelling.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "LITTLE_U64",
    "drop_small_packed",
    "euler_packed_many",
    "pack_rows",
    "row_any",
    "row_bits",
    "rows_from_above",
    "rows_from_below",
    "shift_from_left",
    "shift_from_right",
    "tile_popcounts",
    "unpack_rows",
]

#: Little-endian uint64: the byte order the planes are packed in (bit j of a word = column j).
LITTLE_U64 = np.dtype("<u8")


def pack_rows(B: np.ndarray) -> np.ndarray:
    """Pack the rows of a (rows, w) bool array into (n_words, rows) uint64 word planes."""
    rows, w = B.shape
    nbytes = (w + 7) // 8
    nwords = (nbytes + 7) // 8
    buf = np.zeros((rows, nwords * 8), np.uint8)
    buf[:, :nbytes] = np.packbits(B, axis=1, bitorder="little")
    return np.ascontiguousarray(buf.view(LITTLE_U64).T, dtype=np.uint64)


def unpack_rows(P: np.ndarray, w: int) -> np.ndarray:
    """Inverse of :func:`pack_rows`: (rows, w) bool."""
    bytes_ = np.ascontiguousarray(P.T, dtype=LITTLE_U64).view(np.uint8)
    return np.unpackbits(bytes_, axis=1, count=w, bitorder="little").view(bool)


def shift_from_right(x: np.ndarray) -> np.ndarray:
    """out[j] = x[j + 1] along the columns (0 past the end)."""
    out = x >> 1
    if x.shape[0] > 1:
        out[:-1] |= x[1:] << 63
    return out


def shift_from_left(x: np.ndarray) -> np.ndarray:
    """out[j] = x[j - 1] along the columns (0 before the start)."""
    out = x << 1
    if x.shape[0] > 1:
        out[1:] |= x[:-1] >> 63
    return out


def rows_from_above(x: np.ndarray) -> np.ndarray:
    """out[i] = x[i - 1] (0 for the first row)."""
    out = np.zeros_like(x)
    out[:, 1:] = x[:, :-1]
    return out


def rows_from_below(x: np.ndarray) -> np.ndarray:
    """out[i] = x[i + 1] (0 for the last row)."""
    out = np.zeros_like(x)
    out[:, :-1] = x[:, 1:]
    return out


def row_bits(x: np.ndarray) -> np.ndarray:
    """Number of set bits of every row of word planes, (rows,) int64."""
    c = np.bitwise_count(x)
    out = c[0].astype(np.int64)
    for row in c[1:]:
        out += row
    return out


def row_any(x: np.ndarray) -> np.ndarray:
    """Whether every row of word planes has a set bit, (rows,) bool."""
    out = x[0].copy()
    for row in x[1:]:
        out |= row
    return out != 0


def tile_popcounts(arrays, start: np.ndarray, rows: int) -> np.ndarray:
    """Per tile number of set bits of several word planes of <= ``rows`` rows, (n_tiles, len(arrays))."""
    counts = np.zeros((len(arrays), rows), np.int64)
    for k, a in enumerate(arrays):
        counts[k, :a.shape[1]] = row_bits(a)
    return np.add.reduceat(counts, start, axis=1).T


def _euler_terms(P: np.ndarray):
    """The word planes whose bit counts give area and Euler numbers of P (see euler_packed_many)."""
    R = shift_from_right(P)
    PR = P & R
    a, b, c, d = P[:, :-1], R[:, :-1], P[:, 1:], R[:, 1:]
    return [P, PR, a & c, PR[:, :-1] & PR[:, 1:], ~((a ^ d) | (b ^ c)) & (a ^ b)]


def euler_packed_many(planes, start: np.ndarray, extra=()):
    """Per tile area V and Euler numbers E4, E8 of packed mosaics with an empty ring.

    E4 = V - E_h - E_v + F (pixels, horizontal and vertical pairs, full 2 x 2 blocks) and
    E8 = E4 - QD, QD being the number of 2 x 2 windows holding exactly one diagonal pair.
    Returns (V, E4, E8), each (n_tiles, len(planes)), and the bit counts of ``extra``.
    """
    rows = planes[0].shape[1]
    terms = [t for P in planes for t in _euler_terms(P)]
    counts = tile_popcounts(terms + list(extra), start, rows)
    k = 5 * len(planes)
    c = counts[:, :k].reshape(len(start), len(planes), 5)
    V = c[:, :, 0]
    E4 = V - c[:, :, 1] - c[:, :, 2] + c[:, :, 3]
    return V, E4, E4 - c[:, :, 4], counts[:, k:]


def drop_small_packed(P: np.ndarray, s: float) -> np.ndarray:
    """Remove the 4-connected components with fewer than s pixels (only for s <= 4).

    Components of 1, 2 and 3 pixels are recognised from the 4-neighbour degrees: an
    isolated pixel, two adjacent pixels of degree 1, and a degree-2 pixel whose two
    neighbours have degree 1 (with those two neighbours).
    """
    if s <= 1:
        return P
    N, S = rows_from_above(P), rows_from_below(P)
    Wl, Er = shift_from_left(P), shift_from_right(P)
    a1, c1, a2, c2 = N ^ S, N & S, Wl ^ Er, Wl & Er
    b0 = a1 ^ a2
    carry = a1 & a2
    b1 = c1 ^ c2 ^ carry
    b2 = (c1 & c2) | (carry & (c1 ^ c2))
    small = P & ~(b0 | b1 | b2)  # degree 0
    if s > 2:
        D1 = P & b0 & ~b1
        D1n, D1s = rows_from_above(D1), rows_from_below(D1)
        D1w, D1e = shift_from_left(D1), shift_from_right(D1)
        small |= D1 & ((N & D1n) | (S & D1s) | (Wl & D1w) | (Er & D1e))
        if s > 3:
            mid = P & ~b0 & b1 & (~N | D1n) & (~S | D1s) & (~Wl | D1w) & (~Er | D1e)
            grown = rows_from_above(mid) | rows_from_below(mid) | shift_from_left(mid) | shift_from_right(mid)
            small |= mid | (P & grown)
    return P & ~small

