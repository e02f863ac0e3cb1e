"""Statistics used by the analysis: OLS with a slope interval, the paper's mutual information,
and Spearman/Pearson correlations with bootstrap intervals that resample whole seeds.

Resampling, the statistic and the summary are kept apart: :func:`bootstrap_weights` only draws
resamples (as multiplicity weights, one row per resample), the ``weighted_*`` functions compute a
statistic for every resample at once, and :func:`correlation_ci` / :func:`slope_ci` combine them.
A bootstrap resample that draws seed ``s`` twice is identical to giving every row of seed ``s``
the weight 2, which lets every resample be computed with matrix products instead of a loop.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

__all__ = [
    "LinearFit",
    "bootstrap_weights",
    "check_xy",
    "correlation_ci",
    "linear_fit",
    "mutual_information",
    "percentile_ci",
    "slope_ci",
    "weighted_pearson",
    "weighted_slope",
    "weighted_spearman",
]

DEFAULT_N_BOOT = 1000
DEFAULT_SEED = 0


def _as_1d(values: object, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}; pass one value per observation.")
    return arr


def check_xy(x: object, y: object) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as finite 1-D float arrays of one length; ``ValueError`` naming the problem otherwise."""
    xa, ya = _as_1d(x, "x"), _as_1d(y, "y")
    if xa.shape != ya.shape:
        raise ValueError(f"x and y must have the same length, got {xa.shape[0]} and {ya.shape[0]}.")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError("x and y must be finite; drop NaN/inf rows (e.g. empty probe sets) before fitting.")
    return xa, ya


@dataclass(frozen=True)
class LinearFit:
    """Ordinary least squares fit ``y = slope * x + intercept``.

    ``slope_low``/``slope_high`` bound the two-sided ``level`` confidence interval from the
    t distribution with n - 2 degrees of freedom; ``r2`` is the in-sample R² (as sklearn's
    ``LinearRegression.score``). Fields are NaN when the fit is undefined (n < 3 or constant x).
    """

    slope: float
    intercept: float
    slope_low: float
    slope_high: float
    r2: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def linear_fit(x: object, y: object, *, level: float = 0.95) -> LinearFit:
    """Fit ``y`` on ``x`` by OLS and return a :class:`LinearFit` (slope with its CI, R², n).

    The slope interval treats rows as independent; the analysis reports effects with the seed as
    the unit instead (:mod:`reprsim.analysis.inference`) and uses this fit for the pooled R² only.

    Parameters
    ----------
    x, y : array-like of shape (n,)
        Predictor (e.g. the overlap fraction) and response (e.g. a similarity value).
    level : float, default=0.95
        Coverage of the slope's confidence interval.
    """
    xa, ya = check_xy(x, y)
    n = xa.size
    nan = float("nan")
    if n < 3 or np.ptp(xa) == 0:
        slope = intercept = nan
        if n >= 2 and np.ptp(xa) > 0:  # exactly two points: a line but no interval
            slope = float((ya[1] - ya[0]) / (xa[1] - xa[0]))
            intercept = float(ya[0] - slope * xa[0])
        return LinearFit(slope, intercept, nan, nan, nan, int(n))
    xm, ym = xa.mean(), ya.mean()
    sxx = float(np.sum((xa - xm) ** 2))
    slope = float(np.sum((xa - xm) * (ya - ym)) / sxx)
    intercept = float(ym - slope * xm)
    resid = ya - (intercept + slope * xa)
    ss_res = float(np.sum(resid**2))
    ss_tot = float(np.sum((ya - ym) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else nan)
    se = math.sqrt(ss_res / (n - 2) / sxx)
    t = float(sps.t.ppf(0.5 + level / 2, n - 2))
    return LinearFit(slope, intercept, slope - t * se, slope + t * se, float(r2), int(n))


def mutual_information(x: object, y: object, *, n_neighbors: int = 3, random_state: int = 42) -> float:
    """The paper's mutual information between overlap fraction and similarity, in nats.

    Exactly ``sklearn.feature_selection.mutual_info_regression(X, y, n_neighbors=3,
    random_state=42)`` with ``X`` the raw fraction as an (n, 1) array (PAPER.md §8). Its ceiling is
    about ln(number of distinct x values). Returns NaN when n <= n_neighbors.
    """
    from sklearn.feature_selection import mutual_info_regression

    xa, ya = check_xy(x, y)
    if xa.size <= n_neighbors:
        return float("nan")
    mi = mutual_info_regression(xa.reshape(-1, 1), ya, n_neighbors=n_neighbors, random_state=random_state)
    return float(mi[0])


def bootstrap_weights(
    groups: object, *, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED
) -> tuple[np.ndarray, str]:
    """Draw bootstrap resamples of whole groups (seeds) as row weights.

    Returns
    -------
    weights : ndarray of shape (n_boot, n)
        ``weights[b, i]`` is how many times row ``i``'s group was drawn in resample ``b``.
    unit : str
        ``"seeds"`` when groups were resampled; ``"rows"`` when there was only one group, in which
        case single rows are resampled instead (the interval then ignores seed-to-seed variation).
    """
    g = np.asarray(groups)
    if g.ndim != 1:
        raise ValueError(f"groups must be 1-D (one seed per row), got shape {g.shape}.")
    rng = np.random.default_rng(seed)
    labels, inverse = np.unique(g, return_inverse=True)
    if labels.size >= 2:
        draws = rng.integers(0, labels.size, size=(n_boot, labels.size))
        counts = np.zeros((n_boot, labels.size))
        np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
        return counts[:, inverse], "seeds"
    n = g.size
    draws = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    return counts, "rows"


def _weighted_corr_rows(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Weighted Pearson correlation per row of ``w``; ``a``/``b`` are (n,) or (n_boot, n)."""
    sw = w.sum(axis=1, keepdims=True)
    ma = (w * a).sum(axis=1, keepdims=True) / sw
    mb = (w * b).sum(axis=1, keepdims=True) / sw
    da, db = a - ma, b - mb
    cov = (w * da * db).sum(axis=1)
    va = (w * da * da).sum(axis=1)
    vb = (w * db * db).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(va * vb)
    tol = 1e-12
    r[
        (va <= tol * np.maximum(1.0, (w * a * a).sum(axis=1))) | (vb <= tol * np.maximum(1.0, (w * b * b).sum(axis=1)))
    ] = np.nan
    return np.clip(r, -1.0, 1.0)


def weighted_pearson(x: object, y: object, weights: np.ndarray) -> np.ndarray:
    """Pearson r of the data repeated ``weights[b]`` times, for every row ``b``; shape (n_boot,)."""
    xa, ya = check_xy(x, y)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    return _weighted_corr_rows(w, xa, ya)


def _weighted_ranks(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties averaged) of each value in the weighted multiset, per row of ``w``.

    rank_b(i) = Σ_j w_bj·[v_j < v_i] + (Σ_j w_bj·[v_j = v_i] + 1) / 2, shape (n_boot, n). Computed
    from one sort of ``v`` and per-row cumulative sums of the weights of its distinct values:
    O(n log n + n_boot·n) time and O(n_boot·n) memory (never an n × n matrix: 10⁶ rows asked for
    26 GiB that way).
    """
    order = np.argsort(v, kind="stable")
    sv = v[order]
    starts = np.flatnonzero(np.r_[True, sv[1:] != sv[:-1]])  # first position of each distinct value
    group = np.empty(v.size, dtype=np.intp)
    group[order] = np.cumsum(np.r_[True, sv[1:] != sv[:-1]]) - 1  # distinct-value index of each v_i
    equal = np.add.reduceat(w[:, order], starts, axis=1)  # (n_boot, n_distinct): weight of each value
    less = np.cumsum(equal, axis=1) - equal  # weight of the smaller values
    return less[:, group] + (equal[:, group] + 1.0) / 2.0


def weighted_spearman(x: object, y: object, weights: np.ndarray) -> np.ndarray:
    """Spearman ρ of the data repeated ``weights[b]`` times, for every row ``b``; shape (n_boot,).

    With all weights 1 this equals ``scipy.stats.spearmanr(x, y)`` (average ranks for ties).
    """
    xa, ya = check_xy(x, y)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    return _weighted_corr_rows(w, _weighted_ranks(xa, w), _weighted_ranks(ya, w))


def weighted_slope(x: object, y: object, weights: np.ndarray) -> np.ndarray:
    """OLS slope of the weighted data for every row of ``weights``; shape (n_boot,)."""
    xa, ya = check_xy(x, y)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    sw = w.sum(axis=1, keepdims=True)
    dx = xa - (w * xa).sum(axis=1, keepdims=True) / sw
    dy = ya - (w * ya).sum(axis=1, keepdims=True) / sw
    sxx = (w * dx * dx).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (w * dx * dy).sum(axis=1) / sxx
    out[sxx <= 1e-15] = np.nan
    return out


def percentile_ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples`` (NaN when too many resamples were degenerate)."""
    finite = samples[np.isfinite(samples)]
    if finite.size < max(10, 0.5 * samples.size):  # too many degenerate resamples
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def correlation_ci(
    x: object,
    y: object,
    groups: object,
    *,
    method: str = "spearman",
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
    min_groups: int = 1,
) -> dict[str, float | str | int]:
    """Correlation of ``x`` and ``y`` with a percentile bootstrap interval over ``groups`` (seeds).

    With fewer than ``min_groups`` distinct groups no interval is computed (``low``/``high`` NaN,
    ``ci_unit`` ``"none"``): a bootstrap over very few seeds has too few distinct resamples.

    Returns
    -------
    dict with keys ``estimate``, ``low``, ``high`` (floats, NaN when undefined), ``n`` (rows),
    ``ci_unit`` (``"seeds"`` or ``"rows"``, see :func:`bootstrap_weights`), ``n_boot``.
    """
    if method not in ("spearman", "pearson"):
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}.")
    xa, ya = check_xy(x, y)
    stat = weighted_spearman if method == "spearman" else weighted_pearson
    nan = float("nan")
    if xa.size < 3:
        return {"estimate": nan, "low": nan, "high": nan, "n": int(xa.size), "ci_unit": "none", "n_boot": 0}
    estimate = float(stat(xa, ya, np.ones((1, xa.size)))[0])
    if np.unique(np.asarray(groups)).size < min_groups:
        return {"estimate": estimate, "low": nan, "high": nan, "n": int(xa.size), "ci_unit": "none", "n_boot": 0}
    w, unit = bootstrap_weights(groups, n_boot=n_boot, seed=seed)
    low, high = percentile_ci(stat(xa, ya, w), level)
    return {"estimate": estimate, "low": low, "high": high, "n": int(xa.size), "ci_unit": unit, "n_boot": n_boot}


def slope_ci(
    x: object,
    y: object,
    groups: object,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> tuple[float, float, np.ndarray]:
    """Percentile bootstrap interval of the OLS slope, resampling ``groups`` (seeds).

    Returns ``(low, high, samples)`` where ``samples`` has shape (n_boot,) and may contain NaN.
    """
    xa, ya = check_xy(x, y)
    w, _ = bootstrap_weights(groups, n_boot=n_boot, seed=seed)
    samples = weighted_slope(xa, ya, w)
    low, high = percentile_ci(samples, level)
    return low, high, samples
