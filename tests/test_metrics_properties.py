"""Invariances, identity, expectations under independence, and numerics of the measures."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from reprsim.metrics import MEASURES, compute, compute_all, prepare
from tests._metrics_refs import unbiased_cka_ref

SIMILARITIES = [n for n, m in MEASURES.items() if m.kind == "similarity"]
KNN = [n for n, m in MEASURES.items() if m.uses_knn]


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((120, 10))
    Y = X @ rng.standard_normal((10, 14)) + 0.8 * rng.standard_normal((120, 14))
    return X, Y


def test_identity_is_one_for_every_similarity(xy):
    X, _ = xy
    got = compute_all(X, X.copy())
    # cycle_knn(X, X) is the fraction of samples that are a neighbour of one of their own neighbours:
    # below 1 in general, because kNN relations are not symmetric
    for name in set(SIMILARITIES) - {"cycle_knn", "linear_regression"}:
        assert got[name] == pytest.approx(1.0, abs=1e-9), name
    assert 1 - 1e-5 < got["linear_regression"] < 1  # the ridge penalty shrinks the fit slightly
    assert got["procrustes_distance"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("c", [1e-3, 1.0, 7.5])
def test_rotation_and_scale_invariance(xy, c):
    X, Y = xy
    Q = ortho_group.rvs(14, random_state=3)
    base = compute_all(X, Y, names=["cka", "unbiased_cka", "procrustes", "svcca", "rbf_cka", "mean_cca"])
    moved = compute_all(X, Y @ Q * c + 5.0, names=list(base))
    for name in base:
        assert moved[name] == pytest.approx(base[name], abs=1e-9), name
    assert compute("cka", X, X @ ortho_group.rvs(10, random_state=4) * c) == pytest.approx(1.0, abs=1e-12)
    assert compute("procrustes", X, X @ ortho_group.rvs(10, random_state=4) * c) == pytest.approx(1.0, abs=1e-12)
    assert compute("svcca", X, X @ ortho_group.rvs(10, random_state=4) * c) == pytest.approx(1.0, abs=1e-12)


def test_cca_invariant_to_invertible_maps_but_procrustes_is_not(xy):
    X, Y = xy
    A = np.random.default_rng(1).standard_normal((14, 14))
    assert compute("mean_cca", X, Y @ A) == pytest.approx(compute("mean_cca", X, Y), abs=1e-9)
    assert abs(compute("procrustes", X, Y @ A) - compute("procrustes", X, Y)) > 1e-3


def test_knn_measures_invariant_to_row_scaling_after_l2(xy):
    X, Y = xy
    s = np.random.default_rng(2).uniform(0.1, 10.0, (len(X), 1))
    a = compute_all(prepare(X, clip_quantile=None), prepare(Y, clip_quantile=None), names=KNN)
    b = compute_all(prepare(X * s, clip_quantile=None), prepare(Y * s[::-1], clip_quantile=None), names=KNN)
    for name in KNN:
        assert b[name] == pytest.approx(a[name], abs=1e-12), name


def test_symmetry_flags(xy):
    X, Y = xy
    for name, m in MEASURES.items():
        if m.symmetric:
            assert compute(name, X, Y) == pytest.approx(compute(name, Y, X), abs=1e-9), name


def test_independence_expectations():
    rng = np.random.default_rng(7)
    n, k = 2000, 10
    X, Y = rng.standard_normal((n, 32)), rng.standard_normal((n, 32))
    got = compute_all(X, Y, names=["unbiased_cka", "mutual_knn", "cycle_knn"], k=k)
    assert abs(got["unbiased_cka"]) < 0.02
    p = k / (n - 1)
    # mutual: mean of n (weakly dependent) Binomial(k, p)/k; 3 standard errors
    assert abs(got["mutual_knn"] - p) < 3 * math.sqrt(p * (1 - p) / (k * n)) * 1.5
    q = 1 - (1 - p) ** k
    assert abs(got["cycle_knn"] - q) < 3 * math.sqrt(q * (1 - q) / n) * 1.5


def test_biased_cka_upward_bias_small_n():
    rng = np.random.default_rng(8)
    X, Y = rng.standard_normal((20, 1000)), rng.standard_normal((20, 1000))
    assert compute("cka", X, Y) > 0.7
    assert abs(compute("unbiased_cka", X, Y)) < 0.2


@pytest.mark.parametrize("offset", [100.0, 1000.0])
def test_float32_with_mean_offset_matches_float64(offset):
    rng = np.random.default_rng(9)
    X = rng.standard_normal((500, 64))
    Y = X[:, :32] @ rng.standard_normal((32, 48)) + rng.standard_normal((500, 48))
    X64, Y64 = X + offset, Y - offset
    names = ["cka", "unbiased_cka", "rbf_cka", "svcca", "pwcca", "mean_cca", "procrustes", "linear_regression"]
    ref = compute_all(X64, Y64, names=names)
    got = compute_all(X64.astype(np.float32), Y64.astype(np.float32), names=names)
    for name in names:
        assert np.isfinite(got[name]) and -1 <= got[name] <= 1, name
        assert got[name] == pytest.approx(ref[name], abs=1e-4), name
    # HSIC_u is translation invariant: the reference on centred data agrees to 1e-6, while the
    # textbook uncentred formula loses digits even in float64 at offset 1000
    assert ref["unbiased_cka"] == pytest.approx(unbiased_cka_ref(X, Y), abs=1e-6)
    if offset == 1000.0:
        assert abs(unbiased_cka_ref(X64, Y64) - ref["unbiased_cka"]) > 1e-4


@pytest.mark.parametrize("scale", [1e-4, 1e-2, 1.0, 1e2, 1e4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scale_invariance_no_epsilon(scale, dtype):
    rng = np.random.default_rng(10)
    X = rng.standard_normal((200, 16))
    Y = X @ rng.standard_normal((16, 16)) + rng.standard_normal((200, 16))
    names = ["cka", "unbiased_cka", "rbf_cka", "svcca", "procrustes", "rsa", "linear_regression", "pwcca"]
    ref = compute_all(X, Y, names=names)
    got = compute_all((X * scale).astype(dtype), (Y * scale).astype(dtype), names=names)
    tol = 1e-9 if dtype == np.float64 else 2e-5
    for name in names:
        assert got[name] == pytest.approx(ref[name], abs=tol), name
    assert compute("cka", (X * scale).astype(dtype), (X * scale).astype(dtype)) == pytest.approx(1.0, abs=tol)


def test_torch_input_equals_numpy(xy):
    X, Y = xy
    a = compute_all(X, Y, names=["cka", "mutual_knn", "svcca"])
    b = compute_all(torch.from_numpy(X), torch.from_numpy(Y), names=list(a))
    assert a == pytest.approx(b, abs=1e-12)


def test_results_not_clamped():
    rng = np.random.default_rng(12)
    vals = [compute("unbiased_cka", rng.standard_normal((30, 5)), rng.standard_normal((30, 5))) for _ in range(20)]
    assert min(vals) < 0  # negative values are reported, not floored at 0
