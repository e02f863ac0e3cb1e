"""Every registered measure against a straightforward reference from the published formula (1e-6, float64)."""

import numpy as np
import pytest

from reprsim.metrics import MEASURES, PAPER_MEASURES, compute, compute_all
from tests._metrics_refs import REFERENCES, cknna_ref, cycle_ref, edit_ref, lcs_ref, mutual_ref, svcca_ref


def make_pair(seed, n=60, d1=8, d2=12, noise=1.0, offset=0.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d1)) + offset
    Y = np.tanh(X @ rng.standard_normal((d1, d2))) + noise * rng.standard_normal((n, d2))
    return X, Y


PAIRS = [
    make_pair(0),
    make_pair(1, n=45, d1=5, d2=5, noise=0.3),
    make_pair(2, n=70, d1=12, d2=6, offset=3.0),
    make_pair(3, n=30, d1=50, d2=40),
]  # the last one has d > n (Gram-space paths)


def test_registry_covers_references_and_paper_names():
    assert PAPER_MEASURES == (
        "cka",
        "unbiased_cka",
        "mutual_knn",
        "cycle_knn",
        "lcs_knn",
        "edit_distance_knn",
        "cknna",
        "svcca",
    )
    assert set(PAPER_MEASURES) <= set(MEASURES)
    assert set(REFERENCES) == set(MEASURES)


@pytest.mark.parametrize("pair_id", range(len(PAIRS)))
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_matches_reference(name, pair_id):
    X, Y = PAIRS[pair_id]
    if name in ("mean_cca", "pwcca", "linear_regression") and pair_id == 3:
        pytest.skip("CCA/regression with d > n is degenerate (all correlations 1)")
    expected = REFERENCES[name](X, Y)
    assert compute(name, X, Y) == pytest.approx(expected, abs=1e-6)


def test_compute_all_equals_compute():
    X, Y = PAIRS[0]
    together = compute_all(X, Y)
    assert list(together) == list(MEASURES)
    for name, value in together.items():
        assert value == pytest.approx(compute(name, X, Y), abs=1e-12), name


@pytest.mark.parametrize("k", [1, 3, 7])
def test_knn_measures_other_k(k):
    X, Y = PAIRS[1]
    got = compute_all(X, Y, names=["mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cknna"], k=k)
    assert got["mutual_knn"] == pytest.approx(mutual_ref(X, Y, k), abs=1e-12)
    assert got["cycle_knn"] == pytest.approx(cycle_ref(X, Y, k), abs=1e-12)
    assert got["lcs_knn"] == pytest.approx(lcs_ref(X, Y, k), abs=1e-12)
    assert got["edit_distance_knn"] == pytest.approx(edit_ref(X, Y, k), abs=1e-12)
    if k > 1:
        assert got["cknna"] == pytest.approx(cknna_ref(X, Y, k), abs=1e-6)


def test_svcca_dim_and_rbf_sigma():
    X, Y = PAIRS[0]
    assert compute("svcca", X, Y, dim=4) == pytest.approx(svcca_ref(X, Y, dim=4), abs=1e-6)
    assert compute("svcca", X, Y, keep=0.5) == pytest.approx(svcca_ref(X, Y, keep=0.5), abs=1e-6)
    assert compute("rbf_cka", X, Y, sigma=2.5) == pytest.approx(REFERENCES["rbf_cka"](X, Y, 2.5), abs=1e-6)
    # large ‖x‖²/σ²: the distance-form path instead of the exp(⟨x_i, x_j⟩/σ²) factorisation
    assert compute("rbf_cka", X * 3, Y * 3, sigma=1.5) == pytest.approx(
        REFERENCES["rbf_cka"](X * 3, Y * 3, 1.5), abs=1e-6
    )


def test_rbf_cka_blocked_equals_dense(monkeypatch):
    import reprsim.metrics._blocks as blocks

    X, Y = PAIRS[2]
    expected = REFERENCES["rbf_cka"](X, Y)
    monkeypatch.setattr(blocks, "TILE_BYTES", 7 * 7 * 8)  # 7×7 tiles
    assert compute_all(X, Y, names=["rbf_cka", "mutual_knn"])["rbf_cka"] == pytest.approx(expected, abs=1e-6)
    assert compute("mutual_knn", X, Y) == pytest.approx(mutual_ref(X, Y, 10), abs=1e-12)


def test_average_ranks_match_scipy():
    from scipy.stats import rankdata

    from reprsim.metrics.other import average_ranks

    x = np.random.default_rng(0).integers(0, 40, 3000).astype(float)
    assert np.array_equal(average_ranks(x), rankdata(x))


def test_lcs_and_levenshtein_textbook_cases():
    from reprsim.metrics.knn import lcs_lengths, levenshtein
    from tests._metrics_refs import lcs_len, levenshtein as lev_ref

    rng = np.random.default_rng(5)
    a = rng.integers(0, 6, (200, 7))
    b = rng.integers(0, 6, (200, 7))
    assert lcs_lengths(a, b).tolist() == [lcs_len(list(p), list(q)) for p, q in zip(a, b)]
    assert levenshtein(a, b).tolist() == [lev_ref(list(p), list(q)) for p, q in zip(a, b)]
    # kitten/sitting-style known values on integer codes
    assert levenshtein(np.array([[1, 2, 3]]), np.array([[3, 2, 1]])).tolist() == [2]
    assert lcs_lengths(np.array([[1, 2, 3, 4]]), np.array([[2, 4, 1, 3]])).tolist() == [2]


def test_float32_matches_float64():
    X, Y = PAIRS[0]
    d64 = compute_all(X, Y)
    d32 = compute_all(X.astype(np.float32), Y.astype(np.float32))
    for name in MEASURES:
        assert d32[name] == pytest.approx(d64[name], abs=2e-5), name
