"""Every selected measure on every (layer of A, layer of B) pair, doing each layer's work once.

Each layer's prepared features become one :class:`reprsim.metrics._pair.Side`, shared by every
pair the layer enters, so its centring, covariance and eigen-decomposition (linear CKA, the CCA
family, Procrustes) and its neighbour lists (every kNN measure) are computed once, not once per
pair. Two measures whose per-layer work is an n×n object the metrics library never keeps are
shared here as well, while they fit in :data:`SHARED_BYTES`:

* ``rbf_cka``: each layer's centred RBF kernel K̃ = HKH (n×n, float64); a pair then costs one
  O(n²) sum, tr(K̃L̃), instead of a blocked O(n²(d₁+d₂)) pass;
* ``rsa``: each layer's centred ranks of its correlation-distance RDM (the same rows the library
  would subsample above ``max_rows``); a pair costs one dot product (pairs with a row that is
  constant across features fall back to the library, which drops such rows pair by pair); under a
  row permutation with a subsample, B's ranks come from one sort of its full RDM (:class:`GlobalRanks`);
* ``linear_regression`` (predicting B from A): each A layer's fold Gram matrices and the
  factorisation of each fold's ridge system; a pair costs the cross products and a triangular solve.

Within a pair, ``mean_cca`` and ``pwcca`` share one SVD (the library computes it once per
measure), ``svcca`` takes singular values only, and ``procrustes_distance`` is the arccos of
``procrustes``, as the library defines it.

Values equal :func:`reprsim.metrics.compute` on the same prepared features (identical for every
measure but ``rbf_cka``, whose kernel is formed in float64 here: differences ~1e-7). Permutation
p-values follow :func:`reprsim.metrics.permutation_test` and bootstrap intervals
:func:`reprsim.metrics.bootstrap_ci` with the same seeds, so a single pair's numbers match them;
here one permutation (or resample) of the rows serves every layer pair and measure at once.
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

from reprsim.metrics import MEASURES
from reprsim.metrics import cca as _cca
from reprsim.metrics import cka as _cka
from reprsim.metrics import other as _other
from reprsim.metrics._pair import Pair, Side
from reprsim.metrics._rsa_ranks import GlobalRanks
from reprsim.metrics._validate import as_features, clamp_rounding, degenerate_problem
from reprsim.metrics.registry import NUMERIC_ERRORS, call_measure, get_measure, plan_pair, resolve_params

__all__ = ["SHARED_BYTES", "SimilarityEngine", "prepare_layers", "resolve_measures", "resolve_prepare"]

#: Memory the per-layer n×n objects of rbf_cka and rsa may take together; above it each pair is
#: computed by the library's blocked pass instead (slower, O(n) memory).
SHARED_BYTES = 2 * 2**30

Prepare = Callable[[Any], Any]


def resolve_measures(measures: Any) -> list[str]:
    """``"all"``, ``"paper"``, one name or a list of names → the list of measure names (checked)."""
    from reprsim.metrics import PAPER_MEASURES

    if measures == "all":
        return list(MEASURES)
    if measures == "paper":
        return list(PAPER_MEASURES)
    names = [measures] if isinstance(measures, str) else list(measures) if isinstance(measures, (list, tuple)) else None
    if not names:
        raise ValueError(f"measures must be 'all', 'paper', a measure name or a non-empty list of names; got {measures!r}.")
    for name in names:
        get_measure(name)  # ValueError listing the valid names
    return list(dict.fromkeys(names))


def resolve_prepare(prepare: Any) -> tuple[Prepare, str]:
    """The feature preparation as a function (n, d) → (n, d) and a description: the one rule of
    :func:`reprsim.metrics.prepare.resolve_prepare` (``"paper"`` = clip 0.95 + L2, ``"l2"``,
    ``"none"``/None, a dict or a callable)."""
    from reprsim.metrics.prepare import resolve_prepare as resolve

    return resolve(prepare)


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


_FALLBACK = "fallback"  # a per-layer quantity that cannot be shared for this layer: use the library


def _finite(name: str, compute: Callable[[], float]) -> float:
    """``compute()`` under the library's rules (:func:`reprsim.metrics.registry.call_measure`): numerical
    failures and non-finite values become ValueError naming the measure."""
    try:
        v = float(compute())
    except NUMERIC_ERRORS as exc:
        raise ValueError(f"{name} failed numerically ({type(exc).__name__}); the features are ill-conditioned "
                         "(extreme values or (near-)constant columns). Check the features or drop this pair.") from exc
    if not math.isfinite(v):
        raise ValueError(f"{name} is undefined for these features (the computation gave {v}).")
    return clamp_rounding(v, MEASURES[name].value_range)


def _full_cca(pair: Pair) -> tuple[float, float]:
    """(mean_cca, pwcca) from one SVD of the whitened cross-covariance (the formulas of
    :func:`reprsim.metrics.cca.mean_cca` and :func:`reprsim.metrics.cca.pwcca`)."""
    rx, ry = _cca._rank(pair.x, "X"), _cca._rank(pair.y, "Y")
    s, U, V = _cca._cca(pair, rx, ry)
    side, vecs, r = (pair.x, U, rx) if rx <= ry else (pair.y, V, ry)
    w, E = side.eig
    proj = (E[:, :r] * torch.sqrt(w[:r])) @ vecs
    alpha = proj.abs().sum(0)
    return float(s.mean()), float((alpha * s).sum() / alpha.sum())


def _svcca(pair: Pair, dim: int | None, keep: float) -> float:
    """:func:`reprsim.metrics.cca.svcca` with singular values only (no singular vectors)."""
    rx, ry = _cca._rank(pair.x, "X"), _cca._rank(pair.y, "Y")
    kx, ky = _cca._keep(pair.x, rx, keep, dim, "X"), _cca._keep(pair.y, ry, keep, dim, "Y")
    M = _cca._whitener(pair.x, kx).T @ pair.cross64 @ _cca._whitener(pair.y, ky)
    return float(torch.linalg.svdvals(M).mean())


class _Ridge:
    """One X side's part of :func:`reprsim.metrics.other.linear_regression`: the seeded folds, their
    sums and Gram matrices, and the LU factors of every fold's ridge system (Gt + λI)."""

    def __init__(self, side: Side, alpha: float, n_folds: int, seed: int) -> None:
        n = side.n
        X = side.centred.to(torch.float64)
        folds = np.array_split(np.random.default_rng(seed).permutation(n), n_folds)
        self.X, self.parts = X, []
        sums, grams = [], []
        for f in folds:
            idx = torch.as_tensor(f, device=X.device)
            Xf = X[idx]
            sums.append(Xf.sum(0))
            grams.append(Xf.T @ Xf)
            self.parts.append(idx)
        S_x, G = sum(sums), sum(grams)
        d1 = X.shape[1]
        eye = torch.eye(d1, dtype=X.dtype, device=X.device)
        self.folds: list[tuple[torch.Tensor, int, torch.Tensor, Any]] = []
        self.error: str | None = None
        for idx, sx, Gf in zip(self.parts, sums, grams):
            m = n - idx.numel()
            mx = (S_x - sx) / m
            Gt = (G - Gf) - m * torch.outer(mx, mx)
            lam = alpha * float(torch.trace(Gt)) / d1
            if not lam > 0:
                self.error = "linear_regression: X is constant on a training fold; R² is undefined."
                return
            self.folds.append((idx, m, mx, torch.linalg.lu_factor(Gt + lam * eye)))

    def r2(self, Yside: Side) -> float:
        """Cross-validated ridge R² of predicting ``Yside`` from this X."""
        if self.error:
            raise ValueError(self.error)
        X = self.X
        Y = Yside.centred.to(torch.float64)
        Ys = [Y[idx] for idx in self.parts]
        S_y = sum(Yf.sum(0) for Yf in Ys)
        Cs = [X[idx].T @ Yf for idx, Yf in zip(self.parts, Ys)]
        C = sum(Cs)
        sse = sst = 0.0
        for (idx, m, mx, lu), Yf, Cf in zip(self.folds, Ys, Cs):
            my = (S_y - Yf.sum(0)) / m
            Ct = (C - Cf) - m * torch.outer(mx, my)
            W = torch.linalg.lu_solve(*lu, Ct)
            resid = (Yf - my) - (X[idx] - mx) @ W
            sse += float((resid ** 2).sum())
            sst += float(((Yf - my) ** 2).sum())
        if not sst > 0:
            raise ValueError("linear_regression: Y is constant, so R² is undefined.")
        return 1.0 - sse / sst


class _Shared:
    """The per-layer n×n quantities of rbf_cka and rsa (None when not shared, or the error text)."""

    def __init__(self) -> None:
        self.rbf: tuple[torch.Tensor, float] | str | None = None
        self.rsa: tuple[np.ndarray, float] | str | None = None


class SimilarityEngine:
    """Measures between every layer of A and every layer of B on the same n inputs.

    Args:
        feats_a, feats_b: ``{layer: prepared features (n, d)}`` (tensors or arrays, same n).
        names: measure names.
        params: measure parameters, passed to every selected measure that takes them.
        progress: show a progress bar (None: only on a terminal).
    """

    def __init__(self, feats_a: Mapping[str, Any], feats_b: Mapping[str, Any], names: Sequence[str],
                 params: Mapping[str, Any] | None = None, progress: bool | None = None) -> None:
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
            raise ValueError(f"parameter(s) {', '.join(unused)} are not taken by any selected measure "
                             f"({', '.join(self.names)}); remove them or select a measure that takes them.")
        self.resolved = {m.name: resolve_params(m, self.n, {p: v for p, v in params.items() if p in m.params})
                         for m in ms}
        self.ta, self.tb = ta, tb
        self.sa = {k: Side(v) for k, v in ta.items()}
        self.sb = {k: Side(v) for k, v in tb.items()}
        self.progress = progress
        self.warnings: list[str] = []
        n_layers = len(ta) + len(tb)
        self.share_rbf = "rbf_cka" in self.names and n_layers * self.n ** 2 * 8 <= SHARED_BYTES
        m_rsa = min(self.n, self.resolved["rsa"]["max_rows"]) if "rsa" in self.names else 0
        rsa_bytes = n_layers * (m_rsa * (m_rsa - 1) // 2) * 8 * 2
        self.share_rsa = "rsa" in self.names and (self.share_rbf * n_layers * self.n ** 2 * 8 + rsa_bytes) <= SHARED_BYTES
        self._shared: dict[tuple[str, str], _Shared] = {}
        self._granks: dict[str, GlobalRanks | None] = {}
        self._ridge: weakref.WeakKeyDictionary[Side, _Ridge] = weakref.WeakKeyDictionary()
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
                self._shared[key].rsa = self._rsa_ranks(side, f"{which.upper()}[{layer!r}]")
        return self._shared[key]

    def _rbf_kernel(self, side: Side) -> tuple[torch.Tensor, float] | str:
        """Centred RBF kernel HKH of one layer (n×n float64) and its squared Frobenius norm."""
        try:
            sigma = _cka.bandwidths(Pair(side, side), self.resolved["rbf_cka"]["sigma"])[0]
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
        max_rows, seed = self.resolved["rsa"]["max_rows"], self.resolved["rsa"]["seed"]
        if self.n <= max_rows:
            return None
        return torch.as_tensor(np.sort(np.random.default_rng(seed).choice(self.n, max_rows, replace=False)))

    def _rsa_ranks(self, side: Side, which: str) -> tuple[np.ndarray, float] | str:
        """Centred average ranks of the RDM's upper triangle (the rows rsa would use) and their sum of squares."""
        rows = self._rsa_rows()
        F = side.F if rows is None else side.F[rows.to(side.F.device)]
        if bool((F == F[:, :1]).all(1).any()):
            return _FALLBACK  # rows constant across features are dropped pair by pair by the library
        try:
            D = _other._corr_rdm_upper(F, which)
        except ValueError as exc:
            return str(exc)
        m = F.shape[0]
        iu = torch.triu_indices(m, m, offset=1, device=D.device)
        r = _other.average_ranks(D[iu[0], iu[1]].cpu().numpy())
        del D
        r -= r.mean()
        return r, float(r @ r)

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

    def _global_ranks(self, lb: str) -> "GlobalRanks | None":
        """B layer ``lb``'s full-RDM sort for rsa under permutation with a row subsample (None: use the
        library — constant rows, tied or undefined dissimilarities, or more than SHARED_BYTES)."""
        if lb not in self._granks:
            F = self.sb[lb].F
            n = F.shape[0]
            ok = n * (n - 1) // 2 * 8 * 4 <= SHARED_BYTES and not bool((F == F[:, :1]).all(1).any())
            try:
                self._granks[lb] = GlobalRanks(F, f"B[{lb!r}]") if ok else None
            except ValueError:
                self._granks[lb] = None
        return self._granks[lb]

    def _ridge_for(self, side: Side) -> _Ridge:
        if side not in self._ridge:
            p = self.resolved["linear_regression"]
            self._ridge[side] = _Ridge(side, p["alpha"], p["n_folds"], p["seed"])
        return self._ridge[side]

    def _uses_library(self, name: str, la: str, lb: str, perm: Any, shared: bool) -> bool:
        """Whether ``name`` must be computed by the library for this pair (not from per-layer quantities)."""
        if name == "rbf_cka":
            return not (shared and self.share_rbf)
        if name == "rsa":
            if not (shared and self.share_rsa) or (perm is not None and self._rsa_rows() is not None
                                                   and self._global_ranks(lb) is None):
                return True  # permuted rows change rsa's row subsample: recompute it
            return _FALLBACK in (self._layer("a", la).rsa, self._layer("b", lb).rsa)
        return True

    def _evaluate(self, pair: Pair, la: str, lb: str, record: bool, perm: Any = None,
                  shared: bool = True) -> dict[str, float]:
        """Every measure on one pair. ``perm``: the row permutation of B's side (permutation test);
        ``shared=False`` for pairs whose sides are not the engine's layers (bootstrap resamples)."""
        library = [n for n in self.names if self._uses_library(n, la, lb, perm, shared)]
        plan_pair(pair, [n for n in library if n not in ("linear_regression", "mean_cca", "pwcca", "svcca")], self.resolved)
        out: dict[str, float] = {}
        fused: dict[str, Any] = {}
        problem = degenerate_problem(pair.x, pair.y)  # a constant side: every measure NaN, with a warning
        for name in self.names:
            try:
                if problem:
                    raise ValueError(f"{name} is {problem}")
                if name not in library:
                    arg = None
                    if perm is not None:
                        arg = perm["rbf"] if name == "rbf_cka" else perm["rsa"]
                    out[name] = self._shared_value(name, la, lb, arg)
                elif name in ("mean_cca", "pwcca"):
                    if "cca" not in fused:
                        try:
                            fused["cca"] = _full_cca(pair)
                        except (ValueError, *NUMERIC_ERRORS) as exc:
                            fused["cca"] = exc
                    if isinstance(fused["cca"], BaseException):
                        raise ValueError(f"{name}: {fused['cca']}") from fused["cca"]
                    out[name] = _finite(name, lambda: fused["cca"][0 if name == "mean_cca" else 1])
                elif name == "procrustes_distance" and "procrustes" in out and not math.isnan(out["procrustes"]):
                    out[name] = _other.procrustes_distance_from(pair, out["procrustes"])
                elif name == "svcca":
                    out[name] = _finite(name, lambda: _svcca(pair, **self.resolved["svcca"]))
                elif name == "linear_regression":
                    out[name] = _finite(name, lambda: self._ridge_for(pair.x).r2(pair.y))
                else:
                    out[name] = call_measure(MEASURES[name], pair, self.resolved[name])
            except ValueError as exc:
                out[name] = float("nan")
                if record:
                    self.warnings.append(f"{name} on ({la}, {lb}): {exc}")
        return out

    # ---- the three passes --------------------------------------------------------------------
    def compute(self) -> dict[tuple[str, str, str], float]:
        """Every measure on every layer pair: ``{(layer_a, layer_b, measure): value}`` (NaN + warning
        when a measure is undefined for a pair)."""
        pairs = [(la, lb) for la in self.sa for lb in self.sb]
        if self.share_rsa and self._rsa_rows() is not None:
            self.warnings.append(f"rsa: n={self.n} > max_rows={self.resolved['rsa']['max_rows']}; it uses a seeded "
                                 f"subsample of {self.resolved['rsa']['max_rows']} rows (raise max_rows for the exact value).")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rsa's subsample warning, once per pair: recorded above instead
            for la, lb in tqdm(pairs, desc="similarity (layer pairs)", disable=self._disabled(len(pairs))):
                vals = self._evaluate(Pair(self.sa[la], self.sb[lb]), la, lb, record=True)
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
        for vals in tqdm(self.permuted_values(perms), total=n_permutations, desc="permutations",
                         disable=self._disabled(n_permutations)):
            for key, v in vals.items():
                obs = self.values[key]
                if math.isnan(obs) or math.isnan(v):
                    continue
                hits[key] += v <= obs if MEASURES[key[2]].kind == "distance" else v >= obs
        return {key: (float("nan") if math.isnan(self.values[key]) else (1 + h) / (n_permutations + 1))
                for key, h in hits.items()}

    def permuted_values(self, perms: Iterable[Any]) -> Iterator[dict[tuple[str, str, str], float]]:
        """For each permutation ``perm`` (n,) of the rows: every measure on every pair (A[la], B[lb][perm]),
        ``{(layer_a, layer_b, measure): value}`` (NaN where undefined). The same permutation is applied to
        every layer of B; cached B-side quantities are relabelled (neighbour lists, kernels, RDM ranks)."""
        n = self.n
        iu = None
        for perm in perms:
            with warnings.catch_warnings():  # per permutation: the filter must not outlive a yield
                warnings.simplefilter("ignore")
                perm = torch.as_tensor(np.asarray(perm), dtype=torch.long)
                inv = torch.empty_like(perm)
                inv[perm] = torch.arange(n)
                tri_cache: dict[str, np.ndarray] = {}

                def tri() -> np.ndarray:
                    nonlocal iu
                    if "t" not in tri_cache:
                        if iu is None:
                            iu = torch.triu_indices(n, n, offset=1)
                        a, b = perm[iu[0]], perm[iu[1]]
                        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
                        tri_cache["t"] = (lo * n - lo * (lo + 1) // 2 + (hi - lo - 1)).numpy()
                    return tri_cache["t"]

                def rsa_perm(lb: str, ry: np.ndarray, sy: float) -> tuple[np.ndarray, float]:
                    rows = self._rsa_rows()
                    if rows is None:  # the same pairs, relabelled
                        return ry[tri()], sy
                    r = self._global_ranks(lb).ranks(perm[rows])  # another subsample of B's rows
                    r -= r.mean()
                    return r, float(r @ r)

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
                        vals = self._evaluate(Pair(sa, sbp), la, lb, record=False, perm={"rbf": rbf_perm, "rsa": rsa_perm})
                        out.update({(la, lb, name): v for name, v in vals.items()})
            yield out

    def bootstrap_intervals(self, n_boot: int, level: float, seed: int) -> dict[tuple[str, str, str], tuple[float, float]]:
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
                        got = self._evaluate(Pair(xa, xb, it.to(xa.F.device)), la, lb, record=False, shared=False)
                        for name, v in got.items():
                            vals[(la, lb, name)][b] = v
        out = {}
        for key, v in vals.items():
            bad = int(np.isnan(v).sum())
            if bad > n_boot // 2:
                out[key] = (float("nan"), float("nan"))
                self.warnings.append(f"bootstrap: {bad} of {n_boot} replicates undefined for {key[2]} on "
                                     f"({key[0]}, {key[1]}); no interval.")
                continue
            if bad:
                self.warnings.append(f"bootstrap: {bad} of {n_boot} replicates undefined for {key[2]} on "
                                     f"({key[0]}, {key[1]}) and left out.")
            lo, hi = np.nanquantile(v, [(1 - level) / 2, (1 + level) / 2])
            out[key] = (float(lo), float(hi))
        return out
