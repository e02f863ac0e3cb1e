"""Cached per-representation and per-pair quantities shared between measures.

A :class:`Side` holds one validated feature matrix and lazily computes what several measures need
(centred copy, squared row norms, d×d covariance, neighbour lists). A :class:`SidePair` joins two
sides and caches cross terms (XᵀY on centred features, RBF kernel sums). ``compute_all`` builds
one SidePair, so every Gram product and neighbour search runs once; ``compare_layers`` reuses each
layer's Side across all layer pairs; ``permutation_test`` derives permuted Pairs that relabel the
cached Y-side quantities instead of recomputing them.

A Side holds its features multiplied by an exact power of two, ``2**scale_exp``, when their largest
magnitude lies outside [2**-20, 2**20] (see :mod:`reprsim.metrics._numerics`): every measure is
invariant to that scaling, and it keeps squared norms and Gram sums from over- or underflowing.
Quantities in feature units (an RBF bandwidth, inner products handed back to a user) must be
converted with ``scale_exp``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from reprsim.metrics._numerics import pow2_exponent, scale_pow2


def _sum64(t: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return t.sum(dtype=torch.float64) if dim is None else t.sum(dim=dim, dtype=torch.float64)


class Side:
    """One representation: feature matrix ``F`` of shape (n, d) in the working dtype.

    ``F`` is the input times ``2**scale_exp`` (``scale_exp`` is 0 unless the input's largest
    magnitude is outside [2**-20, 2**20]); pass ``scale_exp`` only for features already scaled.
    """

    def __init__(self, F: torch.Tensor, groups: torch.Tensor | None = None, scale_exp: int | None = None) -> None:
        if scale_exp is None:
            scale_exp = pow2_exponent(F)
            F = scale_pow2(F, scale_exp)
        self.scale_exp = scale_exp
        self._F: torch.Tensor | None = F
        # a permuted side's rows are another side's rows reordered, gathered only when first used (a
        # permutation null often needs only the relabelled neighbour lists or the invariant caches)
        self._rows_of: tuple[Side, torch.Tensor] | None = None
        self.n, self.d = F.shape
        self.groups = groups
        self._centred: torch.Tensor | None = None
        self._mean64: torch.Tensor | None = None
        self._sq_c: torch.Tensor | None = None
        self._sq_raw: torch.Tensor | None = None
        self._gram_c: torch.Tensor | None = None
        self._cov64: torch.Tensor | None = None
        self._eig: tuple[torch.Tensor, torch.Tensor] | None = None
        # neighbour lists for the largest k computed so far: (idx (n,k) long, inner products (n,k) f64)
        self.knn: tuple[torch.Tensor, torch.Tensor] | None = None
        self.median_dist: float | None = None
        # work of measures that depends on this side only, kept for the other pairs it enters (row-dependent:
        # a permuted or resampled side starts empty), e.g. linear_regression's fold factorisations
        self.reuse: dict[tuple, object] = {}

    @property
    def F(self) -> torch.Tensor:
        """The features (n, d) in the working dtype."""
        if self._F is None:
            source, perm = self._rows_of  # type: ignore[misc]
            self._F = source.F[perm]
        return self._F

    @property
    def dtype(self) -> torch.dtype:
        return self._F.dtype if self._F is not None else self._rows_of[0].dtype  # type: ignore[index]

    @property
    def mean64(self) -> torch.Tensor:
        """Column means in float64, shape (d,)."""
        if self._mean64 is None:
            self._mean64 = _sum64(self.F, 0) / self.n
        return self._mean64

    @property
    def centred(self) -> torch.Tensor:
        """Column-centred features in the working dtype, shape (n, d); the mean is taken in float64."""
        if self._centred is None and self._rows_of is not None and self._rows_of[0]._centred is not None:
            source, perm = self._rows_of
            self._centred = source._centred[perm]
        if self._centred is None:
            self._centred = (
                (self.F.to(torch.float64) - self.mean64).to(self.dtype)
                if self.dtype != torch.float64
                else self.F - self.mean64
            )
        return self._centred

    @property
    def sq_centred(self) -> torch.Tensor:
        """Squared norms of the centred rows, float64, shape (n,)."""
        if self._sq_c is None:
            c = self.centred
            self._sq_c = _sum64(c * c, 1)
        return self._sq_c

    @property
    def sq_raw(self) -> torch.Tensor:
        """Squared norms of the raw rows, float64, shape (n,)."""
        if self._sq_raw is None:
            self._sq_raw = _sum64(self.F * self.F, 1)
        return self._sq_raw

    @property
    def gram_c(self) -> torch.Tensor:
        """X̃ᵀX̃ on centred features (product in the working dtype), returned as float64 (d, d)."""
        if self._gram_c is None:
            c = self.centred
            self._gram_c = (c.T @ c).to(torch.float64)
        return self._gram_c

    @property
    def cov64(self) -> torch.Tensor:
        """X̃ᵀX̃ computed entirely in float64, shape (d, d) (used by the CCA family)."""
        if self._cov64 is None:
            if self.dtype == torch.float64:
                self._cov64 = self.gram_c
            else:
                c = self.centred.to(torch.float64)
                self._cov64 = c.T @ c
        return self._cov64

    @property
    def eig(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigen-decomposition of ``cov64``: (eigenvalues descending (d,), eigenvectors (d, d))."""
        if self._eig is None:
            w, V = torch.linalg.eigh(self.cov64)
            self._eig = (w.flip(0), V.flip(1))
        return self._eig

    def permuted(self, perm: torch.Tensor, inv: torch.Tensor) -> "Side":
        """This side with rows reordered as ``F[perm]`` (gathered on first use, as is the centred copy);
        permutation-invariant caches are reused and neighbour lists are relabelled (new neighbour of i =
        inv[old neighbour of perm[i]])."""
        s = Side(self.F[:0], None if self.groups is None else self.groups[perm], scale_exp=self.scale_exp)
        s._F, s._rows_of, s.n = None, (self, perm), self.n
        s._mean64, s._gram_c, s._cov64, s._eig = self._mean64, self._gram_c, self._cov64, self._eig
        s.median_dist = self.median_dist
        if hasattr(self, "_rs_constant"):  # degenerate_problem's answer, which no permutation changes
            s._rs_constant = self._rs_constant
        if self._sq_c is not None:
            s._sq_c = self._sq_c[perm]
        if self._sq_raw is not None:
            s._sq_raw = self._sq_raw[perm]
        if self.knn is not None:
            idx, vals = self.knn
            s.knn = (inv[idx[perm]], vals[perm])
        return s


@dataclass
class SidePair:
    """Two sides with the same n rows, plus cross caches."""

    x: Side
    y: Side
    groups: torch.Tensor | None = None
    _cross_c: torch.Tensor | None = None
    _cross64: torch.Tensor | None = None
    rbf: dict[tuple[float, float], tuple[float, float, float]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.x.n

    @property
    def cross_c(self) -> torch.Tensor:
        """X̃ᵀỸ on centred features (product in the working dtype) as float64, shape (d1, d2)."""
        if self._cross_c is None:
            self._cross_c = (self.x.centred.T @ self.y.centred).to(torch.float64)
        return self._cross_c

    @property
    def cross64(self) -> torch.Tensor:
        """X̃ᵀỸ computed in float64, shape (d1, d2) (used by the CCA family)."""
        if self._cross64 is None:
            if self.x.dtype == torch.float64:
                self._cross64 = self.cross_c
            else:
                self._cross64 = self.x.centred.to(torch.float64).T @ self.y.centred.to(torch.float64)
        return self._cross64

    def multiplicity(self) -> torch.Tensor | None:
        """For bootstrap pairs: how many rows share each row's original sample, float64 (n,)."""
        if self.groups is None:
            return None
        _, inverse, counts = torch.unique(self.groups, return_inverse=True, return_counts=True)
        return counts[inverse].to(torch.float64)

    def permuted(self, perm: torch.Tensor) -> "SidePair":
        """The pair (X, Y[perm]): X-side caches shared, Y-side caches relabelled, cross caches dropped."""
        return SidePair(self.x, self.y.permuted(perm, inverse_permutation(perm)), self.groups)


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    """π⁻¹ of a permutation tensor π (inv[π[i]] = i)."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return inv


def make_pair(X: torch.Tensor, Y: torch.Tensor, groups: np.ndarray | torch.Tensor | None = None) -> SidePair:
    """Build a SidePair from already validated tensors; ``groups`` (n,) marks rows that are copies of one
    original sample (bootstrap), which are then never each other's neighbours."""
    g = None if groups is None else torch.as_tensor(groups, dtype=torch.long, device=X.device)
    return SidePair(Side(X, g), Side(Y, g), g)
