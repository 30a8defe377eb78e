"""Densification of a latent space (TMI 2020): rejection sampling and validity filtering.

Painchaud et al. (IEEE TMI 2020) fill the latent space of a trained mask VAE with millions
of codes whose decodings are anatomically valid, so that any implausible segmentation can
later be replaced by the nearest valid shape (:mod:`echolatent.guarantees.correction`).

The steps, each a pure function:

:func:`fit_kde`
    the target density P: a Gaussian kernel density (Parzen window) on the encoded
    training codes, as in the reference sampler (``vitalab/vital``
    ``rejection_sampling.py``); the kernel covariance is the codes' full covariance
    scaled by Scott's factor ``n ** (-1 / (d + 4))`` (the reference picks the bandwidth
    by a cross-validated grid search; a bandwidth can be passed instead).
:func:`fit_gaussian`
    the proposal Q: a full-covariance Gaussian with the codes' mean and covariance.
:func:`log_bound`
    ``log M``, the envelope constant, from the maximum of ``P / Q`` over the training codes.
:func:`rejection_sample`
    the standard rejection sampler: draw ``z ~ Q`` and accept it with probability
    ``P(z) / (M Q(z))``; batched, seeded by a numpy ``Generator``. Independent of any
    model so that it can be checked on a known density.
:func:`sample_kde`
    exact draws from the same target P without rejection: a KDE is a Gaussian mixture, so a
    draw is a training code picked at random plus kernel noise (acceptance 1). This is the
    default of :func:`densify` (``sampler="kde"``): on a trained model the KDE of a few
    thousand codes in 16 dimensions is so peaked against the Gaussian proposal that the
    envelope ``M = max P / Q`` accepts about 1 proposal in 10^16 (measured in
    ``benchmarks/README.md``), and a lowered envelope (``bound_quantile``) samples
    ``min(P, M Q)`` instead of P. ``sampler="rejection"`` keeps the paper's sampler.
:func:`valid_maps`
    the 12 criteria (:func:`~echolatent.shape.criteria.anatomical_metrics`) on a batch of
    label maps -> one bool per map.
:func:`densify`
    all of it with a model: sample, decode in batches, keep the valid codes.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy.special import logsumexp

from echolatent.labels import LA, LV, MYO
from echolatent.models.inference import decode_masks, knows_atrium
from echolatent.shape.criteria import anatomical_metrics, criteria_validity

__all__ = ["GaussianDensity", "KernelDensity", "fit_gaussian", "fit_kde", "log_bound", "rejection_sample",
           "sample_kde", "SAMPLERS", "RejectionResult", "valid_maps", "model_labels", "Densified", "densify"]

LOG_2PI = np.log(2.0 * np.pi)

#: How :func:`densify` draws codes from the KDE target: exactly (``kde``) or by the TMI 2020
#: rejection sampler from a Gaussian proposal (``rejection``).
SAMPLERS = ("kde", "rejection")


def _cholesky(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a covariance; a tiny ridge if it is singular (collapsed latent dims)."""
    cov = np.atleast_2d(np.asarray(cov, dtype=np.float64))
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        # a VAE often leaves some dimensions unused (posterior collapse): their empirical variance is
        # ~0 and the covariance singular; a ridge relative to the mean variance keeps Q a proper density
        ridge = 1e-9 * max(float(np.trace(cov)) / len(cov), 1e-300)
        return np.linalg.cholesky(cov + ridge * np.eye(len(cov)))


def _gaussian_logpdf(z: np.ndarray, mean: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """log N(z; mean, L L^T) for rows of ``z`` (N, D)."""
    from scipy.linalg import solve_triangular
    diff = np.atleast_2d(z) - mean
    white = solve_triangular(chol, diff.T, lower=True)  # L^-1 (z - mean), (D, N)
    log_det = 2.0 * np.log(np.diag(chol)).sum()
    return -0.5 * ((white ** 2).sum(axis=0) + log_det + len(mean) * LOG_2PI)


@dataclasses.dataclass(frozen=True)
class GaussianDensity:
    """A full-covariance Gaussian N(mean, cov); ``chol`` is the lower Cholesky factor of ``cov``."""

    mean: np.ndarray
    cov: np.ndarray
    chol: np.ndarray

    def log_pdf(self, z: np.ndarray) -> np.ndarray:
        """Log density at the rows of ``z`` (N, D)."""
        return _gaussian_logpdf(z, self.mean, self.chol)


@dataclasses.dataclass(frozen=True)
class KernelDensity:
    """Gaussian kernel density: the mean of N(point_i, L L^T) over the stored points.

    The points are stored whitened (``L^-1 point``), so the kernel is isotropic there and the
    squared distances of a batch to all points are one matrix product per block of points.
    """

    points: np.ndarray
    kernel_chol: np.ndarray
    block_size: int = 4096

    def __post_init__(self):
        from scipy.linalg import solve_triangular
        whiten = solve_triangular(self.kernel_chol, np.eye(len(self.kernel_chol)), lower=True)
        white = self.points @ whiten.T
        log_norm = (-np.log(np.diag(self.kernel_chol)).sum() - 0.5 * self.points.shape[1] * LOG_2PI
                    - np.log(len(self.points)))
        object.__setattr__(self, "_whiten", whiten)
        object.__setattr__(self, "_white", white)
        object.__setattr__(self, "_white_sq", (white ** 2).sum(1))
        object.__setattr__(self, "_log_norm", log_norm)

    def log_pdf(self, z: np.ndarray) -> np.ndarray:
        """Log density at the rows of ``z`` (N, D), in blocks of points (memory ~ N x block_size)."""
        zw = np.atleast_2d(np.asarray(z, dtype=np.float64)) @ self._whiten.T
        zw_sq = (zw ** 2).sum(1)[:, None]
        parts = []
        for start in range(0, len(self._white), self.block_size):
            p, p_sq = self._white[start:start + self.block_size], self._white_sq[start:start + self.block_size]
            d2 = zw_sq - 2.0 * zw @ p.T + p_sq[None, :]
            parts.append(logsumexp(-0.5 * np.maximum(d2, 0.0), axis=1))
        return (parts[0] if len(parts) == 1 else logsumexp(np.stack(parts, axis=1), axis=1)) + self._log_norm


def fit_gaussian(codes: np.ndarray) -> GaussianDensity:
    """The Gaussian with the mean and (full, unbiased) covariance of ``codes`` (N, D)."""
    codes = np.atleast_2d(np.asarray(codes, dtype=np.float64))
    if len(codes) < 2:
        raise ValueError(f"fit_gaussian needs at least 2 codes, got {len(codes)}")
    cov = np.atleast_2d(np.cov(codes, rowvar=False))
    return GaussianDensity(codes.mean(axis=0), cov, _cholesky(cov))


def fit_kde(codes: np.ndarray, bandwidth: float | None = None) -> KernelDensity:
    """Gaussian KDE of ``codes`` (N, D): kernel covariance ``(bandwidth ** 2) * cov(codes)``.

    ``bandwidth`` defaults to Scott's factor ``N ** (-1 / (D + 4))`` (as ``scipy.stats.gaussian_kde``).
    """
    codes = np.atleast_2d(np.asarray(codes, dtype=np.float64))
    n, d = codes.shape
    if n < 2:
        raise ValueError(f"fit_kde needs at least 2 codes, got {n}")
    if bandwidth is None:
        bandwidth = n ** (-1.0 / (d + 4))
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth!r}")
    cov = np.atleast_2d(np.cov(codes, rowvar=False)) * float(bandwidth) ** 2
    return KernelDensity(codes, _cholesky(cov))


def log_bound(log_target: Callable[[np.ndarray], np.ndarray], proposal: GaussianDensity, points: np.ndarray,
              *, quantile: float = 1.0, margin: float = 1.0) -> float:
    """``log M`` with ``M = margin * quantile_q(P / Q)`` over ``points`` (the training codes).

    As in the reference sampler, the envelope is measured where the data are, not proven:
    ``M Q >= P`` holds at every training code with ``quantile=1`` but may fail in between.
    :func:`rejection_sample` counts the proposals where it fails (``n_over_bound``); there the
    sampler under-represents P. ``margin > 1`` buys a safer envelope at the price of
    acceptance (rate = 1 / M for a normalised P).
    """
    ratio = log_target(points) - proposal.log_pdf(points)
    return float(np.quantile(ratio, quantile) + np.log(margin))


@dataclasses.dataclass(frozen=True)
class RejectionResult:
    """Accepted samples (n, D), the number of proposals drawn, and those where ``P > M Q``."""

    samples: np.ndarray
    n_proposed: int
    n_over_bound: int

    @property
    def acceptance_rate(self) -> float:
        return len(self.samples) / self.n_proposed if self.n_proposed else float("nan")


def rejection_sample(log_target: Callable[[np.ndarray], np.ndarray], proposal_mean, proposal_cov, n: int,
                     rng: np.random.Generator, log_m: float, *, batch_size: int = 65536,
                     max_proposals: int | None = None) -> RejectionResult:
    """Draw ``n`` samples of the density ``exp(log_target)`` by rejection from a Gaussian proposal.

    Parameters
    ----------
    log_target : callable
        Rows (B, D) -> log density (B,) of the target P (normalised or not: with an
        unnormalised P of mass Z, the acceptance rate is Z / M).
    proposal_mean, proposal_cov : array_like, shapes (D,), (D, D)
        The Gaussian proposal Q.
    n : int
        Number of accepted samples wanted.
    rng : numpy.random.Generator
        The only source of randomness (proposals, then the uniforms), batch after batch.
    log_m : float
        ``log M`` with ``M Q >= P`` (see :func:`log_bound`); each proposal ``z`` is accepted
        with probability ``min(1, P(z) / (M Q(z)))``, so the expected acceptance rate of a
        normalised P is ``1 / M``.
    batch_size : int
        Proposals drawn and evaluated together.
    max_proposals : int, optional
        Stop (with fewer than ``n`` samples) after that many proposals; default ``1000 n`` + a batch.

    Returns
    -------
    RejectionResult
        ``samples`` (n, D) in the order accepted, ``n_proposed``, ``n_over_bound`` (proposals
        with ``P > M Q``: a bound too small for exact sampling).
    """
    mean = np.atleast_1d(np.asarray(proposal_mean, dtype=np.float64))
    chol = _cholesky(proposal_cov)
    if max_proposals is None:
        max_proposals = 1000 * int(n) + int(batch_size)
    kept, n_kept, n_proposed, n_over = [], 0, 0, 0
    while n_kept < n and n_proposed < max_proposals:
        size = int(min(batch_size, max_proposals - n_proposed))
        z = mean + rng.standard_normal((size, len(mean))) @ chol.T
        log_ratio = np.asarray(log_target(z), dtype=np.float64) - _gaussian_logpdf(z, mean, chol) - log_m
        n_over += int((log_ratio > 0).sum())
        accept = np.log(rng.random(size)) < log_ratio  # u < P / (M Q), in logs (no overflow)
        accepted = z[accept]
        if n_kept + len(accepted) >= n:
            # the proposals after the n-th acceptance were never needed: count only those before it
            cut = n - n_kept
            last = np.flatnonzero(accept)[cut - 1]
            accepted, size = accepted[:cut], int(last) + 1
        kept.append(accepted)
        n_kept += len(accepted)
        n_proposed += size
    samples = np.concatenate(kept) if kept else np.zeros((0, len(mean)))
    return RejectionResult(samples, n_proposed, n_over)


def sample_kde(density: KernelDensity, n: int, rng: np.random.Generator, *, batch_size: int = 65536) -> np.ndarray:
    """``n`` exact draws (n, D) from a Gaussian KDE: a stored point at random plus kernel noise.

    A KDE is the mixture ``mean_i N(point_i, L L^T)``, so picking ``i`` uniformly and adding
    ``L e`` with ``e ~ N(0, I)`` samples it exactly; no envelope, no rejection. Batched in
    ``batch_size`` draws (first the ``batch_size`` indices, then their noise), so the draws for a
    given ``rng`` depend on ``batch_size`` but not on anything else.
    """
    points = np.asarray(density.points, dtype=np.float64)
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    chol = np.asarray(density.kernel_chol, dtype=np.float64)
    parts = []
    for start in range(0, int(n), int(batch_size)):
        size = min(int(batch_size), int(n) - start)
        index = rng.integers(0, len(points), size)
        parts.append(points[index] + rng.standard_normal((size, points.shape[1])) @ chol.T)
    return np.concatenate(parts) if parts else np.zeros((0, points.shape[1]))


def model_labels(model) -> tuple[int, ...]:
    """The label set a model's decodings are checked on: (LV, MYO, LA), or (LV, MYO) without an atrium class."""
    return (LV, MYO, LA) if knows_atrium(model) else (LV, MYO)


def valid_maps(masks: np.ndarray, spacing, *, grid="auto", labels: Sequence[int] = (LV, MYO, LA),
               thresholds: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
    """One bool per label map (N, H, W): True iff it passes all the applicable criteria of the 12.

    ``spacing`` (one ``(h, w)`` in mm, or one per map) and ``grid`` are those of
    :func:`~echolatent.shape.criteria.anatomical_metrics`: a decoded map is checked on the
    same grid as the frames it may replace.
    """
    if len(masks) == 0:
        return np.zeros(0, bool)
    df = anatomical_metrics(masks, spacing, grid=grid, labels=labels, thresholds=thresholds)
    return np.array(criteria_validity(df, labels=labels, thresholds=thresholds).all(axis=1), dtype=bool)  # writable


@dataclasses.dataclass(frozen=True)
class Densified:
    """The valid codes of a densification and its rates.

    ``codes`` (n_valid, D): accepted codes whose decoding passed the criteria;
    ``acceptance_rate``: accepted / proposed by the rejection sampler;
    ``validity_rate``: valid / accepted; ``n_sampled``: accepted codes decoded and checked;
    ``log_m``: the envelope used; ``n_over_bound``: proposals where ``P > M Q``.
    """

    codes: np.ndarray
    acceptance_rate: float
    validity_rate: float
    n_sampled: int
    log_m: float
    n_over_bound: int


def densify(model, train_codes: np.ndarray, n: int, rng: np.random.Generator, *, spacing, grid="auto",
            labels: Sequence[int] | None = None, thresholds=None, bandwidth: float | None = None,
            sampler: str = "kde", bound_quantile: float = 1.0, bound_margin: float = 1.0, sample_batch_size: int = 65536,
            batch_size: int = 4096, decode_batch_size: int = 256, device="cpu") -> Densified:
    """Sample ``n`` codes from a KDE of ``train_codes``, decode them, keep the anatomically valid ones.

    Parameters
    ----------
    model : torch.nn.Module
        Anything with ``decode(z)`` -> logits (B, C, S, S) and ``config.n_classes`` /
        ``config.input_size`` (decoded through :func:`~echolatent.models.inference.decode_masks`).
    train_codes : ndarray (N, D)
        Encoded training codes (posterior means): the KDE target P and the Gaussian proposal Q
        (their mean and full covariance) are fitted on them.
    n : int
        Codes to sample (all are decoded and checked; the valid ones are returned).
    rng : numpy.random.Generator
    spacing : (h, w)
        Pixel size (mm) of the decoded maps (the model grid), for the criteria.
    grid, labels, thresholds
        As :func:`valid_maps`; ``labels`` defaults to the model's (:func:`model_labels`).
    bandwidth : float, optional
        KDE bandwidth factor (default Scott's).
    sampler : {"kde", "rejection"}
        ``kde`` (default): exact draws from the KDE (:func:`sample_kde`, acceptance 1);
        ``rejection``: the TMI 2020 rejection sampler from the Gaussian proposal.
    bound_quantile, bound_margin : float
        ``sampler="rejection"`` only: ``M`` of :func:`log_bound`. With ``bound_quantile=1`` (default) the envelope covers P at
        every training code and the samples follow P there; a smaller quantile (the reference's
        75th-percentile option) raises the acceptance rate, at the price of sampling
        ``min(P, M Q)`` (tails under-represented) — the latent space is still covered, which
        is what the correction needs.
    sample_batch_size : int
        Proposals drawn per step of the sampler (fixes, with ``rng``, the sampled codes).
    batch_size : int
        Codes sampled, decoded and checked per step (bounds the memory of the maps).
    decode_batch_size, device
        Passed to :func:`decode_masks`.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    labels = model_labels(model) if labels is None else tuple(labels)
    target = fit_kde(train_codes, bandwidth)
    if sampler == "kde":
        samples = sample_kde(target, n, rng, batch_size=sample_batch_size)
        result, log_m = RejectionResult(samples, len(samples), 0), 0.0
    else:
        proposal = fit_gaussian(train_codes)
        log_m = log_bound(target.log_pdf, proposal, target.points, quantile=bound_quantile, margin=bound_margin)
        result = rejection_sample(target.log_pdf, proposal.mean, proposal.cov, n, rng, log_m,
                                  batch_size=sample_batch_size)
    keep = []
    for start in range(0, len(result.samples), batch_size):
        z = result.samples[start:start + batch_size]
        masks = decode_masks(model, z, batch_size=decode_batch_size, device=device)
        keep.append(valid_maps(masks, spacing, grid=grid, labels=labels, thresholds=thresholds))
    ok = np.concatenate(keep) if keep else np.zeros(0, bool)
    n_sampled = len(result.samples)
    return Densified(codes=result.samples[ok], acceptance_rate=result.acceptance_rate,
                     validity_rate=float(ok.mean()) if n_sampled else float("nan"), n_sampled=n_sampled,
                     log_m=log_m, n_over_bound=result.n_over_bound)
