"""Cheaper forms of the spectral measures for permutation nulls (calibration, permutation p-values).

Under a row permutation of Y only the cross product X̃ᵀỸ changes; the covariances and their
eigen-decompositions are reused. What remains per permutation is a spectral decomposition of a
small matrix, and these forms take it from the symmetric eigenproblem of the smaller Gram of that
matrix (MᵀM or MMᵀ) instead of an SVD: singular values are the square roots of its eigenvalues, and
its eigenvectors are the singular vectors of that side (several times faster for 512 × 512).

Accuracy: eigenvalues of MᵀM carry absolute errors of about ε‖M‖², so a singular value σ is accurate
to ≈ ε‖M‖²/σ: to ~1e-14 relative for the singular values of permuted (unrelated) data, which are all of
one order. Singular values near 0 are less accurate in relative terms but add ≈ nothing to the sums.
The observed values keep the library's SVD route; the null values agree with recomputing the measure
on (X, Y[π]) to ≈ 1e-12 (tests/test_metrics_calibrate.py checks every measure against recomputation).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from reprsim.metrics import cca as _cca
from reprsim.metrics._pair import SidePair


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread for a small eigenproblem: the tridiagonal reduction of a 512 × 512 matrix is
    a long chain of small parallel steps, ~3× faster on one thread, and on a loaded machine two threads
    stall at its barriers (measured: median 0.02 s on one thread, 0.06 s and outliers of 5 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _gram_spectrum(M: torch.Tensor, vectors: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Squared singular values of M (ascending, clamped at 0) from the smaller of MMᵀ / MᵀM; with
    ``vectors``, the eigenvectors too and whether they are M's left (True) or right singular vectors."""
    left = M.shape[0] <= M.shape[1]
    G = M @ M.T if left else M.T @ M
    with _one_thread():
        if vectors:
            w, V = torch.linalg.eigh(G)
            return w.clamp_(min=0.0), V, left
        return torch.linalg.eigvalsh(G).clamp_(min=0.0), None, left


def permuted_inners(As: Sequence[torch.Tensor], B: torch.Tensor, perm: torch.Tensor, rows: int = 128) -> list[float]:
    """⟨A, P B Pᵀ⟩ = Σ_ij A[i, j] · B[perm_i, perm_j] for each (m, m) matrix A of ``As``, gathering the
    permuted B once for all of them (a layer of B against every layer of A) and never whole: each
    block's products are summed in the matrices' dtype and the block sums in float64. On the CPU it
    gathers ``rows`` rows of B at a time with ``numpy.take`` (≈ 4× faster than torch's two-step fancy
    indexing at m = 5,000: the block stays in cache); the sums are added in another order than one flat
    dot product, so values differ from it by rounding only."""
    if B.device.type != "cpu":
        p = perm.to(B.device)
        G = B[p][:, p].reshape(-1)
        return [float(A.reshape(-1) @ G) for A in As]
    a, b, p = [A.numpy() for A in As], B.numpy(), perm.numpy()
    totals = [0.0] * len(a)
    for s in range(0, b.shape[0], rows):
        block = np.take(np.take(b, p[s : s + rows], axis=0), p, axis=1).ravel()
        for i, ai in enumerate(a):
            totals[i] += float(ai[s : s + rows].ravel() @ block)
    return totals


def whitened_cross(pair: SidePair) -> torch.Tensor:
    """M = Wxᵀ X̃ᵀỸ Wy on the full numerical ranks (rx × ry): the canonical correlations are its singular
    values, and SVCCA's matrix is its leading block (the whiteners' columns are the covariances'
    eigenvectors in descending order, so truncating a whitener keeps the first columns)."""
    rx, ry = _cca._rank(pair.x, "X"), _cca._rank(pair.y, "Y")
    return _cca._whitener(pair.x, rx).T @ pair.cross64 @ _cca._whitener(pair.y, ry)


def procrustes(pair: SidePair) -> float:
    """:func:`reprsim.metrics.other.procrustes`: ‖X̃ᵀỸ‖_* / (‖X̃‖_F ‖Ỹ‖_F) from eigenvalues (of the float64
    cross product the CCA family uses too, so a permutation forms it once)."""
    tx, ty = float(pair.x.sq_centred.sum()), float(pair.y.sq_centred.sum())
    if not (tx > 0 and ty > 0):
        raise ValueError(f"procrustes is undefined: {'X' if not tx > 0 else 'Y'} is constant.")
    s2, _, _ = _gram_spectrum(pair.cross64)
    return float(torch.sqrt(s2).sum() / math.sqrt(tx * ty))


def mean_and_pw_cca(pair: SidePair, M: torch.Tensor | None = None) -> tuple[float, float]:
    """(mean_cca, pwcca) as :mod:`reprsim.metrics.cca` defines them, from one symmetric eigenproblem.

    With M = Wxᵀ X̃ᵀỸ Wy (rx × ry; :func:`whitened_cross`, computed unless given), the eigenvectors of
    MMᵀ (rx ≤ ry) are the left singular vectors U that pwcca weights X's features by (those of MᵀM,
    V, when ry < rx, for Y's)."""
    rx, ry = _cca._rank(pair.x, "X"), _cca._rank(pair.y, "Y")
    if M is None:
        M = whitened_cross(pair)
    s2, vecs, _ = _gram_spectrum(M, vectors=True)  # the smaller side is X's on ties, as in the library
    s = torch.sqrt(s2)
    side, r = (pair.x, rx) if rx <= ry else (pair.y, ry)
    w, E = side.eig
    alpha = ((E[:, :r] * torch.sqrt(w[:r])) @ vecs).abs().sum(0)
    return float(s.mean()), float((alpha * s).sum() / alpha.sum())


def svcca(pair: SidePair, dim: int | None, keep: float, M: torch.Tensor | None = None) -> float:
    """:func:`reprsim.metrics.cca.svcca` from eigenvalues (singular values only); ``M``: the pair's
    :func:`whitened_cross`, whose leading kx × ky block is SVCCA's matrix."""
    rx, ry = _cca._rank(pair.x, "X"), _cca._rank(pair.y, "Y")
    kx, ky = _cca._keep(pair.x, rx, keep, dim, "X"), _cca._keep(pair.y, ry, keep, dim, "Y")
    if M is None:
        M = whitened_cross(pair)
    M = M[:kx, :ky]
    s2, _, _ = _gram_spectrum(M)
    return float(torch.sqrt(s2).mean())
