"""Latent codes behind the latent-space figures: interpolations, traversals, prior samples, PCA.

NumPy only (no network): the stage decodes these codes with
:func:`echolatent.models.inference.decode_masks`, and the figure functions of
:mod:`echolatent.figures.latent` draw the decoded shapes and projections.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["mu_columns", "interpolation_codes", "traversal_codes", "prior_codes", "pca"]


def mu_columns(table: pd.DataFrame) -> list[str]:
    """The latent-mean columns ``mu_0, mu_1, ...`` of a latent table, in dimension order."""
    columns = [c for c in table.columns if c.startswith("mu_") and c[3:].isdigit()]
    return sorted(columns, key=lambda c: int(c[3:]))


def interpolation_codes(z0, z1, steps: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``t z0 + (1 - t) z1`` for ``t`` from 1 (``z0``) down to 0 (``z1``).

    Returns
    -------
    t : ndarray (steps,)
    codes : ndarray (steps, D)
    """
    z0, z1 = np.asarray(z0, dtype=float), np.asarray(z1, dtype=float)
    if z0.shape != z1.shape or z0.ndim != 1:
        raise ValueError(f"two codes of the same length are needed, got shapes {z0.shape} and {z1.shape}")
    t = np.linspace(1.0, 0.0, int(steps))
    return t, t[:, None] * z0[None] + (1 - t)[:, None] * z1[None]


def traversal_codes(base, dims, low, high, steps: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Codes that move one dimension at a time from ``low`` to ``high``, the others held at ``base``.

    Parameters
    ----------
    base : array (D,)
        The code the traversals start from (e.g. the mean training code).
    dims : sequence of int
        The traversed dimensions (one row each).
    low, high : sequence of float
        Range of each traversed dimension (e.g. the 1st and 99th percentiles of the training codes).
    steps : int
        Codes per row.

    Returns
    -------
    values : ndarray (len(dims), steps)
        The traversed dimension's value in each code.
    codes : ndarray (len(dims), steps, D)
    """
    base = np.asarray(base, dtype=float)
    dims = [int(d) for d in dims]
    values = np.stack([np.linspace(lo, hi, int(steps)) for lo, hi in zip(low, high)]) if dims else np.zeros((0, steps))
    codes = np.repeat(np.repeat(base[None, None], len(dims), 0), int(steps), 1)
    for row, dim in enumerate(dims):
        codes[row, :, dim] = values[row]
    return values, codes


def prior_codes(n: int, latent_dim: int, seed: int = 0) -> np.ndarray:
    """``n`` codes drawn from the VAE prior N(0, I), reproducibly (``seed``)."""
    return np.random.default_rng(seed).standard_normal((int(n), int(latent_dim)))


def pca(X, n_components: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Principal components of the rows of ``X`` (centred, not scaled: latent dims share one scale).

    Returns
    -------
    scores : ndarray (N, n_components)
        The rows projected on the components; each component's sign is fixed so that its
        largest loading is positive (the same data give the same picture).
    explained : ndarray (n_components,)
        Fraction of the total variance along each component.
    components : ndarray (n_components, D)
    mean : ndarray (D,)
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"PCA needs at least two rows of a 2-D array, got shape {X.shape}")
    mean = X.mean(axis=0)
    _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
    k = min(int(n_components), vt.shape[0])
    components = vt[:k]
    signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
    components = components * signs[:, None]
    total = float((s ** 2).sum())
    explained = (s[:k] ** 2) / total if total > 0 else np.zeros(k)
    return (X - mean) @ components.T, explained, components, mean
