"""Connected-component labelling (echolatent.shape.components) and its users, against scipy.ndimage.label.

scipy is the independent truth: the labels must be identical (partition, count and
numbering), and the users (pre-cleaning, mosaics) must give what a straightforward scipy
implementation gives.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from echolatent.shape.components import label, label_stack
from echolatent.shape.mosaic import OUTSIDE, mosaic_labels, stack_tiles
from echolatent.temporal.preclean import fill_holes, largest_component, preclean

# the package re-exports the function preclean under the module's name
preclean_module = importlib.import_module("echolatent.temporal.preclean")

_STRUCTURE = {4: ndimage.generate_binary_structure(2, 1), 8: np.ones((3, 3), bool)}


def _scipy_label(binary, connectivity):
    return ndimage.label(binary, structure=_STRUCTURE[connectivity])


def _scipy_label_stack(binary, connectivity):
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = _STRUCTURE[connectivity]
    return ndimage.label(binary, structure=structure)


def _random_map(rng, shape) -> np.ndarray:
    """Noise of a random density, smooth blobs (holes, rings) or a regular pattern."""
    kind = rng.integers(5)
    if kind == 0:
        return rng.random(shape) < rng.random()
    if kind == 1:
        field = ndimage.gaussian_filter(rng.standard_normal(shape), rng.uniform(0.5, 4))
        return field > rng.uniform(-0.3, 0.3) * field.std()
    if kind == 2:  # diagonal chains: 8- and 4-connectivity differ
        rows, cols = np.indices(shape)
        return (rows + cols) % rng.integers(2, 5) == 0
    if kind == 3:
        return np.zeros(shape, bool) if rng.random() < 0.5 else np.ones(shape, bool)
    rows, cols = np.indices(shape)  # concentric rings
    return (np.hypot(rows - shape[0] / 2, cols - shape[1] / 2).astype(int) % 3) == 0


def _shapes(rng, n):
    """Many small odd and even shapes, 1-pixel-wide ones, and a few large ones."""
    fixed = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (1, 64), (64, 1), (255, 257), (300, 301)]
    return fixed + [tuple(rng.integers(1, 48, 2)) for _ in range(n)]


# --------------------------------------------------------------------------- label, label_stack
@pytest.mark.parametrize("connectivity", [4, 8])
def test_label_equals_scipy(connectivity):
    rng = np.random.default_rng(20240611 + connectivity)
    for shape in _shapes(rng, 400):
        binary = _random_map(rng, shape)
        expected, n_expected = _scipy_label(binary, connectivity)
        labels, n = label(binary, connectivity=connectivity)
        assert n == n_expected, shape
        np.testing.assert_array_equal(labels, expected, err_msg=str(shape))


@settings(max_examples=200, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))), st.sampled_from([4, 8]))
def test_label_equals_scipy_hypothesis(binary, connectivity):
    expected, n_expected = _scipy_label(binary, connectivity)
    labels, n = label(binary, connectivity=connectivity)
    assert n == n_expected
    np.testing.assert_array_equal(labels, expected)


def test_label_of_views_and_edge_cases():
    rng = np.random.default_rng(3)
    base = rng.random((31, 40)) < 0.5
    for binary in (base[::2, 1::3], base.T, np.asfortranarray(base), base[5:9, 7:30]):
        for connectivity in (4, 8):
            expected, n_expected = _scipy_label(binary, connectivity)
            labels, n = label(binary, connectivity=connectivity)
            assert n == n_expected
            np.testing.assert_array_equal(labels, expected)
    labels, n = label(np.zeros((0, 5), bool), connectivity=8)
    assert n == 0 and labels.shape == (0, 5)
    with pytest.raises(TypeError):
        label(base.astype(np.uint8), connectivity=4)
    with pytest.raises(ValueError):
        label(base, connectivity=6)
    with pytest.raises(ValueError):
        label(base[None], connectivity=4)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_label_stack_equals_scipy_per_frame_structure(connectivity):
    rng = np.random.default_rng(7 + connectivity)
    shapes = [(1, 1, 1), (3, 1, 9), (4, 9, 1), (2, 2, 2), (1, 30, 31)]
    shapes += [(int(rng.integers(1, 8)), *map(int, rng.integers(1, 40, 2))) for _ in range(150)]
    shapes += [(20, 129, 131)]
    for shape in shapes:
        binary = np.stack([_random_map(rng, shape[1:]) for _ in range(shape[0])])
        expected, n_expected = _scipy_label_stack(binary, connectivity)
        labels, n = label_stack(binary, connectivity=connectivity)
        assert n == n_expected, shape
        np.testing.assert_array_equal(labels, expected, err_msg=str(shape))
    labels, n = label_stack(np.zeros((0, 4, 4), bool), connectivity=4)
    assert n == 0 and labels.shape == (0, 4, 4)


# --------------------------------------------------------------------------- pre-cleaning
def _largest_reference(binary):
    """Per frame, the largest 8-connected component; ties: scipy's lowest label (np.argmax)."""
    out = np.zeros_like(binary)
    for t, frame in enumerate(binary):
        labels, n = _scipy_label(frame, 8)
        if n:
            sizes = np.bincount(labels.ravel())[1:]
            out[t] = labels == 1 + np.argmax(sizes)
    return out


def _holes_reference(binary, keep_out=None):
    """Per frame, 4-connected components of the complement off the border and free of keep_out."""
    out = np.zeros_like(binary)
    for t, frame in enumerate(binary):
        labels, n = _scipy_label(~frame, 4)
        for k in range(1, n + 1):
            comp = labels == k
            touches = comp[0].any() or comp[-1].any() or comp[:, 0].any() or comp[:, -1].any()
            if not touches and not (keep_out is not None and (comp & keep_out[t]).any()):
                out[t] |= comp
    return out


def _stacks(rng, n):
    for _ in range(n):
        T, H, W = int(rng.integers(1, 6)), *map(int, rng.integers(1, 36, 2))
        yield np.stack([_random_map(rng, (H, W)) for _ in range(T)])


def test_largest_component_equals_reference():
    rng = np.random.default_rng(11)
    for binary in _stacks(rng, 250):
        np.testing.assert_array_equal(largest_component(binary), _largest_reference(binary))


def test_empty_and_blank_stacks():
    for shape in ((0, 4, 5), (3, 4, 5), (2, 1, 1)):
        blank = np.zeros(shape, bool)
        assert largest_component(blank).shape == shape and not largest_component(blank).any()
        assert fill_holes(blank).shape == shape and not fill_holes(blank).any()
        full = np.ones(shape, bool)
        np.testing.assert_array_equal(largest_component(full), full)
        assert not fill_holes(full).any()


def test_largest_component_ties_keep_the_first_in_raster_order():
    # Two 3-pixel components per frame. The second one starts in an earlier row (raster
    # order: first), but further right, in the same 2 x 2 block row and in a later column;
    # so an order by column, by 2 x 2 block or by anything but rows-then-columns picks the
    # other one.
    frame = np.zeros((6, 12), bool)
    frame[1, 1:4] = True  # first pixel (1, 1)
    frame[0, 9], frame[1, 10], frame[2, 11] = True, True, True  # first pixel (0, 9), diagonal
    stack = np.stack([frame, frame[:, ::-1], frame[::-1], np.zeros_like(frame)])
    kept = largest_component(stack)
    np.testing.assert_array_equal(kept, _largest_reference(stack))
    expected = np.zeros_like(frame)
    expected[0, 9], expected[1, 10], expected[2, 11] = True, True, True
    np.testing.assert_array_equal(kept[0], expected)
    assert kept[1, 0, 2] and kept[1].sum() == 3  # mirrored: the diagonal starts at (0, 2)
    assert kept[2, 3, 11] and kept[2].sum() == 3  # flipped: the diagonal starts at (3, 11), the bar at (4, 1)
    assert not kept[3].any()


def test_largest_component_ties_on_random_frames():
    rng = np.random.default_rng(12)
    for _ in range(200):  # frames of isolated blobs of two sizes: many ties
        H, W = map(int, rng.integers(4, 30, 2))
        binary = np.zeros((3, H, W), bool)
        for t in range(3):
            for _ in range(int(rng.integers(1, 6))):
                r, c = int(rng.integers(H)), int(rng.integers(W))
                binary[t, r:r + int(rng.integers(1, 3)), c:c + 2] = True
        np.testing.assert_array_equal(largest_component(binary), _largest_reference(binary))


def test_fill_holes_equals_reference():
    rng = np.random.default_rng(13)
    for binary in _stacks(rng, 200):
        keep_out = (rng.random(binary.shape) < 0.02) & ~binary
        np.testing.assert_array_equal(fill_holes(binary), _holes_reference(binary))
        np.testing.assert_array_equal(fill_holes(binary, keep_out=keep_out), _holes_reference(binary, keep_out))


def test_preclean_equals_preclean_with_scipy_labels(monkeypatch):
    rng = np.random.default_rng(14)
    maps = []
    for _ in range(60):
        T, H, W = int(rng.integers(1, 5)), *map(int, rng.integers(2, 40, 2))
        field = ndimage.gaussian_filter(rng.standard_normal((T, H, W)), (0, 2, 2))
        maps.append(np.digitize(field, np.quantile(field, [0.4, 0.6, 0.8, 0.9])).clip(0, 3).astype(np.uint8))
    ours = [preclean(m) for m in maps] + [preclean(m, keep_atrium=False) for m in maps]
    monkeypatch.setattr(preclean_module, "label_stack",
                        lambda binary, *, connectivity: _scipy_label_stack(binary, connectivity))
    theirs = [preclean(m) for m in maps] + [preclean(m, keep_atrium=False) for m in maps]
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- mosaics
@pytest.mark.parametrize("conn8", [False, True])
def test_mosaic_labels_tile_ranges(conn8):
    rng = np.random.default_rng(15 + conn8)
    for _ in range(30):
        pieces = []
        for _ in range(int(rng.integers(1, 12))):
            shape = tuple(map(int, rng.integers(1, 25, 2)))
            pieces.append(np.where(_random_map(rng, shape), 1, int(rng.integers(0, 3))).astype(np.uint8))
        img, start, hs, _ = stack_tiles(pieces, ring=1)
        assert (img == OUTSIDE).any()
        S = img == 1
        lab, nlab, lo, count = mosaic_labels(S, start, conn8=conn8)
        expected, n_expected = _scipy_label(S, 8 if conn8 else 4)
        assert nlab == n_expected
        np.testing.assert_array_equal(lab, expected)
        assert lo[0] == 0 and lo[-1] + count[-1] == nlab
        for q in range(len(pieces)):
            found = np.unique(lab[start[q]:start[q] + hs[q]])
            np.testing.assert_array_equal(found[found > 0], np.arange(lo[q] + 1, lo[q] + count[q] + 1))
