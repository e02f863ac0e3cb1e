"""Centred kernel alignment: linear CKA (biased and unbiased HSIC) and RBF CKA.

All functions here take a :class:`~reprsim.metrics._pair.SidePair` of already validated features and
return a Python float; the public entry point is :func:`reprsim.metrics.compute`.

Numerics. Features are centred (column means taken in float64) *before* any product: HSIC is
invariant to centring, and an uncentred float32 Gram with a mean offset of 100–1000 loses every
significant digit. Large products run in the input's dtype; every sum and HSIC term is accumulated
in float64. There is no epsilon in any denominator: a constant representation raises ValueError.
Features whose magnitude would overflow these products are rescaled by an exact power of two first
(:mod:`reprsim.metrics._numerics`); CKA is invariant to it, and a numeric RBF ``sigma`` is rescaled
with the features.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

from reprsim.metrics._blocks import run_pass
from reprsim.metrics._pair import SidePair, Side, _sum64

# Above this many rows the median-distance heuristic uses a seeded subsample of this many rows.
MEDIAN_MAX_ROWS = 2000


def _use_features(n: int, d1: int, d2: int) -> bool:
    """Feature-space products cost n·d1·d2, Gram-space ones n²·(d1+d2): pick the cheaper."""
    return d1 * d2 <= n * (d1 + d2)


def _ratio(hxy: float, hxx: float, hyy: float, what: str) -> float:
    if not all(math.isfinite(v) for v in (hxy, hxx, hyy)):
        raise ValueError(
            f"{what} is undefined: its HSIC terms overflowed (hxy={hxy:.3g}, hxx={hxx:.3g}, hyy={hyy:.3g}); "
            "the features are too large for the compute dtype. Pass float64 features or rescale them."
        )
    if not (hxx > 0 and hyy > 0):
        side = "X" if not hxx > 0 else "Y"
        raise ValueError(
            f"{what} is undefined: the self-similarity term of {side} is {min(hxx, hyy):.3g} (≤ 0), "
            f"which happens when {side} is constant (every row identical) or has too few distinct rows. "
            "Check the features or drop this pair."
        )
    den = hxx * hyy
    if math.isfinite(den) and den >= sys.float_info.min:
        return float(hxy / math.sqrt(den))
    return float(hxy / (math.sqrt(hxx) * math.sqrt(hyy)))  # the product over- or underflows


def _hsic_biased_pair(pair: SidePair) -> tuple[float, float, float]:
    """tr(KHLH), tr(KHKH), tr(LHLH) for linear kernels (no 1/(n−1)² factor; it cancels)."""
    x, y = pair.x, pair.y
    if _use_features(pair.n, x.d, y.d):
        return (float((pair.cross_c**2).sum()), float((x.gram_c**2).sum()), float((y.gram_c**2).sum()))
    K = x.centred @ x.centred.T
    L = y.centred @ y.centred.T
    return float(_sum64(K * L)), float(_sum64(K * K)), float(_sum64(L * L))


def linear_cka(pair: SidePair) -> float:
    """Linear CKA with the biased HSIC estimator (Kornblith et al. 2019).

    CKA(X, Y) = ‖X̃ᵀỸ‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F) on column-centred X̃, Ỹ, which equals
    tr(KHLH)/√(tr(KHKH)·tr(LHLH)) with K = XXᵀ, L = YYᵀ, H = I − 11ᵀ/n.

    Range [0, 1]; 1 = the representations are equal up to rotation and isotropic scaling, 0 = no
    linear relation between the centred Gram matrices. Invariant to orthogonal transforms,
    isotropic scaling and translation of either side. Cost O(n·d1·d2 + n·(d1² + d2²)) in feature
    space, or O(n²(d1 + d2)) with n×n Grams when d1·d2 > n(d1 + d2).

    Notes: the biased estimator is biased *upwards* when n is small against d: for independent
    Gaussian features with n = 20, d = 1000 it gives ≈ 0.8 instead of 0 (the diagonal of each
    Gram dominates). Use ``unbiased_cka`` to compare values across different n.
    """
    return _ratio(*_hsic_biased_pair(pair), what="cka")


def _hsic_u_feature(a: Side, b: Side, cross: torch.Tensor, w: torch.Tensor | None) -> float:
    """Unbiased HSIC (Song et al. 2012) of K = ÃÃᵀ, L = B̃B̃ᵀ computed from d×d products.

    With k_i = ‖ã_i‖², l_i = ‖b̃_i‖², s_a = Σ ã_i:  tr(K̃L̃) = ‖ÃᵀB̃‖² − Σ w_i k_i l_i,
    1ᵀK̃1 = ‖s_a‖² − Σ w_i k_i,  K̃1 = Ã s_a − w∘k, where w_i = 1 (or, for bootstrap copies, the
    number of rows sharing row i's sample: pairs of copies are then excluded like the diagonal).
    """
    n = a.n
    k, l = a.sq_centred, b.sq_centred
    wk = k if w is None else w * k
    wl = l if w is None else w * l
    sa, sb = _sum64(a.centred, 0), _sum64(b.centred, 0)
    # Ã s_a: s_a is ~0 after centring, so this product is tiny and its precision immaterial
    ka = (a.centred @ sa.to(a.dtype)).to(torch.float64)
    kb = (b.centred @ sb.to(b.dtype)).to(torch.float64)
    t1 = (cross**2).sum() - (wk * l).sum()
    ones_k = sa @ sa - wk.sum()
    ones_l = sb @ sb - wl.sum()
    t3 = (ka - wk) @ (kb - wl)
    h = (t1 + ones_k * ones_l / ((n - 1) * (n - 2)) - 2.0 * t3 / (n - 2)) / (n * (n - 3))
    return float(h)


def hsic_unbiased_gram(K: torch.Tensor, L: torch.Tensor, exclude: torch.Tensor | None = None) -> float:
    """Song et al. (2012) unbiased HSIC of two (n, n) kernel matrices, O(n²), float64 sums.

    HSIC_u = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2·(K̃1)ᵀ(L̃1)/(n−2)] / (n(n−3)) with K̃, L̃ the
    kernels with zeroed diagonal (and zeroed ``exclude`` entries). Uses tr(K̃L̃) = Σ K̃ ∘ L̃ᵀ.
    """
    n = K.shape[0]
    K = K.clone()
    L = L.clone()
    K.fill_diagonal_(0)
    L.fill_diagonal_(0)
    if exclude is not None:
        K.masked_fill_(exclude, 0)
        L.masked_fill_(exclude, 0)
    t1 = _sum64(K * L.T)
    rk, rl = _sum64(K, 0), _sum64(L, 1)  # 1ᵀK̃ (column sums) and L̃1 (row sums)
    h = (t1 + rk.sum() * rl.sum() / ((n - 1) * (n - 2)) - 2.0 * (rk @ rl) / (n - 2)) / (n * (n - 3))
    return float(h)


def unbiased_cka(pair: SidePair) -> float:
    """Linear CKA with the unbiased HSIC estimator of Song et al. (2012) — the paper's definition.

    CKA_u = HSIC_u(K, L)/√(HSIC_u(K, K)·HSIC_u(L, L)), K = XXᵀ, L = YYᵀ, HSIC_u as in
    :func:`hsic_unbiased_gram`. Needs n ≥ 4. Computed from centred features (HSIC_u is invariant
    to translating either side) in O(n·d1·d2), or from centred n×n Grams when d1·d2 > n(d1+d2).

    Range: ≈ [−1, 1] (can be slightly negative; never clamped). 1 = equal up to rotation and
    isotropic scaling; expectation ≈ 0 for independent representations, at any n.
    This is *not* the "debiased CKA" of Lange et al. (2022), which debiases the centred Gram.
    """
    x, y = pair.x, pair.y
    w = pair.multiplicity()
    if _use_features(pair.n, x.d, y.d):
        return _ratio(
            _hsic_u_feature(x, y, pair.cross_c, w),
            _hsic_u_feature(x, x, x.gram_c, w),
            _hsic_u_feature(y, y, y.gram_c, w),
            what="unbiased_cka",
        )
    K = x.centred @ x.centred.T
    L = y.centred @ y.centred.T
    ex = None if pair.groups is None else pair.groups[:, None] == pair.groups[None, :]
    return _ratio(
        hsic_unbiased_gram(K, L, ex), hsic_unbiased_gram(K, K, ex), hsic_unbiased_gram(L, L, ex), what="unbiased_cka"
    )


def median_distance(side: Side) -> float:
    """Median (mean of the two middle values for an even count) Euclidean distance over pairs i < j; above ``MEDIAN_MAX_ROWS`` rows, over the pairs of a
    seeded (seed 0) subsample of that many rows."""
    if side.median_dist is None:
        c = side.centred
        if side.n > MEDIAN_MAX_ROWS:
            rows = np.sort(np.random.default_rng(0).choice(side.n, MEDIAN_MAX_ROWS, replace=False))
            c = c[torch.as_tensor(rows, device=c.device)]
        c = c.to(torch.float64)
        sq = (c * c).sum(1)
        d2 = (sq[:, None] + sq[None, :] - 2.0 * (c @ c.T)).clamp_min(0)
        iu = torch.triu_indices(c.shape[0], c.shape[0], offset=1, device=c.device)
        side.median_dist = float(np.median(torch.sqrt(d2[iu[0], iu[1]]).cpu().numpy()))
    return side.median_dist


def bandwidths(pair: SidePair, sigma: float | str) -> tuple[float, float]:
    """(σx, σy) in the units of the pair's (possibly power-of-two rescaled) features.

    ``"median"``: each side's median pairwise distance. A number is in the units of the input
    features and is multiplied by each side's ``2**scale_exp``. Raises ValueError when a bandwidth is
    0 or when 2σ² is not a normal positive float64 (σ absurdly small or large against the data).
    """
    if sigma == "median":
        sx, sy = median_distance(pair.x), median_distance(pair.y)
        for s, name in ((sx, "X"), (sy, "Y")):
            if not s > 0:
                raise ValueError(
                    f"rbf_cka: the median pairwise distance of {name} is 0 (constant rows); "
                    "pass an explicit sigma or check the features."
                )
        return sx, sy
    out = []
    for side, name in ((pair.x, "X"), (pair.y, "Y")):
        try:
            s = math.ldexp(float(sigma), side.scale_exp)
            ok = s > 0 and sys.float_info.min <= 2.0 * s * s < sys.float_info.max
        except OverflowError:
            ok = False
        if not ok:
            raise ValueError(
                f"rbf_cka: sigma={float(sigma):g} is out of range for the scale of {name}: 2σ² over- or "
                "underflows float64 against those features, so every kernel entry would be 0 or 1. "
                "Use a sigma of the order of the pairwise distances, or sigma='median'."
            )
        out.append(s)
    return out[0], out[1]


def rbf_cka(pair: SidePair, sigma: float | str = "median") -> float:
    """CKA with Gaussian kernels K_ij = exp(−‖x_i − x_j‖²/(2σ²)) and the biased HSIC (Kornblith 2019).

    ``sigma="median"``: σ is the median pairwise Euclidean distance of each representation
    (computed on a seeded subsample of 2000 rows when n > 2000); a float uses that bandwidth for
    both. Range [0, 1]; 1 = identical distance structure. Invariant to orthogonal transforms and
    translation; with ``"median"`` also to isotropic scaling. Cost O(n²(d1 + d2)) time in blocks of
    rows (the n×n kernels are never held in full), O(n) extra memory.
    """
    sx, sy = bandwidths(pair, sigma)
    run_pass(pair, rbf_sigmas=[(sx, sy)])
    return _ratio(*pair.rbf[(sx, sy)], what="rbf_cka")
