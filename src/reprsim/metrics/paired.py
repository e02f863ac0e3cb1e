"""Is similarity₁ different from similarity₂? A paired bootstrap over shared inputs.

Two pairs of representations (X1, Y1) and (X2, Y2) of the *same* inputs (e.g. two model pairs at
two overlap levels, probed on one probe set) are aligned by sample id; one resample of the inputs
is applied to both pairs, so the interval of value₁ − value₂ reflects the pairing (the stimulus
variance shared by both values cancels). Copies of one input in a resample are treated as
:func:`reprsim.metrics.bootstrap_ci` treats them (never each other's neighbours, excluded pairs in
the unbiased estimators).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from reprsim.metrics._pair import make_pair
from reprsim.metrics._validate import check_bootstrap_options, check_paired_features
from reprsim.metrics.registry import call_measure, get_measure, resolve_params

__all__ = ["align_ids", "paired_difference"]


def _ids(ids: Any, n: int, which: str) -> np.ndarray:
    a = np.asarray(ids)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{which} must be a 1-D sequence of one sample id per row ({n} rows); got shape {a.shape}.")
    uniq, counts = np.unique(a, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"{which} contains the duplicate sample id {uniq[counts > 1][0].item()!r}; each row must be "
            "one distinct input."
        )
    return a


def align_ids(ids1: Any, ids2: Any, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (r1, r2) such that rows r1 of pair 1 and r2 of pair 2 are the same inputs, in the
    order of ``ids1``. Both None: rows are taken in order (n1 must equal n2).

    Raises ValueError naming a duplicate id, or an id present in one pair but not the other."""
    if ids1 is None and ids2 is None:
        if n1 != n2:
            raise ValueError(
                f"the two pairs have {n1} and {n2} rows; pass ids1= and ids2= (one sample id per row) "
                "to align them, or give both the same inputs in the same order."
            )
        return np.arange(n1), np.arange(n2)
    if ids1 is None or ids2 is None:
        raise ValueError("pass both ids1= and ids2= (one sample id per row of each pair), or neither.")
    a, b = _ids(ids1, n1, "ids1"), _ids(ids2, n2, "ids2")
    pos2 = {v: i for i, v in enumerate(b.tolist())}
    missing = [v for v in a.tolist() if v not in pos2]
    if missing:
        raise ValueError(
            f"sample id {missing[0]!r} of ids1 is missing from ids2 ({len(missing)} missing); the two "
            "pairs must be measured on the same inputs."
        )
    if n2 != n1:
        extra = sorted(set(b.tolist()) - set(a.tolist()), key=str)
        raise ValueError(
            f"sample id {extra[0]!r} of ids2 is missing from ids1 ({len(extra)} missing); the two "
            "pairs must be measured on the same inputs."
        )
    return np.arange(n1), np.array([pos2[v] for v in a.tolist()])


def paired_difference(
    measure: str,
    pair1: tuple[Any, Any],
    pair2: tuple[Any, Any],
    *,
    ids1: Any = None,
    ids2: Any = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    **params: Any,
) -> dict[str, Any]:
    """value₁ − value₂ of ``measure`` on (X1, Y1) and (X2, Y2), with a paired bootstrap interval.

    Parameters
    ----------
    measure : a registered measure name.
    pair1, pair2 : (X, Y) with X (n, d1), Y (n, d2) — rows of X and Y correspond within each pair.
    ids1, ids2 : optional sample ids (n1,), (n2,) of the rows of each pair; rows are matched by id
        (the sets must be equal, without duplicates). Neither: rows are matched by position.
    n_boot : B ≥ 2 resamples of the inputs (seeded ``numpy.random.default_rng(seed)``), each applied
        to both pairs.
    level : interval level in (0, 1).

    Returns
    -------
    dict with ``value1``, ``value2``, ``difference`` (= value1 − value2 on all inputs), ``ci_low``,
    ``ci_high`` (percentile interval of the B replicate differences), ``p_value`` (two-sided:
    min(1, 2·(1 + min(#{Δ_b ≤ 0}, #{Δ_b ≥ 0})) / (B + 1))), ``n`` (inputs), ``n_boot`` (valid replicates).
    """
    m = get_measure(measure)
    B, level, seed = check_bootstrap_options(n_boot, level, seed)
    for which, pr in (("pair1", pair1), ("pair2", pair2)):
        if not isinstance(pr, (tuple, list)) or len(pr) != 2:
            raise TypeError(f"{which} must be a tuple (X, Y) of two (n, d) feature matrices; got {type(pr).__name__}.")
    X1, Y1 = check_paired_features(*pair1)
    X2, Y2 = check_paired_features(*pair2)
    r1, r2 = align_ids(ids1, ids2, X1.shape[0], X2.shape[0])
    t1, t2 = torch.as_tensor(r1, device=X1.device), torch.as_tensor(r2, device=X2.device)
    X1, Y1, X2, Y2 = X1[t1], Y1[t1], X2[t2], Y2[t2]
    n = X1.shape[0]
    p = resolve_params(m, n, params)
    v1 = call_measure(m, make_pair(X1, Y1), p)
    v2 = call_measure(m, make_pair(X2, Y2), p)
    rng = np.random.default_rng(seed)
    diffs = np.full(B, np.nan)
    for b in range(B):
        it = rng.integers(0, n, n)
        i1, i2 = torch.as_tensor(it, device=X1.device), torch.as_tensor(it, device=X2.device)
        try:
            diffs[b] = call_measure(m, make_pair(X1[i1], Y1[i1], groups=i1), p) - call_measure(
                m, make_pair(X2[i2], Y2[i2], groups=i2), p
            )
        except ValueError:
            pass  # undefined on this resample: left out, counted below
    ok = diffs[~np.isnan(diffs)]
    if ok.size <= B // 2:
        raise ValueError(
            f"paired_difference: {B - ok.size} of {B} resamples were undefined for {measure!r}; "
            "use more samples or a smaller k."
        )
    if ok.size < B:
        warnings.warn(
            f"paired_difference: {B - ok.size} of {B} resamples undefined for {measure!r} and left out.", stacklevel=2
        )
    lo, hi = np.quantile(ok, [(1 - level) / 2, (1 + level) / 2])
    tail = min(int((ok <= 0).sum()), int((ok >= 0).sum()))
    return {
        "measure": measure,
        "value1": v1,
        "value2": v2,
        "difference": v1 - v2,
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_value": min(1.0, 2.0 * (1 + tail) / (ok.size + 1)),
        "n": n,
        "n_boot": int(ok.size),
        "level": level,
    }
