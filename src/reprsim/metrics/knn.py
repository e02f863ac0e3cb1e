"""Nearest-neighbour measures: mutual, Jaccard, cycle, LCS and edit-distance kNN, second-order
cosine, and CKNNA.

Neighbours come from :func:`reprsim.metrics._blocks.neighbours`: by inner product (cosine on
L2-normalised rows), self excluded by index, ties ordered by increasing row index, exactly k per
row. They are computed once per representation and shared by all measures (lists for a smaller k
are prefixes). All per-sample work is vectorised over rows (no Python loop over samples); LCS and
Levenshtein run their k×k dynamic programme on all n rows at once.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

from reprsim.metrics._blocks import neighbours
from reprsim.metrics._pair import SidePair, Side
from reprsim.metrics._validate import as_features, check_int


def nearest_neighbors(X: object, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The neighbour lists every kNN measure uses, for inspection and per-sample analysis.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    k : int, 1 <= k < n_samples

    Returns
    -------
    (indices, inner_products): int64 array (n, k) and float64 array (n, k). Row i lists the k rows
    j ≠ i with the largest ⟨x_i, x_j⟩ in decreasing order; equal values are ordered by increasing j.
    """
    t = as_features(X, "X")
    k = check_int(k, "k", 1, t.shape[0] - 1, why="k must be smaller than the number of samples.")
    side = Side(t)
    idx, vals = neighbours(SidePair(side, side), side, k)
    # inner products of the (possibly power-of-two rescaled) features, back in the input's units
    return idx.cpu().numpy(), np.ldexp(vals.cpu().numpy(), -2 * side.scale_exp)


def _lists(pair: SidePair, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return neighbours(pair, pair.x, k)[0], neighbours(pair, pair.y, k)[0]


def _matches(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """eq[i, p, q] = (a[i, p] == b[i, q]); shape (n, k, k) bool."""
    return a[:, :, None] == b[:, None, :]


def mutual_knn_scores(pair: SidePair, k: int) -> np.ndarray:
    """Per-sample |kNN_X(i) ∩ kNN_Y(i)| / k, shape (n,)."""
    a, b = _lists(pair, k)
    return (_matches(a, b).sum((1, 2)).to(torch.float64) / k).cpu().numpy()


def mutual_knn(pair: SidePair, k: int = 10) -> float:
    """Mutual kNN alignment (Huh et al. 2024): mean over i of |kNN_X(i) ∩ kNN_Y(i)| / k.

    Range [0, 1]; 1 = every sample has the same k neighbours in both representations; expectation
    k/(n−1) for independent representations. Invariant to anything that preserves the inner-product
    ranking (orthogonal transforms, positive scaling; row-wise scaling after L2 normalisation).
    Cost O(n²(d1 + d2)) time in row blocks, O(nk) memory.
    """
    return float(mutual_knn_scores(pair, k).mean())


def jaccard_knn(pair: SidePair, k: int = 10) -> float:
    """Mean Jaccard index |A ∩ B| / |A ∪ B| of the two k-neighbour sets (ReSi benchmark).

    Range [0, 1]; 1 = identical neighbour sets; ≈ k/(2(n−1)) under independence. Cost as mutual_knn.
    """
    a, b = _lists(pair, k)
    c = _matches(a, b).sum((1, 2)).to(torch.float64)
    return float((c / (2 * k - c)).mean())


def cycle_knn(pair: SidePair, k: int = 10) -> float:
    """Cycle kNN (the paper's): fraction of samples i that are among the X-neighbours of at least one
    of i's Y-neighbours.

    Range [0, 1]; 1 = every sample is reached back; expectation ≈ 1 − (1 − k/(n−1))^k under
    independence. Not symmetric, and cycle_knn(X, X) < 1 in general (kNN relations are not
    symmetric). Cost as mutual_knn plus O(nk²).
    """
    a, b = _lists(pair, k)
    n = a.shape[0]
    hop = a[b]  # (n, k, k): X-neighbours of each Y-neighbour of i
    hit = (hop == torch.arange(n, device=a.device)[:, None, None]).flatten(1).any(1)
    return float(hit.to(torch.float64).mean())


def lcs_lengths(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Longest-common-subsequence length of each pair of rows of ``a`` and ``b`` (both (n, k) ints).

    The textbook O(k²) dynamic programme, run for all n rows at once. Returns int array (n,).
    """
    n, k = a.shape
    prev = np.zeros((n, k + 1), dtype=np.int32)
    for i in range(k):
        cur = np.zeros_like(prev)
        eq = a[:, i : i + 1] == b
        for j in range(k):
            cur[:, j + 1] = np.where(eq[:, j], prev[:, j] + 1, np.maximum(prev[:, j + 1], cur[:, j]))
        prev = cur
    return prev[:, k]


def levenshtein(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Levenshtein distance (unit insert/delete/substitute) of each pair of rows, vectorised over rows.

    ``a``, ``b``: (n, k) int arrays. Returns int array (n,).
    """
    n, k = a.shape
    prev = np.broadcast_to(np.arange(k + 1, dtype=np.int32), (n, k + 1)).copy()
    for i in range(k):
        cur = np.empty_like(prev)
        cur[:, 0] = i + 1
        sub = (a[:, i : i + 1] != b).astype(np.int32)
        for j in range(k):
            cur[:, j + 1] = np.minimum(np.minimum(prev[:, j + 1] + 1, cur[:, j] + 1), prev[:, j] + sub[:, j])
        prev = cur
    return prev[:, k]


def lcs_knn(pair: SidePair, k: int = 10) -> float:
    """Mean length of the longest common subsequence of the two *ordered* neighbour lists, divided by k.

    Range [0, 1]; 1 = identical ordered lists. (The paper's CSVs hold the unnormalised value, i.e.
    this times k.) Cost as mutual_knn plus O(nk²).
    """
    a, b = _lists(pair, k)
    return float(lcs_lengths(a.cpu().numpy(), b.cpu().numpy()).mean() / k)


def edit_distance_knn(pair: SidePair, k: int = 10) -> float:
    """1 − mean Levenshtein distance between the ordered neighbour lists / k (the paper's definition).

    Range [0, 1]; 1 = identical ordered lists, 0 = no position can be matched. Cost as lcs_knn.
    """
    a, b = _lists(pair, k)
    return float(1.0 - levenshtein(a.cpu().numpy(), b.cpu().numpy()).mean() / k)


def _gather_inner(F: torch.Tensor, idx: torch.Tensor, rows: int = 4096) -> torch.Tensor:
    """⟨f_i, f_idx[i, p]⟩ for all i, p in float64, shape (n, m), computed in row blocks."""
    out = torch.empty(idx.shape, dtype=torch.float64, device=F.device)
    for s in range(0, F.shape[0], rows):
        e = min(F.shape[0], s + rows)
        out[s:e] = torch.einsum("id,ipd->ip", F[s:e], F[idx[s:e]]).to(torch.float64)
    return out


def second_order_cosine(pair: SidePair, k: int = 10) -> float:
    """Second-order cosine similarity (Hamilton et al. 2016; ReSi benchmark).

    For each i, take U(i) = kNN_X(i) ∪ kNN_Y(i), the vectors s_X = (⟨x_i, x_j⟩)_{j∈U(i)} and
    s_Y = (⟨y_i, y_j⟩)_{j∈U(i)}, and their cosine; return the mean over i. On L2-normalised rows the
    inner products are Hamilton's cosine similarities. Samples whose profile is all zero in X or Y
    (an all-zero row) have no cosine and are left out of the mean, with a warning. Range [−1, 1]; 1 =
    the same similarity profile over the joint neighbourhood. Cost as mutual_knn plus O(nk(d1 + d2)).
    """
    return second_order_cosine_of(
        pair, k, lambda idx: _gather_inner(pair.x.F, idx), lambda idx: _gather_inner(pair.y.F, idx)
    )


def second_order_cosine_of(
    pair: SidePair,
    k: int,
    inner_x: Callable[[torch.Tensor], torch.Tensor],
    inner_y: Callable[[torch.Tensor], torch.Tensor],
) -> float:
    """:func:`second_order_cosine` with the inner products supplied: ``inner_x(idx)`` = ⟨x_i, x_idx[i, p]⟩
    as float64 (n, m), likewise ``inner_y`` (the engine's permutation null gathers them from each
    layer's Gram matrix instead of recomputing them from the features)."""
    ia, va = neighbours(pair, pair.x, k)
    ib, vb = neighbours(pair, pair.y, k)
    fresh_b = ~_matches(ib, ia).any(2)  # Y-neighbours not already among the X-neighbours
    sx = torch.cat([va, inner_x(ib)], 1)
    sy = torch.cat([inner_y(ia), vb], 1)
    mask = torch.cat([torch.ones_like(fresh_b), fresh_b], 1).to(torch.float64)
    sx, sy = sx * mask, sy * mask
    nx, ny = torch.linalg.vector_norm(sx, dim=1), torch.linalg.vector_norm(sy, dim=1)
    good = (nx > 0) & (ny > 0)
    cos = (sx * sy).sum(1) / (nx * ny)
    if not bool(good.all()):
        bad = int((~good).sum())
        if bad == good.numel():
            raise ValueError(
                "second_order_cosine is undefined: every sample has all-zero similarities to its "
                "neighbours (all-zero features?)."
            )
        first = int((~good).nonzero()[0])
        warnings.warn(
            f"second_order_cosine: left out {bad} sample(s) (first: {first}) whose similarities to "
            "their neighbours are all zero (all-zero rows?); their cosine is undefined.",
            stacklevel=4,
        )
        cos = cos[good]
    return float(cos.mean())


def _hsic_u_sparse(A: sp.csr_matrix, B: sp.csr_matrix, n: int) -> float:
    """Song et al. unbiased HSIC of two sparse (n, n) matrices with zero diagonal (not necessarily
    symmetric): [Σ A∘Bᵀ + (1ᵀA1)(1ᵀB1)/((n−1)(n−2)) − 2·(1ᵀA)(B1)/(n−2)] / (n(n−3))."""
    t1 = float(A.multiply(B.T).sum())
    colA = np.asarray(A.sum(0)).ravel()
    rowB = np.asarray(B.sum(1)).ravel()
    return (t1 + A.sum() * B.sum() / ((n - 1) * (n - 2)) - 2.0 * float(colA @ rowB) / (n - 2)) / (n * (n - 3))


def _hsic_u_entries(idx: torch.Tensor, a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor) -> float:
    """:func:`_hsic_u_sparse` of A and B with one sparsity pattern, given as entries: A[i, idx[i, p]] =
    a[i, p] and B[i, idx[i, p]] = b[i, p] where ``keep[i, p]`` (each row's columns distinct, none = i).
    numpy only, without building sparse matrices (the engine's permutation null; equal to the sparse
    route up to the order of the sums)."""
    n, k = idx.shape
    keep = keep.cpu().numpy().ravel()
    rows = np.repeat(np.arange(n), k)[keep]
    cols = idx.cpu().numpy().ravel()[keep]
    av, bv = a.cpu().numpy().ravel()[keep], b.cpu().numpy().ravel()[keep]
    t1 = 0.0
    if cols.size:  # Σ A∘Bᵀ: entry (i, j) of A meets entry (j, i) of B
        key = rows * n + cols
        order = np.argsort(key)
        sorted_keys = key[order]
        at = np.minimum(np.searchsorted(sorted_keys, cols * n + rows), cols.size - 1)
        hit = sorted_keys[at] == cols * n + rows
        t1 = float(av[hit] @ bv[order[at[hit]]])
    col_a = np.bincount(cols, weights=av, minlength=n)
    row_b = np.bincount(rows, weights=bv, minlength=n)
    return (t1 + av.sum() * bv.sum() / ((n - 1) * (n - 2)) - 2.0 * float(col_a @ row_b) / (n - 2)) / (n * (n - 3))


def _csr(vals: torch.Tensor, idx: torch.Tensor, keep: torch.Tensor | None = None) -> sp.csr_matrix:
    """The sparse (n, n) matrix with entries vals[i, p] at (i, idx[i, p]) (where ``keep``)."""
    n, k = idx.shape
    rows, cols, v = np.repeat(np.arange(n), k), idx.cpu().numpy().ravel(), vals.cpu().numpy().ravel()
    if keep is not None:
        m = keep.cpu().numpy().ravel()
        v, rows, cols = v[m], rows[m], cols[m]
    return sp.csr_matrix((v, (rows, cols)), shape=(n, n))


def _mutual(pair: SidePair, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """X's neighbour lists (indices, inner products K_ij), whether each listed neighbour is also a
    Y-neighbour (the mask M at X's positions), and L_ij at those positions (0 where not mutual)."""
    ia, va = neighbours(pair, pair.x, k)
    ib, vb = neighbours(pair, pair.y, k)
    eq = _matches(ia, ib)  # (n, k, k)
    return ia, va, eq.any(2), (eq.to(torch.float64) * vb[:, None, :]).sum(2)


def cknna_self(pair: SidePair, side: Side, k: int) -> float:
    """HSIC_u(M_K∘K, M_K∘K) of one side's neighbour kernel, CKNNA's self term for that side (unchanged
    by a permutation of the side's rows)."""
    idx, vals = neighbours(pair, side, k)
    K = _csr(vals, idx)
    return _hsic_u_sparse(K, K, pair.n)


def _cknna_ratio(skl: float, skk: float, sll: float) -> float:
    if not (skk > 0 and sll > 0):
        side = "X" if not skk > 0 else "Y"
        raise ValueError(
            f"cknna is undefined: the neighbourhood self-similarity of {side} is "
            f"{min(skk, sll):.3g} (≤ 0); this happens for (near-)constant features. "
            "Check the features or use another k."
        )
    return float(skl / math.sqrt(skk * sll))


def cknna(pair: SidePair, k: int = 10) -> float:
    """CKNNA (Huh et al. 2024): CKA restricted to mutual-neighbour pairs, with the unbiased HSIC.

    With K = XXᵀ, L = YYᵀ (raw inner products, as in the paper — not centred), M_K[i, j] = 1 if
    j ∈ kNN_X(i), M_L likewise, M = M_K ∘ M_L:
    CKNNA = HSIC_u(M∘K, M∘L) / √(HSIC_u(M_K∘K, M_K∘K) · HSIC_u(M_L∘L, M_L∘L)).
    No epsilon in the denominator and no flooring at 0 (the paper's code had both). Range ≈ [−1, 1];
    1 = identical neighbourhoods with proportional similarities. Needs n ≥ 4. Cost as mutual_knn
    plus O(nk²); the masked kernels are sparse (≤ nk entries). Not translation invariant, and not
    symmetric: M∘K is not a symmetric matrix, so the (K̃1)ᵀ(L̃1)-type term of HSIC_u depends on order.
    """
    ia, va, mutual, l_at = _mutual(pair, k)
    skl = _hsic_u_sparse(_csr(va, ia, mutual), _csr(l_at, ia, mutual), pair.n)
    return _cknna_ratio(skl, cknna_self(pair, pair.x, k), cknna_self(pair, pair.y, k))


def cknna_of(pair: SidePair, k: int, skk: float, sll: float) -> float:
    """:func:`cknna` with its self terms given (:func:`cknna_self`, which a row permutation of Y leaves
    unchanged) and the cross term from :func:`_hsic_u_entries`: the engine's permutation null."""
    ia, va, mutual, l_at = _mutual(pair, k)
    return _cknna_ratio(_hsic_u_entries(ia, va, l_at, mutual), skk, sll)
