"""Statistics helpers against independent references (numpy, scipy, sklearn)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from reprsim.analysis import stats


def test_linear_fit_matches_polyfit_and_linregress(rng: np.random.Generator) -> None:
    x = np.repeat(np.linspace(0, 1, 5), 4)
    y = 0.3 + 0.08 * x + rng.normal(0, 0.01, x.size)
    fit = stats.linear_fit(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    ref = sps.linregress(x, y)
    t = sps.t.ppf(0.975, x.size - 2)
    assert fit.slope == pytest.approx(slope, rel=1e-10)
    assert fit.intercept == pytest.approx(intercept, rel=1e-10)
    assert fit.r2 == pytest.approx(ref.rvalue**2, rel=1e-10)
    assert fit.slope_low == pytest.approx(ref.slope - t * ref.stderr, rel=1e-10)
    assert fit.slope_high == pytest.approx(ref.slope + t * ref.stderr, rel=1e-10)
    assert fit.slope_low < 0.08 < fit.slope_high


def test_linear_fit_degenerate_inputs_give_nan() -> None:
    assert np.isnan(stats.linear_fit([1, 1, 1], [1, 2, 3]).slope)
    two = stats.linear_fit([0, 1], [1, 3])
    assert two.slope == 2 and np.isnan(two.slope_low)


def test_mutual_information_is_the_papers_sklearn_call(rng: np.random.Generator) -> None:
    from sklearn.feature_selection import mutual_info_regression

    x = np.repeat([0.0, 0.25, 0.5, 0.75, 1.0], 6)
    y = x + rng.normal(0, 0.05, x.size)
    ref = mutual_info_regression(x.reshape(-1, 1), y, n_neighbors=3, random_state=42)[0]
    assert stats.mutual_information(x, y) == ref
    assert 0 < ref < np.log(5) + 0.1
    assert np.isnan(stats.mutual_information([0, 1, 0.5], [1, 2, 3]))


def test_weighted_spearman_with_unit_weights_equals_scipy_with_ties(rng: np.random.Generator) -> None:
    x = np.repeat([0.0, 0.5, 1.0], 5)
    y = np.round(x + rng.normal(0, 0.3, x.size), 1)  # ties in both
    got = stats.weighted_spearman(x, y, np.ones((1, x.size)))[0]
    assert got == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)


def test_weighted_statistics_equal_the_statistic_of_repeated_data(rng: np.random.Generator) -> None:
    x, y = rng.normal(size=12), rng.normal(size=12)
    w = rng.integers(0, 4, size=(3, 12)).astype(float)
    w[:, :3] += 1
    for b in range(3):
        xr, yr = np.repeat(x, w[b].astype(int)), np.repeat(y, w[b].astype(int))
        assert stats.weighted_spearman(x, y, w)[b] == pytest.approx(sps.spearmanr(xr, yr).statistic, abs=1e-12)
        assert stats.weighted_pearson(x, y, w)[b] == pytest.approx(sps.pearsonr(xr, yr).statistic, abs=1e-12)
        assert stats.weighted_slope(x, y, w)[b] == pytest.approx(np.polyfit(xr, yr, 1)[0], abs=1e-10)


def test_bootstrap_weights_resample_whole_seeds() -> None:
    groups = np.array([0, 0, 1, 1, 2, 2])
    w, unit = stats.bootstrap_weights(groups, n_boot=50, seed=1)
    assert unit == "seeds" and w.shape == (50, 6)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 4] == w[:, 5])  # rows of one seed move together
    assert np.all(w.sum(axis=1) == 6)
    w1, unit1 = stats.bootstrap_weights(np.zeros(5), n_boot=20, seed=1)
    assert unit1 == "rows" and np.all(w1.sum(axis=1) == 5)


def test_correlation_ci_is_seeded_and_brackets_the_estimate(rng: np.random.Generator) -> None:
    x = np.repeat(np.linspace(0, 1, 5), 4)
    y = x + rng.normal(0, 0.2, x.size)
    seeds = np.tile(np.arange(4), 5)
    a = stats.correlation_ci(x, y, seeds, method="spearman", n_boot=300, seed=3)
    b = stats.correlation_ci(x, y, seeds, method="spearman", n_boot=300, seed=3)
    assert a == b
    assert a["estimate"] == pytest.approx(sps.spearmanr(x, y).statistic)
    assert a["low"] <= a["estimate"] <= a["high"] and a["ci_unit"] == "seeds"
    p = stats.correlation_ci(x, y, seeds, method="pearson", n_boot=300)
    assert p["estimate"] == pytest.approx(sps.pearsonr(x, y).statistic)


def test_bad_input_is_rejected_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="same length"):
        stats.linear_fit([0, 1, 2], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        stats.linear_fit([0, 1, np.nan], [1, 2, 3])
    with pytest.raises(ValueError, match="1-D"):
        stats.mutual_information(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="spearman"):
        stats.correlation_ci([0, 1, 2], [0, 1, 2], [0, 1, 2], method="kendall")
