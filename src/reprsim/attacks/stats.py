"""Confidence intervals for a success rate k / n (binomial proportion).

Both functions resample nothing: they treat the n probe inputs as independent Bernoulli
trials of one fixed model pair, so the interval covers probe-set sampling only (not the
variation over training seeds, which the analysis handles across pairs).
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["wilson_interval", "clopper_pearson_interval", "proportion_interval"]


def _check(k: int, n: int, confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}.")
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n for a proportion k/n, got k={k}, n={n}.")


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n trials.

    ``(p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)`` with ``p = k/n`` and z the
    two-sided normal quantile (Wilson 1927). Well behaved at k = 0 and k = n.

    Returns
    -------
    (low, high) : floats in [0, 1]; ``(nan, nan)`` when n = 0.
    """
    _check(k, n, confidence)
    if n == 0:
        return (math.nan, math.nan)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 (k = n) the bound is exactly 0 (1); set it so rounding cannot leave 1e-17.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return (low, high)


def clopper_pearson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval from beta quantiles; conservative.

    low = Beta(α/2; k, n−k+1), high = Beta(1−α/2; k+1, n−k), with low = 0 at k = 0 and
    high = 1 at k = n.

    Returns
    -------
    (low, high) : floats in [0, 1]; ``(nan, nan)`` when n = 0.
    """
    from scipy.stats import beta

    _check(k, n, confidence)
    if n == 0:
        return (math.nan, math.nan)
    a = 1 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return (low, high)


_METHODS = {"wilson": wilson_interval, "clopper_pearson": clopper_pearson_interval}


def proportion_interval(k: int, n: int, method: str = "wilson", confidence: float = 0.95) -> tuple[float, float]:
    """Dispatch to :func:`wilson_interval` or :func:`clopper_pearson_interval` by name.

    Returns
    -------
    (low, high) : floats in [0, 1]; ``(nan, nan)`` when n = 0.
    """
    if method not in _METHODS:
        raise ValueError(f"unknown interval method {method!r}; valid: {', '.join(sorted(_METHODS))}.")
    return _METHODS[method](int(k), int(n), confidence)
