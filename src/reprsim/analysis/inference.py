"""Inference with the seed as the unit.

Rows of one cell that share a seed share model A (and its training run), so they are not
independent. Every interval here is therefore computed over seeds: an effect is estimated within
each seed, and the per-seed estimates are summarised with a t(n_seeds − 1) interval
(:func:`t_summary`). The p-values of a declared family are Holm-adjusted (:func:`holm`); the
paper's mutual information gets a permutation null that shuffles the fraction labels within each
seed (:func:`mi_permutation_test`); and a within-fraction (partial) correlation gets a bootstrap
that resamples whole seeds (:func:`partial_correlation`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps
from scipy.special import digamma

from reprsim.analysis import stats

__all__ = [
    "ALPHA",
    "LEVEL",
    "VERDICTS",
    "decide",
    "holm",
    "holm_levels",
    "ksg_mi_batch",
    "mi_permutation_test",
    "per_seed_slopes",
    "t_interval",
    "t_summary",
    "within_group_permutations",
]

ALPHA = 0.05
LEVEL = 0.95
#: The only verdict words of an effect; an interval containing 0 is "inconclusive", never "no effect".
VERDICTS = ("rises", "falls", "inconclusive")
MIN_SEEDS_FOR_INTERVAL = 3
#: A percentile bootstrap over seeds needs more seeds than a t interval: with 3 seeds there are
#: only 10 distinct resamples, so below this no bootstrap interval is given.
MIN_SEEDS_FOR_BOOTSTRAP = 5


def t_summary(values: object, *, level: float = LEVEL) -> dict[str, float | int | str | None]:
    """Mean of per-seed estimates with its t(n − 1) interval and two-sided one-sample t-test p.

    Returns
    -------
    dict with ``estimate`` (the mean), ``low``, ``high``, ``p``, ``sd`` (between-seed SD, ddof=1),
    ``n`` (seeds) and ``reason`` (``None``, or why there is no interval: fewer than
    :data:`MIN_SEEDS_FOR_INTERVAL` seeds, or no seed at all). Undefined numbers are NaN.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = int(v.size)
    nan = float("nan")
    out: dict[str, float | int | str | None] = {
        "estimate": nan,
        "low": nan,
        "high": nan,
        "p": nan,
        "sd": nan,
        "n": n,
        "reason": None,
    }
    if n == 0:
        out["reason"] = "no seed has the levels needed for an estimate"
        return out
    mean = float(v.mean())
    out["estimate"] = mean
    if n < MIN_SEEDS_FOR_INTERVAL:
        out["reason"] = f"{n} seed{'s' if n != 1 else ''} (fewer than {MIN_SEEDS_FOR_INTERVAL}): no interval"
        return out
    sd = float(v.std(ddof=1))
    out["sd"] = sd
    if sd <= 1e-15 * max(1.0, abs(mean)):
        out["low"] = out["high"] = mean
        out["p"] = 0.0 if mean != 0 else 1.0
        out["reason"] = "identical estimates in every seed (no between-seed variation)"
        return out
    se = sd / math.sqrt(n)
    tcrit = float(sps.t.ppf(0.5 + level / 2, n - 1))
    out["low"], out["high"] = mean - tcrit * se, mean + tcrit * se
    out["p"] = float(2 * sps.t.sf(abs(mean / se), n - 1))
    return out


def per_seed_slopes(x: object, y: object, seeds: object) -> tuple[np.ndarray, np.ndarray]:
    """OLS slope of ``y`` on ``x`` within each seed that has at least two distinct ``x`` values.

    Returns ``(labels, slopes)``: the seeds used (sorted) and their slopes, both shape (n_used,).
    """
    xa, ya = stats.check_xy(x, y)
    s = np.asarray(seeds)
    if s.shape != xa.shape:
        raise ValueError(f"seeds must have one label per row ({xa.size}), got shape {s.shape}.")
    labels, slopes = [], []
    for label in np.unique(s):
        m = s == label
        xs, ys = xa[m], ya[m]
        if np.ptp(xs) == 0:
            continue
        dx = xs - xs.mean()
        labels.append(label)
        slopes.append(float(np.sum(dx * (ys - ys.mean())) / np.sum(dx * dx)))
    return np.asarray(labels), np.asarray(slopes, dtype=float)


def holm(p_values: object) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries are not tests: they stay
    NaN and do not count towards the family size). Returns an array of the input's shape."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adjusted)
    return out


def holm_levels(p_values: object, *, alpha: float = ALPHA) -> np.ndarray:
    """The per-test significance level of Holm's step-down procedure, for intervals that agree with it.

    With the finite p-values sorted, p₍₁₎ ≤ … ≤ p₍ₘ₎, step i (1-based) tests p₍ᵢ₎ < α / (m − i + 1).
    A test rejected at step i gets the level α / (m − i + 1); once a step fails (at step s), it and
    every later test get the level of step s. So a (1 − level) interval excludes 0 exactly when the
    test is rejected (for a t-test, p < level ⇔ the 1 − level interval excludes 0), and a verdict
    read from the Holm-adjusted p never disagrees with its adjusted interval. NaN p-values are not
    tests: their level is NaN. Returns an array of the input's shape.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    order = idx[np.argsort(p[idx], kind="stable")]
    stopped: float | None = None
    for i, j in enumerate(order):
        level = alpha / (m - i)
        if stopped is None and p[j] >= level:
            stopped = level
        out[j] = level if stopped is None else stopped
    return out


def t_interval(estimate: float, sd: float, n: int, level: float) -> tuple[float, float]:
    """The two-sided t(n − 1) interval ``estimate ± t · sd / √n`` at confidence ``level``
    (``(estimate, estimate)`` when ``sd`` is 0; NaN when undefined)."""
    nan = float("nan")
    if not (np.isfinite(estimate) and np.isfinite(sd) and np.isfinite(level)) or n < MIN_SEEDS_FOR_INTERVAL:
        return nan, nan
    if sd == 0:
        return float(estimate), float(estimate)
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return float(estimate - half), float(estimate + half)


def decide(estimate: float, low: float, high: float, p: float, *, alpha: float = ALPHA) -> str:
    """``"rises"`` / ``"falls"`` when ``p < alpha`` and the interval excludes 0 on that side,
    else ``"inconclusive"`` (also for any undefined number)."""
    vals = (estimate, low, high, p)
    if any(v is None or not np.isfinite(v) for v in vals) or p >= alpha:
        return "inconclusive"
    if low > 0:
        return "rises"
    if high < 0:
        return "falls"
    return "inconclusive"


# ---- mutual information: the paper's estimator and a permutation null ----------------------


def within_group_permutations(groups: object, n_perm: int, seed: int = 0) -> np.ndarray:
    """Random permutations that move rows only within their group (seed).

    Returns an int array of shape (n_perm, n): ``x[perm[b]]`` is ``x`` with the values of each
    group shuffled among that group's rows.
    """
    g = np.asarray(groups)
    if g.ndim != 1:
        raise ValueError(f"groups must be 1-D (one seed per row), got shape {g.shape}.")
    _, codes = np.unique(g, return_inverse=True)
    n = codes.size
    rng = np.random.default_rng(seed)
    keys = rng.random((n_perm, n))
    order = np.lexsort((keys, np.broadcast_to(codes, (n_perm, n))), axis=-1)
    base = np.argsort(codes, kind="stable")
    perm = np.empty((n_perm, n), dtype=np.intp)
    perm[:, base] = order
    return perm


def _sklearn_scaled(x: np.ndarray, y: np.ndarray, random_state: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What ``mutual_info_regression`` does to its inputs before the KSG estimate: scale by the
    (ddof 0) SD, then add 1e-10-scale noise from ``RandomState(random_state)`` (X's first, then y's).
    Returns (x scaled, x noise, y scaled + noise); the noise is added after any permutation of x."""
    rng = np.random.RandomState(random_state)
    sx = x.std() or 1.0
    xs = x / sx
    ex = 1e-10 * max(1.0, float(np.mean(np.abs(xs)))) * rng.standard_normal(x.size)
    sy = y.std() or 1.0
    ys = y / sy
    ys = ys + 1e-10 * max(1.0, float(np.mean(np.abs(ys)))) * rng.standard_normal(y.size)
    return xs, ex, ys


#: (b, n, n) entries per chunk of permutations: arrays of 1.6 MB, which stay in cache (measured 2× faster
#: than chunks of 4e6 at n = 30; the values do not depend on it: each permutation is computed on its own)
_KSG_CHUNK_CELLS = 200_000


def ksg_mi_batch(
    x: object, y: object, perms: np.ndarray | None = None, *, n_neighbors: int = 3, random_state: int = 42
) -> np.ndarray:
    """The KSG estimate of ``sklearn.feature_selection.mutual_info_regression(x[perm], y,
    n_neighbors, random_state)`` for every row ``perm`` of ``perms`` at once (dense distances).

    Returns shape (n_perm,) in nats (floored at 0, as sklearn); ``perms=None`` is the identity.
    """
    xa, ya = stats.check_xy(x, y)
    n = xa.size
    if perms is None:
        perms = np.arange(n)[None, :]
    xs, ex, ys = _sklearn_scaled(xa, ya, random_state)
    dy = np.abs(ys[:, None] - ys[None, :])
    const = digamma(n) + digamma(n_neighbors)
    psi = digamma(np.arange(1, n + 1, dtype=np.float64))  # ψ(m) of every possible count m = 1 … n
    diagonal = np.arange(n)
    out = np.empty(perms.shape[0])
    chunk = max(1, int(_KSG_CHUNK_CELLS // (n * n)))
    for start in range(0, perms.shape[0], chunk):
        xb = xs[perms[start : start + chunk]] + ex  # (b, n)
        dx = np.abs(xb[:, :, None] - xb[:, None, :])
        d = np.maximum(dx, dy)
        d[:, diagonal, diagonal] = np.inf
        radius = np.nextafter(np.partition(d, n_neighbors - 1, axis=-1)[..., n_neighbors - 1], 0)[..., None]
        # counts within the radius, the point itself included: sklearn's ψ(n_x + 1) with n_x = count − 1
        nx = (dx <= radius).sum(axis=-1)
        ny = (dy <= radius).sum(axis=-1)
        mi = const - psi[nx - 1].mean(axis=-1) - psi[ny - 1].mean(axis=-1)
        out[start : start + chunk] = np.maximum(mi, 0.0)
    return out


def mi_permutation_test(
    x: object,
    y: object,
    groups: object,
    *,
    n_perm: int = 1000,
    seed: int = 0,
    n_neighbors: int = 3,
    random_state: int = 42,
) -> dict[str, float | int]:
    """The paper's MI of ``y`` on ``x`` and its null from permuting ``x`` within each group (seed).

    Returns
    -------
    dict with ``mi`` (exactly :func:`reprsim.analysis.stats.mutual_information`), ``mi_null95``
    (95th percentile of the null), ``mi_p`` = (1 + #{null ≥ mi}) / (1 + n_perm) and ``n_perm``.
    NaN when there are too few rows (n ≤ n_neighbors).
    """
    xa, ya = stats.check_xy(x, y)
    nan = float("nan")
    mi = stats.mutual_information(xa, ya, n_neighbors=n_neighbors, random_state=random_state)
    if not np.isfinite(mi) or n_perm < 1:
        return {"mi": mi, "mi_null95": nan, "mi_p": nan, "n_perm": 0}
    perms = within_group_permutations(groups, n_perm, seed)
    null = ksg_mi_batch(xa, ya, perms, n_neighbors=n_neighbors, random_state=random_state)
    p = (1.0 + float(np.sum(null >= mi - 1e-12))) / (1.0 + n_perm)
    return {"mi": mi, "mi_null95": float(np.percentile(null, 95)), "mi_p": p, "n_perm": int(n_perm)}
