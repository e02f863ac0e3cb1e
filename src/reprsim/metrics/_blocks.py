"""One tiled pass over the upper triangle of the n×n Gram matrices of X and Y.

The pass forms tiles ``G_IJ = F_I F_Jᵀ`` (row blocks I ≤ J; the full n×n matrix is never held) and
feeds each tile, and its transpose, to the consumers that were requested: exact top-k neighbour
search and the sums an RBF-kernel HSIC needs. Gram matrices are symmetric, so only the upper
triangle of tiles is formed (half the products), and neighbour search and RBF kernels share the
same tiles: ``compute_all`` pays for the O(n²d) products once.

Neighbour rule (documented contract): neighbours of i are the k rows j ≠ i with the largest inner
product ⟨f_i, f_j⟩, ordered by decreasing inner product; equal inner products are ordered by
increasing row index j. Row i itself is excluded by index, so an exact duplicate of row i is a valid
neighbour — unless ``groups`` marks both as copies of one sample (bootstrap), then it is excluded.
"""

from __future__ import annotations

import math

import torch

from reprsim.metrics._pair import SidePair, Side, _sum64

# Bytes one (b, b) tile may take; a handful of tiles are alive at once.
TILE_BYTES = 64 * 2**20
_TIE_MARGIN = 8
# exp(⟨f_i, f_j⟩/σ²) is formed directly when ‖f‖²/σ² stays below this (no fp32 overflow in products)
_EXP_SAFE = 40.0


def tile_rows(n: int, dtype: torch.dtype) -> int:
    """Rows per tile side so that one (b, b) tile stays within ``TILE_BYTES``."""
    item = 8 if dtype == torch.float64 else 4
    return max(1, min(n, int(math.isqrt(TILE_BYTES // item))))


def _mask(G: torch.Tensor, i0: int, j0: int, groups: torch.Tensor | None) -> None:
    """Set entries (i, i) and, with ``groups``, entries of copies of one sample to −inf in a tile."""
    if i0 == j0:
        r = torch.arange(G.shape[0], device=G.device)
        G[r, r] = -math.inf
    if groups is not None:
        G.masked_fill_(groups[i0 : i0 + G.shape[0], None] == groups[None, j0 : j0 + G.shape[1]], -math.inf)


class _TopK:
    """Running top-m candidates per row (m = k + a tie margin), merged tile by tile."""

    def __init__(self, n: int, k: int, dtype: torch.dtype, device: torch.device) -> None:
        self.n, self.k, self.m = n, k, min(k + _TIE_MARGIN, n)
        self.vals = torch.full((n, self.m), -math.inf, dtype=dtype, device=device)
        self.idx = torch.full((n, self.m), -1, dtype=torch.long, device=device)

    def add(self, S: torch.Tensor, r0: int, c0: int) -> None:
        """Merge the candidates of tile S (rows r0.., columns c0..)."""
        m = min(self.m, S.shape[1])
        tv, ti = torch.topk(S, m, dim=1)
        rows = slice(r0, r0 + S.shape[0])
        v = torch.cat([self.vals[rows], tv], 1)
        i = torch.cat([self.idx[rows], ti + c0], 1)
        bv, pos = torch.topk(v, self.m, dim=1)
        self.vals[rows], self.idx[rows] = bv, i.gather(1, pos)

    def finish(self, F: torch.Tensor, groups: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Order by (value desc, index asc), keep k; rows whose tie may reach past the candidates are
        redone exactly with a full stable sort of their row."""
        k, m = self.k, self.m
        o = torch.argsort(self.idx, dim=1)
        idx, vals = self.idx.gather(1, o), self.vals.gather(1, o)
        o = torch.sort(vals, dim=1, descending=True, stable=True).indices
        idx, vals = idx.gather(1, o)[:, :k].clone(), vals.gather(1, o)[:, :k].clone()
        if m < self.n:
            last = self.vals.min(1).values  # the m-th largest value of each row
            for r in (last == vals[:, k - 1]).nonzero().flatten().tolist():
                s = F[r : r + 1] @ F.T
                _mask(s, r, 0, None)
                s[0, r] = -math.inf
                if groups is not None:
                    s.masked_fill_(groups[None, :] == groups[r], -math.inf)
                o = torch.sort(s[0], descending=True, stable=True).indices[:k]
                idx[r], vals[r] = o, s[0, o]
        if bool(torch.isinf(vals).any()):
            raise ValueError(
                f"k={k} is too large: some rows have fewer than k other samples to choose neighbours from "
                "(after excluding copies of the same sample); use a smaller k."
            )
        return idx, vals.to(torch.float64)


def _rbf_tile(G: torch.Tensor, sq_i: torch.Tensor, sq_j: torch.Tensor, same: bool, sigma: float) -> torch.Tensor:
    """exp(−‖f_i − f_j‖²/(2σ²)) for a tile from its (unmasked) Gram tile; squared distances are
    ‖f_i‖² + ‖f_j‖² − 2⟨f_i, f_j⟩ with rounded negatives set to 0 and the diagonal to exactly 0."""
    K = G.mul(2.0)
    K.sub_(sq_i.to(G.dtype)[:, None]).sub_(sq_j.to(G.dtype)[None, :])
    K.clamp_(max=0.0)
    if same:
        r = torch.arange(G.shape[0], device=G.device)
        K[r, r] = 0.0
    K.mul_(1.0 / (2.0 * sigma * sigma)).exp_()
    return K


def _rbf_view(side: Side) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Features used for RBF distances: the raw ones when their mean is small against their spread
    (or in float64), so the neighbour-search tiles can be reused; else the centred ones."""
    if side.dtype == torch.float64:
        return side.F, side.sq_raw, True
    if float((side.mean64**2).sum()) <= float(side.sq_centred.mean()):
        return side.F, side.sq_raw, True
    return side.centred, side.sq_centred, False


_CHUNK = 256


def _mv64(E: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """E @ v as float64 (rows,), summing in the working dtype over chunks of 256 columns only and
    across chunks in float64: one matrix product with a block-diagonal (n_cols, n_chunks) matrix."""
    m = E.shape[1]
    nc = -(-m // _CHUNK)
    D = torch.zeros(m, nc, dtype=E.dtype, device=E.device)
    j = torch.arange(m, device=E.device)
    D[j, j // _CHUNK] = v
    return (E @ D).to(torch.float64).sum(1)


class _RBFAccumulator:
    """Accumulates Σ K∘L, Σ K∘K, Σ L∘L and the row sums of K and L over tiles (float64 across rows).

    Fast form (float64, and ‖f_i‖²/σ² ≤ 40 on both sides): K_ij = a_i a_j exp(⟨f_i, f_j⟩/σ²) with
    a_i = exp(−‖f_i‖²/(2σ²)): one exp per tile and side plus matrix–vector products (:func:`_mv64`:
    float32 sums over 256 columns at most, float64 beyond; the centred HSIC is a small difference
    of large sums, so float32 row sums over all n columns would cost ~1e-4 in rbf_cka). The diagonal
    and copies of one sample (distance exactly 0) are masked in the tile and added back as K = 1.
    Otherwise the distance form :func:`_rbf_tile` is used on unmasked tiles.
    """

    def __init__(
        self,
        n: int,
        sx: float,
        sy: float,
        sqx: torch.Tensor,
        sqy: torch.Tensor,
        mult: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> None:
        self.sx, self.sy, self.sqx, self.sqy = sx, sy, sqx, sqy
        # float32 exp(⟨f_i, f_j⟩/σ²) carries a small value-dependent bias that the centred HSIC (a small
        # difference of large sums) amplifies to ~1e-4 in rbf_cka: float32 uses the distance form.
        self.fast = (
            dtype == torch.float64 and float(sqx.max()) / sx**2 <= _EXP_SAFE and float(sqy.max()) / sy**2 <= _EXP_SAFE
        )
        self.ax = torch.exp(-sqx / (2 * sx**2)).to(dtype)
        self.ay = torch.exp(-sqy / (2 * sy**2)).to(dtype)
        self.w = torch.ones(n, dtype=torch.float64, device=sqx.device) if mult is None else mult
        self.skl = self.skk = self.sll = 0.0
        self.rk = torch.zeros(n, dtype=torch.float64, device=sqx.device)
        self.rl = torch.zeros_like(self.rk)

    def add(self, Gx: torch.Tensor, Gy: torch.Tensor, i0: int, j0: int) -> None:
        """Add tile (I, J) and, when I ≠ J, its mirror (J, I). Fast form: tiles already masked."""
        I = slice(i0, i0 + Gx.shape[0])
        J = slice(j0, j0 + Gx.shape[1])
        twice = 1.0 if i0 == j0 else 2.0
        f64 = torch.float64
        if self.fast:
            E = Gx.mul(1.0 / self.sx**2).exp_()
            F = Gy.mul(1.0 / self.sy**2).exp_()
            ax, ay = self.ax, self.ay
            self.rk[I] += ax[I].to(f64) * _mv64(E, ax[J])
            self.rl[I] += ay[I].to(f64) * _mv64(F, ay[J])
            if twice == 2.0:
                self.rk[J] += ax[J].to(f64) * _mv64(E.T, ax[I])
                self.rl[J] += ay[J].to(f64) * _mv64(F.T, ay[I])
            P = E * F
            axy = ax * ay
            self.skl += twice * float(axy[I].to(f64) @ _mv64(P, axy[J]))
            del P
            ax2, ay2 = ax.square(), ay.square()
            self.skk += twice * float(ax2[I].to(f64) @ _mv64(E.square_(), ax2[J]))
            self.sll += twice * float(ay2[I].to(f64) @ _mv64(F.square_(), ay2[J]))
        else:
            K = _rbf_tile(Gx, self.sqx[I], self.sqx[J], i0 == j0, self.sx)
            L = _rbf_tile(Gy, self.sqy[I], self.sqy[J], i0 == j0, self.sy)
            self.skl += twice * float(_sum64(K * L))
            self.skk += twice * float(_sum64(K * K))
            self.sll += twice * float(_sum64(L * L))
            self.rk[I] += _sum64(K, 1)
            self.rl[I] += _sum64(L, 1)
            if twice == 2.0:
                self.rk[J] += _sum64(K, 0)
                self.rl[J] += _sum64(L, 0)

    def add_whole(self, kx: "_Kernel", ky: "_Kernel") -> None:
        """Add the only tile (0, 0) from each side's whole kernel, as :meth:`add` would (distance form)."""
        (K, kk, rk), (L, ll, rl) = kx, ky
        self.skl += 1.0 * float(_sum64(K * L))
        self.skk += 1.0 * kk
        self.sll += 1.0 * ll
        self.rk[:] += rk
        self.rl[:] += rl

    def hsic(self, n: int) -> tuple[float, float, float]:
        rk, rl = self.rk, self.rl
        if self.fast:  # add back the masked entries (diagonal and copies), K = L = 1 there
            rk, rl = rk + self.w, rl + self.w
            ws = float(self.w.sum())
            skl, skk, sll = self.skl + ws, self.skk + ws, self.sll + ws
        else:
            skl, skk, sll = self.skl, self.skk, self.sll
        sk, sl = float(rk.sum()), float(rl.sum())
        hxy = skl - 2.0 / n * float(rk @ rl) + sk * sl / n**2
        hxx = skk - 2.0 / n * float(rk @ rk) + sk * sk / n**2
        hyy = sll - 2.0 / n * float(rl @ rl) + sl * sl / n**2
        return hxy, hxx, hyy


#: Largest whole RBF kernel (one tile) a side keeps for the other pairs it enters.
KERNEL_CACHE_BYTES = 16 * 2**20

_Kernel = tuple[torch.Tensor, float, torch.Tensor]  # K, Σ K∘K, row sums of K (float64)


def _whole_kernel(side: Side, sigma: float) -> _Kernel:
    """A side's RBF kernel in the distance form of :func:`_rbf_tile` on its one tile, with its own
    sums, kept on the side (while it fits :data:`KERNEL_CACHE_BYTES`): bit for bit what the tiled pass
    forms, without forming it again for every pair the side enters."""
    key = ("rbf_kernel", sigma)
    if key in side.reuse:
        return side.reuse[key]  # type: ignore[return-value]
    view, sq, _ = _rbf_view(side)
    whole = slice(0, side.n)
    K = _rbf_tile(view[whole] @ view[whole].T, sq[whole], sq[whole], True, sigma)
    out = (K, float(_sum64(K * K)), _sum64(K, 1))
    if K.numel() * K.element_size() <= KERNEL_CACHE_BYTES:
        side.reuse[key] = out
    return out


def run_pass(pair: SidePair, knn_k: int | None = None, rbf_sigmas: list[tuple[float, float]] | None = None) -> None:
    """Fill ``pair.x.knn``/``pair.y.knn`` (for ``knn_k``) and ``pair.rbf[(σx, σy)]`` in one pass.

    ``pair.rbf[(σx, σy)]`` becomes ``(hsic_xy, hsic_xx, hsic_yy)``: biased HSIC values tr(KHLH),
    tr(KHKH), tr(LHLH) (row sums accumulated in float64).
    """
    rbf_sigmas = [s for s in dict.fromkeys(rbf_sigmas or []) if s not in pair.rbf]
    sides: list[Side] = []
    if knn_k is not None:
        sides = [s for s in dict.fromkeys((pair.x, pair.y)) if s.knn is None or s.knn[0].shape[1] < knn_k]
    if not sides and not rbf_sigmas:
        return
    n, X, Y, groups = pair.n, pair.x, pair.y, pair.groups
    b = tile_rows(n, X.dtype)
    tops = {id(s): _TopK(n, knn_k, s.dtype, s.F.device) for s in sides}
    accs: dict[tuple[float, float], _RBFAccumulator] = {}
    if rbf_sigmas:
        vx, sqx, rawx = _rbf_view(X)
        vy, sqy, rawy = _rbf_view(Y)
        mult = pair.multiplicity()
        accs = {s: _RBFAccumulator(n, s[0], s[1], sqx, sqy, mult, X.dtype) for s in rbf_sigmas}
        if not sides and b >= n and groups is None and not any(a.fast for a in accs.values()):
            for s, acc in accs.items():  # one tile, neighbour lists known: each side's kernel, formed once
                acc.add_whole(_whole_kernel(X, s[0]), _whole_kernel(Y, s[1]))
                pair.rbf[s] = acc.hsic(n)
            return
    starts = list(range(0, n, b))
    for i0 in starts:
        for j0 in starts[starts.index(i0) :]:
            I, J = slice(i0, i0 + b), slice(j0, j0 + b)
            G = {}
            for side in (X, Y):
                if side in sides or (rbf_sigmas and _rbf_view(side)[2]):
                    G[id(side)] = side.F[I] @ side.F[J].T
            slow = [a for a in accs.values() if not a.fast]
            if slow:  # the distance form needs unmasked tiles: take them before masking
                gx = G[id(X)] if rawx else vx[I] @ vx[J].T
                gy = G[id(Y)] if rawy else vy[I] @ vy[J].T
                for acc in slow:
                    acc.add(gx, gy, i0, j0)
            for key, S in G.items():
                _mask(S, i0, j0, groups)
            for side in sides:
                S = G[id(side)]
                tops[id(side)].add(S, i0, j0)
                if i0 != j0:
                    tops[id(side)].add(S.T, j0, i0)
            fast = [a for a in accs.values() if a.fast]
            if fast:
                gx = G[id(X)] if rawx else vx[I] @ vx[J].T
                gy = G[id(Y)] if rawy else vy[I] @ vy[J].T
                if not rawx:
                    _mask(gx, i0, j0, groups)
                if not rawy:
                    _mask(gy, i0, j0, groups)
                for acc in fast:
                    acc.add(gx, gy, i0, j0)
            del G
    for side in sides:
        side.knn = tops[id(side)].finish(side.F, groups)
    for s, acc in accs.items():
        pair.rbf[s] = acc.hsic(n)


def neighbours(pair: SidePair, side: Side, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first k neighbours of every row of ``side``: (indices (n, k) long, inner products (n, k) f64).

    Lists for a smaller k are prefixes of the cached list for the largest k computed so far.
    """
    if side.knn is None or side.knn[0].shape[1] < k:
        run_pass(pair, knn_k=k)
    idx, vals = side.knn
    return idx[:, :k], vals[:, :k]
