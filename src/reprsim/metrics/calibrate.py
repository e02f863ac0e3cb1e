"""Calibrated similarity scores against a permutation null (Gröger et al., arXiv 2602.14486).

Algorithm 1 (one layer pair): the rows of Y are permuted K times, every measure is recomputed on
each (X, Y[π]), and the observed value s is placed against the null:

* ``null_mean`` = mean of the K null values;
* ``tau`` = the ⌈(1 − α)(K + 1)⌉-th smallest of {s, null₁, …, null_K} (the null's (1 − α) threshold);
* ``p_value`` = (1 + #{null ≥ s}) / (K + 1);
* ``calibrated`` = clamp((s − τ) / (max − τ), 0, 1), ``max`` = the measure's value for identical
  inputs, m(X, X) (0 when max ≤ τ: no headroom above the null).

Distances are calibrated in their similarity orientation, s = −d (``orientation`` says so, and
``value``, ``null_mean``, ``tau`` and ``max`` are then of −d; ``raw_value`` is d).

Algorithm 2 (:func:`calibrate_layers`): the same permutation is applied to every layer of Y, the
aggregate (max or mean over all layer pairs) is recomputed on each, so the null of a best-layer
value accounts for the selection among L × L pairs.

The work is done by the one layer-table engine (:class:`reprsim.metrics.engine.SimilarityEngine`):
one set of permutations serves every measure and layer pair; kNN measures relabel the cached
neighbour lists (no new neighbour search), linear CKA / CCA / Procrustes reuse Y's covariance and
eigen-decomposition, rbf_cka its centred kernel (permuting Y's rows permutes L's rows and columns),
rsa its RDM ranks, linear_regression X's per-fold ridge maps.

rsa above ``max_rows`` (a seeded row subsample S) has its own null: π permutes Y's rows within S
(:func:`reprsim.metrics.other.rsa_null_permutation`: the relative order of π on S), the exact
permutation null of the statistic rsa computes, RSA(X[S], Y[S]); its null values are
rsa(X, Y[π̃]), not rsa(X, Y[π]), which would compare X[S] with another subset of Y's rows each time.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from reprsim.metrics.engine import SimilarityEngine
from reprsim.metrics._validate import as_features, check_float, check_int, check_paired_features
from reprsim.metrics.registry import MEASURES, PAPER_MEASURES, get_measure
from reprsim.threads import limited_threads

__all__ = [
    "CALIBRATED_COLUMNS",
    "aggregate_record",
    "calibrate",
    "calibrate_engine",
    "calibrated_columns",
    "calibrate_layers",
    "calibration_record",
    "draw_permutations",
]

AGGREGATES = ("max", "mean")


def draw_permutations(n: int, n_permutations: int, seed: int = 0, permutations: Any = None) -> np.ndarray:
    """The K row permutations of a calibration, shape (K, n) int64.

    ``permutations`` given: checked (a (K, n) integer array whose every row is a permutation of
    0..n−1) and returned. Otherwise K distinct permutations drawn with
    ``numpy.random.default_rng(seed).permutation(n)`` (a repeat is drawn again).

    Raises ValueError when K < 1 or when n! < K (too few rows for K distinct permutations).
    """
    if permutations is not None:
        P = np.asarray(permutations)
        if P.ndim != 2 or P.shape[1] != n or P.shape[0] < 1 or P.dtype.kind not in "iu":
            raise ValueError(
                f"permutations must be a (K, n) integer array with K >= 1 and n = {n} rows; "
                f"got shape {P.shape} and dtype {P.dtype}."
            )
        bad = np.flatnonzero((np.sort(P, axis=1) != np.arange(n)).any(axis=1))
        if bad.size:
            raise ValueError(
                f"permutations[{int(bad[0])}] is not a permutation of 0..{n - 1} "
                "(every row must contain each row index exactly once)."
            )
        return P.astype(np.int64, copy=False)
    K = check_int(
        n_permutations, "n_permutations", 1, why="the null needs at least one permutation (200 is the usual choice)."
    )
    seed = check_int(seed, "seed", 0)
    if n < 20 and math.factorial(n) < K:
        raise ValueError(
            f"n_permutations={K} distinct row permutations need more rows: n={n} rows give only "
            f"{math.factorial(n)}. Use fewer permutations or more samples."
        )
    rng = np.random.default_rng(seed)
    seen: set[bytes] = set()
    out = []
    while len(out) < K:
        p = rng.permutation(n)
        if p.tobytes() not in seen:
            seen.add(p.tobytes())
            out.append(p)
    return np.stack(out)


def calibration_record(value: float, null: np.ndarray, ceiling: float, kind: str, alpha: float) -> dict[str, Any]:
    """One calibrated score from the raw observed ``value``, its K raw ``null`` values and the raw
    value for identical inputs ``ceiling`` (all in the measure's own orientation; ``kind`` is
    "similarity" or "distance"). NaN null values (measure undefined on a permutation) are left
    out and counted in ``n_permutations``.

    Returns a dict with ``value``, ``raw_value``, ``null_mean``, ``null_sd``, ``tau``, ``p_value``,
    ``calibrated``, ``max``, ``orientation``, ``n_permutations``, ``alpha`` (see the module docstring).
    """
    sign = -1.0 if kind == "distance" else 1.0
    s, top = sign * value, sign * ceiling
    null = sign * np.asarray(null, dtype=np.float64)
    null = null[~np.isnan(null)]
    K = int(null.size)
    rec: dict[str, Any] = {
        "value": s,
        "raw_value": value,
        "null_mean": math.nan,
        "null_sd": math.nan,
        "tau": math.nan,
        "p_value": math.nan,
        "calibrated": math.nan,
        "max": top,
        "orientation": "similarity" if sign > 0 else "negated distance (-d)",
        "n_permutations": K,
        "alpha": alpha,
    }
    if math.isnan(s) or K == 0:
        return rec
    # ⌈(1 − α)(K + 1)⌉ with a tolerance, so that e.g. 0.95 · 20 = 19 is not rounded up to 20
    rank = min(K + 1, max(1, math.ceil((1.0 - alpha) * (K + 1) - 1e-9)))
    tau = float(np.sort(np.append(null, s))[rank - 1])
    den = top - tau
    cal = math.nan if math.isnan(top) else 0.0 if not den > 0 else min(1.0, max(0.0, (s - tau) / den))
    rec.update(
        null_mean=float(null.mean()),
        null_sd=float(null.std(ddof=1)) if K > 1 else math.nan,
        tau=tau,
        p_value=(1 + int((null >= s).sum())) / (K + 1),
        calibrated=float(cal),
    )
    return rec


def _names(measures: Any) -> list[str]:
    if measures is None or measures == "all":
        return list(MEASURES)
    if measures == "paper":
        return list(PAPER_MEASURES)
    names = [measures] if isinstance(measures, str) else list(measures)
    if not names:
        raise ValueError("measures is empty; pass None for every measure or a list of names from MEASURES.")
    for name in names:
        get_measure(name)
    return list(dict.fromkeys(names))


def _alpha(alpha: Any) -> float:
    a = check_float(alpha, "alpha", low=0.0)
    if not a < 1:
        raise ValueError(f"alpha must be in (0, 1) (the null's tail probability, e.g. 0.05); got {a}.")
    return a


def engine_null(engine: Any, perms: np.ndarray) -> dict[tuple[str, str, str], np.ndarray]:
    """``{(layer_a, layer_b, measure): (K,) null values}`` over the rows of ``perms`` (K, n)."""
    if not engine.values:
        engine.compute()
    null = {key: np.full(len(perms), np.nan) for key in engine.values}
    for i, vals in enumerate(engine.permuted_values(perms)):
        for key, v in vals.items():
            null[key][i] = v
    return null


def calibrate(
    measures: str | Sequence[str] | None,
    X: Any,
    Y: Any,
    n_permutations: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    permutations: Any = None,
    *,
    on_error: str = "raise",
    **params: Any,
) -> dict[str, dict[str, Any]]:
    """Calibrated scores of several measures between X (n, d1) and Y (n, d2) (Algorithm 1).

    Parameters
    ----------
    measures : a measure name, a list of names, "paper" (the paper's 8), or None / "all" (every measure).
    X, Y : array-like (n, d1), (n, d2), rows corresponding.
    n_permutations : K, the number of row permutations of Y (≥ 1; ignored when ``permutations`` is given).
    alpha : the null's tail probability for τ, in (0, 1).
    seed : seeds the permutations.
    permutations : optional (K, n) integer array of row permutations applied to Y (e.g. to check a
        result against another tool given the same permutations).
    on_error : "raise" (default) or "nan": a measure undefined on X, Y gets NaN fields and a warning.
    **params : measure parameters, as for :func:`reprsim.metrics.compute_all`.

    Returns
    -------
    ``{measure: record}``, each record as :func:`calibration_record` (``value``, ``null_mean``, ``tau``,
    ``p_value``, ``calibrated``, ``max``, ``orientation``, …).
    """
    if on_error not in ("raise", "nan"):
        raise ValueError(f"on_error must be 'raise' or 'nan'; got {on_error!r}.")
    names = _names(measures)
    a = _alpha(alpha)
    Xt, Yt = check_paired_features(X, Y)
    perms = draw_permutations(Xt.shape[0], n_permutations, seed, permutations)
    engine = SimilarityEngine({"X": Xt}, {"Y": Yt}, names, params, progress=False)
    values = engine.compute()
    undefined = [name for name in names if math.isnan(values[("X", "Y", name)])]
    if undefined and on_error == "raise":
        raise ValueError(
            next(
                (w for w in engine.warnings if w.startswith(undefined[0])),
                f"{undefined[0]} is undefined for these features.",
            )
        )
    for msg in engine.warnings:
        warnings.warn(msg, stacklevel=2)
    records = calibrate_engine(engine, alpha=a, permutations=perms)
    return {name: records[("X", "Y", name)] for name in names}


def calibrate_engine(
    engine: Any,
    n_permutations: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    permutations: Any = None,
    best: str | None = None,
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Algorithm 1 for every (layer_a, layer_b, measure) of a
    :class:`~reprsim.metrics.engine.SimilarityEngine`, one set of permutations of B's rows for all;
    each pair's ``max`` is m(A[layer_a], A[layer_a]). Returns ``{key: record}`` (:func:`calibration_record`).

    ``best`` = "max" or "mean" adds, from the same null, one record per measure under the key
    ("best", "best", measure): Algorithm 2 of :func:`aggregate_record` over every layer pair (NaN fields
    when the measure is undefined on every pair)."""
    a = _alpha(alpha)
    perms = draw_permutations(engine.n, n_permutations, seed, permutations)
    null = engine_null(engine, perms)
    top = engine.ceilings()
    out = {
        key: calibration_record(v, null[key], top[(key[0], key[2])], MEASURES[key[2]].kind, a)
        for key, v in engine.values.items()
    }
    if best is not None:
        for name in engine.names:
            try:
                out[("best", "best", name)] = _aggregate(engine, name, best, null, top, a)
            except ValueError as exc:  # undefined on every layer pair
                warnings.warn(str(exc), stacklevel=2)
                out[("best", "best", name)] = calibration_record(
                    math.nan, np.array([]), math.nan, MEASURES[name].kind, a
                )
    return out


CALIBRATED_COLUMNS = ("null_mean", "tau", "calibrated")
"""The columns a calibration adds to a results / comparison table (similarity orientation)."""


def calibrated_columns(
    engine: Any, table: Any, n_permutations: int, seed: int = 0, alpha: float = 0.05
) -> dict[str, list[float]]:
    """:data:`CALIBRATED_COLUMNS` for the rows of ``table`` (columns ``layer_a``, ``layer_b``,
    ``measure``) from :func:`calibrate_engine` (K = ``n_permutations`` seeded by ``seed``), with the BLAS
    on torch's thread count (:mod:`reprsim.threads`)."""
    with limited_threads(torch.get_num_threads()):
        recs = calibrate_engine(engine, n_permutations, alpha=alpha, seed=seed)
    keys = list(zip(table["layer_a"], table["layer_b"], table["measure"]))
    return {col: [recs[k][col] for k in keys] for col in CALIBRATED_COLUMNS}


def _layers(layers: Any, which: str) -> dict[str, Any]:
    if isinstance(layers, Mapping):
        out = dict(layers)
    elif isinstance(layers, Sequence) and not isinstance(layers, str):
        out = {str(i): v for i, v in enumerate(layers)}
    else:
        raise TypeError(
            f"{which} must be a dict {{layer: (n, d) features}} or a list of (n, d) arrays; "
            f"got {type(layers).__name__}."
        )
    if not out:
        raise ValueError(f"{which} is empty; give at least one layer.")
    return {k: as_features(v, f"{which}[{k!r}]") for k, v in out.items()}


def aggregate_record(engine: Any, measure: str, agg: str, perms: np.ndarray, alpha: float) -> dict[str, Any]:
    """Algorithm 2 on an engine that holds ``measure``: the aggregate over every (layer_a, layer_b)
    pair of the observed values and, per permutation, of the null values (the same permutation of
    every B layer); ``max`` is the aggregate over A layers of m(A_l, A_l). The best pair (agg="max",
    in similarity orientation) is reported as ``layer_a`` / ``layer_b``."""
    if agg not in AGGREGATES:
        raise ValueError(f"agg must be one of {AGGREGATES}; got {agg!r}.")
    if not engine.values:
        engine.compute()
    return _aggregate(engine, measure, agg, engine_null(engine, perms), engine.ceilings(), alpha)


def _aggregate(
    engine: Any,
    measure: str,
    agg: str,
    null: Mapping[tuple[str, str, str], np.ndarray],
    ceilings: Mapping[tuple[str, str], float],
    alpha: float,
) -> dict[str, Any]:
    """:func:`aggregate_record` from an engine's null (:func:`engine_null`) and :meth:`~reprsim.metrics.engine.SimilarityEngine.ceilings`."""
    if agg not in AGGREGATES:
        raise ValueError(f"agg must be one of {AGGREGATES}; got {agg!r}.")
    kind = MEASURES[measure].kind
    sign = -1.0 if kind == "distance" else 1.0
    keys = [k for k in engine.values if k[2] == measure]
    obs = np.array([engine.values[k] for k in keys])
    if np.isnan(obs).all():
        raise ValueError(
            f"{measure} is undefined on every layer pair; nothing to aggregate ({'; '.join(engine.warnings[:2])})."
        )
    N = sign * np.stack([null[k] for k in keys], 1)  # (K, pairs)
    tops = sign * np.array([v for (la, m), v in ceilings.items() if m == measure])

    def reduce(v: np.ndarray, axis: int | None = None) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN permutation → NaN, left out
            return np.nanmax(v, axis=axis) if agg == "max" else np.nanmean(v, axis=axis)

    rec = calibration_record(sign * reduce(sign * obs), sign * reduce(N, 1), sign * reduce(tops), kind, alpha)
    best = keys[int(np.nanargmax(sign * obs))]
    rec.update(
        measure=measure,
        agg=agg,
        n_pairs=len(keys),
        layer_a=best[0] if agg == "max" else None,
        layer_b=best[1] if agg == "max" else None,
    )
    return rec


def calibrate_layers(
    measure: str,
    X_layers: Any,
    Y_layers: Any,
    agg: str = "max",
    n_permutations: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    permutations: Any = None,
    **params: Any,
) -> dict[str, Any]:
    """Calibrated score of the aggregate (``agg`` = "max" or "mean") of ``measure`` over every pair
    (X layer, Y layer) (Algorithm 2: the same row permutation applied to every layer of Y).

    Parameters
    ----------
    X_layers, Y_layers : ``{layer: (n, d) features}`` (or lists of arrays), the same n rows throughout.
    agg : "max" (the best layer pair: its p-value accounts for the selection) or "mean".
    n_permutations, alpha, seed, permutations, **params : as :func:`calibrate`.

    Returns
    -------
    dict: the fields of :func:`calibration_record` for the aggregate, plus ``measure``, ``agg``,
    ``n_pairs`` and, for "max", the best pair's ``layer_a`` / ``layer_b``.
    """
    get_measure(measure)
    if agg not in AGGREGATES:
        raise ValueError(f"agg must be one of {AGGREGATES}; got {agg!r}.")
    a = _alpha(alpha)
    xa, yb = _layers(X_layers, "X_layers"), _layers(Y_layers, "Y_layers")
    engine = SimilarityEngine(xa, yb, [measure], params, progress=False)
    perms = draw_permutations(engine.n, n_permutations, seed, permutations)
    return aggregate_record(engine, measure, agg, perms, a)
