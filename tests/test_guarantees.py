"""The TMI 2020 anatomical guarantee: rejection sampling, exact nearest search, bisection correction.

Truths used here are independent of the code under test: the sampler against an analytic
2-D Gaussian mixture (exact CDFs), the search against ``scipy.spatial.distance.cdist``, the
correction against ``KnownModel`` (conftest), whose decoder renders a heart of scale z0 and
whose valid scales are measured here directly with the criteria.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

from conftest import KnownModel, render
from echolatent.guarantees import (correct_frames, densify, fit_gaussian, fit_kde, log_bound, nearest_codes,
                                   rejection_sample, sample_kde, valid_maps)
from echolatent.guarantees.densify import KernelDensity

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ----------------------------------------------------------------------------- rejection sampling
# A 2-D mixture of axis-aligned Gaussians: its marginals and cell probabilities are exact.
WEIGHTS = np.array([0.5, 0.3, 0.2])
MEANS = np.array([[-2.0, 0.0], [1.5, 1.5], [1.0, -2.0]])
SDS = np.array([[0.6, 1.0], [0.8, 0.5], [0.5, 0.7]])


def mixture_logpdf(z):
    z = np.atleast_2d(z)
    comps = stats.norm.logpdf(z[:, None, :], MEANS[None], SDS[None]).sum(-1) + np.log(WEIGHTS)
    return logsumexp(comps, axis=1)


def mixture_cdf(x, axis):
    return (WEIGHTS * stats.norm.cdf(np.asarray(x)[..., None], MEANS[:, axis], SDS[:, axis])).sum(-1)


PROPOSAL_MEAN, PROPOSAL_COV = np.zeros(2), np.diag([3.0, 3.0]) ** 2


@pytest.fixture(scope="module")
def mixture_samples():
    # M from a dense grid of P / Q, with a 5 % margin so that M Q >= P holds between the grid points too
    g = np.linspace(-8, 8, 801)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    log_q = stats.multivariate_normal(PROPOSAL_MEAN, PROPOSAL_COV).logpdf(grid)
    log_m = float((mixture_logpdf(grid) - log_q).max() + np.log(1.05))
    result = rejection_sample(mixture_logpdf, PROPOSAL_MEAN, PROPOSAL_COV, 20000, np.random.default_rng(7), log_m,
                              batch_size=8192)
    return result, log_m


def test_rejection_sampler_reproduces_a_known_2d_density(mixture_samples):
    result, log_m = mixture_samples
    assert result.samples.shape == (20000, 2)
    assert result.n_over_bound == 0
    for axis in (0, 1):
        p = stats.kstest(result.samples[:, axis], lambda x: mixture_cdf(x, axis)).pvalue
        assert p > 0.01, f"KS on marginal {axis}: p = {p:.3g}"
    # chi-square on a 2-D grid of cells: the joint, not only the marginals (cells: exact product CDFs per component)
    edges = np.array([-np.inf, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, np.inf])
    cx = stats.norm.cdf(edges[:, None], MEANS[:, 0], SDS[:, 0])
    cy = stats.norm.cdf(edges[:, None], MEANS[:, 1], SDS[:, 1])
    cells = np.einsum("k,ik,jk->ij", WEIGHTS, np.diff(cx, axis=0), np.diff(cy, axis=0))
    counts, _, _ = np.histogram2d(result.samples[:, 0], result.samples[:, 1], bins=[edges, edges])
    expected = cells * len(result.samples)
    use = expected >= 5
    chi2 = stats.chisquare(counts[use], expected[use] * counts[use].sum() / expected[use].sum())
    assert chi2.pvalue > 0.01, f"chi-square p = {chi2.pvalue:.3g} on {use.sum()} cells"
    # the expected acceptance rate of a normalised target is 1 / M (binomial standard error)
    rate, expected_rate = result.acceptance_rate, float(np.exp(-log_m))
    se = np.sqrt(expected_rate * (1 - expected_rate) / result.n_proposed)
    assert abs(rate - expected_rate) < 4 * se, (rate, expected_rate, se)


def test_the_goodness_of_fit_tests_have_power():
    # the proposal's own samples (no rejection) fail the KS test against the mixture
    raw = PROPOSAL_MEAN + np.random.default_rng(7).standard_normal((20000, 2)) * 3.0
    assert stats.kstest(raw[:, 0], lambda x: mixture_cdf(x, 0)).pvalue < 1e-6
    # a bound far too small: everything accepted, counted as over the bound, and the density is wrong
    result = rejection_sample(mixture_logpdf, PROPOSAL_MEAN, PROPOSAL_COV, 5000, np.random.default_rng(1), -20.0)
    assert result.n_over_bound > 0.9 * result.n_proposed
    assert stats.kstest(result.samples[:, 0], lambda x: mixture_cdf(x, 0)).pvalue < 1e-6


def test_rejection_sampler_is_seeded_and_batch_sized_consistently():
    a = rejection_sample(mixture_logpdf, PROPOSAL_MEAN, PROPOSAL_COV, 300, np.random.default_rng(3), 2.5)
    b = rejection_sample(mixture_logpdf, PROPOSAL_MEAN, PROPOSAL_COV, 300, np.random.default_rng(3), 2.5)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.n_proposed == b.n_proposed and len(a.samples) == 300


def test_kde_sampler_reproduces_its_mixture_exactly():
    # a KDE of 5 points with kernel sd (0.5, 0.8): an equal-weight Gaussian mixture, CDFs exact
    points = np.array([[-2.0, 0.0], [-2.0, 0.5], [1.5, 1.5], [1.0, -2.0], [0.0, 3.0]])
    sd = np.array([0.5, 0.8])
    kde = KernelDensity(points, np.diag(sd))
    samples = sample_kde(kde, 20000, np.random.default_rng(11), batch_size=3000)
    assert samples.shape == (20000, 2)

    def cdf(x, axis):
        return stats.norm.cdf(np.asarray(x)[..., None], points[:, axis], sd[axis]).mean(-1)

    for axis in (0, 1):
        p = stats.kstest(samples[:, axis], lambda x: cdf(x, axis)).pvalue
        assert p > 0.01, f"KS on marginal {axis}: p = {p:.3g}"
    edges = np.array([-np.inf, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, np.inf])
    cx = stats.norm.cdf(edges[:, None], points[:, 0], sd[0])
    cy = stats.norm.cdf(edges[:, None], points[:, 1], sd[1])
    cells = np.einsum("ik,jk->ij", np.diff(cx, axis=0), np.diff(cy, axis=0)) / len(points)
    counts, _, _ = np.histogram2d(samples[:, 0], samples[:, 1], bins=[edges, edges])
    expected = cells * len(samples)
    use = expected >= 5
    chi2 = stats.chisquare(counts[use], expected[use] * counts[use].sum() / expected[use].sum())
    assert chi2.pvalue > 0.01, f"chi-square p = {chi2.pvalue:.3g}"
    # the same seed and batching give the same draws
    np.testing.assert_array_equal(samples, sample_kde(kde, 20000, np.random.default_rng(11), batch_size=3000))
    # power: the kernel noise left out (points only) fails the KS test
    assert stats.kstest(points[np.random.default_rng(0).integers(0, 5, 20000), 0],
                        lambda x: cdf(x, 0)).pvalue < 1e-6


def test_densify_with_the_exact_kde_sampler_accepts_everything(model):
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.normal(0.9, 0.25, 120), rng.normal(0.0, 0.1, 120)])
    out = densify(model, train, 300, np.random.default_rng(1), spacing=SPACING, batch_size=128)
    assert out.n_sampled == 300 and out.acceptance_rate == 1.0
    drawn = sample_kde(fit_kde(train), 300, np.random.default_rng(1))
    np.testing.assert_array_equal(out.codes, drawn[is_valid(drawn[:, 0])])
    with pytest.raises(ValueError, match="sampler"):
        densify(model, train, 10, np.random.default_rng(1), spacing=SPACING, sampler="metropolis")


def test_kde_and_gaussian_densities_match_scipy():
    codes = np.random.default_rng(0).normal(size=(300, 3)) @ np.array([[1, 0, 0], [0.5, 1, 0], [0, 0.2, 0.3]])
    z = np.random.default_rng(1).normal(size=(50, 3))
    np.testing.assert_allclose(fit_kde(codes).log_pdf(z), stats.gaussian_kde(codes.T).logpdf(z.T), rtol=1e-9)
    g = fit_gaussian(codes)
    np.testing.assert_allclose(g.log_pdf(z), stats.multivariate_normal(codes.mean(0), np.cov(codes.T)).logpdf(z),
                               rtol=1e-9)
    # the envelope covers the target at every training code
    kde = fit_kde(codes)
    log_m = log_bound(kde.log_pdf, g, codes)
    assert (kde.log_pdf(codes) - g.log_pdf(codes) <= log_m + 1e-12).all()


# ----------------------------------------------------------------------------- nearest search
@pytest.mark.parametrize("block_size, query_batch", [(7, 3), (64, 1000), (100000, 5)])
def test_nearest_search_equals_brute_force(block_size, query_batch):
    rng = np.random.default_rng(block_size)
    codes = rng.normal(size=(500, 8)) + 50.0  # far from the origin: the expansion alone would lose digits
    queries = np.concatenate([rng.normal(size=(60, 8)) + 50.0, codes[[3, 250, 499]] + 1e-9])
    index, dist = nearest_codes(queries, codes, block_size=block_size, query_batch=query_batch)
    full = cdist(queries, codes)
    np.testing.assert_array_equal(index, full.argmin(1))
    np.testing.assert_allclose(dist, full.min(1), rtol=1e-12)


def test_nearest_search_ties_go_to_the_lowest_index():
    # integer grid codes with duplicates and equidistant neighbours: exact ties in floating point
    rng = np.random.default_rng(0)
    base = rng.integers(-3, 4, size=(40, 4)).astype(float)
    codes = np.concatenate([base, base[::-1], base])  # every code three times, across blocks
    queries = np.concatenate([rng.integers(-3, 4, size=(30, 4)) + 0.5, base[:10]])
    for block_size in (5, 13, 1000):
        index, dist = nearest_codes(queries, codes, block_size=block_size, query_batch=7)
        full = cdist(queries, codes)
        np.testing.assert_array_equal(index, full.argmin(1))  # argmin: the first of the ties
        np.testing.assert_array_equal(dist, full.min(1))


def test_nearest_search_on_torch_matches_numpy():
    rng = np.random.default_rng(5)
    codes, queries = rng.normal(size=(300, 6)), rng.normal(size=(40, 6))
    a = nearest_codes(queries, codes, block_size=64)
    b = nearest_codes(queries, codes, block_size=64, device="cuda" if torch.cuda.is_available() else "cpu")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-12)


# ----------------------------------------------------------------------------- correction with a known model
SPACING = (1.0, 1.0)


def is_valid(scales):
    """Truth: the criteria on the rendered heart itself (KnownModel decodes z0 to ``render(z0)``)."""
    return valid_maps(np.stack([render(float(s)) for s in np.atleast_1d(scales)]), SPACING)


@pytest.fixture(scope="module")
def model():
    return KnownModel()


def test_the_known_model_has_an_invalid_range():
    # the premise of the correction tests: small hearts fail (frontier LV-BG), mid-sized ones pass
    assert not is_valid([0.35, 0.4]).any()
    assert is_valid([0.6, 1.0, 1.2]).all()
    assert not is_valid([1.9]).any()


def test_bisection_corrects_to_the_closest_valid_shape(model):
    scales = [1.0, 0.35, 1.1, 0.4, 0.9]
    masks = np.stack([render(s) for s in scales])
    codes = np.array([[s, 0.0] for s in scales])
    valid_codes = np.array([[0.8, 0.0], [1.3, 0.0], [1.0, 0.0]])
    n_bis = 12
    result = correct_frames(model, masks, SPACING, valid_codes, codes=codes, n_bisections=n_bis)
    assert result.status.tolist() == ["valid", "corrected", "valid", "corrected", "valid"]
    # valid frames: the same bytes
    for i in (0, 2, 4):
        assert result.masks[i].tobytes() == masks[i].tobytes()
    assert np.isnan(result.t[[0, 2, 4]]).all() and (result.distance[[0, 2, 4]] == 0).all()
    tol = 2.0 ** -n_bis
    for i in (1, 3):
        z0, z1 = codes[i], valid_codes[0]  # 0.8 is the nearest valid code to 0.35 and 0.4
        assert result.nearest_index[i] == 0
        assert result.nearest_distance[i] == pytest.approx(np.linalg.norm(z1 - z0))
        t = result.t[i]
        assert 0 < t < 1
        zt = (1 - t) * z0 + t * z1
        # the output is the decoding at t, it is valid, and the point tol before is not
        np.testing.assert_array_equal(result.masks[i], render(zt[0]))
        assert valid_maps(result.masks[i][None], SPACING)[0]
        assert not is_valid([((1 - (t - tol)) * z0 + (t - tol) * z1)[0]])[0]
        assert result.distance[i] == pytest.approx(t * np.linalg.norm(z1 - z0))
        assert result.distance[i] <= result.nearest_distance[i]
    # both invalid frames cross the same (monotone) validity boundary at the same scale
    assert abs((1 - result.t[1]) * 0.35 + result.t[1] * 0.8 - ((1 - result.t[3]) * 0.4 + result.t[3] * 0.8)) < 1e-3


def test_encoding_path_and_a_valid_reconstruction_move_nothing(model):
    # a huge heart is invalid, but KnownModel encodes it to the largest scale it knows (1.5), which renders valid
    masks = np.stack([render(1.9), render(1.0)])
    assert not valid_maps(masks[:1], SPACING)[0]
    result = correct_frames(model, masks, SPACING, np.array([[1.0, 0.0]]))
    assert result.status.tolist() == ["corrected", "valid"]
    assert result.t[0] == 0.0 and result.distance[0] == 0.0
    np.testing.assert_array_equal(result.masks[0], render(1.5))
    assert result.masks[1].tobytes() == masks[1].tobytes()


def test_a_frame_without_a_valid_code_in_reach_is_uncorrectable(model):
    masks = np.stack([render(0.35), render(1.0)])
    codes = np.array([[0.35, 0.0], [1.0, 0.0]])
    # a stored "valid" code that does not decode to a valid shape on this frame's grid
    stale = correct_frames(model, masks, SPACING, np.array([[1.9, 0.0]]), codes=codes)
    # a valid code, but beyond max_distance
    far = correct_frames(model, masks, SPACING, np.array([[1.0, 0.0]]), codes=codes, max_distance=0.5)
    for result in (stale, far):
        assert result.status.tolist() == ["uncorrectable", "valid"]
        assert result.masks.tobytes() == masks.tobytes()  # left as it was, and reported
        assert np.isnan(result.t[0]) and np.isnan(result.distance[0])
    assert far.nearest_distance[0] == pytest.approx(0.65)


def test_all_valid_frames_are_returned_unchanged(model):
    masks = np.stack([render(s) for s in (0.8, 1.0, 1.2)])
    result = correct_frames(model, masks, SPACING, np.array([[1.0, 0.0]]))
    assert result.masks.tobytes() == masks.tobytes()
    assert (result.status == "valid").all()


# ----------------------------------------------------------------------------- densification with a known model
def test_densify_keeps_exactly_the_codes_that_decode_valid(model):
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.normal(0.9, 0.25, 120), rng.normal(0.0, 0.1, 120)])
    out = densify(model, train, 300, np.random.default_rng(1), spacing=SPACING, batch_size=128, sampler="rejection")
    assert out.n_sampled == 300
    assert 0 < out.acceptance_rate < 1 and 0 < out.validity_rate < 1
    assert len(out.codes) == round(out.validity_rate * 300)
    assert is_valid(out.codes[:, 0]).all()
    # the kept codes are exactly the valid ones among the samples: redraw them with the same seed and check
    kde, gauss = fit_kde(train), fit_gaussian(train)
    drawn = rejection_sample(kde.log_pdf, gauss.mean, gauss.cov, 300, np.random.default_rng(1),
                             log_bound(kde.log_pdf, gauss, train))
    assert drawn.acceptance_rate == out.acceptance_rate
    # the envelope is the max of P / Q over the training codes: acceptance 1 / M, up to sampling noise
    assert out.acceptance_rate == pytest.approx(np.exp(-out.log_m), rel=0.5)
    np.testing.assert_array_equal(out.codes, drawn.samples[is_valid(drawn.samples[:, 0])])
    # a different batching of the decode/check step keeps the same codes (the sampler's stream is unchanged)
    again = densify(model, train, 300, np.random.default_rng(1), spacing=SPACING, batch_size=300, sampler="rejection")
    np.testing.assert_array_equal(out.codes, again.codes)


# ----------------------------------------------------------------------------- image-space refinement
def test_the_shape_path_starts_and_ends_exactly_at_its_two_maps():
    from echolatent.guarantees.refine import blend_label_maps, signed_distances

    a, b = render(0.8), render(1.2)
    a[10:14, 20:24] = 0  # a hole: shapes need not be nice
    d_a = signed_distances(a, (1, 2, 3))[None]
    d_b = signed_distances(b, (1, 2, 3))[None]
    np.testing.assert_array_equal(blend_label_maps(d_a, d_b, [0.0], (1, 2, 3))[0], a)
    np.testing.assert_array_equal(blend_label_maps(d_a, d_b, [1.0], (1, 2, 3))[0], b)
    # halfway, the LV area lies between the two (boundaries move continuously)
    mid = blend_label_maps(d_a, d_b, [0.5], (1, 2, 3))[0]
    assert (a == 1).sum() < (mid == 1).sum() < (b == 1).sum()


def test_refinement_stops_at_the_first_valid_shape_on_the_path():
    from echolatent.guarantees.refine import blend_label_maps, refine_toward, signed_distances

    original = np.stack([render(0.35), render(0.4)])
    target = np.stack([render(0.9), render(0.9)])
    n_bis = 8
    maps, lam = refine_toward(original, target, np.ones((2, 2)), lambda m, rows: valid_maps(m, SPACING),
                              n_bisections=n_bis)
    assert valid_maps(maps, SPACING).all()
    assert (0 < lam).all() and (lam < 1).all()
    for i in range(2):
        d_a, d_b = signed_distances(original[i], (1, 2, 3))[None], signed_distances(target[i], (1, 2, 3))[None]
        np.testing.assert_array_equal(maps[i], blend_label_maps(d_a, d_b, [lam[i]], (1, 2, 3))[0])
        before = blend_label_maps(d_a, d_b, [lam[i] - 2.0 ** -n_bis], (1, 2, 3))
        assert not valid_maps(before, SPACING)[0]
    # closer to the original than the target is (the point of refining)
    dice_refined = [np.mean(dice_of(maps[i], original[i])) for i in range(2)]
    dice_target = [np.mean(dice_of(target[i], original[i])) for i in range(2)]
    assert all(r > t for r, t in zip(dice_refined, dice_target))


def dice_of(a, b):
    return [2 * ((a == k) & (b == k)).sum() / ((a == k).sum() + (b == k).sum()) for k in (1, 2, 3)]


def test_correct_frames_refines_in_image_space_on_request(model):
    scales = [1.0, 0.35]
    masks = np.stack([render(s) for s in scales])
    codes = np.array([[s, 0.0] for s in scales])
    plain = correct_frames(model, masks, SPACING, np.array([[0.8, 0.0]]), codes=codes)
    refined = correct_frames(model, masks, SPACING, np.array([[0.8, 0.0]]), codes=codes, refine="image")
    assert plain.lam[1] == 1.0 and 0 < refined.lam[1] <= 1 and np.isnan(refined.lam[0])
    assert refined.masks[0].tobytes() == masks[0].tobytes()
    assert valid_maps(refined.masks[1:], SPACING)[0]
    assert np.mean(dice_of(refined.masks[1], masks[1])) >= np.mean(dice_of(plain.masks[1], masks[1]))


def test_component_reversion_changes_only_what_validity_needs():
    from echolatent.guarantees.refine import revert_components

    clean = render(1.0)
    original = clean.copy()
    original[18:22, 22:26] = 0  # a hole in the LV (criterion: holes in the LV); 16 pixels
    assert (clean[18:22, 22:26] == 1).all() and not valid_maps(original[None], SPACING)[0]
    correction = render(1.04)  # valid, but every boundary moved a little too
    assert valid_maps(correction[None], SPACING)[0]
    maps, kept = revert_components(original[None], correction[None], lambda m, rows: valid_maps(m, SPACING))
    expected = original.copy()
    expected[18:22, 22:26] = correction[18:22, 22:26]  # the filled hole is the one change validity needs
    np.testing.assert_array_equal(maps[0], expected)
    assert kept[0] == pytest.approx(16 / (original != correction).sum())
    # nothing to give back when the correction changed only what was needed
    same, kept_all = revert_components(original[None], expected[None], lambda m, rows: valid_maps(m, SPACING))
    np.testing.assert_array_equal(same[0], expected)
    assert kept_all[0] == 1.0


def test_a_stored_code_invalid_on_the_frame_grid_is_passed_over_for_the_next(model):
    # the first stored code (0.38) was wrongly kept: it decodes to an invalid heart; 0.8 is the next nearest
    assert not is_valid([0.38])[0] and is_valid([0.8])[0]
    masks = np.stack([render(0.35)])
    stored = np.array([[0.38, 0.0], [0.8, 0.0], [1.4, 0.0]])
    result = correct_frames(model, masks, SPACING, stored, codes=np.array([[0.35, 0.0]]))
    assert result.status.tolist() == ["corrected"] and result.nearest_index[0] == 1
    assert result.nearest_distance[0] == pytest.approx(0.45)
    assert valid_maps(result.masks, SPACING)[0]
    # with one candidate allowed, the frame is reported, never silently kept as corrected
    once = correct_frames(model, masks, SPACING, stored, codes=np.array([[0.35, 0.0]]), max_candidates=1)
    assert once.status.tolist() == ["uncorrectable"] and once.masks[0].tobytes() == masks[0].tobytes()
