"""Latent-space analyses and disentanglement scores against known truth.

Every expected value is independent of the functions tested: closed forms (Gaussian mutual
information, the Kraskov estimator of MI(a, a), Spearman of a bivariate normal, R^2 of a rotation),
hand-computed small examples, planted covariances and shifts, counting arguments for
permutation p-values, and other libraries (statsmodels) for the test statistics.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import digamma

from echolatent.stats.disentanglement import (SCORE_COLUMNS, attribute_entropy, disentanglement_scores,
                                              mutual_information, spearman_matrix)
from echolatent.stats.latent_space import (CODE_COLUMNS, CORRELATION_COLUMNS, DIRECTION_COLUMNS,
                                           DISENTANGLEMENT_COLUMNS, PCA_COLUMNS, PCA_SCORE_COLUMNS,
                                           PERMUTATION_COLUMNS, attribute_correlations, group_direction,
                                           group_permutation_test, latent_blocks, latent_codes, latent_pca)

K = 8
COVARIATES = ["age", "sex", "bsa"]
AGE_SLOPE = np.linspace(0.03, 0.08, K)   # code units per year: cases are 8 years older
BSA_SLOPE = np.linspace(2.0, -2.0, K)    # code units per m^2: cases are 0.15 m^2 larger


def overall(scores, metric):
    return float(scores.loc[(scores["metric"] == metric) & (scores["scope"] == "overall"), "value"].iloc[0])


def per_attribute(scores, metric):
    part = scores[(scores["metric"] == metric) & (scores["scope"] == "attribute")]
    return dict(zip(part["attribute"], part["value"])), dict(zip(part["attribute"], part["dimension"]))


def rotation(theta):
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


def cohort(n, rng, *, shift=None, views=("a4c",), phases=("ed",), base=None):
    """Analysis-table rows of a confounded cohort: cases older and larger; age and BSA shift every code.

    Codes: base + AGE_SLOPE (age - 55) + BSA_SLOPE (bsa - 1.85) + shift [case] + N(0, I).
    Returns the patients, the codes (``latent.m.mu_k.{view}.{phase}``) and the truth.
    """
    case = np.arange(n) % 2 == 1
    age = rng.normal(55, 8, n) + 8 * case
    sex = rng.choice(["F", "M"], n)
    bsa = rng.normal(1.85, 0.15, n) + 0.15 * case + 0.1 * (sex == "M")
    patients = pd.DataFrame({"patient_id": [f"P{i:04d}" for i in range(n)],
                             "group": np.where(case, "hypertensive", "control"), "age": age, "sex": sex, "bsa": bsa})
    base = np.zeros(K) if base is None else np.asarray(base)
    shift = np.zeros(K) if shift is None else np.asarray(shift)
    columns = {}
    for view in views:
        for phase in phases:
            mu = (base + np.outer(age - 55, AGE_SLOPE) + np.outer(bsa - 1.85, BSA_SLOPE) + np.outer(case, shift)
                  + rng.standard_normal((n, K)))
            for k in range(K):
                columns[f"latent.m.mu_{k}.{view}.{phase}"] = mu[:, k]
    # the adjusted means at the analysed patients' mean covariates (sex has no planted effect)
    control_mean = base + AGE_SLOPE * (age.mean() - 55) + BSA_SLOPE * (bsa.mean() - 1.85)
    truth = {"control": control_mean, "case": control_mean + shift}
    return patients, pd.DataFrame(columns), truth


# =========================================================================== disentanglement scores
def test_knn_mutual_information_matches_closed_forms():
    rng = np.random.default_rng(0)
    n = 2000
    a = rng.standard_normal((n, 2))
    # Kraskov estimator of MI(a, a): sklearn jitters both copies, so for each point exactly one
    # marginal counts its k-th joint neighbour: psi(N) + psi(k) - psi(k) - psi(k + 1).
    assert attribute_entropy(a) == pytest.approx(np.full(2, digamma(n) - digamma(4)), abs=1e-3)
    # bivariate normal with correlation rho: MI = -log(1 - rho^2) / 2
    for rho in (0.3, 0.6, 0.9):
        z = rho * a[:, :1] + math.sqrt(1 - rho ** 2) * a[:, 1:]
        mi = mutual_information(z, pd.DataFrame({"a": a[:, 0]}), seed=1)[0, 0]
        assert mi == pytest.approx(-0.5 * math.log(1 - rho ** 2), abs=0.03), rho


def test_perfectly_disentangled_codes_score_at_the_maximum():
    rng = np.random.default_rng(1)
    n = 2000
    A = pd.DataFrame(rng.standard_normal((n, 3)), columns=["lv_area", "myo_area", "lv_length"])
    Z = np.column_stack([A.to_numpy(), rng.standard_normal(n)])  # dims 0-2 = the attributes, dim 3 noise
    assigned = {"lv_area": 0, "myo_area": 1, "lv_length": 2}
    scores = disentanglement_scores(Z, A, assigned=assigned, seed=0)
    assert list(scores.columns) == SCORE_COLUMNS
    h = digamma(n) - digamma(4)  # MI(z_k, a_k) = MI(a_k, a_k): the gap is 1 minus the runner-up's share
    values, dims = per_attribute(scores, "mig")
    assert all(0.98 < v <= 1.0 + 1e-9 for v in values.values()), values
    assert overall(scores, "mig") > 1 - 0.1 / h
    values, dims = per_attribute(scores, "interpretability")
    assert dims == {a: float(d) for a, d in assigned.items()}  # the chosen dimension is the assigned one
    assert overall(scores, "interpretability") == pytest.approx(1.0)
    assert overall(scores, "sap") > 0.99
    modular = scores[(scores["metric"] == "modularity") & (scores["scope"] == "dimension")]["value"].to_numpy()
    assert (modular[:3] > 0.99).all()
    assert overall(scores, "scc") == pytest.approx(1.0) and overall(scores, "scc_assigned") == pytest.approx(1.0)
    assert set(scores["assigned_dimension"].dropna()) == {0, 1, 2} and (scores["n"] == n).all()
    # the binned variant (20 equal-width bins; H = entropy of the binned attribute): bounded by 1
    U = pd.DataFrame(rng.uniform(size=(5000, 3)), columns=list("abc"))
    binned = disentanglement_scores(U.to_numpy(), U, estimator="binned", n_bins=20)
    assert set(binned["estimator"]) == {"binned20"}
    assert 0.97 < overall(binned, "mig") <= 1.0 and overall(binned, "sap") > 0.99
    assert overall(binned, "modularity") > 0.99


@pytest.mark.parametrize("degrees", [30, 45])
def test_rotated_codes_match_closed_forms(degrees):
    """z = R(theta) a for two independent standard normal attributes.

    corr(z_1, a_1) = cos theta, corr(z_1, a_2) = sin theta (and swapped for z_2), hence
    interpretability R^2 = max(cos^2, sin^2), SAP = |cos^2 - sin^2| = |cos 2 theta|,
    MI = -log|sin theta| and -log|cos theta|, kNN MIG = |log tan theta| / (psi(N) - psi(4)),
    modularity = 1 - (log cos theta / log sin theta)^2 (theta < 45 degrees), Spearman of a
    bivariate normal = 6 / pi asin(rho / 2).
    """
    rng = np.random.default_rng(2)
    n = 2000
    theta = math.radians(degrees)
    A = rng.standard_normal((n, 2))
    Z = A @ rotation(theta).T
    scores = disentanglement_scores(Z, pd.DataFrame(A, columns=["a", "b"]), seed=0)
    c, s = math.cos(theta), math.sin(theta)
    assert overall(scores, "interpretability") == pytest.approx(max(c, s) ** 2, abs=0.03)
    assert overall(scores, "sap") == pytest.approx(abs(math.cos(2 * theta)), abs=0.03)
    assert overall(scores, "mig") == pytest.approx(abs(math.log(math.tan(theta))) / (digamma(n) - digamma(4)),
                                                   abs=0.015)
    assert overall(scores, "scc") == pytest.approx(6 / math.pi * math.asin(max(c, s) / 2), abs=0.03)
    if degrees == 45:  # fully entangled: no gap, no modularity (sampling noise of the kNN estimator only)
        assert overall(scores, "mig") < 0.02 and overall(scores, "sap") < 0.03
        assert overall(scores, "modularity") < 0.3
    else:
        assert overall(scores, "modularity") == pytest.approx(1 - (math.log(c) / math.log(s)) ** 2, abs=0.03)


def test_monotone_but_nonlinear_code():
    """z = exp(a), a ~ N(0, 1): Spearman 1; R^2 of the linear fit = corr(e^a, a)^2 = 1 / (e - 1)."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((20000, 2))
    scores = disentanglement_scores(np.exp(a), pd.DataFrame(a, columns=["a", "b"]), seed=0)
    assert overall(scores, "interpretability") == pytest.approx(1 / (math.e - 1), abs=0.04)
    assert overall(scores, "scc") == pytest.approx(1.0)


def test_hand_computed_binned_example():
    """Eight frames, two bins (split at mid-range), every number by hand.

    a1 = 00001111, a2 = 00110011 (H = log 2 each);
    z1 = a1: MI(z1, a1) = log 2, MI(z1, a2) = 0;
    z2 = 00011111: given a1 = 0 -> 0001, a1 = 1 -> 1111: MI = H(3/8) - H(1/4) / 2;
                   given a2 = 0 -> 0011, a2 = 1 -> 0111: MI = H(3/8) - (H(1/2) + H(1/4)) / 2;
    z3 = 01010101: independent of a1 and a2 (MI 0, correlation 0).
    """
    def h(p):
        return -(p * math.log(p) + (1 - p) * math.log(1 - p))

    a = pd.DataFrame({"a1": [0, 0, 0, 0, 1, 1, 1, 1], "a2": [0, 0, 1, 1, 0, 0, 1, 1]}, dtype=float)
    Z = np.array([[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1], [0, 1, 0, 1, 0, 1, 0, 1]], float).T
    mi = np.array([[math.log(2), 0.0],
                   [h(3 / 8) - h(1 / 4) / 2, h(3 / 8) - (h(1 / 2) + h(1 / 4)) / 2],
                   [0.0, 0.0]])
    assert mutual_information(Z, a, estimator="binned", n_bins=2) == pytest.approx(mi, abs=1e-12)
    scores = disentanglement_scores(Z, a, estimator="binned", n_bins=2, assigned={"a1": 0, "a2": 1})
    # MIG: a1: (log 2 - mi[1, 0]) / log 2; a2: (mi[1, 1] - 0) / log 2
    mig = [(math.log(2) - mi[1, 0]) / math.log(2), mi[1, 1] / math.log(2)]
    assert per_attribute(scores, "mig")[0] == pytest.approx(dict(zip(["a1", "a2"], mig)))
    assert overall(scores, "mig") == pytest.approx(np.mean(mig))
    # R^2 = corr^2: corr(z2, a1)^2 = (3/16)^2 / (15/64 * 1/4) = 3/5; corr(z2, a2)^2 = (1/16)^2 / (15/256) = 1/15
    r2 = {"a1": [1.0, 3 / 5, 0.0], "a2": [0.0, 1 / 15, 0.0]}
    sap = {name: sorted(v)[-1] - sorted(v)[-2] for name, v in r2.items()}
    assert per_attribute(scores, "sap")[0] == pytest.approx(sap)
    # interpretability: a1 -> z1 (R^2 1); a2 -> z2 (largest MI, R^2 1/15)
    values, dims = per_attribute(scores, "interpretability")
    assert dims == {"a1": 0.0, "a2": 1.0} and values == pytest.approx({"a1": 1.0, "a2": 1 / 15})
    # modularity per dimension from the MI rows: z1 -> 1; z2 -> 1 - m_small^2 / m_big^2; z3 (no MI) -> 0
    modularity = [1.0, 1 - (mi[1, 1] / mi[1, 0]) ** 2, 0.0]
    part = scores[(scores["metric"] == "modularity") & (scores["scope"] == "dimension")]
    assert part["value"].to_numpy() == pytest.approx(modularity)
    assert overall(scores, "modularity") == pytest.approx(np.mean(modularity))
    # SCC: Spearman of binary vectors = Pearson; |rho| kept when p <= 0.05 (t test with n - 2 = 6 df):
    # a1: max(1 (z1), sqrt(3/5) = 0.775 (p 0.024)) = 1; a2: z2's sqrt(1/15) = 0.258 (p 0.54) -> 0; z1, z3: 0
    rho = math.sqrt(3 / 5)
    assert 2 * stats.t.sf(rho * math.sqrt(6 / (1 - rho ** 2)), 6) < 0.05
    assert per_attribute(scores, "scc")[0] == pytest.approx({"a1": 1.0, "a2": 0.0})
    assert per_attribute(scores, "scc_assigned")[0] == pytest.approx({"a1": 1.0, "a2": 0.0})
    matrix = spearman_matrix(Z, a)
    assert matrix.loc[(matrix["attribute"] == "a1") & (matrix["dimension"] == 1), "rho"].iloc[0] == pytest.approx(rho)


def test_disentanglement_bad_input():
    rng = np.random.default_rng(4)
    A = pd.DataFrame(rng.standard_normal((200, 2)), columns=["a", "b"])
    Z = np.column_stack([A.to_numpy(), np.full(200, 0.5)])  # a constant (collapsed) dimension
    scores = disentanglement_scores(Z, A)
    matrix = spearman_matrix(Z, A)
    assert matrix[matrix["dimension"] == 2][["rho", "p"]].isna().all().all()
    modular = scores[(scores["metric"] == "modularity") & (scores["scope"] == "dimension")]["value"].to_numpy()
    assert modular[2] == 0.0 and (modular[:2] > 0.9).all()  # documented: no information -> 0
    assert overall(scores, "sap") > 0.9
    bad = Z.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        disentanglement_scores(bad, A)
    with pytest.raises(ValueError, match="constant"):
        disentanglement_scores(Z, A.assign(b=1.0))
    with pytest.raises(ValueError, match="estimator"):
        disentanglement_scores(Z, A, estimator="histogram")
    with pytest.raises(ValueError, match="assigned"):
        disentanglement_scores(Z, A, assigned={"c": 0})


# =========================================================================== attribute correlations (frames)
def frame_table(rng, n_per=600, rhos=(0.8, 0.5)):
    """Frames of two splits and two views; mu_0 and mu_1 bivariate normal with their attribute (rho)."""
    parts = []
    for split in ("train", "test"):
        for view in ("a2c", "a4c"):
            a = rng.standard_normal((n_per, 2))
            noise = rng.standard_normal((n_per, 3))
            mu = np.column_stack([rhos[0] * a[:, 0] + math.sqrt(1 - rhos[0] ** 2) * noise[:, 0],
                                  rhos[1] * a[:, 1] + math.sqrt(1 - rhos[1] ** 2) * noise[:, 1], noise[:, 2]])
            parts.append(pd.DataFrame({"patient_id": [f"{split}{i // 20}" for i in range(n_per)], "view": view,
                                       "frame": np.arange(n_per) % 20, "split": split,
                                       **{f"mu_{k}": mu[:, k] for k in range(3)},
                                       "lv_area": a[:, 0], "myo_area": a[:, 1],
                                       "atrium_area": a[:, 0] + rng.standard_normal(n_per)}))
    return pd.concat(parts, ignore_index=True)


def test_attribute_correlations_per_split_and_view():
    rng = np.random.default_rng(5)
    frames = frame_table(rng)
    correlations, scores = attribute_correlations(frames, {0: "lv_area", 1: "myo_area"},
                                                  attributes=["lv_area", "myo_area", "atrium_area"], seed=0)
    assert list(correlations.columns) == CORRELATION_COLUMNS and list(scores.columns) == DISENTANGLEMENT_COLUMNS
    # 2 splits x (2 views + all) x 3 attributes x 3 dimensions
    assert len(correlations) == 2 * 3 * 3 * 3
    assert set(correlations["view"]) == {"a2c", "a4c", "all"}
    regular = correlations[correlations["regularised"]]
    assert set(zip(regular["attribute"], regular["dimension"])) == {("lv_area", 0), ("myo_area", 1)}
    for (attribute, dim), rho in {("lv_area", 0): 0.8, ("myo_area", 1): 0.5}.items():
        got = correlations[(correlations["attribute"] == attribute) & (correlations["dimension"] == dim)]
        expected = 6 / math.pi * math.asin(rho / 2)  # Spearman of a bivariate normal
        assert np.allclose(got["rho"], expected, atol=0.06), got
        assert (got.loc[got["view"] == "all", "n"] == 1200).all() and (got.loc[got["view"] != "all", "n"] == 600).all()
    off = correlations[(correlations["attribute"] == "myo_area") & (correlations["dimension"] != 1)]
    assert (off["rho"].abs() < 0.1).all()
    assert set(scores["split"]) == {"test", "train"} and (scores["n"] == 1200).all()
    test = scores[scores["split"] == "test"]
    values, dims = per_attribute(test, "interpretability")
    assert dims == {"lv_area": 0.0, "myo_area": 1.0}
    assert values == pytest.approx({"lv_area": 0.64, "myo_area": 0.25}, abs=0.05)  # R^2 = rho^2
    # at most max_frames frames per split (seeded subset); a split below min_frames is skipped
    _, few = attribute_correlations(frames, {0: "lv_area", 1: "myo_area"}, max_frames=300, seed=1)
    assert (few["n"] == 300).all()
    _, none = attribute_correlations(frames, {0: "lv_area", 1: "myo_area"}, max_frames=10, min_frames=20)
    assert none.empty and list(none.columns) == DISENTANGLEMENT_COLUMNS


def test_attribute_correlations_bad_input():
    rng = np.random.default_rng(6)
    frames = frame_table(rng, n_per=100)
    frames.loc[:9, "lv_area"] = np.nan  # undefined attribute: those frames are left out (n)
    frames["mu_2"] = 0.0                 # a constant dimension: rho NaN
    correlations, scores = attribute_correlations(frames, {0: "lv_area", 1: "myo_area"})
    lv = correlations[(correlations["attribute"] == "lv_area") & (correlations["split"] == "train")]
    assert (lv.loc[lv["view"] == "a2c", "n"] == 90).all()
    assert correlations.loc[correlations["dimension"] == 2, "rho"].isna().all()
    assert set(scores.loc[scores["split"] == "train", "n"]) == {190}
    broken = frames.copy()
    broken.loc[5, "mu_1"] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite latent codes"):
        attribute_correlations(broken, {0: "lv_area"})
    with pytest.raises(ValueError, match="without columns"):
        attribute_correlations(frames, {0: "la_volume"})
    with pytest.raises(ValueError, match="outside"):
        attribute_correlations(frames, {7: "lv_area"})
    with pytest.raises(ValueError, match="several dimensions"):
        attribute_correlations(frames, {0: "lv_area", 1: "lv_area"})


# =========================================================================== PCA and modes of variation
def test_pca_recovers_a_planted_covariance_and_modes_sit_at_two_sd():
    rng = np.random.default_rng(7)
    n, dims = 4000, 6
    eigenvalues = np.array([9.0, 4.0, 1.0, 0.25, 0.1, 0.05])
    V, _ = np.linalg.qr(rng.standard_normal((dims, dims)))  # columns: the planted eigenvectors
    mean = np.linspace(-1, 1, dims)
    codes = {}
    for phase in ("ed", "es"):
        Y = mean + (rng.standard_normal((n, dims)) * np.sqrt(eigenvalues)) @ V.T
        codes.update({f"latent.m.mu_{k}.a4c.{phase}": Y[:, k] for k in range(dims)})
    codes = pd.DataFrame(codes)
    patients = pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "group": "control"})
    pca, scores, modes = latent_pca(codes, patients, n_modes=2)
    mu = [f"mu_{k}" for k in range(dims)]
    assert list(pca.columns) == [*PCA_COLUMNS, *mu] and list(scores.columns) == PCA_SCORE_COLUMNS
    assert list(modes.columns) == [*CODE_COLUMNS, *mu]
    ed = pca[pca["phase"] == "ed"]
    assert ed["explained_variance_ratio"].to_numpy() == pytest.approx(eigenvalues / eigenvalues.sum(), abs=0.01)
    assert ed["eigenvalue"].to_numpy()[:3] == pytest.approx(eigenvalues[:3], rel=0.06)
    loadings = ed[mu].to_numpy()
    assert np.abs(np.sum(loadings[:3] * V.T[:3], axis=1)).min() > 0.99  # |cos| with the planted vectors
    # sign convention: the largest-magnitude loading is positive
    assert (loadings[np.arange(dims), np.abs(loadings).argmax(axis=1)] > 0).all()
    # independent computation: numpy eigendecomposition of the sample covariance
    Y = codes[[f"latent.m.mu_{k}.a4c.ed" for k in range(dims)]].to_numpy()
    values, vectors = np.linalg.eigh(np.cov(Y, rowvar=False))
    values, vectors = values[::-1], vectors[:, ::-1]
    vectors *= np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(dims)])
    assert ed["eigenvalue"].to_numpy() == pytest.approx(values)
    assert np.allclose(loadings, vectors.T, atol=1e-6)
    for component in (1, 2):
        for sd in (-2, -1, 0, 1, 2):
            row = modes[(modes["phase"] == "ed") & (modes["component"] == component) & (modes["sd"] == sd)]
            code = row[mu].to_numpy()[0]
            assert np.allclose(code, Y.mean(axis=0) + sd * np.sqrt(values[component - 1]) * vectors[:, component - 1])
            planted = mean + sd * np.sqrt(eigenvalues[component - 1]) * V[:, component - 1] * np.sign(
                V[:, component - 1] @ vectors[:, component - 1])
            assert np.linalg.norm(code - planted) < 0.1 * (1 + abs(sd)), (component, sd)
    assert len(modes) == 2 * 2 * 5 and set(modes["kind"]) == {"mode"}
    # scores: projections of the centred codes, variance = eigenvalue
    pc1 = scores[(scores["phase"] == "ed") & (scores["component"] == 1)]["score"].to_numpy()
    assert pc1 == pytest.approx((Y - Y.mean(axis=0)) @ vectors[:, 0]) and pc1.var(ddof=1) == pytest.approx(values[0])


def test_pca_leaves_out_patients_with_nan_codes_and_keeps_a_constant_dimension():
    rng = np.random.default_rng(8)
    patients, codes, _ = cohort(50, rng)
    codes.iloc[:4, 0] = np.nan
    codes["latent.m.mu_3.a4c.ed"] = 1.0
    pca, scores, modes = latent_pca(codes, patients)
    assert (pca["n"] == 46).all() and scores["patient_id"].nunique() == 46
    assert np.allclose(pca["mu_3"], 0.0)  # no variance, no loading
    assert np.allclose(modes["mu_3"], 1.0)
    with pytest.raises(ValueError, match="phase"):
        latent_pca(codes, patients, phases=["es"])


# =========================================================================== group direction
def test_group_direction_recovers_a_planted_shift():
    rng = np.random.default_rng(21)
    u = rng.standard_normal(K)
    u /= np.linalg.norm(u)
    shift = 2.0 * u
    patients, codes, truth = cohort(240, rng, shift=shift, views=("a2c", "a4c"), phases=("ed", "es"),
                                    base=np.linspace(-0.5, 0.5, K))
    direction, codes_out = group_direction(codes, patients, control="control", case="hypertensive",
                                           covariates=COVARIATES)
    assert list(direction.columns) == DIRECTION_COLUMNS and len(direction) == 2 * 2 * K
    mu = [f"mu_{k}" for k in range(K)]
    assert list(codes_out.columns) == [*CODE_COLUMNS, *mu]
    cosines = []
    for (view, phase), part in direction.groupby(["view", "phase"]):
        w = part["difference"].to_numpy()
        cosines.append(w @ u / np.linalg.norm(w))
        assert cosines[-1] > 0.9, (view, phase)
        assert part["unit_direction"].to_numpy() @ u > 0.9
        assert (part["n_control"] == 120).all() and (part["n_case"] == 120).all() and part["adjusted"].all()
        rows = codes_out[(codes_out["view"] == view) & (codes_out["phase"] == phase)]
        means = rows[rows["kind"] == "group_mean"].set_index("group")[mu]
        assert means.loc["control"].to_numpy() == pytest.approx(part["control_mean"].to_numpy())
        steps = rows[rows["kind"] == "direction"].set_index("step")[mu]
        assert list(steps.index) == [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0]
        assert steps.loc[0.0].to_numpy() == pytest.approx(means.loc["control"].to_numpy())
        assert steps.loc[1.0].to_numpy() == pytest.approx(means.loc["hypertensive"].to_numpy())
        assert steps.loc[-1.0].to_numpy() == pytest.approx(means.loc["control"].to_numpy() - w)
        # the adjusted means are near the planted ones (coverage is tested over many cohorts below)
        assert np.abs(part["case_mean"].to_numpy() - truth["case"]).max() < 0.5
    print("cosine of w with the planted direction per (view, phase):", np.round(cosines, 3))
    # unadjusted, the direction absorbs the confounding: age and BSA shift every code
    raw, _ = group_direction(codes, patients, control="control", case="hypertensive")
    is_case = (patients["group"] == "hypertensive").to_numpy()
    gap = {c: patients.loc[is_case, c].mean() - patients.loc[~is_case, c].mean() for c in ("age", "bsa")}
    confounding = AGE_SLOPE * gap["age"] + BSA_SLOPE * gap["bsa"]  # realised: ~0.44 code units on average
    raw_bias = raw["difference"].to_numpy() - np.tile(shift, 4)
    adjusted_bias = direction["difference"].to_numpy() - np.tile(shift, 4)
    assert raw_bias.mean() == pytest.approx(confounding.mean(), abs=0.1) and confounding.mean() > 0.3
    assert abs(adjusted_bias.mean()) < 0.1 and not raw["adjusted"].any()


def test_adjusted_group_means_cover_the_planted_means():
    rng = np.random.default_rng(10)
    covered = {"control": [], "case": [], "difference": []}
    shift = np.linspace(-0.6, 0.6, K)
    for _ in range(100):
        patients, codes, truth = cohort(80, rng, shift=shift, base=np.full(K, 0.3))
        direction, _ = group_direction(codes, patients, control="control", case="hypertensive",
                                       covariates=COVARIATES)
        for name, planted in (("control", truth["control"]), ("case", truth["case"]), ("difference", shift)):
            prefix = name if name == "difference" else f"{name}_mean"
            low = direction[f"{prefix}_ci_low" if name == "difference" else f"{name}_ci_low"].to_numpy()
            high = direction[f"{prefix}_ci_high" if name == "difference" else f"{name}_ci_high"].to_numpy()
            covered[name].extend((low <= planted) & (planted <= high))
    rates = {name: float(np.mean(v)) for name, v in covered.items()}
    print("95 % CI coverage over 100 cohorts x 8 dimensions:", rates)
    assert all(0.92 <= r <= 0.985 for r in rates.values()), rates


# =========================================================================== permutation test
def test_permutation_null_calibration_and_confounding():
    """300 null cohorts (no group effect; cases older and larger, age and BSA shift the codes).

    199 permutations per cohort (p-values in steps of 1/200): adjusted rejection within
    [0.02, 0.08] and p roughly uniform; unadjusted, the confounding is detected as a group effect.
    """
    rng = np.random.default_rng(11)
    started = time.perf_counter()
    adjusted, unadjusted = [], []
    for seed in range(300):
        patients, codes, _ = cohort(60, rng)
        result = group_permutation_test(codes, patients, control="control", case="hypertensive",
                                        covariates=COVARIATES, n_permutations=199, seed=seed)
        assert list(result.columns) == PERMUTATION_COLUMNS
        adjusted.append(result.loc[result["adjusted"], "p"].iloc[0])
        unadjusted.append(result.loc[~result["adjusted"], "p"].iloc[0])
    adjusted, unadjusted = np.array(adjusted), np.array(unadjusted)
    rate, raw_rate = float(np.mean(adjusted <= 0.05)), float(np.mean(unadjusted <= 0.05))
    uniform = stats.kstest(adjusted, "uniform").pvalue
    print(f"null: adjusted rejection {rate:.3f}, unadjusted {raw_rate:.3f}, KS p {uniform:.3f}, "
          f"{time.perf_counter() - started:.1f} s")
    assert 0.02 <= rate <= 0.08
    assert uniform > 0.01
    assert raw_rate > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("statistic", ["sum_t2", "hotelling_t2"])
def test_permutation_null_calibration_over_1000_cohorts(statistic):
    """The same null cohorts, 1,000 of them (binomial SD of the rate 0.007), adjusted test only."""
    rng = np.random.default_rng(15)
    p = []
    for seed in range(1000):
        patients, codes, _ = cohort(60, rng)
        result = group_permutation_test(codes, patients, control="control", case="hypertensive",
                                        covariates=COVARIATES, n_permutations=199, seed=seed, statistic=statistic,
                                        unadjusted=False)
        p.append(result["p"].iloc[0])
    p = np.array(p)
    rate = float(np.mean(p <= 0.05))
    print(f"{statistic}: rejection {rate:.3f} over 1000 null cohorts, KS p {stats.kstest(p, 'uniform').pvalue:.3f}")
    assert 0.035 <= rate <= 0.065
    assert stats.kstest(p, "uniform").pvalue > 0.01


def test_permutation_detects_a_planted_shift_with_either_statistic():
    rng = np.random.default_rng(12)
    u = np.ones(K) / math.sqrt(K)
    patients, codes, _ = cohort(120, rng, shift=1.2 * u, phases=("ed", "es"))
    for statistic in ("sum_t2", "hotelling_t2"):
        result = group_permutation_test(codes, patients, control="control", case="hypertensive",
                                        covariates=COVARIATES, n_permutations=999, seed=0, statistic=statistic)
        adjusted = result[result["adjusted"]]
        assert len(adjusted) == 2 and (adjusted["p"] == 1 / 1000).all(), result
        assert (result["n_permutations"] == 999).all() and (result["n_dims"] == K).all()
        assert set(adjusted["covariates"]) == {"age,sex,bsa"} and set(result["method"]) == {"freedman-lane"}


def test_permutation_statistics_equal_the_classical_ones():
    """sum_t2 = sum of the statsmodels OLS t^2 of the group; hotelling_t2 = the two-sample / MANCOVA T^2."""
    import statsmodels.api as sm

    from echolatent.stats.design import covariate_matrix

    rng = np.random.default_rng(13)
    patients, codes, _ = cohort(70, rng, shift=np.full(K, 0.3))
    Y = codes.to_numpy()
    g = (patients["group"] == "hypertensive").to_numpy(float)
    X = np.column_stack([np.ones(len(g)), g, covariate_matrix(patients, COVARIATES).to_numpy()])
    t2 = sum(sm.OLS(Y[:, k], X).fit().tvalues[1] ** 2 for k in range(K))
    result = group_permutation_test(codes, patients, control="control", case="hypertensive",
                                    covariates=COVARIATES, n_permutations=9)
    assert result.loc[result["adjusted"], "statistic"].iloc[0] == pytest.approx(t2)
    # Hotelling: beta' S^-1 beta / [(X'X)^-1]_gg, S the full model's residual covariance
    B, *_ = np.linalg.lstsq(X, Y, rcond=None)
    E = Y - X @ B
    S = E.T @ E / (len(Y) - X.shape[1])
    T2 = B[1] @ np.linalg.solve(S, B[1]) / np.linalg.inv(X.T @ X)[1, 1]
    hotelling = group_permutation_test(codes, patients, control="control", case="hypertensive",
                                       covariates=COVARIATES, n_permutations=9, statistic="hotelling_t2")
    assert hotelling.loc[hotelling["adjusted"], "statistic"].iloc[0] == pytest.approx(T2)
    # unadjusted: the textbook two-sample T^2 = n1 n2 / n d' S_pooled^-1 d
    a, b = Y[g == 0], Y[g == 1]
    pooled = ((len(a) - 1) * np.cov(a, rowvar=False) + (len(b) - 1) * np.cov(b, rowvar=False)) / (len(Y) - 2)
    d = b.mean(axis=0) - a.mean(axis=0)
    textbook = len(a) * len(b) / len(Y) * d @ np.linalg.solve(pooled, d)
    assert hotelling.loc[~hotelling["adjusted"], "statistic"].iloc[0] == pytest.approx(textbook)


def test_permutation_p_value_counts_labelings():
    """3 vs 3 patients, groups far apart: of the 20 labelings, the observed one and its swap give the
    largest statistic, so p -> (1 + B * 2/20) / (1 + B)."""
    patients = pd.DataFrame({"patient_id": list("abcdef"), "group": ["control"] * 3 + ["case"] * 3})
    values = np.array([0.0, 0.1, 0.2, 5.0, 5.1, 5.3])
    codes = pd.DataFrame({"latent.m.mu_0.a4c.ed": values, "latent.m.mu_1.a4c.ed": values[::-1] ** 0.5})
    result = group_permutation_test(codes, patients, control="control", case="case", n_permutations=4999, seed=3)
    assert len(result) == 1 and not result["adjusted"].iloc[0]
    assert result["p"].iloc[0] == pytest.approx((1 + 4999 * 0.1) / 5000, abs=0.015)


def test_group_analyses_bad_input():
    rng = np.random.default_rng(14)
    patients, codes, _ = cohort(40, rng)
    kwargs = {"control": "control", "case": "hypertensive", "covariates": COVARIATES}
    # NaN codes and a missing covariate: those patients are left out (n per group)
    codes.iloc[[0, 1], 2] = np.nan
    patients.loc[3, "age"] = np.nan
    result = group_permutation_test(codes, patients, n_permutations=99, **kwargs)
    assert (result["n_control"] + result["n_case"] == 37).all()
    direction, _ = group_direction(codes, patients, **kwargs)
    assert (direction["n_control"] + direction["n_case"] == 37).all()
    # a constant dimension: left out of the statistic, zero difference in the direction
    codes["latent.m.mu_5.a4c.ed"] = 2.0
    result = group_permutation_test(codes, patients, n_permutations=99, **kwargs)
    assert (result["n_dims"] == K - 1).all()
    direction, _ = group_direction(codes, patients, **kwargs)
    assert direction.loc[5, "difference"] == 0.0 and direction.loc[5, "control_mean"] == 2.0
    with pytest.raises(ValueError, match="single group"):
        group_permutation_test(codes, patients.assign(group="control"), control="control", case="hypertensive")
    with pytest.raises(ValueError, match="single group"):
        group_direction(codes, patients.assign(group="control"), control="control", case="hypertensive")
    with pytest.raises(ValueError, match="groups other than"):
        group_permutation_test(codes, patients.assign(group=np.where(np.arange(40) < 5, "other", patients["group"])),
                               control="control", case="hypertensive")
    with pytest.raises(ValueError, match="at least 2"):
        one_case = patients.assign(group=np.where(np.arange(40) == 1, "hypertensive", "control"))
        group_direction(codes, one_case, control="control", case="hypertensive")
    with pytest.raises(ValueError, match="not in the patients table"):
        group_permutation_test(codes, patients, control="control", case="hypertensive", covariates=["bmi"])
    with pytest.raises(ValueError, match="constant"):
        group_permutation_test(codes, patients.assign(bsa=1.9), **kwargs)
    with pytest.raises(ValueError, match="sum_t2"):
        group_permutation_test(codes.iloc[:12], patients.iloc[:12], statistic="hotelling_t2", **kwargs)
    with pytest.raises(ValueError, match="same rows"):
        group_permutation_test(codes.iloc[:30], patients, **kwargs)


def test_latent_columns_of_one_model():
    table = pd.DataFrame({"latent.ar.mu_0.a4c.ed": [0.0], "latent.ar.mu_1.a4c.ed": [1.0],
                          "latent.vae.mu_0.a4c.ed": [2.0], "clinical.ef_pct": [60.0]})
    assert list(latent_codes(table, "ar").columns) == ["latent.ar.mu_0.a4c.ed", "latent.ar.mu_1.a4c.ed"]
    model, dims, blocks = latent_blocks(latent_codes(table, "ar"))
    assert (model, dims, list(blocks)) == ("ar", 2, [("a4c", "ed")])
    with pytest.raises(ValueError, match="several models"):
        latent_blocks(table)
    with pytest.raises(ValueError, match="no latent.beta"):
        latent_codes(table, "beta")
    with pytest.raises(ValueError, match="without all"):
        latent_blocks(table.drop(columns=["latent.vae.mu_0.a4c.ed"]).assign(**{"latent.ar.mu_0.a2c.ed": [0.0]}))
