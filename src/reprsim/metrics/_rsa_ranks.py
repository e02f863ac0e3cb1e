"""rsa's RDM ranks of a row subsample, for many subsamples of one representation (permutation nulls).

Under a row permutation π with rsa's row subsample S (n > max_rows), rsa(X, Y[π]) ranks the RDM of
Y[π(S)]: another set of Y's rows each time. :class:`GlobalRanks` sorts Y's full RDM once and reads a
selection's within-selection ranks off a running count, so a permutation costs O(n²) without a sort.
"""

from __future__ import annotations

import numpy as np
import torch

from reprsim.metrics import other as _other

__all__ = ["GlobalRanks"]


class GlobalRanks:
    """rsa's ranks of B under a row permutation when rsa subsamples rows (n > max_rows): each
    permutation selects another set of B's rows, B[perm[S]]. One stable sort of all n(n−1)/2 pairs of
    B's full RDM is kept; a selection's within-selection average ranks are read off a running count
    of the selected pairs over the sorted order (O(n²) per permutation, no sort). Only for RDMs
    without ties: which distances tie depends on the rounding of the product that forms them, which
    differs between the full RDM and the library's subsample RDM (a tied RDM falls back to the library)."""

    def __init__(self, F: torch.Tensor, which: str) -> None:
        n = F.shape[0]
        D = _other._corr_rdm_upper(F, which).cpu().numpy()
        iu = np.triu_indices(n, 1)
        v = D[iu]
        order = np.argsort(v, kind="stable")
        if bool((v[order[1:]] == v[order[:-1]]).any()):
            raise ValueError("tied dissimilarities")
        pos = np.empty(v.size, dtype=np.int32)
        pos[order] = np.arange(v.size, dtype=np.int32)
        del v, order
        # pos of pair {i, j} at [i, j] and [j, i] (int32, n×n): a subsample's pairs are one 2-D gather
        del D  # the float RDM goes before the position matrix is allocated
        self.where = np.zeros((n, n), dtype=np.int32)
        self.where[iu] = pos
        self.where.T[iu] = pos
        self.n_pairs = pos.size
        self._upper: dict[int, np.ndarray] = {}

    def ranks(self, rows: torch.Tensor) -> np.ndarray:
        """Ranks (1..m(m−1)/2, float64) of the RDM pairs of ``rows`` (m,) among themselves, in rsa's
        order (pairs a < b of the m rows, row-major)."""
        r = rows.cpu().numpy()
        m = r.size
        if m not in self._upper:
            self._upper[m] = np.triu(np.ones((m, m), dtype=bool), 1)
        q = self.where[r][:, r][self._upper[m]]
        mark = np.zeros(self.n_pairs, dtype=np.int32)
        mark[q] = 1
        return np.cumsum(mark, dtype=np.int32)[q].astype(np.float64)
