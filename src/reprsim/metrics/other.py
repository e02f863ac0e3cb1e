"""Shape and geometry measures: orthogonal Procrustes, RSA, and cross-validated linear regression."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from reprsim.metrics._pair import Side, SidePair


def procrustes(pair: SidePair) -> float:
    """Orthogonal Procrustes similarity (Williams et al. 2021, angular shape metric's cosine).

    With X̂ = X̃/‖X̃‖_F, Ŷ = Ỹ/‖Ỹ‖_F (centred, unit Frobenius norm):
    max over orthogonal Q of ⟨X̂Q, Ŷ⟩ = ‖X̂ᵀŶ‖_* (nuclear norm). d1 ≠ d2 is handled exactly as
    zero-padding the narrower side (the nuclear norm of the d1×d2 cross product).
    Range [0, 1]; 1 = equal up to rotation, isotropic scaling and translation. Cost
    O(n·d1·d2 + d1·d2·min(d1, d2)).
    """
    tx, ty = float(pair.x.sq_centred.sum()), float(pair.y.sq_centred.sum())
    if not (tx > 0 and ty > 0):
        raise ValueError(
            f"procrustes is undefined: {'X' if not tx > 0 else 'Y'} is constant (all rows "
            "identical). Check the features."
        )
    return float(torch.linalg.svdvals(pair.cross_c).sum() / math.sqrt(tx * ty))


def procrustes_distance(pair: SidePair) -> float:
    """Angular Procrustes shape distance θ = arccos(procrustes similarity) (Williams et al. 2021), a metric.

    Range [0, π/2]; 0 = equal up to rotation, scaling and translation. Near 0 it is computed from
    the residual of the optimal rotation (see :func:`procrustes_distance_from`), so a rotated copy
    gives ≤ 1e-12 rather than the 1.5e-8 that arccos(1 − 1e-16) gives. Cost as procrustes (plus one
    d×d SVD with vectors when the similarity exceeds 1 − 1e-4).
    """
    return procrustes_distance_from(pair, procrustes(pair))


_NEAR_ONE = 1e-4  # below 1 − this, arccos(s) loses no more than ~1e-14 to the rounding of s


def procrustes_distance_from(pair: SidePair, similarity: float) -> float:
    """θ = arccos(``similarity``) for the procrustes ``similarity`` of ``pair``, exact near θ = 0.

    arccos amplifies the rounding ε of a similarity near 1 into √(2ε) (1.5e-8 for ε = 1e-16). There
    the chord is used instead: with X̂, Ŷ centred at unit Frobenius norm, zero-padded to
    D = max(d1, d2) columns, and X̂ᵀŶ = UΣVᵀ (full SVD), the optimal rotation Q = UVᵀ leaves
    r = ‖X̂U − ŶV‖_F = ‖X̂Q − Ŷ‖_F = 2 sin(θ/2), so θ = 2·asin(r/2), accurate to rounding of r itself.
    """
    if similarity < 1.0 - _NEAR_ONE:
        return float(math.acos(max(-1.0, similarity)))
    X = pair.x.centred.to(torch.float64)
    Y = pair.y.centred.to(torch.float64)
    X = X / torch.linalg.matrix_norm(X)
    Y = Y / torch.linalg.matrix_norm(Y)
    d1, d2 = X.shape[1], Y.shape[1]
    D = max(d1, d2)
    M = torch.zeros(D, D, dtype=torch.float64, device=X.device)
    M[:d1, :d2] = X.T @ Y
    U, _, Vh = torch.linalg.svd(M)
    r = float(torch.linalg.matrix_norm(X @ U[:d1] - Y @ Vh.T[:d2]))
    return float(2.0 * math.asin(min(1.0, r / 2.0)))


def _constant_rows(F: torch.Tensor) -> torch.Tensor:
    """Bool (m,): rows whose entries are all equal (no correlation distance)."""
    return (F == F[:, :1]).all(1)


def _corr_rdm_upper(F: torch.Tensor, which: str) -> torch.Tensor:
    """Correlation-distance RDM 1 − corr(f_i, f_j) (correlation across features), full (m, m) f64."""
    Z = F.to(torch.float64)
    Z = Z - Z.mean(1, keepdim=True)
    norms = torch.linalg.vector_norm(Z, dim=1, keepdim=True)
    bad = (norms[:, 0] == 0).nonzero()
    if bad.numel():
        raise ValueError(
            f"rsa: row {int(bad[0])} of {which} is constant across features, so its "
            "correlation distance is undefined; drop constant rows."
        )
    Z = Z / norms
    return 1.0 - Z @ Z.T


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..m of a 1-D array, ties given their average rank (as scipy.stats.rankdata), float64.
    The sort need not be stable: tied values all get their group's average rank."""
    order = np.argsort(x)
    v = x[order]
    m = v.size
    new = np.empty(m, dtype=bool)
    new[0] = True
    np.not_equal(v[1:], v[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], m)  # exclusive
    avg = (starts + ends - 1) / 2.0 + 1.0  # average of ranks start+1 .. end
    ranks = np.empty(m, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def rsa_rows(n: int, max_rows: int, seed: int) -> torch.Tensor | None:
    """rsa's seeded row subsample S (sorted, ``max_rows`` of ``n``), or None when n ≤ max_rows (all rows)."""
    if n <= max_rows:
        return None
    return torch.as_tensor(np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False)))


def rsa_null_permutation(perm: Any, max_rows: int = 3000, seed: int = 0) -> np.ndarray:
    """The row permutation rsa's permutation null applies for the row permutation ``perm`` (n,).

    n ≤ max_rows: ``perm`` itself. Above, rsa only sees the rows S of its subsample, and its null
    permutes Y's rows within S: π̃ maps S[i] to S[σ_i], σ = the ranks of perm[S] among themselves
    (uniform over the permutations of S when ``perm`` is uniform), and fixes the other rows. So
    rsa(X, Y[π̃]) = RSA(X[S], Y[S][σ]), the exact permutation null of the subsampled statistic, and
    every permutation reuses Y[S]'s RDM ranks instead of ranking another subset of Y's rows.
    """
    perm = np.asarray(perm)
    rows = rsa_rows(perm.size, max_rows, seed)
    if rows is None:
        return perm
    S = rows.numpy()
    out = np.arange(perm.size)
    out[S] = S[np.argsort(np.argsort(perm[S]))]
    return out


def rsa(pair: SidePair, max_rows: int = 3000, seed: int = 0) -> float:
    """Representational similarity analysis (Kriegeskorte et al. 2008): Spearman correlation between the
    upper triangles (i < j) of the two correlation-distance RDMs, D_ij = 1 − Pearson(f_i, f_j).

    Ranks the n(n−1)/2 pairs, so above ``max_rows`` rows it uses a seeded random subsample of
    ``max_rows`` rows and warns. Ties get average ranks. Pairs of bootstrap copies of one sample are
    left out. A row that is constant across features (e.g. an all-zero row) in X or Y has no
    correlation distance: such rows are left out of both RDMs, with a warning (an error when fewer
    than 3 rows remain). Range [−1, 1]; 1 = the same ordering of pairwise dissimilarities. Invariant to
    monotone transforms of either RDM, to scaling and to per-row offsets. Cost O(m²(d1 + d2) + m² log m),
    m = min(n, max_rows).
    """
    n = pair.n
    rows = rsa_rows(n, max_rows, seed)
    if rows is None:
        rows = torch.arange(n)
    else:
        warnings.warn(
            f"rsa: n={n} > max_rows={max_rows}; using a random subsample of {max_rows} rows "
            f"(seed={seed}). Raise max_rows for the exact value (O(n²) memory).",
            stacklevel=3,
        )
    rows = rows.to(pair.x.F.device)
    const = _constant_rows(pair.x.F[rows]) | _constant_rows(pair.y.F[rows])
    if bool(const.any()):
        dropped = int(const.sum())
        if rows.numel() - dropped < 3:
            raise ValueError(
                f"rsa is undefined: {dropped} of {rows.numel()} rows are constant across features "
                "in X or Y (e.g. all-zero rows); fewer than 3 rows remain."
            )
        warnings.warn(
            f"rsa: left out {dropped} row(s) that are constant across features in X or Y (e.g. "
            "all-zero rows): their correlation distance is undefined.",
            stacklevel=3,
        )
        rows = rows[~const]
    Dx = _corr_rdm_upper(pair.x.F[rows], "X")
    Dy = _corr_rdm_upper(pair.y.F[rows], "Y")
    m = rows.numel()
    iu = torch.triu_indices(m, m, offset=1, device=Dx.device)
    keep = None
    if pair.groups is not None:
        g = pair.groups[rows]
        keep = (g[iu[0]] != g[iu[1]]).cpu().numpy()
    dx = Dx[iu[0], iu[1]].cpu().numpy()
    dy = Dy[iu[0], iu[1]].cpu().numpy()
    del Dx, Dy
    if keep is not None:
        dx, dy = dx[keep], dy[keep]
    rx, ry = average_ranks(dx), average_ranks(dy)
    rx -= rx.mean()
    ry -= ry.mean()
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    if not den > 0:
        raise ValueError("rsa is undefined: one RDM has all pairwise dissimilarities equal.")
    return float(rx @ ry / den)


#: Largest ridge factorisations (float64 bytes over the folds) a layer keeps for the pairs it enters;
#: above it each pair refactors (a 5-fold 1,280-wide layer takes 64 MiB).
RIDGE_CACHE_BYTES = 64 * 2**20


class RidgeFolds:
    """The X side of :func:`linear_regression`, fitted once and reused for every Y with the same rows
    (another layer, or Y with its rows permuted).

    Holds the seeded folds, each fold's rows X_f (float64) and the LU factors of its ridge system
    A = G̃_train + λI, so R² of another Y costs the cross products X_fᵀY_f and one triangular solve per
    fold (:meth:`r2`, the library's value exactly). For permutation nulls, :meth:`fold_cross` and
    :meth:`r2_permuted` use each fold's test-row map H_f = (X_f − x̄_train) A⁻¹ instead (no solve), in a
    given precision. ``error`` is the reason R² is undefined for this X (constant on a training fold),
    else None.
    """

    def __init__(self, x: Side, alpha: float = 1e-3, n_folds: int = 5, seed: int = 0) -> None:
        n = x.n
        X = x.centred.to(torch.float64)
        folds = np.array_split(np.random.default_rng(seed).permutation(n), n_folds)
        self.parts = [torch.as_tensor(f, device=X.device) for f in folds]
        self.Xf = [X[idx] for idx in self.parts]
        sums = [Xf.sum(0) for Xf in self.Xf]
        grams = [Xf.T @ Xf for Xf in self.Xf]
        S_x, G = sum(sums), sum(grams)
        d1 = X.shape[1]
        self.nbytes = n_folds * d1 * d1 * 8
        eye = torch.eye(d1, dtype=X.dtype, device=X.device)
        self.folds: list[tuple[int, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]] = []
        self.error: str | None = None
        self._maps: dict[torch.dtype, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for f, (Xf, sx) in enumerate(zip(self.Xf, sums)):
            m = n - Xf.shape[0]
            mx = (S_x - sx) / m
            Gt = (G - grams[f]) - m * torch.outer(mx, mx)
            grams[f] = None  # type: ignore[call-overload]  # the fold's factors replace its Gram
            lam = alpha * float(torch.trace(Gt)) / d1
            if not lam > 0:
                self.error = "linear_regression: X is constant on a training fold; R² is undefined."
                return
            self.folds.append((m, mx, torch.linalg.lu_factor(Gt + lam * eye)))

    def r2(self, y: Side) -> float:
        """Cross-validated ridge R² of predicting ``y`` (same rows as X) from X: W_f = A_f⁻¹ C̃_train."""
        if self.error:
            raise ValueError(self.error)
        Y = y.centred.to(torch.float64)
        Ys = [Y[idx] for idx in self.parts]
        S_y = sum(Yf.sum(0) for Yf in Ys)
        Cs = [Xf.T @ Yf for Xf, Yf in zip(self.Xf, Ys)]
        C = sum(Cs)
        sse = sst = 0.0
        for (m, mx, lu), Xf, Yf, Cf in zip(self.folds, self.Xf, Ys, Cs):
            my = (S_y - Yf.sum(0)) / m
            Ct = (C - Cf) - m * torch.outer(mx, my)
            W = torch.linalg.lu_solve(*lu, Ct)  # = torch.linalg.solve(A_f, Ct), bit for bit
            resid = (Yf - my) - (Xf - mx) @ W
            sse += float((resid**2).sum())
            sst += float(((Yf - my) ** 2).sum())
        return _r2(sse, sst)

    def _null_maps(self, dtype: torch.dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each fold's rows X_f and test-row map H_f in ``dtype`` (the features' precision: float32
        features give null R² to ~1e-6 either way; the systems are solved in float64)."""
        if dtype not in self._maps:
            H = [
                torch.linalg.lu_solve(*lu, (Xf - mx).T).T.to(dtype).contiguous()  # A symmetric: (X_f − x̄) A⁻¹
                for (_, mx, lu), Xf in zip(self.folds, self.Xf)
            ]
            self._maps[dtype] = ([Xf.to(dtype) for Xf in self.Xf], H)
        return self._maps[dtype]

    def keep_null_maps_only(self, dtype: torch.dtype) -> None:
        """Form the null maps in ``dtype`` and free the factorisations (:meth:`r2` is then unavailable):
        for a layer too wide to keep its factors, a permutation null holds n × d1 instead of d1² per fold."""
        if not self.error:
            self._null_maps(dtype)
            self.folds = [(m, mx, None) for m, mx, _ in self.folds]  # type: ignore[misc]

    def fold_cross(self, y: Side, dtype: torch.dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each fold's rows of Ỹ (in ``dtype``) and cross product X̃_fᵀỸ_f (float64); their sum is X̃ᵀỸ."""
        Xs, _ = self._null_maps(dtype)
        Y = y.centred.to(dtype)
        Ys = [Y[idx] for idx in self.parts]
        return Ys, [(Xf.T @ Yf).to(torch.float64) for Xf, Yf in zip(Xs, Ys)]

    def r2_permuted(
        self, y: Side, dtype: torch.dtype, folds: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
    ) -> float:
        """:meth:`r2` from the test-row maps, products in ``dtype`` (``folds``: :meth:`fold_cross` of
        ``y`` when already computed); equal to :meth:`r2` up to rounding."""
        if self.error:
            raise ValueError(self.error)
        _, H = self._null_maps(dtype)
        Ys, Cs = folds or self.fold_cross(y, dtype)
        S_y = sum(Yf.sum(0) for Yf in Ys)
        C = sum(Cs)
        sse = sst = 0.0
        for (m, mx, _), Hf, Yf, Cf in zip(self.folds, H, Ys, Cs):
            my = (S_y - Yf.sum(0)) / m
            Ct = (C - Cf) - m * torch.outer(mx, my)  # centred training cross product X̃ᵀỸ
            Yc = (Yf.to(torch.float64) - my).reshape(-1)
            resid = Yc - (Hf @ Ct.to(dtype)).reshape(-1).to(torch.float64)
            sse += float(resid @ resid)
            sst += float(Yc @ Yc)
        return _r2(sse, sst)


def _r2(sse: float, sst: float) -> float:
    if not sst > 0:
        raise ValueError("linear_regression: Y is constant, so R² is undefined.")
    return 1.0 - sse / sst


def ridge_folds(x: Side, alpha: float, n_folds: int, seed: int) -> RidgeFolds:
    """X's :class:`RidgeFolds`, kept on the side for the other pairs it enters while its factors take at
    most :data:`RIDGE_CACHE_BYTES`."""
    key = ("ridge", alpha, n_folds, seed)
    if key not in x.reuse:
        folds = RidgeFolds(x, alpha, n_folds, seed)
        if folds.nbytes > RIDGE_CACHE_BYTES:
            return folds
        x.reuse[key] = folds
    return x.reuse[key]


def linear_regression(pair: SidePair, alpha: float = 1e-3, n_folds: int = 5, seed: int = 0) -> float:
    """Cross-validated ridge R² of predicting Y from X (ReSi's linear regression measure).

    Rows are split into ``n_folds`` seeded folds; on each training part the ridge map
    W = (X̃ᵀX̃ + λI)⁻¹X̃ᵀỸ is fitted with λ = alpha · tr(X̃ᵀX̃)/d1 (relative, so scale invariant), and
    R² = 1 − Σ_folds ‖Y_test − Ŷ_test‖² / Σ_folds ‖Y_test − ȳ_train‖². Not symmetric.
    Range (−∞, 1]; 1 = Y is an exact linear function of X, ≤ 0 = no better than the mean.
    Cost O(n·d1·(d1 + d2) + n_folds·d1³), float64; X's part (its folds' factorisations,
    :class:`RidgeFolds`) is kept for every other Y it is compared with.
    """
    return ridge_folds(pair.x, alpha, n_folds, seed).r2(pair.y)
