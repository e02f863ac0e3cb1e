"""Significance, confidence intervals and layer × layer tables for any registered measure.

Resampling (index generation), the statistic (a registry measure on a SidePair) and the summary
(p-value, percentile interval) are kept apart. Every function takes an explicit seed.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from reprsim.metrics._pair import make_pair
from reprsim.metrics._validate import as_features, check_bootstrap_options, check_int, check_paired_features
from reprsim.metrics.engine import SimilarityEngine
from reprsim.metrics.registry import call_measure, get_measure, plan_pair, resolve_params


def permutation_test(
    name: str, X: Any, Y: Any, n_permutations: int = 1000, seed: int = 0, progress: bool = False, **params: Any
) -> float:
    """Permutation p-value for "X and Y are related": rows of Y are permuted K times.

    p = (1 + #{null ≥ observed}) / (K + 1) for similarities (≤ for distance measures), so p > 0.
    Cached Y-side quantities are relabelled rather than recomputed: kNN measures permute the
    neighbour indices (no new neighbour search); linear CKA/CCA reuse Y's covariance.

    Returns
    -------
    float, the p-value in (0, 1].
    """
    m = get_measure(name)
    K = check_int(n_permutations, "n_permutations", 1)
    seed = check_int(seed, "seed", 0)
    Xt, Yt = check_paired_features(X, Y)
    p = resolve_params(m, Xt.shape[0], params)
    pair = make_pair(Xt, Yt)
    plan_pair(pair, [name], {name: p})
    observed = call_measure(m, pair, p)
    rng = np.random.default_rng(seed)
    n = pair.n
    hits = 0
    for _ in tqdm(range(K), desc=f"permutations ({name})", disable=not progress):
        perm = torch.as_tensor(rng.permutation(n), device=Xt.device)
        v = call_measure(m, pair.permuted(perm), p)
        hits += v <= observed if m.kind == "distance" else v >= observed
    return (1 + hits) / (K + 1)


def bootstrap_ci(
    name: str,
    X: Any,
    Y: Any,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    progress: bool = False,
    **params: Any,
) -> tuple[float, float]:
    """Percentile bootstrap interval over probe stimuli (rows resampled with replacement).

    Copies of one stimulus in a resample never count as each other's neighbours (kNN measures,
    CKNNA), and their pairs are excluded like the diagonal in the unbiased HSIC (``unbiased_cka``)
    and in RSA. Biased estimators (cka, rbf_cka, CCA family, procrustes) treat copies as weights, as
    the ordinary bootstrap does. A replicate on which the measure is undefined is recorded as NaN,
    counted in a warning and left out; fewer than half valid replicates is an error.

    Returns
    -------
    (low, high) : the (1 − level)/2 and (1 + level)/2 quantiles of the replicates.
    """
    m = get_measure(name)
    B, level, seed = check_bootstrap_options(n_boot, level, seed)
    Xt, Yt = check_paired_features(X, Y)
    n = Xt.shape[0]
    p = resolve_params(m, n, params)
    rng = np.random.default_rng(seed)
    vals = np.full(B, np.nan)
    reasons: dict[str, int] = {}
    for b in tqdm(range(B), desc=f"bootstrap ({name})", disable=not progress):
        idx = rng.integers(0, n, n)
        it = torch.as_tensor(idx, device=Xt.device)
        pair = make_pair(Xt[it], Yt[it], groups=it)
        try:
            vals[b] = call_measure(m, pair, p)
        except ValueError as exc:
            reasons[str(exc)] = reasons.get(str(exc), 0) + 1
    bad = int(np.isnan(vals).sum())
    if bad:
        first = next(iter(reasons), "")
        if bad > B // 2:
            raise ValueError(
                f"bootstrap_ci: {bad} of {B} replicates were undefined for {name!r} "
                f"(e.g. {first}); use more samples or a smaller k."
            )
        warnings.warn(
            f"bootstrap_ci: {bad} of {B} replicates undefined for {name!r} and left out (e.g. {first}).", stacklevel=2
        )
    lo, hi = np.nanquantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def compare_layers(feats_a: Mapping[str, Any], feats_b: Mapping[str, Any], name: str, **params: Any) -> pd.DataFrame:
    """Measure ``name`` between every layer of A and every layer of B.

    Filled by the one layer-table engine (:class:`reprsim.metrics.engine.SimilarityEngine`): each
    layer's centred features, covariance, neighbour lists and ridge factorisation are computed once
    and reused for all its pairs; values equal :func:`reprsim.metrics.compute` on each pair.

    Returns
    -------
    pandas.DataFrame of shape (len(feats_a), len(feats_b)): rows = layers of A, columns = layers of
    B (in the dicts' order), values = floats.
    """
    m = get_measure(name)
    for which, feats in (("feats_a", feats_a), ("feats_b", feats_b)):
        if not isinstance(feats, Mapping) or not feats:
            raise TypeError(
                f"{which} must be a non-empty dict mapping layer name -> (n, d) features; got {type(feats).__name__}."
            )
    ta = {k: as_features(v, f"feats_a[{k!r}]") for k, v in feats_a.items()}
    tb = {k: as_features(v, f"feats_b[{k!r}]") for k, v in feats_b.items()}
    all_t = list(ta.values()) + list(tb.values())
    ns = {t.shape[0] for t in all_t}
    if len(ns) != 1:
        shapes = {f"a[{k}]": tuple(v.shape) for k, v in ta.items()} | {f"b[{k}]": tuple(v.shape) for k, v in tb.items()}
        raise ValueError(f"every layer must have the same number of rows (the same inputs); got {shapes}.")
    if len({t.device for t in all_t}) != 1:
        raise ValueError("all layers must be on the same device.")
    engine = SimilarityEngine(ta, tb, [m.name], params, progress=False, share_rbf=False)
    values = engine.compute()
    undefined = [key for key, v in values.items() if math.isnan(v)]
    if undefined:  # as compute(): an undefined value is an error naming the measure and the pair
        raise ValueError(
            next((w for w in engine.warnings if w.startswith(name)), f"{name} is undefined on {undefined[0][:2]}.")
        )
    table = pd.DataFrame(index=list(ta), columns=list(tb), dtype=float)
    for (ka, kb, _), v in values.items():
        table.loc[ka, kb] = v
    return table
