"""Seed-as-unit inference against values computed by hand in the test (independent code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.feature_selection import mutual_info_regression

from reprsim.analysis import inference


def test_t_summary_is_the_hand_computed_t_interval() -> None:
    v = [0.10, 0.12, 0.08, 0.11, 0.095]
    n = len(v)
    mean = sum(v) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    se = sd / math.sqrt(n)
    tcrit = sps.t.ppf(0.975, n - 1)  # 2.776 for 4 df
    assert tcrit == pytest.approx(2.7764451, rel=1e-6)
    p = 2 * (1 - sps.t.cdf(abs(mean / se), n - 1))
    got = inference.t_summary(v)
    assert got["estimate"] == pytest.approx(mean, rel=1e-12)
    assert got["sd"] == pytest.approx(sd, rel=1e-12)
    assert got["low"] == pytest.approx(mean - tcrit * se, rel=1e-12)
    assert got["high"] == pytest.approx(mean + tcrit * se, rel=1e-12)
    assert got["p"] == pytest.approx(p, rel=1e-9)
    assert got["n"] == 5 and got["reason"] is None


def test_t_summary_says_no_interval_below_three_seeds() -> None:
    two = inference.t_summary([0.1, 0.2])
    assert two["estimate"] == pytest.approx(0.15) and np.isnan(two["low"]) and np.isnan(two["p"])
    assert "no interval" in two["reason"]
    none = inference.t_summary([np.nan])
    assert none["n"] == 0 and none["reason"]


def test_per_seed_slopes_by_hand() -> None:
    x = np.array([0, 0.5, 1, 0, 0.5, 1, 0, 1.0])
    y = np.array([1, 2, 3.5, 2, 2, 2, 5, 5.0])
    seeds = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    labels, slopes = inference.per_seed_slopes(x, y, seeds)

    def slope(xs, ys):
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        return sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)

    assert list(labels) == [0, 1, 2]
    assert slopes == pytest.approx([slope([0, 0.5, 1], [1, 2, 3.5]), 0.0, 0.0])
    labels, _ = inference.per_seed_slopes([0, 0, 1], [1, 2, 3], [0, 0, 1])  # seed 0: one level, seed 1: one row
    assert labels.size == 0


def test_holm_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → running max 0.06
    got = inference.holm(p)
    np.testing.assert_allclose(got[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(got[4])
    assert inference.holm([0.6, 0.5])[0] == 1.0  # capped at 1
    assert inference.holm([]).size == 0


def test_decide_needs_p_and_an_interval_excluding_zero() -> None:
    assert inference.decide(0.1, 0.05, 0.15, 0.01) == "rises"
    assert inference.decide(-0.1, -0.15, -0.05, 0.01) == "falls"
    assert inference.decide(0.1, 0.05, 0.15, 0.06) == "inconclusive"  # adjusted p too large
    assert inference.decide(0.1, -0.01, 0.2, 0.01) == "inconclusive"  # interval contains 0
    assert inference.decide(0.1, float("nan"), float("nan"), float("nan")) == "inconclusive"
    assert set(inference.VERDICTS) == {"rises", "falls", "inconclusive"}


def test_permutations_stay_within_seeds() -> None:
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    perms = inference.within_group_permutations(groups, 40, seed=1)
    assert perms.shape == (40, 9)
    for perm in perms:
        assert (groups[perm] == groups).all()
        assert sorted(perm) == list(range(9))
    assert len({tuple(p) for p in perms}) > 10


def test_ksg_batch_is_sklearns_estimate(rng: np.random.Generator) -> None:
    x = np.repeat([0.0, 0.25, 0.5, 0.75, 1.0], 4)
    y = 0.2 * x + rng.normal(0, 0.05, x.size)
    y[:3] = y[0]  # ties
    perms = inference.within_group_permutations(np.tile(np.arange(4), 5), 25, seed=2)
    fast = inference.ksg_mi_batch(x, y, perms)
    ref = [mutual_info_regression(x[p].reshape(-1, 1), y, n_neighbors=3, random_state=42)[0] for p in perms]
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12)


def _ksg_one_by_one(x: np.ndarray, y: np.ndarray, perm: np.ndarray, k: int = 3) -> float:
    """The KSG estimate of one permutation, written out: Chebyshev distances, the k-th neighbour's
    radius (just inside), the counts within it and ψ of the counts (sklearn's formula)."""
    from scipy.special import digamma

    xs, ex, ys = inference._sklearn_scaled(x, y, 42)
    xp = xs[perm] + ex
    n = x.size
    mi = digamma(n) + digamma(k)
    nx, ny = np.empty(n), np.empty(n)
    for i in range(n):
        dx, dy = np.abs(xp - xp[i]), np.abs(ys - ys[i])
        d = np.maximum(dx, dy)
        d[i] = np.inf
        r = np.nextafter(np.sort(d)[k - 1], 0)
        nx[i], ny[i] = (dx <= r).sum() - 1.0, (dy <= r).sum() - 1.0
    return max(mi - digamma(nx + 1).mean() - digamma(ny + 1).mean(), 0.0)


def test_ksg_batch_equals_the_estimate_written_out_whatever_the_chunks(rng: np.random.Generator, monkeypatch) -> None:
    x = np.repeat([0.0, 0.5, 1.0], 6)
    y = 0.3 * x + rng.normal(0, 0.1, x.size)
    y[4] = y[5]  # a tie
    perms = inference.within_group_permutations(np.tile(np.arange(6), 3), 23, seed=4)
    expected = np.array([_ksg_one_by_one(x, y, p) for p in perms])
    np.testing.assert_array_equal(inference.ksg_mi_batch(x, y, perms), expected)
    monkeypatch.setattr(inference, "_KSG_CHUNK_CELLS", 5 * x.size**2)  # chunks of 5: four full, one of 3
    np.testing.assert_array_equal(inference.ksg_mi_batch(x, y, perms), expected)


def test_mi_permutation_p_and_null_by_hand(rng: np.random.Generator) -> None:
    seeds = np.tile(np.arange(4), 4)
    x = np.repeat([0.0, 1 / 3, 2 / 3, 1.0], 4)
    y = 0.05 * x + rng.normal(0, 0.03, x.size)
    n_perm = 80
    got = inference.mi_permutation_test(x, y, seeds, n_perm=n_perm, seed=5)
    observed = mutual_info_regression(x.reshape(-1, 1), y, n_neighbors=3, random_state=42)[0]
    null = [
        mutual_info_regression(x[p].reshape(-1, 1), y, n_neighbors=3, random_state=42)[0]
        for p in inference.within_group_permutations(seeds, n_perm, seed=5)
    ]
    exceed = sum(1 for v in null if v >= observed)
    assert got["mi"] == observed
    assert got["mi_p"] == pytest.approx((1 + exceed) / (1 + n_perm))
    assert got["mi_null95"] == pytest.approx(np.percentile(null, 95))
    strong = inference.mi_permutation_test(x, x + rng.normal(0, 0.01, x.size), seeds, n_perm=n_perm)
    assert strong["mi_p"] == pytest.approx(1 / (1 + n_perm)) and strong["mi"] > strong["mi_null95"]
