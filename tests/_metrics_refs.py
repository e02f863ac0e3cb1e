"""Straightforward reference implementations written from the published formulas (tests only):
explicit centring matrix, full n×n Gram matrices, Python neighbour sets, textbook DP."""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.distance import cdist, pdist
from scipy.stats import spearmanr


def centring(n):
    return np.eye(n) - np.ones((n, n)) / n


def hsic_biased(K, L):
    H = centring(K.shape[0])
    return np.trace(K @ H @ L @ H)


def cka_ref(X, Y):
    K, L = X @ X.T, Y @ Y.T
    return hsic_biased(K, L) / math.sqrt(hsic_biased(K, K) * hsic_biased(L, L))


def hsic_unbiased(K, L):
    """Song et al. 2012 eq. 5 as written in PAPER.md §6 (K̃, L̃ zero-diagonal)."""
    n = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0)
    np.fill_diagonal(Lt, 0)
    one = np.ones(n)
    val = (
        np.trace(Kt @ Lt)
        + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
        - 2 * (one @ Kt @ Lt @ one) / (n - 2)
    )
    return val / (n * (n - 3))


def unbiased_cka_ref(X, Y):
    K, L = X @ X.T, Y @ Y.T
    return hsic_unbiased(K, L) / math.sqrt(hsic_unbiased(K, K) * hsic_unbiased(L, L))


def rbf_cka_ref(X, Y, sigma="median"):
    sx = np.median(pdist(X)) if sigma == "median" else sigma
    sy = np.median(pdist(Y)) if sigma == "median" else sigma
    K = np.exp(-cdist(X, X, "sqeuclidean") / (2 * sx**2))
    L = np.exp(-cdist(Y, Y, "sqeuclidean") / (2 * sy**2))
    return hsic_biased(K, L) / math.sqrt(hsic_biased(K, K) * hsic_biased(L, L))


def knn_ref(X, k):
    """Python lists: neighbours by inner product, self excluded, ties by smaller index."""
    S = X @ X.T
    n = len(X)
    return [sorted((j for j in range(n) if j != i), key=lambda j: (-S[i, j], j))[:k] for i in range(n)]


def mutual_ref(X, Y, k):
    a, b = knn_ref(X, k), knn_ref(Y, k)
    return float(np.mean([len(set(p) & set(q)) / k for p, q in zip(a, b)]))


def jaccard_ref(X, Y, k):
    a, b = knn_ref(X, k), knn_ref(Y, k)
    return float(np.mean([len(set(p) & set(q)) / len(set(p) | set(q)) for p, q in zip(a, b)]))


def cycle_ref(X, Y, k):
    a, b = knn_ref(X, k), knn_ref(Y, k)
    return float(np.mean([any(i in a[j] for j in b[i]) for i in range(len(X))]))


def lcs_len(p, q):
    T = [[0] * (len(q) + 1) for _ in range(len(p) + 1)]
    for i in range(1, len(p) + 1):
        for j in range(1, len(q) + 1):
            T[i][j] = T[i - 1][j - 1] + 1 if p[i - 1] == q[j - 1] else max(T[i - 1][j], T[i][j - 1])
    return T[-1][-1]


def levenshtein(p, q):
    prev = list(range(len(q) + 1))
    for i in range(1, len(p) + 1):
        cur = [i] + [0] * len(q)
        for j in range(1, len(q) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (p[i - 1] != q[j - 1]))
        prev = cur
    return prev[-1]


def lcs_ref(X, Y, k):
    a, b = knn_ref(X, k), knn_ref(Y, k)
    return float(np.mean([lcs_len(p, q) for p, q in zip(a, b)]) / k)


def edit_ref(X, Y, k):
    a, b = knn_ref(X, k), knn_ref(Y, k)
    return float(1 - np.mean([levenshtein(p, q) for p, q in zip(a, b)]) / k)


def cknna_ref(X, Y, k):
    n = len(X)
    K, L = X @ X.T, Y @ Y.T
    MK, ML = np.zeros((n, n)), np.zeros((n, n))
    for i, (p, q) in enumerate(zip(knn_ref(X, k), knn_ref(Y, k))):
        MK[i, p] = 1
        ML[i, q] = 1
    M = MK * ML
    kl = hsic_unbiased(M * K, M * L)
    kk = hsic_unbiased(MK * K, MK * K)
    ll = hsic_unbiased(ML * L, ML * L)
    return kl / math.sqrt(kk * ll)


def second_order_ref(X, Y, k):
    SX, SY = X @ X.T, Y @ Y.T
    vals = []
    for i, (p, q) in enumerate(zip(knn_ref(X, k), knn_ref(Y, k))):
        U = sorted(set(p) | set(q))
        a, b = SX[i, U], SY[i, U]
        vals.append(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.mean(vals))


def _basis(Z, rtol=1e-10):
    U, s, _ = np.linalg.svd(Z - Z.mean(0), full_matrices=False)
    return U[:, s > rtol * s[0]]


def cca_corrs(A, B):
    return np.linalg.svd(_basis(A).T @ _basis(B), compute_uv=False)


def svcca_ref(X, Y, keep=0.99, dim=None):
    def reduce(Z):
        Zc = Z - Z.mean(0)
        U, s, _ = np.linalg.svd(Zc, full_matrices=False)
        if dim is None:
            frac = np.cumsum(s**2) / np.sum(s**2)
            r = int(np.argmax(frac >= keep - 1e-12)) + 1
        else:
            r = dim
        return U[:, :r] * s[:r]

    return float(cca_corrs(reduce(X), reduce(Y)).mean())


def mean_cca_ref(X, Y):
    return float(cca_corrs(X, Y).mean())


def pwcca_ref(X, Y):
    """Morcos et al. 2018: weights from the side with fewer dimensions (X on ties)."""
    if X.shape[1] > Y.shape[1]:
        X, Y = Y, X
    Qx, Qy = _basis(X), _basis(Y)
    U, s, _ = np.linalg.svd(Qx.T @ Qy, full_matrices=False)
    H = Qx @ U  # canonical variates of X (orthonormal columns)
    alpha = np.abs(H.T @ (X - X.mean(0))).sum(1)
    return float((alpha * s).sum() / alpha.sum())


def procrustes_ref(X, Y):
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Xc, Yc = Xc / np.linalg.norm(Xc), Yc / np.linalg.norm(Yc)
    d = max(X.shape[1], Y.shape[1])
    Xp = np.pad(Xc, ((0, 0), (0, d - X.shape[1])))
    Yp = np.pad(Yc, ((0, 0), (0, d - Y.shape[1])))
    R, _ = orthogonal_procrustes(Xp, Yp)
    return float(np.sum((Xp @ R) * Yp))


def rsa_ref(X, Y):
    return float(spearmanr(pdist(X, "correlation"), pdist(Y, "correlation")).statistic)


def linreg_ref(X, Y, alpha=1e-3, n_folds=5, seed=0):
    n = len(X)
    folds = np.array_split(np.random.default_rng(seed).permutation(n), n_folds)
    sse = sst = 0.0
    for f in folds:
        tr = np.setdiff1d(np.arange(n), f)
        mx, my = X[tr].mean(0), Y[tr].mean(0)
        Xt, Yt = X[tr] - mx, Y[tr] - my
        lam = alpha * np.trace(Xt.T @ Xt) / X.shape[1]
        W = np.linalg.solve(Xt.T @ Xt + lam * np.eye(X.shape[1]), Xt.T @ Yt)
        sse += np.sum((Y[f] - my - (X[f] - mx) @ W) ** 2)
        sst += np.sum((Y[f] - my) ** 2)
    return float(1 - sse / sst)


REFERENCES = {
    "cka": cka_ref,
    "unbiased_cka": unbiased_cka_ref,
    "rbf_cka": rbf_cka_ref,
    "mutual_knn": lambda X, Y: mutual_ref(X, Y, 10),
    "jaccard_knn": lambda X, Y: jaccard_ref(X, Y, 10),
    "cycle_knn": lambda X, Y: cycle_ref(X, Y, 10),
    "lcs_knn": lambda X, Y: lcs_ref(X, Y, 10),
    "edit_distance_knn": lambda X, Y: edit_ref(X, Y, 10),
    "cknna": lambda X, Y: cknna_ref(X, Y, 10),
    "second_order_cosine": lambda X, Y: second_order_ref(X, Y, 10),
    "svcca": svcca_ref,
    "mean_cca": mean_cca_ref,
    "pwcca": pwcca_ref,
    "procrustes": procrustes_ref,
    "procrustes_distance": lambda X, Y: math.acos(min(1.0, procrustes_ref(X, Y))),
    "rsa": rsa_ref,
    "linear_regression": linreg_ref,
}
