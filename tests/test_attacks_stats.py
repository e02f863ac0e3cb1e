"""Binomial intervals against known values and their symmetry."""

from __future__ import annotations

import math

import pytest

from reprsim.attacks.stats import clopper_pearson_interval, proportion_interval, wilson_interval


def test_wilson_known_values():
    # z = 1.959964; 0/10: high = z²/(n + z²) = 3.841459 / 13.841459 = 0.277533
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.277533, abs=1e-6)
    low, high = wilson_interval(5, 10)
    assert (low, high) == pytest.approx((0.236593, 0.763407), abs=1e-6)


def test_clopper_pearson_known_values():
    low, high = clopper_pearson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025**0.1, abs=1e-9)  # 0.308497
    assert clopper_pearson_interval(5, 10) == pytest.approx((0.187086, 0.812914), abs=1e-6)
    assert clopper_pearson_interval(10, 10)[1] == 1.0


@pytest.mark.parametrize("fn", [wilson_interval, clopper_pearson_interval])
@pytest.mark.parametrize("k,n", [(0, 1), (3, 7), (250, 500), (499, 500)])
def test_interval_contains_estimate_and_is_symmetric(fn, k, n):
    low, high = fn(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    low2, high2 = fn(n - k, n)
    assert low == pytest.approx(1 - high2, abs=1e-9) and high == pytest.approx(1 - low2, abs=1e-9)
    assert fn(k, n, confidence=0.5)[1] - fn(k, n, confidence=0.5)[0] < high - low


def test_interval_empty_and_errors():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    assert all(math.isnan(v) for v in clopper_pearson_interval(0, 0))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(5, 3)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 3, confidence=1.0)
    with pytest.raises(ValueError, match="valid: clopper_pearson, wilson"):
        proportion_interval(1, 3, method="agresti")
