"""Disentanglement and interpretability scores of latent codes against shape attributes.

The metric battery of the AR-VAE paper (Pati & Lerch, "Attribute-based regularization of latent
spaces for variational auto-encoders", Neural Comput. Appl. 2021; reference code
``ashispati/ar-vae``, ``utils/evaluation.py``), as summarised in
``shared/reference/latent_models.md`` section 6. Inputs: ``codes`` Z (N x K, posterior means,
one row per frame) and ``attributes`` A (N x M), on a held-out split. Dimension ``k`` is the
``k``-th column of ``codes`` (``mu_k`` when the columns are ``mu_0..mu_{K-1}``).

Mutual information (``estimator``)
----------------------------------
``"knn"`` (default, the AR-VAE paper's variant):
    MI[k, m] = ``sklearn.feature_selection.mutual_info_regression(Z, A[:, m])`` (Kraskov kNN
    estimator, ``n_neighbors = 3``, negative estimates clipped to 0, sklearn's tiny jitter seeded
    by ``seed``). The attribute "entropy" normalising MIG is the same estimator applied to the
    attribute with itself, H(a) = MI(a, a), which for continuous data without ties equals
    psi(N) - psi(n_neighbors + 1) (psi: digamma; sklearn's jitter makes exactly one of the two
    copies count each point's k-th joint neighbour): it grows with N, so kNN-MIG values are
    comparable only between evaluations on similar numbers of frames.
``"binned"`` (the original MIG of Chen et al. 2018 and ``disentanglement_lib``):
    codes and attributes each discretised into ``n_bins`` (default 20) equal-width bins over
    their range (``np.histogram_bin_edges``, the maximum in the last bin), MI[k, m] =
    ``sklearn.metrics.mutual_info_score`` of the bin indices, H(a) = the discrete entropy of the
    binned attribute (nats). MIG is then bounded by 1.

Scores
------
interpretability
    Per attribute m: the dimension k* with the largest MI[k, m]; the score is the R^2 of the
    1-D linear regression of a_m on z_k* (the squared Pearson correlation). Reported with the
    chosen dimension (which should be the regularised one); overall: the mean R^2.
mig
    Per attribute: (largest - second largest MI over dimensions) / H(a_m); overall: the mean.
sap
    S[k, m] = cov(z_k, a_m)^2 / (var z_k var a_m) (the R^2 of a linear fit; 0 for a dimension of
    variance <= 1e-12); per attribute: the gap between the two largest S over dimensions;
    overall: the mean.
modularity
    Per dimension k, with the squared MI over attributes: 1 - (sum_m MI^2 - max_m MI^2) /
    (max_m MI^2 (M - 1)), set to 0 when max_m MI is 0 (a dimension informative of no attribute,
    as the reference code does); overall: the mean over all dimensions. NaN with one attribute.
scc
    |Spearman rho| of every (dimension, attribute) pair, set to 0 when p > 0.05 (or rho is
    undefined: a constant dimension); per attribute: the maximum over dimensions; overall: the mean.
scc_assigned
    (only with ``assigned``) the same |rho| for the attribute's regularised dimension instead of
    the maximum (AR-VAE: attribute l is tied to dimension l); overall: the mean.

Table ``latent_disentanglement`` (:data:`SCORE_COLUMNS`, one row per score):
    ``metric`` (``interpretability``, ``mig``, ``sap``, ``modularity``, ``scc``,
    ``scc_assigned``), ``scope`` (``attribute``: one attribute's score, ``dimension``: one
    dimension's score (modularity), ``overall``: the metric), ``attribute`` (empty unless scope
    is ``attribute``), ``dimension`` (the dimension scored (modularity), chosen
    (interpretability: largest MI; mig, sap, scc: the top dimension, for scc NaN when every
    |rho| is 0), or the assigned one (scc_assigned); NaN for ``overall``),
    ``assigned_dimension`` (the attribute's regularised dimension, NaN if none), ``value``,
    ``n`` (frames), ``estimator`` (MI estimator, with the number of neighbours or bins:
    ``knn3``, ``binned20``).

The Spearman matrix (:func:`spearman_matrix`): ``attribute, dimension, rho, p, n`` (scipy's
``spearmanr``, t-distribution p-value; rho and p NaN for a constant dimension or attribute).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

__all__ = ["SCORE_COLUMNS", "ESTIMATORS", "spearman_matrix", "mutual_information", "attribute_entropy",
           "r2_matrix", "interpretability", "mig", "sap", "modularity", "scc", "disentanglement_scores"]

SCORE_COLUMNS = ["metric", "scope", "attribute", "dimension", "assigned_dimension", "value", "n", "estimator"]
ESTIMATORS = ("knn", "binned")
#: SCC: |rho| counts only where its p-value is at most this (the reference code's 0.05).
SCC_ALPHA = 0.05


def _arrays(codes, attributes):
    """``(Z, A, names)``: float arrays without NaN and the attribute names."""
    Z = np.asarray(codes, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"codes must be a 2-D array (frames x dimensions), got shape {Z.shape}")
    names = ([str(c) for c in attributes.columns] if isinstance(attributes, pd.DataFrame)
             else [f"attribute_{m}" for m in range(np.asarray(attributes).reshape(len(Z), -1).shape[1])])
    A = np.asarray(attributes, dtype=np.float64).reshape(len(Z), -1)
    if not np.isfinite(Z).all():
        raise ValueError(f"codes have {int((~np.isfinite(Z)).sum())} NaN or infinite values: leave those frames out")
    if not np.isfinite(A).all():
        bad = [n for n, col in zip(names, A.T) if not np.isfinite(col).all()]
        raise ValueError(f"attributes {bad} have NaN or infinite values: leave those frames out")
    return Z, A, names


def _check_attributes(A, names):
    constant = [n for n, col in zip(names, A.T) if np.ptp(col) == 0]
    if constant:
        raise ValueError(f"attribute(s) {constant} constant over the {len(A)} frames: no disentanglement score "
                         f"can be computed against them")


def spearman_matrix(codes, attributes) -> pd.DataFrame:
    """Spearman rho and p of every (attribute, dimension) pair: ``attribute, dimension, rho, p, n``.

    One ``scipy.stats.spearmanr`` call on the stacked columns (each column ranked once; p from
    the t distribution with n - 2 degrees of freedom). rho and p are NaN where the dimension or
    the attribute is constant (a collapsed dimension) or with fewer than 3 frames.
    """
    from scipy.stats import spearmanr

    Z, A, names = _arrays(codes, attributes)
    K, M = Z.shape[1], A.shape[1]
    rho, p = np.full((K, M), np.nan), np.full((K, M), np.nan)
    varying_z, varying_a = np.ptp(Z, axis=0) > 0, np.ptp(A, axis=0) > 0
    if len(Z) >= 3 and varying_z.any() and varying_a.any():
        stacked = np.column_stack([Z[:, varying_z], A[:, varying_a]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = spearmanr(stacked)
        k = int(varying_z.sum())
        r = np.atleast_2d(result.statistic)
        q = np.atleast_2d(result.pvalue)
        if stacked.shape[1] == 2:  # spearmanr returns scalars for two columns
            r, q = np.array([[1.0, r[0, 0]], [r[0, 0], 1.0]]), np.array([[0.0, q[0, 0]], [q[0, 0], 0.0]])
        rho[np.ix_(varying_z, varying_a)] = r[:k, k:]
        p[np.ix_(varying_z, varying_a)] = q[:k, k:]
    dims, attrs = np.meshgrid(np.arange(K), np.arange(M), indexing="xy")
    return pd.DataFrame({"attribute": np.asarray(names, dtype=object)[attrs.ravel()], "dimension": dims.ravel(),
                         "rho": rho.T.ravel(), "p": p.T.ravel(), "n": len(Z)})


def _binned(x, n_bins: int) -> np.ndarray:
    """Equal-width bin indices (1..n_bins) of each column, as ``disentanglement_lib``'s histogram discretisation."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    out = np.empty(x.shape, dtype=np.int64)
    for j, col in enumerate(x.T):
        edges = np.histogram_bin_edges(col, bins=n_bins)
        out[:, j] = np.digitize(col, edges[:-1])
    return out


def _check_estimator(estimator, n_neighbors, n_bins, n):
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown mutual-information estimator {estimator!r}; one of {list(ESTIMATORS)}")
    if estimator == "knn" and n <= n_neighbors + 1:
        raise ValueError(f"{n} frames: the kNN estimator needs more than n_neighbors + 1 = {n_neighbors + 1}")
    if estimator == "binned" and n_bins < 2:
        raise ValueError(f"n_bins must be at least 2, got {n_bins}")


def mutual_information(codes, attributes, *, estimator: str = "knn", n_neighbors: int = 3, n_bins: int = 20,
                       seed: int = 0) -> np.ndarray:
    """MI[k, m] (nats) between dimension k and attribute m, shape (K, M). See the module docstring."""
    Z, A, _ = _arrays(codes, attributes)
    _check_estimator(estimator, n_neighbors, n_bins, len(Z))
    mi = np.zeros((Z.shape[1], A.shape[1]))
    if estimator == "knn":
        from sklearn.feature_selection import mutual_info_regression

        varying = np.ptp(Z, axis=0) > 0  # a constant column carries no information (and sklearn cannot scale it)
        for m in range(A.shape[1]):
            if varying.any() and np.ptp(A[:, m]) > 0:
                mi[varying, m] = mutual_info_regression(Z[:, varying], A[:, m], n_neighbors=n_neighbors,
                                                        random_state=seed)
    else:
        from sklearn.metrics import mutual_info_score

        bz, ba = _binned(Z, n_bins), _binned(A, n_bins)
        for k in range(Z.shape[1]):
            for m in range(A.shape[1]):
                mi[k, m] = mutual_info_score(ba[:, m], bz[:, k])
    return mi


def attribute_entropy(attributes, *, estimator: str = "knn", n_neighbors: int = 3, n_bins: int = 20,
                      seed: int = 0) -> np.ndarray:
    """The normaliser of MIG per attribute, shape (M,): kNN MI(a, a), or the entropy of the binned attribute."""
    A = np.asarray(attributes, dtype=np.float64)
    A = A.reshape(len(A), -1)
    _check_estimator(estimator, n_neighbors, n_bins, len(A))
    if estimator == "knn":
        from sklearn.feature_selection import mutual_info_regression

        return np.array([mutual_info_regression(a[:, None], a, n_neighbors=n_neighbors, random_state=seed)[0]
                         for a in A.T])
    from sklearn.metrics import mutual_info_score

    return np.array([mutual_info_score(b, b) for b in _binned(A, n_bins).T])


def r2_matrix(codes, attributes) -> np.ndarray:
    """S[k, m] = cov(z_k, a_m)^2 / (var z_k var a_m), shape (K, M); 0 for a dimension of variance <= 1e-12."""
    Z, A, _ = _arrays(codes, attributes)
    Zc, Ac = Z - Z.mean(0), A - A.mean(0)
    cov = Zc.T @ Ac / (len(Z) - 1)
    var_z, var_a = Zc.var(0, ddof=1), Ac.var(0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        S = cov ** 2 / np.outer(var_z, var_a)
    S[var_z <= 1e-12, :] = 0.0
    return np.nan_to_num(S, nan=0.0)


def _top_two(matrix):
    """Per column: index of the largest entry, largest minus second largest."""
    order = np.argsort(-matrix, axis=0, kind="stable")
    cols = np.arange(matrix.shape[1])
    return order[0], matrix[order[0], cols] - matrix[order[1], cols]


def interpretability(mi: np.ndarray, r2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per attribute: the dimension of largest MI and the R^2 of the 1-D regression on it."""
    chosen = np.argmax(mi, axis=0)
    return chosen, r2[chosen, np.arange(mi.shape[1])]


def mig(mi: np.ndarray, entropy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per attribute: the top dimension and (top-1 - top-2 MI) / H(a). Needs at least two dimensions."""
    if mi.shape[0] < 2:
        raise ValueError("MIG needs at least two latent dimensions")
    top, gap = _top_two(mi)
    return top, gap / entropy


def sap(r2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per attribute: the top dimension and the gap between the two largest R^2 over dimensions."""
    if r2.shape[0] < 2:
        raise ValueError("SAP needs at least two latent dimensions")
    return _top_two(r2)


def modularity(mi: np.ndarray) -> np.ndarray:
    """Per dimension: 1 - (sum MI^2 - max MI^2) / (max MI^2 (M - 1)); 0 where max MI = 0; NaN if M = 1."""
    squared = np.square(mi)
    top = squared.max(axis=1)
    if mi.shape[1] < 2:
        return np.full(mi.shape[0], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - (squared.sum(axis=1) - top) / (top * (mi.shape[1] - 1))
    score[top == 0] = 0.0
    return score


def scc(rho: np.ndarray, p: np.ndarray, alpha: float = SCC_ALPHA) -> np.ndarray:
    """|rho| (K, M) kept where p <= alpha, else 0 (NaN rho: 0)."""
    rho, p = np.asarray(rho, dtype=np.float64), np.asarray(p, dtype=np.float64)
    return np.where(np.isfinite(rho) & (p <= alpha), np.abs(rho), 0.0)


def disentanglement_scores(codes, attributes, *, assigned: dict | None = None, estimator: str = "knn",
                           n_neighbors: int = 3, n_bins: int = 20, seed: int = 0) -> pd.DataFrame:
    """Interpretability, MIG, SAP, modularity and SCC of ``codes`` against ``attributes``.

    Parameters
    ----------
    codes : array_like, shape (N, K)
        Posterior means, one row per frame (no NaN); dimension k is column k.
    attributes : DataFrame, shape (N, M)
        One column per attribute (no NaN, none constant).
    assigned : dict, optional
        Attribute name -> its regularised dimension (AR-VAE); adds ``assigned_dimension`` and
        the ``scc_assigned`` rows.
    estimator, n_neighbors, n_bins, seed
        Mutual-information estimator (module docstring); ``seed`` seeds sklearn's jitter.

    Returns
    -------
    DataFrame
        :data:`SCORE_COLUMNS`, see the module docstring.
    """
    Z, A, names = _arrays(codes, attributes)
    _check_attributes(A, names)
    assigned = {str(k): int(v) for k, v in (assigned or {}).items()}
    unknown = sorted(set(assigned) - set(names))
    if unknown:
        raise ValueError(f"assigned names attributes {unknown} absent from the attributes {names}")
    bad = {a: d for a, d in assigned.items() if not 0 <= d < Z.shape[1]}
    if bad:
        raise ValueError(f"assigned dimensions {bad} outside 0..{Z.shape[1] - 1}")
    mi = mutual_information(Z, A, estimator=estimator, n_neighbors=n_neighbors, n_bins=n_bins, seed=seed)
    entropy = attribute_entropy(A, estimator=estimator, n_neighbors=n_neighbors, n_bins=n_bins, seed=seed)
    r2 = r2_matrix(Z, A)
    spearman = spearman_matrix(Z, pd.DataFrame(A, columns=names))
    rho = spearman["rho"].to_numpy().reshape(len(names), Z.shape[1]).T
    p = spearman["p"].to_numpy().reshape(len(names), Z.shape[1]).T
    scc_matrix = scc(rho, p)
    label = f"knn{n_neighbors}" if estimator == "knn" else f"binned{n_bins}"
    rows = []

    def add(metric, scope, attribute, dimension, value):
        rows.append({"metric": metric, "scope": scope, "attribute": attribute,
                     "dimension": np.nan if dimension is None or dimension < 0 else int(dimension),
                     "assigned_dimension": assigned.get(attribute, np.nan) if attribute else np.nan,
                     "value": float(value), "n": len(Z), "estimator": label})

    per_attribute = {"interpretability": interpretability(mi, r2), "mig": mig(mi, entropy), "sap": sap(r2),
                     "scc": (np.where(scc_matrix.max(axis=0) > 0, np.argmax(scc_matrix, axis=0), -1),
                             scc_matrix.max(axis=0))}
    for metric, (dims, values) in per_attribute.items():
        for name, dim, value in zip(names, dims, values):
            add(metric, "attribute", name, dim, value)
        add(metric, "overall", "", None, np.mean(values))
        if metric == "sap":
            per_dim = modularity(mi)
            for k, value in enumerate(per_dim):
                add("modularity", "dimension", "", k, value)
            add("modularity", "overall", "", None, np.mean(per_dim))
    if assigned:
        values = [scc_matrix[assigned[name], names.index(name)] for name in assigned]
        for name, value in zip(assigned, values):
            add("scc_assigned", "attribute", name, assigned[name], value)
        add("scc_assigned", "overall", "", None, np.mean(values))
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)
