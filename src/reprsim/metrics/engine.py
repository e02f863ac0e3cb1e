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
* ``linear_regression`` (predicting B from A), under row permutations of B: each A layer's
  :class:`reprsim.metrics.other.RidgeFolds` (each fold's ridge map of its test rows); a pair costs
  the fold cross products and one product per fold (no solve).

Within a pair, ``mean_cca`` and ``pwcca`` share one SVD and ``procrustes_distance`` is the arccos of
``procrustes``, as the library defines it. Under a permutation of B's rows (permutation p-values,
calibration) only the cross products change: kNN lists, kernels and RDM ranks are relabelled, and
the spectral measures (CCA family, Procrustes) take their singular values from a symmetric
eigenproblem (:mod:`reprsim.metrics._null`).

Values equal :func:`reprsim.metrics.compute` on the same prepared features (identical for every
measure but a shared ``rbf_cka``, whose kernel is formed in float64 here: differences ~1e-7;
``share_rbf=False`` gives the library's value). Permutation p-values follow
:func:`reprsim.metrics.permutation_test` and bootstrap intervals :func:`reprsim.metrics.bootstrap_ci`
with the same seeds; here one permutation (or resample) of the rows serves every layer pair and
measure at once. Calibrated scores: :mod:`reprsim.metrics.calibrate`.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from reprsim.metrics import _null
from reprsim.metrics import cca as _cca
from reprsim.metrics import cka as _cka
from reprsim.metrics import other as _other
from reprsim.metrics._pair import Side, SidePair
from reprsim.metrics._validate import as_features, clamp_rounding, degenerate_problem
from reprsim.metrics.registry import (
    MEASURES,
    NUMERIC_ERRORS,
    PAPER_MEASURES,
    call_measure,
    get_measure,
    plan_pair,
    resolve_params,
)

__all__ = ["SHARED_BYTES", "SimilarityEngine", "prepare_layers", "resolve_measures"]

#: Memory the per-layer n×n objects of rbf_cka and rsa may take together; above it each pair is
#: computed by the library's blocked pass instead (slower, O(n) memory).
SHARED_BYTES = 2 * 2**30

Prepare = Callable[[Any], Any]


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
    """The per-layer n×n quantities of rbf_cka and rsa (None when not shared, or the error text)."""

    def __init__(self) -> None:
        self.rbf: tuple[torch.Tensor, float] | str | None = None
        self.rsa: tuple[np.ndarray, float] | str | None = None
        self.rsa_tied = False  # the RDM has equal dissimilarities (their ranks depend on rounding)


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
        rsa_bytes = n_layers * (m_rsa * (m_rsa - 1) // 2) * 8 * 2
        self.share_rsa = "rsa" in self.names and (self.share_rbf * n_layers * self.n**2 * 8 + rsa_bytes) <= SHARED_BYTES
        self._shared: dict[tuple[str, str], _Shared] = {}
        self._ridge: weakref.WeakKeyDictionary[Side, _other.RidgeFolds] = weakref.WeakKeyDictionary()
        self.values: dict[tuple[str, str, str], float] = {}

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

    def _shared_value(self, name: str, la: str, lb: str, perm_b: Any = None) -> float:
        """rbf_cka / rsa from the shared per-layer quantities (``perm_b``: a permutation of B's rows)."""
        x, y = self._layer("a", la), self._layer("b", lb)
        qx, qy = (x.rbf, y.rbf) if name == "rbf_cka" else (x.rsa, y.rsa)
        for q in (qx, qy):
            if isinstance(q, str):
                raise ValueError(q)
        if name == "rbf_cka":
            Kx, hxx = qx  # type: ignore[misc]
            Ky, hyy = qy  # type: ignore[misc]
            if perm_b is not None:
                Ky = perm_b(Ky)
            return _cka._ratio(float(Kx.reshape(-1) @ Ky.reshape(-1)), hxx, hyy, what="rbf_cka")
        rx, sx = qx  # type: ignore[misc]
        ry, sy = qy  # type: ignore[misc]
        if perm_b is not None:  # B's centred ranks and their sum of squares under the permutation
            ry, sy = perm_b(lb, ry, sy)
        den = math.sqrt(sx * sy)
        if not den > 0:
            raise ValueError("rsa is undefined: one RDM has all pairwise dissimilarities equal.")
        return float(rx @ ry / den)

    def _ridge_for(self, side: Side) -> _other.RidgeFolds:
        if side not in self._ridge:
            p = self.resolved["linear_regression"]
            self._ridge[side] = _other.RidgeFolds(side, p["alpha"], p["n_folds"], p["seed"])
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
        self, pair: SidePair, la: str, lb: str, record: bool, perm: Any = None, shared: bool = True
    ) -> dict[str, float]:
        """Every measure on one pair. ``perm``: the row permutation of B's side (permutation test);
        ``shared=False`` for pairs whose sides are not the engine's layers (bootstrap resamples)."""
        library = [n for n in self.names if self._uses_library(n, la, lb, perm, shared)]
        plan_pair(pair, [n for n in library if n not in _OWN_ROUTE], self.resolved)
        out: dict[str, float] = {}
        fused: dict[str, Any] = {}
        problem = degenerate_problem(pair.x, pair.y)  # a constant side: every measure NaN, with a warning
        for name in self.names:
            try:
                if problem:
                    raise ValueError(f"{name} is {problem}")
                if name == "rsa" and perm is not None and name in library:  # rsa's own null permutation
                    out[name] = call_measure(
                        MEASURES[name], SidePair(pair.x, perm["rsa_side"](lb)), self.resolved[name]
                    )
                elif name not in library:
                    arg = None
                    if perm is not None:
                        arg = perm["rbf"] if name == "rbf_cka" else perm["rsa"]
                    out[name] = self._shared_value(name, la, lb, arg)
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
                    fused["cca"] = _null.mean_and_pw_cca(pair) if permuted else _full_cca(pair)
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
            return _finite(name, lambda: _null.svcca(pair, **self.resolved["svcca"]))
        if permuted and name == "linear_regression":  # observed values: the library's, exactly
            return _finite(name, lambda: self._ridge_for(pair.x).r2(pair.y))
        return call_measure(MEASURES[name], pair, self.resolved[name])

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

    def permuted_values(self, perms: Iterable[Any]) -> Iterator[dict[tuple[str, str, str], float]]:
        """For each permutation ``perm`` (n,) of the rows: every measure on every pair (A[la], B[lb][perm]),
        ``{(layer_a, layer_b, measure): value}`` (NaN where undefined). The same permutation is applied to
        every layer of B; cached B-side quantities are relabelled (neighbour lists, kernels, RDM ranks).
        rsa above its ``max_rows`` uses π̃ = :func:`reprsim.metrics.other.rsa_null_permutation` (B's rows
        permuted within its row subsample) instead of ``perm``."""
        n = self.n
        rows = self._rsa_rows() if "rsa" in self.names else None
        m = n if rows is None else rows.numel()  # rsa's rows: its null permutes only these
        iu = first = None
        for perm in perms:
            with warnings.catch_warnings():  # per permutation: the filter must not outlive a yield
                warnings.simplefilter("ignore")
                perm = torch.as_tensor(np.asarray(perm), dtype=torch.long)
                inv = torch.empty_like(perm)
                inv[perm] = torch.arange(n)
                rsa_cache: dict[str, Any] = {}

                def rsa_perm_full() -> torch.Tensor:
                    if "full" not in rsa_cache:
                        p = self.resolved["rsa"]
                        rsa_cache["full"] = torch.as_tensor(
                            _other.rsa_null_permutation(perm.numpy(), p["max_rows"], p["seed"])
                        )
                    return rsa_cache["full"]

                def tri() -> np.ndarray:
                    """Positions in rsa's pair order of the permuted RDM's pairs (a < b, row-major over its m rows)."""
                    nonlocal iu, first
                    if "t" not in rsa_cache:
                        if iu is None:  # int32 (m(m−1)/2 < 2³¹ while the RDM fits): half the memory traffic
                            iu = torch.triu_indices(m, m, offset=1).to(torch.int32)
                            lo = torch.arange(m, dtype=torch.int64)
                            first = (lo * m - lo * (lo + 1) // 2 - lo - 1).to(
                                torch.int32
                            )  # pair (lo, hi) at first[lo] + hi
                        sigma = perm if rows is None else torch.searchsorted(rows, rsa_perm_full()[rows])
                        sigma = sigma.to(torch.int32)
                        a, b = sigma[iu[0]], sigma[iu[1]]
                        rsa_cache["t"] = (first[torch.minimum(a, b)] + torch.maximum(a, b)).numpy()
                    return rsa_cache["t"]

                def rsa_perm(lb: str, ry: np.ndarray, sy: float) -> tuple[np.ndarray, float]:
                    return ry[tri()], sy  # the same pairs, relabelled: same mean and sum of squares

                def rsa_side(lb: str) -> Side:
                    if ("side", lb) not in rsa_cache:
                        pt = rsa_perm_full()
                        it = torch.empty_like(pt)
                        it[pt] = torch.arange(n)
                        sb = self.sb[lb]
                        rsa_cache[("side", lb)] = sb.permuted(pt.to(sb.F.device), it.to(sb.F.device))
                    return rsa_cache[("side", lb)]

                out: dict[tuple[str, str, str], float] = {}
                for lb, sb in self.sb.items():
                    sbp = sb.permuted(perm.to(sb.F.device), inv.to(sb.F.device))
                    kp: dict[str, torch.Tensor] = {}

                    def rbf_perm(K: torch.Tensor) -> torch.Tensor:
                        if "k" not in kp:
                            p = perm.to(K.device)
                            kp["k"] = K[p][:, p]
                        return kp["k"]

                    for la, sa in self.sa.items():
                        vals = self._evaluate(
                            SidePair(sa, sbp),
                            la,
                            lb,
                            record=False,
                            perm={"rbf": rbf_perm, "rsa": rsa_perm, "rsa_side": rsa_side},
                        )
                        out.update({(la, lb, name): v for name, v in vals.items()})
            yield out

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
