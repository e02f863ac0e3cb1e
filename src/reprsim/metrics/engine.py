"""The one layer-table engine: every selected measure on every (layer of A, layer of B) pair,
doing each layer's work once.

Each layer's prepared features become one :class:`reprsim.metrics._pair.Side`, shared by every
pair the layer enters, so its centring, covariance and eigen-decomposition (linear CKA, the CCA
family, Procrustes) and its neighbour lists (every kNN measure) are computed once, not once per
pair. Per-layer work that the measure functions do not keep is shared here as well:

* ``rbf_cka`` (while the kernels fit in :data:`SHARED_BYTES`, and unless ``share_rbf=False``):
  each layer's centred RBF kernel K̃ = HKH (n×n, float64); a pair then costs one O(n²) sum,
  tr(K̃L̃), instead of a blocked O(n²(d₁+d₂)) pass;
* ``rsa``: each layer's centred ranks of its correlation-distance RDM (the same rows the library
  would subsample above ``max_rows``); a pair costs one dot product (pairs with a row that is
  constant across features fall back to the library, which drops such rows pair by pair); under a
  row permutation B's ranks are relabelled. With a subsample (n > max_rows) rsa's null permutes B's
  rows within the subsample (:func:`reprsim.metrics.other.rsa_null_permutation`), so the relabelling
  is exact there too;
* ``linear_regression`` (predicting B from A): each A layer's :class:`reprsim.metrics.other.RidgeFolds`
  (its folds and their factorised ridge systems, kept on the layer's side, so every pair the layer
  predicts from costs the cross products and triangular solves only); under row permutations of B,
  each fold's ridge map of its test rows, so a pair costs the fold cross products and one product per
  fold (no solve).

With ``share_rbf=False`` rbf_cka keeps the library's tiled pass, whose kernel a layer forms once when
it fits in one tile (:func:`reprsim.metrics._blocks.run_pass`), as the library's own values.

Within a pair, ``mean_cca`` and ``pwcca`` share one SVD and ``procrustes_distance`` is the arccos of
``procrustes``, as the library defines it. Under a permutation of B's rows (permutation p-values,
calibration) only the cross products change: kNN lists are relabelled; rbf_cka and rsa become
⟨K, PLPᵀ⟩ of the stored kernels / symmetric rank matrices, and linear CKA (where gathering is cheaper
than the cross products: :data:`_GATHER_COST`, :data:`_INNER_COST`) ⟨X̃X̃ᵀ, P ỸỸᵀ Pᵀ⟩ of the centred
Grams, each permuted B layer gathered once in row blocks for every A layer
(:func:`reprsim.metrics._null.permuted_inners`);
CKNNA keeps its self terms (a permutation does not change them) and sums its cross term from the
mutual-neighbour entries; second_order_cosine gathers its inner products from each layer's Gram
matrix; ridge regression's per-fold cross products also give the pair's X̃ᵀỸ, from
which the whitened cross product is formed once for the CCA family (SVCCA's is its leading block)
and Procrustes; the spectral measures take their singular values from a symmetric eigenproblem
(:mod:`reprsim.metrics._null`). These null-only products and matrices are held in the features'
precision (``null_dtype``: float32 features give null values to ~1e-6, float64 to rounding), and
permutations run in ``workers`` threads side by side (:meth:`SimilarityEngine.permuted_values`).

Values equal :func:`reprsim.metrics.compute` on the same prepared features (identical for every
measure but a shared ``rbf_cka``, whose kernel is formed in float64 here: differences ~1e-7;
``share_rbf=False`` gives the library's value). Permutation p-values follow
:func:`reprsim.metrics.permutation_test` and bootstrap intervals :func:`reprsim.metrics.bootstrap_ci`
with the same seeds; here one permutation (or resample) of the rows serves every layer pair and
measure at once. Calibrated scores: :mod:`reprsim.metrics.calibrate`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from reprsim.metrics import _null
from reprsim.metrics import cca as _cca
from reprsim.metrics import cka as _cka
from reprsim.metrics import knn as _knn
from reprsim.metrics import other as _other
from reprsim.metrics._pair import Side, SidePair, inverse_permutation
from reprsim.metrics._validate import as_features, clamp_rounding, degenerate_problem
from reprsim.metrics.registry import (
    MEASURES,
    NUMERIC_ERRORS,
    PAPER_MEASURES,
    call_measure,
    get_measure,
    plan_pair,
    resolve_params,
    run_measures,
)
from reprsim.threads import limited_threads

__all__ = ["SHARED_BYTES", "SimilarityEngine", "prepare_layers", "resolve_measures"]

#: Memory the per-layer n×n objects of rbf_cka and rsa may take together; above it each pair is
#: computed by the library's blocked pass instead (slower, O(n) memory).
SHARED_BYTES = 2 * 2**30

Prepare = Callable[[Any], Any]

#: Most threads a permutation null runs side by side (:meth:`SimilarityEngine.permuted_values`).
_MAX_NULL_WORKERS = 4

#: What an entry of a permuted n×n matrix costs to gather, and to add into an inner product with
#: another such matrix, in multiply-adds of a matrix product (one CPU thread, n = 1,000–5,000: about
#: 1.3 ns, 0.3 ns and 0.03 ns).
_GATHER_COST, _INNER_COST = 45, 10


def resolve_measures(measures: Any) -> list[str]:
    """``"all"``, ``"paper"``, one name or a list of names → the list of measure names (checked)."""
    if measures == "all":
        return list(MEASURES)
    if measures == "paper":
        return list(PAPER_MEASURES)
    names = [measures] if isinstance(measures, str) else list(measures) if isinstance(measures, (list, tuple)) else None
    if not names:
        raise ValueError(
            f"measures must be 'all', 'paper', a measure name or a non-empty list of names; got {measures!r}."
        )
    for name in names:
        get_measure(name)  # ValueError listing the valid names
    return list(dict.fromkeys(names))


def prepare_layers(feats: Mapping[str, np.ndarray], prepare: Prepare, which: str) -> dict[str, torch.Tensor]:
    """Each layer's features prepared once and validated, ``{layer: (n, d) tensor}``."""
    out = {}
    for layer, f in feats.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                out[layer] = as_features(prepare(f), f"model {which} layer {layer!r}")
            except ValueError as exc:
                raise ValueError(f"model {which} layer {layer!r}: {exc}") from exc
        for w in caught:  # e.g. the sparse-layer clipping rule: say which layer
            warnings.warn(f"model {which} layer {layer!r}: {w.message}", stacklevel=2)
    return out


# measures this engine computes itself (not by the library's blocked neighbour/kernel pass)
_OWN_ROUTE = ("linear_regression", "mean_cca", "pwcca", "svcca")
_FALLBACK = "fallback"  # a per-layer quantity that cannot be shared for this layer: use the library


def _finite(name: str, compute: Callable[[], float]) -> float:
    """``compute()`` under the library's rules (:func:`reprsim.metrics.registry.call_measure`): numerical
    failures and non-finite values become ValueError naming the measure."""
    try:
        v = float(compute())
    except NUMERIC_ERRORS as exc:
        raise ValueError(
            f"{name} failed numerically ({type(exc).__name__}); the features are ill-conditioned "
            "(extreme values or (near-)constant columns). Check the features or drop this pair."
        ) from exc
    if not math.isfinite(v):
        raise ValueError(f"{name} is undefined for these features (the computation gave {v}).")
    return clamp_rounding(v, MEASURES[name].value_range)


def _full_cca(pair: SidePair) -> tuple[float, float]:
    """(mean_cca, pwcca) from one SVD of the whitened cross-covariance (the formulas of
    :func:`reprsim.metrics.cca.mean_cca` and :func:`reprsim.metrics.cca.pwcca`)."""
    rx, ry = _cca._rank(pair.x, "X"), _cca._rank(pair.y, "Y")
    s, U, V = _cca._cca(pair, rx, ry)
    side, vecs, r = (pair.x, U, rx) if rx <= ry else (pair.y, V, ry)
    w, E = side.eig
    proj = (E[:, :r] * torch.sqrt(w[:r])) @ vecs
    alpha = proj.abs().sum(0)
    return float(s.mean()), float((alpha * s).sum() / alpha.sum())


class _Shared:
    """The per-layer n×n quantities of rbf_cka and rsa (None when not shared, or the error text), and
    those only permutation nulls use (built on first use): rsa's ranks as a symmetric matrix, the
    layer's Gram matrix FFᵀ for second_order_cosine, its centred Gram X̃X̃ᵀ for linear CKA, and CKNNA's
    self term."""

    def __init__(self) -> None:
        self.rbf: tuple[torch.Tensor, float] | str | None = None
        self.rsa: tuple[np.ndarray, float] | str | None = None
        self.rsa_tied = False  # the RDM has equal dissimilarities (their ranks depend on rounding)
        self.rsa_matrix: torch.Tensor | None = None
        self.rbf_null: torch.Tensor | None = None  # the centred kernel in the engine's null_dtype
        self.gram: torch.Tensor | None = None
        self.centred_gram: tuple[torch.Tensor, float] | None = None  # linear CKA's X̃X̃ᵀ and ‖X̃X̃ᵀ‖²_F
        self.cknna_self: float | None = None


class _Permutation:
    """One row permutation π of B's layers and what the null needs of it, each computed on first use.

    ``perm`` and ``inv`` (π⁻¹) are CPU int64 tensors. rsa above its ``max_rows`` permutes B's rows
    within its subsample instead (π̃ = :func:`reprsim.metrics.other.rsa_null_permutation`);
    :meth:`rsa_sigma` is the permutation of the subsample's m rows it induces, :meth:`rsa_side` B's
    layer under π̃ (for pairs rsa computes by the library)."""

    def __init__(self, engine: "SimilarityEngine", perm: Any) -> None:
        self.engine = engine
        self.perm = torch.as_tensor(np.asarray(perm), dtype=torch.long)
        self.inv = inverse_permutation(self.perm)
        self._rsa_full: torch.Tensor | None = None
        self._sigma: torch.Tensor | None = None
        self._rsa_sides: dict[str, Side] = {}
        self._inners: dict[tuple[str, str], dict[str, float]] = {}

    def inner(self, name: str, la: str, lb: str) -> float:
        """⟨A_la, P B_lb Pᵀ⟩ of the n×n matrices ``name``'s null uses (:meth:`SimilarityEngine._null_matrix`;
        P: this permutation, π̃'s σ for rsa), computed for every layer of A at once: B's permuted
        matrix is gathered once per B layer."""
        if (name, lb) not in self._inners:
            e = self.engine
            mats = {a: M for a in e.sa if (M := e._null_matrix(name, "a", a)) is not None}
            p = self.rsa_sigma() if name == "rsa" else self.perm
            values = _null.permuted_inners(list(mats.values()), e._null_matrix(name, "b", lb), p)
            self._inners[(name, lb)] = dict(zip(mats, values))
        return self._inners[(name, lb)][la]

    def rsa_full(self) -> torch.Tensor:
        if self._rsa_full is None:
            p = self.engine.resolved["rsa"]
            self._rsa_full = torch.as_tensor(_other.rsa_null_permutation(self.perm.numpy(), p["max_rows"], p["seed"]))
        return self._rsa_full

    def rsa_sigma(self) -> torch.Tensor:
        if self._sigma is None:
            rows = self.engine._rsa_rows()
            self._sigma = self.perm if rows is None else torch.searchsorted(rows, self.rsa_full()[rows])
        return self._sigma

    def rsa_side(self, lb: str) -> Side:
        if lb not in self._rsa_sides:
            pt = self.rsa_full()
            it = inverse_permutation(pt)
            sb = self.engine.sb[lb]
            self._rsa_sides[lb] = sb.permuted(pt.to(sb.F.device), it.to(sb.F.device))
        return self._rsa_sides[lb]


class SimilarityEngine:
    """Measures between every layer of A and every layer of B on the same n inputs.

    Args:
        feats_a, feats_b: ``{layer: prepared features (n, d)}`` (tensors or arrays, same n).
        names: measure names.
        params: measure parameters, passed to every selected measure that takes them.
        progress: show a progress bar (None: only on a terminal).
        share_rbf: share each layer's centred RBF kernel (while it fits in :data:`SHARED_BYTES`);
            False computes rbf_cka by the library's blocked pass, exactly as :func:`compute_all`.
    """

    def __init__(
        self,
        feats_a: Mapping[str, Any],
        feats_b: Mapping[str, Any],
        names: Sequence[str],
        params: Mapping[str, Any] | None = None,
        progress: bool | None = None,
        share_rbf: bool = True,
    ) -> None:
        ta = {k: as_features(v, f"features of A[{k!r}]") for k, v in feats_a.items()}
        tb = {k: as_features(v, f"features of B[{k!r}]") for k, v in feats_b.items()}
        ns = {t.shape[0] for t in [*ta.values(), *tb.values()]}
        if len(ns) != 1:
            raise ValueError(f"every layer must have the same number of rows (inputs); got {sorted(ns)}.")
        if any(t.dtype == torch.float64 for t in [*ta.values(), *tb.values()]):
            ta = {k: v.to(torch.float64) for k, v in ta.items()}
            tb = {k: v.to(torch.float64) for k, v in tb.items()}
        self.n = ns.pop()
        self.names = list(names)
        params = dict(params or {})
        ms = [get_measure(n) for n in self.names]
        unused = sorted(set(params) - {p for m in ms for p in m.params})
        if unused:
            raise ValueError(
                f"parameter(s) {', '.join(unused)} are not taken by any selected measure "
                f"({', '.join(self.names)}); remove them or select a measure that takes them."
            )
        self.resolved = {
            m.name: resolve_params(m, self.n, {p: v for p, v in params.items() if p in m.params}) for m in ms
        }
        self.ta, self.tb = ta, tb
        self.sa = {k: Side(v) for k, v in ta.items()}
        self.sb = {k: Side(v) for k, v in tb.items()}
        self.progress = progress
        self.warnings: list[str] = []
        n_layers = len(ta) + len(tb)
        self.share_rbf = share_rbf and "rbf_cka" in self.names and n_layers * self.n**2 * 8 <= SHARED_BYTES
        m_rsa = min(self.n, self.resolved["rsa"]["max_rows"]) if "rsa" in self.names else 0
        # the ranks' upper triangle, its sort's workspace and (for nulls) the symmetric rank matrix
        rsa_bytes = n_layers * ((m_rsa * (m_rsa - 1) // 2) * 8 * 2 + m_rsa * m_rsa * 8)
        rbf_bytes = self.share_rbf * n_layers * self.n**2 * 8
        self.share_rsa = "rsa" in self.names and rbf_bytes + rsa_bytes <= SHARED_BYTES
        # permutation nulls gather from n×n matrices in the features' precision: the kernels and RDM ranks
        # of float32 features are float32-accurate anyway, and a float32 gather moves half the memory
        self.null_dtype = next(iter(ta.values())).dtype if ta else torch.float64
        gram_bytes = n_layers * self.n**2 * self.null_dtype.itemsize
        if self.null_dtype != torch.float64:
            rbf_bytes += self.share_rbf * n_layers * self.n**2 * self.null_dtype.itemsize  # the kernels' null copy
        used = rbf_bytes + self.share_rsa * rsa_bytes
        self.share_gram = "second_order_cosine" in self.names and used + gram_bytes <= SHARED_BYTES
        used += self.share_gram * gram_bytes
        # linear CKA's null from each layer's centred Gram where gathering n² entries per B layer and one
        # inner product per pair cost less than the pairs' cross products X̃ᵀỸ[π] (n·d_a·d_b each)
        cross_cost = sum(a.shape[1] for a in ta.values()) * sum(b.shape[1] for b in tb.values())
        gram_cost = self.n * len(tb) * (_GATHER_COST + _INNER_COST * len(ta))
        self.share_centred_gram = "cka" in self.names and used + gram_bytes <= SHARED_BYTES and cross_cost > gram_cost
        self._shared: dict[tuple[str, str], _Shared] = {}
        self._ridge: weakref.WeakKeyDictionary[Side, _other.RidgeFolds] = weakref.WeakKeyDictionary()
        self.values: dict[tuple[str, str, str], float] = {}

    def restricted(self, names: Sequence[str]) -> "SimilarityEngine":
        """This engine for some of its measures, sharing its layers and all their cached work (neighbour
        lists, decompositions, kernels, ridge folds) and the values computed so far: e.g. to calibrate a
        few measures of a table without preparing the layers again."""
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise ValueError(f"{', '.join(unknown)} not among this engine's measures ({', '.join(self.names)}).")
        sub = copy.copy(self)  # ``resolved`` stays whole: the shared per-layer work reads its measures' parameters
        sub.names = list(names)
        sub.values = {key: v for key, v in self.values.items() if key[2] in sub.names}
        sub.warnings = []
        return sub

    # ---- per-layer shared work ---------------------------------------------------------------
    def _layer(self, which: str, layer: str) -> _Shared:
        key = (which, layer)
        if key not in self._shared:
            self._shared[key] = _Shared()
            side = (self.sa if which == "a" else self.sb)[layer]
            if self.share_rbf:
                self._shared[key].rbf = self._rbf_kernel(side)
            if self.share_rsa:
                self._shared[key].rsa, self._shared[key].rsa_tied = self._rsa_ranks(side, f"{which.upper()}[{layer!r}]")
        return self._shared[key]

    def _rbf_kernel(self, side: Side) -> tuple[torch.Tensor, float] | str:
        """Centred RBF kernel HKH of one layer (n×n float64) and its squared Frobenius norm."""
        try:
            sigma = _cka.bandwidths(SidePair(side, side), self.resolved["rbf_cka"]["sigma"])[0]
        except ValueError as exc:
            return str(exc)
        C = side.centred.to(torch.float64)
        sq = (C * C).sum(1)
        D2 = (sq[:, None] + sq[None, :] - 2.0 * (C @ C.T)).clamp_(min=0.0)
        D2.fill_diagonal_(0.0)
        K = D2.mul_(-1.0 / (2.0 * sigma * sigma)).exp_()
        col = K.mean(0)
        K.sub_(col[None, :]).sub_(col[:, None]).add_(col.mean())  # K symmetric: row means = column means
        return K, float((K * K).sum())

    def _rsa_matrix(self, which: str, layer: str) -> torch.Tensor:
        """The layer's centred RDM ranks as a symmetric (m, m) matrix in ``null_dtype``, zero diagonal."""
        q = self._layer(which, layer)
        if q.rsa_matrix is None:
            r = torch.from_numpy(q.rsa[0])  # type: ignore[index]
            m = (1 + math.isqrt(1 + 8 * r.numel())) // 2
            iu = torch.triu_indices(m, m, offset=1)
            R = torch.zeros(m, m, dtype=self.null_dtype)  # centred ranks: half-integers, exact in float32 for m ≤ 4096
            R[iu[0], iu[1]] = r.to(self.null_dtype)
            q.rsa_matrix = R + R.T
        return q.rsa_matrix

    def _rbf_null(self, q: _Shared) -> torch.Tensor:
        if q.rbf_null is None:
            q.rbf_null = q.rbf[0].to(self.null_dtype)  # type: ignore[index]
        return q.rbf_null

    def _centred_gram(self, which: str, layer: str) -> tuple[torch.Tensor, float]:
        """The layer's centred Gram X̃X̃ᵀ (n, n) in the features' dtype and ‖X̃X̃ᵀ‖²_F (linear CKA's nulls:
        HSIC(X, Y[π]) = ⟨X̃X̃ᵀ, P ỸỸᵀ Pᵀ⟩)."""
        q = self._layer(which, layer)
        if q.centred_gram is None:
            C = (self.sa if which == "a" else self.sb)[layer].centred
            K = C @ C.T
            q.centred_gram = (K, float((K * K).sum(dtype=torch.float64)))
        return q.centred_gram

    def _null_matrix(self, name: str, which: str, layer: str) -> torch.Tensor | None:
        """The (m, m) matrix of a layer whose permuted inner products give ``name``'s null (rbf_cka: the
        centred kernel; rsa: the symmetric RDM ranks; cka: the centred Gram), None where the layer's
        quantity is not shared."""
        if name == "cka":
            return self._centred_gram(which, layer)[0]
        q = self._layer(which, layer)
        if not isinstance(q.rbf if name == "rbf_cka" else q.rsa, tuple):
            return None
        return self._rbf_null(q) if name == "rbf_cka" else self._rsa_matrix(which, layer)

    def _cknna_self(self, which: str, layer: str) -> float:
        """CKNNA's self term of a layer (:func:`reprsim.metrics.knn.cknna_self`), which B's row
        permutations leave unchanged."""
        q = self._layer(which, layer)
        if q.cknna_self is None:
            side = (self.sa if which == "a" else self.sb)[layer]
            q.cknna_self = _knn.cknna_self(SidePair(side, side), side, self.resolved["cknna"]["k"])
        return q.cknna_self

    def _gram(self, which: str, layer: str) -> torch.Tensor:
        """The layer's Gram matrix FFᵀ (n, n) in the features' dtype (second_order_cosine's nulls)."""
        q = self._layer(which, layer)
        if q.gram is None:
            F = (self.sa if which == "a" else self.sb)[layer].F
            q.gram = F @ F.T
        return q.gram

    def _rsa_rows(self) -> torch.Tensor | None:
        return _other.rsa_rows(self.n, self.resolved["rsa"]["max_rows"], self.resolved["rsa"]["seed"])

    def _rsa_ranks(self, side: Side, which: str) -> tuple[tuple[np.ndarray, float] | str, bool]:
        """(centred average ranks of the RDM's upper triangle (the rows rsa would use) and their sum of
        squares — or why not —, whether the RDM has equal dissimilarities)."""
        rows = self._rsa_rows()
        F = side.F if rows is None else side.F[rows.to(side.F.device)]
        if bool((F == F[:, :1]).all(1).any()):
            return _FALLBACK, False  # rows constant across features are dropped pair by pair by the library
        try:
            D = _other._corr_rdm_upper(F, which)
        except ValueError as exc:
            return str(exc), False
        m = F.shape[0]
        iu = torch.triu_indices(m, m, offset=1, device=D.device)
        r = _other.average_ranks(D[iu[0], iu[1]].cpu().numpy())
        del D
        # tie-free ⇔ the ranks are exactly 1..N, each once (O(N), no sort)
        tied = not (bool((r == np.floor(r)).all()) and int(np.bincount(r.astype(np.int64)).max()) == 1)
        r -= r.mean()
        return (r, float(r @ r)), tied

    def _shared_value(self, name: str, la: str, lb: str, perm: _Permutation | None = None) -> float:
        """rbf_cka / rsa from the shared per-layer quantities (``perm``: a permutation of B's rows, which
        permutes the rows and columns of B's kernel and RDM; their sums of squares are unchanged)."""
        x, y = self._layer("a", la), self._layer("b", lb)
        qx, qy = (x.rbf, y.rbf) if name == "rbf_cka" else (x.rsa, y.rsa)
        for q in (qx, qy):
            if isinstance(q, str):
                raise ValueError(q)
        if name == "rbf_cka":
            Kx, hxx = qx  # type: ignore[misc]
            Ky, hyy = qy  # type: ignore[misc]
            if perm is None:
                hxy = float(Kx.reshape(-1) @ Ky.reshape(-1))
            else:
                hxy = perm.inner("rbf_cka", la, lb)
            return _cka._ratio(hxy, hxx, hyy, what="rbf_cka")
        rx, sx = qx  # type: ignore[misc]
        ry, sy = qy  # type: ignore[misc]
        den = math.sqrt(sx * sy)
        if not den > 0:
            raise ValueError("rsa is undefined: one RDM has all pairwise dissimilarities equal.")
        if perm is None:
            return float(rx @ ry / den)
        # Σ over pairs a < b = half the sum over the symmetric matrices (zero diagonals)
        return 0.5 * perm.inner("rsa", la, lb) / den

    def _ridge_for(self, side: Side) -> _other.RidgeFolds:
        """A layer's ridge folds for permutation nulls (the side keeps them too while they are small)."""
        if side not in self._ridge:
            p = self.resolved["linear_regression"]
            folds = _other.ridge_folds(side, p["alpha"], p["n_folds"], p["seed"])
            if folds.nbytes > _other.RIDGE_CACHE_BYTES:
                folds.keep_null_maps_only(self.null_dtype)
            self._ridge[side] = folds
        return self._ridge[side]

    def _uses_library(self, name: str, la: str, lb: str, perm: Any, shared: bool) -> bool:
        """Whether ``name`` must be computed by the library for this pair (not from per-layer quantities)."""
        if name == "rbf_cka":
            return not (shared and self.share_rbf)
        if name == "rsa":
            if not (shared and self.share_rsa):
                return True
            if perm is not None and self._rsa_rows() is not None and self._layer("b", lb).rsa_tied:
                # which distances of Y[π̃]'s recomputed RDM tie depends on the rounding of their products
                return True
            return _FALLBACK in (self._layer("a", la).rsa, self._layer("b", lb).rsa)
        return True

    def _evaluate(
        self, pair: SidePair, la: str, lb: str, record: bool, perm: _Permutation | None = None, shared: bool = True
    ) -> dict[str, float]:
        """Every measure on one pair. ``perm``: the row permutation of B's side (permutation test);
        ``shared=False`` for pairs whose sides are not the engine's layers (bootstrap resamples)."""
        library = [n for n in self.names if self._uses_library(n, la, lb, perm, shared)]
        plan_pair(pair, [n for n in library if n not in _OWN_ROUTE], self.resolved)
        out: dict[str, float] = {}
        fused: dict[str, Any] = {}
        problem = degenerate_problem(pair.x, pair.y)  # a constant side: every measure NaN, with a warning
        if perm is not None and not problem:
            self._share_ridge_cross(pair, fused)
        for name in self.names:
            try:
                if problem:
                    raise ValueError(f"{name} is {problem}")
                if name == "rsa" and perm is not None and name in library:  # rsa's own null permutation
                    out[name] = call_measure(MEASURES[name], SidePair(pair.x, perm.rsa_side(lb)), self.resolved[name])
                elif name not in library:
                    out[name] = self._shared_value(name, la, lb, perm)
                elif name == "second_order_cosine" and perm is not None and self.share_gram:
                    out[name] = self._soc_permuted(pair, la, lb, perm)
                elif name == "cka" and perm is not None and self.share_centred_gram:
                    _, hxx = self._centred_gram("a", la)
                    _, hyy = self._centred_gram("b", lb)
                    out[name] = _finite(name, lambda: _cka._ratio(perm.inner("cka", la, lb), hxx, hyy, what="cka"))
                elif name == "cknna" and perm is not None and shared:
                    k, skk, sll = self.resolved["cknna"]["k"], self._cknna_self("a", la), self._cknna_self("b", lb)
                    out[name] = _finite(name, lambda: _knn.cknna_of(pair, k, skk, sll))
                else:
                    out[name] = self._own_route(name, pair, out, fused, permuted=perm is not None)
            except ValueError as exc:
                out[name] = float("nan")
                if record:
                    self.warnings.append(f"{name} on ({la}, {lb}): {exc}")
        return out

    def _own_route(
        self, name: str, pair: SidePair, out: dict[str, float], fused: dict[str, Any], permuted: bool
    ) -> float:
        """One measure on one pair, sharing work with the pair's other measures (``fused``): mean_cca
        and pwcca one decomposition, procrustes_distance procrustes' value; on a permuted pair the
        spectral measures use the eigenvalue forms of :mod:`reprsim.metrics._null`."""
        if name in ("mean_cca", "pwcca"):
            if "cca" not in fused:
                try:
                    fused["cca"] = (
                        _null.mean_and_pw_cca(pair, self._whitened(pair, fused)) if permuted else _full_cca(pair)
                    )
                except (ValueError, *NUMERIC_ERRORS) as exc:
                    fused["cca"] = exc
            if isinstance(fused["cca"], BaseException):
                raise ValueError(f"{name}: {fused['cca']}") from fused["cca"]
            return _finite(name, lambda: fused["cca"][0 if name == "mean_cca" else 1])
        if name == "procrustes_distance":
            sim = out.get("procrustes")
            if sim is None or math.isnan(sim):
                if not permuted:
                    return call_measure(MEASURES[name], pair, self.resolved[name])
                sim = _finite("procrustes_distance", lambda: _null.procrustes(pair))
            return _other.procrustes_distance_from(pair, sim)
        if permuted and name == "procrustes":
            return _finite(name, lambda: _null.procrustes(pair))
        if permuted and name == "svcca":
            return _finite(name, lambda: _null.svcca(pair, **self.resolved["svcca"], M=self._whitened(pair, fused)))
        if permuted and name == "linear_regression":  # observed values: the library's, exactly
            return _finite(
                name, lambda: self._ridge_for(pair.x).r2_permuted(pair.y, self.null_dtype, fused.get("ridge_folds"))
            )
        return call_measure(MEASURES[name], pair, self.resolved[name])

    def _share_ridge_cross(self, pair: SidePair, fused: dict[str, Any]) -> None:
        """Under a permutation, ridge regression's per-fold cross products sum to the pair's float64
        X̃ᵀỸ: form them first and hand the CCA family and Procrustes their sum (one product, not two)."""
        if "linear_regression" not in self.names or not pair.x.n > self.resolved["linear_regression"]["n_folds"]:
            return
        ridge = self._ridge_for(pair.x)
        if ridge.error is None:
            fused["ridge_folds"] = ridge.fold_cross(pair.y, self.null_dtype)
            pair._cross64 = sum(fused["ridge_folds"][1])

    @staticmethod
    def _whitened(pair: SidePair, fused: dict[str, Any]) -> torch.Tensor:
        """The pair's whitened cross product (:func:`reprsim.metrics._null.whitened_cross`), once per pair."""
        if "whitened" not in fused:
            fused["whitened"] = _null.whitened_cross(pair)
        return fused["whitened"]

    def _soc_permuted(self, pair: SidePair, la: str, lb: str, perm: _Permutation) -> float:
        """second_order_cosine on (A[la], B[lb][π]) with the inner products gathered from each layer's
        Gram matrix: ⟨x_i, x_j⟩ = Gx[i, j] and ⟨y_π(i), y_π(j)⟩ = Gy[π_i, π_j] (O(nk) per permutation
        instead of O(nkd))."""
        Gx, Gy = self._gram("a", la), self._gram("b", lb)
        p = perm.perm.to(Gy.device)
        rows = torch.arange(self.n, device=Gx.device)[:, None]
        k = self.resolved["second_order_cosine"]["k"]

        def inner_x(idx: torch.Tensor) -> torch.Tensor:
            return Gx[rows, idx].to(torch.float64)

        def inner_y(idx: torch.Tensor) -> torch.Tensor:
            return Gy[p[:, None], p[idx]].to(torch.float64)

        return _finite("second_order_cosine", lambda: _knn.second_order_cosine_of(pair, k, inner_x, inner_y))

    # ---- the three passes --------------------------------------------------------------------
    def compute(self) -> dict[tuple[str, str, str], float]:
        """Every measure on every layer pair: ``{(layer_a, layer_b, measure): value}`` (NaN + warning
        when a measure is undefined for a pair)."""
        pairs = [(la, lb) for la in self.sa for lb in self.sb]
        if self.share_rsa and self._rsa_rows() is not None:
            self.warnings.append(
                f"rsa: n={self.n} > max_rows={self.resolved['rsa']['max_rows']}; it uses a seeded "
                f"subsample of {self.resolved['rsa']['max_rows']} rows (raise max_rows for the exact value)."
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rsa's subsample warning, once per pair: recorded above instead
            for la, lb in tqdm(pairs, desc="similarity (layer pairs)", disable=self._disabled(len(pairs))):
                vals = self._evaluate(SidePair(self.sa[la], self.sb[lb]), la, lb, record=True)
                for name, v in vals.items():
                    self.values[(la, lb, name)] = v
        return self.values

    def ceilings(self) -> dict[tuple[str, str], float]:
        """``{(layer_a, measure): m(A[layer_a], A[layer_a])}``, each measure's value for identical inputs
        (NaN where undefined): rbf_cka and rsa from A's shared kernel / RDM ranks, the others by the
        library on A's cached side (its neighbour lists and decompositions are reused)."""
        out: dict[tuple[str, str], float] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. rsa's subsample note: compute() reports it once
            for la, side in self.sa.items():
                own = {n: self._self_similarity(n, la) for n in self.names if n in ("rbf_cka", "rsa")}
                own = {n: v for n, v in own.items() if v is not None}
                rest = [n for n in self.names if n not in own]
                vals = run_measures(SidePair(side, side), rest, self.resolved, on_error="nan") if rest else {}
                out.update({(la, n): own[n] if n in own else vals[n] for n in self.names})
        return out

    def _self_similarity(self, name: str, la: str) -> float | None:
        """rbf_cka / rsa of A[la] with itself from its shared quantity (None: not shared for this layer)."""
        if not (self.share_rbf if name == "rbf_cka" else self.share_rsa):
            return None
        q = self._layer("a", la)
        shared = q.rbf if name == "rbf_cka" else q.rsa
        if shared is None or shared is _FALLBACK:
            return None
        if isinstance(shared, str):
            return float("nan")
        try:
            if name == "rbf_cka":
                return _cka._ratio(shared[1], shared[1], shared[1], what="rbf_cka")
            r, ss = shared
            if not ss > 0:
                return float("nan")
            return float(r @ r / math.sqrt(ss * ss))
        except ValueError:
            return float("nan")

    def _disabled(self, total: int) -> bool | None:
        if self.progress is None:
            return None if total > 1 else True
        return not self.progress

    def permutation_pvalues(self, n_permutations: int, seed: int) -> dict[tuple[str, str, str], float]:
        """p = (1 + #{permuted ≥ observed}) / (K + 1) (≤ for distances) per (layer_a, layer_b, measure);
        NaN where the observed value is NaN. One permutation of B's rows serves every pair."""
        if not self.values:
            self.compute()
        rng = np.random.default_rng(seed)
        hits = {key: 0 for key in self.values}
        perms = (rng.permutation(self.n) for _ in range(n_permutations))
        for vals in tqdm(
            self.permuted_values(perms),
            total=n_permutations,
            desc="permutations",
            disable=self._disabled(n_permutations),
        ):
            for key, v in vals.items():
                obs = self.values[key]
                if math.isnan(obs) or math.isnan(v):
                    continue
                hits[key] += v <= obs if MEASURES[key[2]].kind == "distance" else v >= obs
        return {
            key: (float("nan") if math.isnan(self.values[key]) else (1 + h) / (n_permutations + 1))
            for key, h in hits.items()
        }

    def permuted_values(
        self, perms: Iterable[Any], workers: int | None = None
    ) -> Iterator[dict[tuple[str, str, str], float]]:
        """For each permutation ``perm`` (n,) of the rows: every measure on every pair (A[la], B[lb][perm]),
        ``{(layer_a, layer_b, measure): value}`` (NaN where undefined). The same permutation is applied to
        every layer of B; cached B-side quantities are relabelled (neighbour lists, kernels, RDM ranks).
        rsa above its ``max_rows`` uses π̃ = :func:`reprsim.metrics.other.rsa_null_permutation` (B's rows
        permuted within its row subsample) instead of ``perm``.

        ``workers`` threads evaluate permutations side by side, each with one torch thread (default: torch's
        thread count on the CPU, 1 on an accelerator): much of a permutation's work runs on one core (numpy
        gathers, small eigenproblems, Python), so this keeps every core busy. Values do not depend on it."""
        perms = iter(perms)
        if workers is None:
            on_cpu = all(t.device.type == "cpu" for t in [*self.ta.values(), *self.tb.values()])
            workers = min(torch.get_num_threads(), _MAX_NULL_WORKERS) if on_cpu else 1
        first = next(perms, None)
        if first is None:
            return
        yield self._permuted_one(first)  # serially first: it builds the lazy caches the threads then share
        if workers <= 1:
            for perm in perms:
                yield self._permuted_one(perm)
            return
        with ThreadPoolExecutor(workers) as pool:
            while chunk := list(itertools.islice(perms, 4 * workers)):
                # one torch and BLAS thread per worker; the limits and the warnings filter are process-wide
                # state, so they are restored before a yield
                with limited_threads(1), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    results = list(pool.map(self._permuted_one, chunk, itertools.repeat(False)))
                yield from results

    def _permuted_one(self, perm: Any, quiet: bool = True) -> dict[tuple[str, str, str], float]:
        """Every measure on every pair (A[la], B[lb][perm]). ``quiet``: silence warnings here (threads leave
        it to their caller: the warnings filter is process-wide state)."""
        with warnings.catch_warnings() if quiet else contextlib.nullcontext():
            if quiet:
                warnings.simplefilter("ignore")
            p = _Permutation(self, perm)
            out: dict[tuple[str, str, str], float] = {}
            for lb, sb in self.sb.items():
                sbp = sb.permuted(p.perm.to(sb.F.device), p.inv.to(sb.F.device))
                for la, sa in self.sa.items():
                    vals = self._evaluate(SidePair(sa, sbp), la, lb, record=False, perm=p)
                    out.update({(la, lb, name): v for name, v in vals.items()})
        return out

    def bootstrap_intervals(
        self, n_boot: int, level: float, seed: int
    ) -> dict[tuple[str, str, str], tuple[float, float]]:
        """Percentile intervals over resampled inputs per (layer_a, layer_b, measure), as
        :func:`reprsim.metrics.bootstrap_ci`; one resample serves every pair. More than half the
        replicates undefined gives (NaN, NaN) and a warning."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1); got {level}.")
        rng = np.random.default_rng(seed)
        n = self.n
        vals = {key: np.full(n_boot, np.nan) for key in self.values or self.compute()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for b in tqdm(range(n_boot), desc="bootstrap", disable=self._disabled(n_boot)):
                it = torch.as_tensor(rng.integers(0, n, n))
                sa = {k: Side(t[it.to(t.device)], it.to(t.device)) for k, t in self.ta.items()}
                sb = {k: Side(t[it.to(t.device)], it.to(t.device)) for k, t in self.tb.items()}
                for la, xa in sa.items():
                    for lb, xb in sb.items():
                        got = self._evaluate(SidePair(xa, xb, it.to(xa.F.device)), la, lb, record=False, shared=False)
                        for name, v in got.items():
                            vals[(la, lb, name)][b] = v
        out = {}
        for key, v in vals.items():
            bad = int(np.isnan(v).sum())
            if bad > n_boot // 2:
                out[key] = (float("nan"), float("nan"))
                self.warnings.append(
                    f"bootstrap: {bad} of {n_boot} replicates undefined for {key[2]} on "
                    f"({key[0]}, {key[1]}); no interval."
                )
                continue
            if bad:
                self.warnings.append(
                    f"bootstrap: {bad} of {n_boot} replicates undefined for {key[2]} on "
                    f"({key[0]}, {key[1]}) and left out."
                )
            lo, hi = np.nanquantile(v, [(1 - level) / 2, (1 + level) / 2])
            out[key] = (float(lo), float(hi))
        return out
