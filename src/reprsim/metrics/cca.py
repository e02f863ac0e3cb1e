"""Canonical-correlation measures: SVCCA, PWCCA and mean CCA.

All three work from d×d matrices only: the centred covariances X̃ᵀX̃, ỸᵀỸ and the cross product
X̃ᵀỸ, computed in float64 (cost O(n·(d1² + d2² + d1·d2)); shared with linear CKA's products when
the input is float64). Canonical correlations are the singular values of
Λx^{-1/2} Vxᵀ X̃ᵀỸ Vy Λy^{-1/2}, with (Λ, V) the eigen-decomposition of each covariance truncated to
its numerical rank (eigenvalues > 1e-10 × the largest). Deterministic (no randomised SVD).

Caveat shared by every CCA measure: when rank(X) + rank(Y) > n − 1 canonical correlations are
trivially 1; keep n well above the dimensions (or use svcca's truncation).
"""

from __future__ import annotations

import torch

from reprsim.metrics._pair import SidePair, Side

RANK_RTOL = 1e-10


def _rank(side: Side, which: str) -> int:
    w, _ = side.eig
    if not w[0] > 0:
        raise ValueError(
            f"{which} is constant (zero variance in every feature); canonical correlations "
            "are undefined. Check the features."
        )
    return int((w > RANK_RTOL * w[0]).sum())


def _whitener(side: Side, r: int) -> torch.Tensor:
    """Vx_r Λx_r^{-1/2}, shape (d, r): maps features to orthonormal canonical coordinates."""
    w, V = side.eig
    return V[:, :r] / torch.sqrt(w[:r])


def _cca(pair: SidePair, rx: int, ry: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Canonical correlations (descending, length min(rx, ry)) and the singular vectors (U, V)."""
    Wx, Wy = _whitener(pair.x, rx), _whitener(pair.y, ry)
    M = Wx.T @ pair.cross64 @ Wy
    U, s, Vh = torch.linalg.svd(M, full_matrices=False)
    return s, U, Vh.T


def _keep(side: Side, rank: int, keep: float, dim: int | None, which: str) -> int:
    if dim is not None:
        if dim > rank:
            raise ValueError(
                f"svcca: dim={dim} exceeds the numerical rank {rank} of {which}; "
                f"use dim <= {rank} or dim=None (keep {keep:.0%} of the variance)."
            )
        return dim
    w = side.eig[0][:rank]
    frac = torch.cumsum(w, 0) / w.sum()
    return int(torch.searchsorted(frac, torch.tensor(keep, dtype=frac.dtype) - 1e-12)) + 1


def svcca(pair: SidePair, dim: int | None = None, keep: float = 0.99) -> float:
    """SVCCA (Raghu et al. 2017): project each centred representation on its top singular directions
    (the fewest explaining ``keep`` = 99% of the variance, or exactly ``dim``), then return the mean
    canonical correlation between the two projections.

    Range [0, 1]; 1 = the kept subspaces are linearly equivalent. Invariant to invertible linear maps
    of the kept subspace (hence to orthogonal transforms and scaling) and translation. Cost
    O(n(d1² + d2² + d1d2) + d1³ + d2³). (The paper's code used a randomised rank-10 SVD of z-scored
    features and sklearn's iterative CCA; values differ.)
    """
    rx, ry = _rank(pair.x, "X"), _rank(pair.y, "Y")
    s, _, _ = _cca(pair, _keep(pair.x, rx, keep, dim, "X"), _keep(pair.y, ry, keep, dim, "Y"))
    return float(s.mean())


def mean_cca(pair: SidePair) -> float:
    """Mean of all min(rank X, rank Y) canonical correlations of the full centred representations.

    Range [0, 1]; 1 = one span contains the other. Invariant to invertible linear maps and
    translation. Cost as svcca.
    """
    s, _, _ = _cca(pair, _rank(pair.x, "X"), _rank(pair.y, "Y"))
    return float(s.mean())


def pwcca(pair: SidePair) -> float:
    """Projection-weighted CCA (Morcos et al. 2018): Σ_i α_i ρ_i / Σ_i α_i, with ρ_i the canonical
    correlations and α_i = Σ_j |⟨h_i, x̃_j⟩| the total absolute projection of the features (columns)
    of the lower-rank representation (X on ties) onto its i-th canonical variate h_i.

    Range [0, 1]; 1 = linearly equivalent. Cost as svcca.
    """
    rx, ry = _rank(pair.x, "X"), _rank(pair.y, "Y")
    s, U, V = _cca(pair, rx, ry)
    side, vecs, r = (pair.x, U, rx) if rx <= ry else (pair.y, V, ry)
    w, E = side.eig
    # X̃ᵀ h_i = Cxx a_i = V Λ^{1/2} u_i
    proj = (E[:, :r] * torch.sqrt(w[:r])) @ vecs
    alpha = proj.abs().sum(0)
    return float((alpha * s).sum() / alpha.sum())
