"""Paired differences of a measure between two pairs of representations of the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

from reprsim import metrics
from reprsim.metrics.paired import paired_difference

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pairs(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    Y1 = X @ rng.normal(size=(5, 4)) + 0.3 * rng.normal(size=(n, 4))  # closely related
    Y2 = X @ rng.normal(size=(5, 4)) + 2.0 * rng.normal(size=(n, 4))  # loosely related
    return X, Y1, Y2


def test_matches_a_paired_bootstrap_written_here():
    X, Y1, Y2 = _pairs()
    got = paired_difference("cka", (X, Y1), (X, Y2), n_boot=60, seed=3)
    v1, v2 = metrics.compute("cka", X, Y1), metrics.compute("cka", X, Y2)
    rng = np.random.default_rng(3)
    d = []
    for _ in range(60):
        i = rng.integers(0, len(X), len(X))  # one resample of the inputs for both pairs
        d.append(metrics.compute("cka", X[i], Y1[i]) - metrics.compute("cka", X[i], Y2[i]))
    d = np.array(d)
    lo, hi = np.quantile(d, [0.025, 0.975])
    assert got["value1"] == pytest.approx(v1) and got["value2"] == pytest.approx(v2)
    assert got["difference"] == pytest.approx(v1 - v2)
    assert (got["ci_low"], got["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    tail = min((d <= 0).sum(), (d >= 0).sum())
    assert got["p_value"] == pytest.approx(min(1.0, 2 * (1 + tail) / 61))
    assert got["ci_low"] > 0 and got["p_value"] < 0.05  # Y1 is much closer to X than Y2


def test_rows_are_aligned_by_id_not_position():
    X, Y1, Y2 = _pairs()
    n = len(X)
    ids = np.arange(100, 100 + n)
    shuffle = np.random.default_rng(1).permutation(n)
    aligned = paired_difference("mutual_knn", (X, Y1), (X, Y2), ids1=ids, ids2=ids, n_boot=20, k=5)
    shuffled = paired_difference(
        "mutual_knn", (X, Y1), (X[shuffle], Y2[shuffle]), ids1=ids, ids2=ids[shuffle], n_boot=20, k=5
    )
    assert shuffled == aligned
    # by position, the shuffled pair 2 is a different set of resamples: the interval moves
    by_position = paired_difference("mutual_knn", (X, Y1), (X[shuffle], Y2[shuffle]), n_boot=20, k=5)
    assert by_position["difference"] == pytest.approx(aligned["difference"])  # values are row-order free
    assert (by_position["ci_low"], by_position["ci_high"]) != (aligned["ci_low"], aligned["ci_high"])


@pytest.mark.parametrize(
    "ids1, ids2, match",
    [
        ([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7], "sample id 6 of ids1 is missing from ids2"),
        ([1, 2, 3, 4, 5, 5], [1, 2, 3, 4, 5, 6], "ids1 contains the duplicate sample id 5"),
        ([1, 2, 3, 4, 5, 6], None, "pass both ids1= and ids2="),
        ([1, 2, 3], [1, 2, 3], "one sample id per row \\(6 rows\\)"),
    ],
)
def test_bad_ids_name_the_id(ids1, ids2, match):
    X, Y1, Y2 = _pairs(n=6)
    with pytest.raises(ValueError, match=match):
        paired_difference("cka", (X, Y1), (X, Y2), ids1=ids1, ids2=ids2, n_boot=5)


def test_extra_id_in_the_second_pair_and_unequal_rows():
    X, Y1, Y2 = _pairs(n=6)
    with pytest.raises(ValueError, match="sample id 9 of ids2 is missing from ids1"):
        paired_difference("cka", (X[:5], Y1[:5]), (X, Y2), ids1=[1, 2, 3, 4, 5], ids2=[1, 2, 3, 4, 5, 9], n_boot=5)
    with pytest.raises(ValueError, match="5 and 6 rows"):
        paired_difference("cka", (X[:5], Y1[:5]), (X, Y2), n_boot=5)
