"""One blocked pass over the rows of the n×n Gram matrices of X and Y.

For each block of rows the pass forms ``G_b = F_b Fᵀ`` (shape (b, n), never the full n×n matrix)
and feeds it to the consumers that were requested: exact top-k neighbour search and the sums an
RBF-kernel HSIC needs. Neighbour search and RBF kernels share the same Gram blocks, so
``compute_all`` pays for the O(n²d) products once per side.

Neighbour rule (documented contract): neighbours of i are the k rows j ≠ i with the largest inner
product ⟨f_i, f_j⟩, ordered by decreasing inner product; equal inner products are ordered by
increasing row index j. Row i itself is excluded by index, so an exact duplicate of row i is a valid
neighbour — unless ``groups`` marks both as copies of one sample (bootstrap), then it is excluded.
"""

from __future__ import annotations

import math

import torch

from reprsim.metrics._pair import Pair, Side, _sum64

# Bytes one (b, n) Gram block may take; a few blocks are alive at once.
BLOCK_BYTES = 192 * 2**20
_TIE_MARGIN = 8


def block_rows(n: int, dtype: torch.dtype) -> int:
    """Rows per block so that one (rows, n) block stays within ``BLOCK_BYTES``."""
    item = 8 if dtype == torch.float64 else 4
    return max(1, min(n, BLOCK_BYTES // (item * n)))


def _topk_block(S: torch.Tensor, start: int, k: int, groups: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of a (b, n) similarity block under the documented tie rule; modifies ``S`` in place."""
    b, n = S.shape
    rows = torch.arange(b, device=S.device)
    S[rows, rows + start] = -math.inf
    if groups is not None:
        S.masked_fill_(groups[start:start + b, None] == groups[None, :], -math.inf)
    m = min(k + _TIE_MARGIN, n)
    vals, idx = torch.topk(S, m, dim=1, largest=True, sorted=True)
    last = vals[:, m - 1].clone()
    # order candidates by (value desc, index asc): sort by index, then stable sort by value
    o = torch.argsort(idx, dim=1)
    idx, vals = idx.gather(1, o), vals.gather(1, o)
    o = torch.sort(vals, dim=1, descending=True, stable=True).indices
    idx, vals = idx.gather(1, o)[:, :k].clone(), vals.gather(1, o)[:, :k].clone()
    if m < n:
        # a tie that may extend beyond the candidate window: redo those rows with a full stable sort
        spill = (last == vals[:, k - 1]).nonzero().flatten()
        for r in spill.tolist():
            o = torch.sort(S[r], descending=True, stable=True).indices[:k]
            idx[r], vals[r] = o, S[r, o]
    if bool(torch.isinf(vals).any()):
        raise ValueError(
            f"k={k} is too large: some rows have fewer than k other samples to choose neighbours from "
            "(after excluding copies of the same sample); use a smaller k."
        )
    return idx, vals.to(torch.float64)


def _rbf_block(G: torch.Tensor, sq_b: torch.Tensor, sq: torch.Tensor, start: int, sigma: float) -> torch.Tensor:
    """exp(−‖f_i − f_j‖² / (2σ²)) for a block, from its Gram block; squared distances are computed as
    ‖f_i‖² + ‖f_j‖² − 2⟨f_i, f_j⟩, rounded negatives set to 0 and the diagonal set to exactly 0."""
    K = G.mul(2.0)
    K.sub_(sq_b.to(G.dtype)[:, None]).sub_(sq.to(G.dtype)[None, :])
    K.clamp_(max=0.0)
    rows = torch.arange(G.shape[0], device=G.device)
    K[rows, rows + start] = 0.0
    K.mul_(1.0 / (2.0 * sigma * sigma)).exp_()
    return K


def _rbf_view(side: Side) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Features used for RBF distances: the raw ones when their mean is small against their spread
    (or in float64), so the neighbour-search Gram block can be reused; else the centred ones."""
    if side.dtype == torch.float64:
        return side.F, side.sq_raw, True
    spread = float(side.sq_centred.mean())
    offset = float((side.mean64 ** 2).sum())
    if offset <= spread:
        return side.F, side.sq_raw, True
    return side.centred, side.sq_centred, False


def run_pass(pair: Pair, knn_k: int | None = None, rbf_sigmas: list[tuple[float, float]] | None = None) -> None:
    """Fill ``pair.x.knn``/``pair.y.knn`` (for ``knn_k``) and ``pair.rbf[(σx, σy)]`` in one pass.

    ``pair.rbf[(σx, σy)]`` becomes ``(hsic_xy, hsic_xx, hsic_yy)``: biased HSIC values tr(KHLH),
    tr(KHKH), tr(LHLH) accumulated in float64.
    """
    rbf_sigmas = [s for s in (rbf_sigmas or []) if s not in pair.rbf]
    sides = []
    if knn_k is not None:
        sides = [s for s in dict.fromkeys((pair.x, pair.y)) if s.knn is None or s.knn[0].shape[1] < knn_k]
    if not sides and not rbf_sigmas:
        return
    n = pair.n
    X, Y = pair.x, pair.y
    step = block_rows(n, X.dtype)
    knn_out = {id(s): ([], []) for s in sides}
    if rbf_sigmas:
        vx, sqx, rawx = _rbf_view(X)
        vy, sqy, rawy = _rbf_view(Y)
        acc = {s: [torch.zeros((), dtype=torch.float64) for _ in range(3)] + [torch.zeros(n, dtype=torch.float64),
                                                                            torch.zeros(n, dtype=torch.float64)]
               for s in rbf_sigmas}
    for start in range(0, n, step):
        stop = min(n, start + step)
        G = {}
        for side in (X, Y):
            if side in sides or (rbf_sigmas and _rbf_view(side)[2]):
                G[id(side)] = side.F[start:stop] @ side.F.T
        if rbf_sigmas:
            Gx = G[id(X)] if rawx else vx[start:stop] @ vx.T
            Gy = G[id(Y)] if rawy else vy[start:stop] @ vy.T
            for (sx, sy) in rbf_sigmas:
                Kb = _rbf_block(Gx, sqx[start:stop], sqx, start, sx)
                Lb = _rbf_block(Gy, sqy[start:stop], sqy, start, sy)
                a = acc[(sx, sy)]
                a[0] += _sum64(Kb * Lb)
                a[1] += _sum64(Kb * Kb)
                a[2] += _sum64(Lb * Lb)
                a[3][start:stop] = _sum64(Kb, 1)
                a[4][start:stop] = _sum64(Lb, 1)
                del Kb, Lb
        for side in sides:
            idx, vals = _topk_block(G[id(side)], start, knn_k, pair.groups)
            knn_out[id(side)][0].append(idx)
            knn_out[id(side)][1].append(vals)
        del G
    for side in sides:
        side.knn = (torch.cat(knn_out[id(side)][0]), torch.cat(knn_out[id(side)][1]))
    for s in rbf_sigmas:
        skl, skk, sll, rk, rl = acc[s]
        sk, sl = rk.sum(), rl.sum()
        hxy = skl - 2.0 / n * (rk @ rl) + sk * sl / n**2
        hxx = skk - 2.0 / n * (rk @ rk) + sk * sk / n**2
        hyy = sll - 2.0 / n * (rl @ rl) + sl * sl / n**2
        pair.rbf[s] = (float(hxy), float(hxx), float(hyy))


def neighbours(pair: Pair, side: Side, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first k neighbours of every row of ``side``: (indices (n, k) long, inner products (n, k) f64).

    Lists for a smaller k are prefixes of the cached list for the largest k computed so far.
    """
    if side.knn is None or side.knn[0].shape[1] < k:
        run_pass(pair, knn_k=k)
    idx, vals = side.knn
    return idx[:, :k], vals[:, :k]
