"""Numerics: extreme magnitudes are rescaled exactly, numerical failures become clear errors,
parameters are range-checked, sparse features survive clipping and all-zero rows are kept."""

import json
import warnings

import numpy as np
import pytest
import torch

from reprsim.cli import main
from reprsim.metrics import (
    MEASURES,
    PrepareInfo,
    PrepareWarning,
    StreamingCKA,
    bootstrap_ci,
    compare_layers,
    compute,
    compute_all,
    nearest_neighbors,
    permutation_test,
    prepare,
)
from reprsim.metrics._pair import Side

ALL = list(MEASURES)


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((80, 6))
    Y = np.tanh(X @ rng.standard_normal((6, 5))) + 0.3 * rng.standard_normal((80, 5))
    return X, Y


@pytest.fixture(scope="module")
def reference(xy):
    return compute_all(*xy, k=5)


def _all(X, Y):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no measure may fall back to NaN with a warning
        return compute_all(X, Y, k=5)


# ---- rescaling ----------------------------------------------------------------------------------
@pytest.mark.parametrize("e", [-700, -30, 25, 900])
def test_power_of_two_scaling_gives_identical_values(xy, reference, e):
    """Outside the safe band a side is rescaled by a power of two, which is exact: every measure
    gives the same value to the last bit (float64)."""
    X, Y = xy
    got = _all(np.ldexp(X, e), np.ldexp(Y, e))
    assert got == reference
    got = _all(np.ldexp(X, e), Y)  # one side only
    assert got == reference


@pytest.mark.parametrize(
    "scale, dtype",
    [(1e20, np.float32), (1e-25, np.float32), (1e160, np.float64), (1e-200, np.float64), (1e300, np.float64)],
)
def test_extreme_magnitudes_match_unit_scale(xy, scale, dtype):
    X, Y = (a.astype(dtype) for a in xy)
    base = _all(X, Y)
    Xs, Ys = ((a.astype(np.float64) * scale).astype(dtype) for a in xy)
    assert np.isfinite(Xs).all() and np.isfinite(Ys).all()
    got = _all(Xs, Ys)
    for name in ALL:
        assert got[name] == pytest.approx(base[name], abs=1e-5), name


def test_cka_and_procrustes_of_float32_near_1e20(xy):
    X, Y = xy
    cka, proc = compute("cka", X, Y), compute("procrustes", X, Y)
    assert 0.3 < cka < 0.99
    X20, Y20 = (X * 1e20).astype(np.float32), (Y * 1e20).astype(np.float32)
    assert compute("cka", X20, Y20) == pytest.approx(cka, abs=1e-6)  # was 0
    assert compute("procrustes", X20, Y20) == pytest.approx(proc, abs=1e-6)  # was 0
    assert compute("cka", X * 1e160, Y * 1e160) == pytest.approx(cka, rel=1e-12)


def test_in_band_features_are_not_touched(xy):
    X = torch.from_numpy(xy[0])
    side = Side(X)
    assert side.F is X and side.scale_exp == 0
    big = Side(X * 2.0**30)
    assert big.scale_exp != 0 and 0.5 <= float(big.F.abs().max()) < 1.0


def test_rbf_cka_numeric_sigma_is_rescaled_with_the_features(xy):
    X, Y = xy
    base = compute("rbf_cka", X, Y, sigma=2.0)
    assert compute("rbf_cka", np.ldexp(X, 80), np.ldexp(Y, 80), sigma=2.0 * 2.0**80) == base
    assert compute("rbf_cka", X * 1e200, Y * 1e200, sigma=2e200) == pytest.approx(base, abs=1e-12)
    assert compute("rbf_cka", X * 1e200, Y * 1e200) == pytest.approx(compute("rbf_cka", X, Y), abs=1e-12)


def test_stats_streaming_neighbours_and_layer_tables_on_huge_features(xy):
    X, Y = xy
    s = 1e160
    assert permutation_test("cka", X * s, Y * s, n_permutations=20, seed=1) == permutation_test(
        "cka", X, Y, n_permutations=20, seed=1
    )
    lo, hi = bootstrap_ci("svcca", X * s, Y * s, n_boot=20, seed=1)
    assert (lo, hi) == pytest.approx(bootstrap_ci("svcca", X, Y, n_boot=20, seed=1), abs=1e-10)
    table = compare_layers({"a": X * s}, {"b": Y * s, "c": Y}, "cka")
    assert table.loc["a", "b"] == pytest.approx(compute("cka", X, Y), abs=1e-12) == table.loc["a", "c"]
    stream = StreamingCKA()
    for i in range(0, 80, 25):
        stream.update(X[i : i + 25] * s, Y[i : i + 25] * s)
    assert stream.value() == pytest.approx(compute("cka", X, Y), abs=1e-10)
    idx, vals = nearest_neighbors(X * 1e100, k=3)
    idx0, vals0 = nearest_neighbors(X, k=3)
    assert np.array_equal(idx, idx0) and np.allclose(vals, vals0 * 1e200, rtol=1e-12)


def test_streaming_cka_refuses_sums_that_overflow(xy):
    X, Y = xy
    s = StreamingCKA().update(X[:40], Y[:40])
    with pytest.raises(ValueError, match="overflowed float64"):
        s.update(X[40:] * 1e160, Y[40:] * 1e160)


def test_compare_cli_on_float64_near_1e160(tmp_path, xy, capsys):
    X, Y = xy
    np.save(tmp_path / "a.npy", X * 1e160)
    np.save(tmp_path / "b.npy", Y * 1e160)
    assert (
        main(["compare", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--prepare", "none", "--format", "json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    ref = compute_all(X, Y)
    assert out == pytest.approx(ref, abs=1e-9)


# ---- numerical failures -------------------------------------------------------------------------
def test_linalg_errors_become_value_errors_and_nan(xy, monkeypatch):
    X, Y = xy

    def broken(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "eigh", broken)
    monkeypatch.setattr(torch.linalg, "svdvals", broken)
    with pytest.raises(ValueError, match="svcca failed numerically .*LinAlgError.*ill-conditioned"):
        compute("svcca", X, Y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = compute_all(X, Y, names=["cka", "svcca", "pwcca", "mean_cca", "procrustes"], on_error="nan")
    said = [str(w.message) for w in caught]
    assert len(said) == 4 and all(
        f"{n} failed numerically (LinAlgError" in " ".join(said) for n in ["svcca", "pwcca", "mean_cca", "procrustes"]
    )
    assert got["cka"] == pytest.approx(compute("cka", X, Y))
    assert all(np.isnan(got[n]) for n in ["svcca", "pwcca", "mean_cca", "procrustes"])
    with pytest.raises(ValueError, match="failed numerically"):
        bootstrap_ci("svcca", X, Y, n_boot=4)  # every replicate undefined: a clear error, not LinAlgError


def test_nan_result_is_an_error_not_a_number(xy, monkeypatch):
    from reprsim.metrics import cka

    monkeypatch.setattr(cka, "_hsic_biased_pair", lambda pair: (float("nan"), 1.0, 1.0))
    with pytest.raises(ValueError, match="overflowed"):
        compute("cka", *xy)


# ---- parameter ranges ---------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [1e-300, 1e300, 1e-160, 1e160])
def test_rbf_sigma_out_of_range_is_a_clear_error(xy, sigma):
    with pytest.raises(ValueError, match=r"rbf_cka: sigma=.* is out of range .*sigma='median'"):
        compute("rbf_cka", *xy, sigma=sigma)
    with pytest.warns(UserWarning, match="sigma="):
        assert np.isnan(compute_all(*xy, names=["rbf_cka", "cka"], sigma=sigma, on_error="nan")["rbf_cka"])


@pytest.mark.parametrize(
    "name, params, error, match",
    [
        ("rbf_cka", {"sigma": 0.0}, ValueError, "sigma must be > 0"),
        ("rbf_cka", {"sigma": float("nan")}, ValueError, "sigma must be finite"),
        ("rbf_cka", {"sigma": float("inf")}, ValueError, "sigma must be finite"),
        ("rbf_cka", {"sigma": "mean"}, ValueError, "sigma must be a positive number or 'median'"),
        ("rbf_cka", {"sigma": True}, TypeError, "sigma must be a number"),
        ("mutual_knn", {"k": 0}, ValueError, "k must be between 1 and 79"),
        ("mutual_knn", {"k": -3}, ValueError, "k must be between 1 and 79"),
        ("mutual_knn", {"k": 80}, ValueError, "k must be between 1 and 79.*smaller than the number of samples"),
        ("cknna", {"k": 2.0}, TypeError, "k must be an integer"),
        ("cycle_knn", {"k": True}, TypeError, "k must be an integer"),
        ("svcca", {"dim": 0}, ValueError, "dim must be >= 1"),
        ("svcca", {"keep": 0.0}, ValueError, "keep must be > 0"),
        ("svcca", {"keep": 1.5}, ValueError, "keep must be <= 1"),
        ("svcca", {"keep": float("nan")}, ValueError, "keep must be finite"),
        ("rsa", {"max_rows": 3}, ValueError, "max_rows must be >= 4"),
        ("rsa", {"seed": -1}, ValueError, "seed must be >= 0"),
        ("linear_regression", {"alpha": 0.0}, ValueError, "alpha must be > 0"),
        ("linear_regression", {"alpha": float("inf")}, ValueError, "alpha must be finite"),
        ("linear_regression", {"n_folds": 1}, ValueError, "n_folds must be between 2 and 40"),
    ],
)
def test_every_numeric_parameter_is_range_checked(xy, name, params, error, match):
    with pytest.raises(error, match=match):
        compute(name, *xy, **params)
    with pytest.raises(error, match=match):  # a parameter error is never turned into NaN
        compute_all(*xy, names=[name], on_error="nan", **params)


def test_registry_says_which_measures_are_scale_invariant():
    assert [n for n, m in MEASURES.items() if not m.scale_invariant] == ["rbf_cka"]


# ---- prepare: clipping and zero rows ------------------------------------------------------------
def _paper_prepare(X, q):
    """The previous implementation, verbatim: global quantile of |x|, clamp, row L2."""
    t = torch.from_numpy(X)
    flat = t.abs().reshape(-1)
    idx = min(int(np.floor(q * flat.numel())), flat.numel() - 1)
    tau = flat.kthvalue(idx + 1).values
    t = t.clamp(min=-tau, max=tau)
    return (t / torch.linalg.vector_norm(t, dim=1, keepdim=True)).numpy()


@pytest.mark.parametrize("q", [0.3, 0.5, 0.95, 1.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_features_without_zeros_give_exactly_the_old_values(q, dtype):
    X = (np.random.default_rng(1).standard_normal((60, 9)) * 4).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, info = prepare(X, clip_quantile=q, return_info=True)
        assert np.array_equal(prepare(X, clip_quantile=q), out)
    assert np.array_equal(out, _paper_prepare(X, q))
    assert info.rule == "quantile" and not info.affected and info.zero_fraction == 0.0


def test_moderately_sparse_relu_features_keep_the_papers_threshold():
    X = np.maximum(np.random.default_rng(2).standard_normal((200, 50)), 0)  # ≈ 50% zeros
    out, info = prepare(X, clip_quantile=0.95, return_info=True)
    assert 0.45 < info.zero_fraction < 0.55 and info.rule == "quantile" and not info.affected
    assert np.array_equal(out, _paper_prepare(X, 0.95))


@pytest.mark.parametrize("offset, zeros", [(1.7, 0.95), (2.3, 0.99), (1.5, 0.93)])
def test_sparse_features_are_clipped_at_the_nonzero_quantile(offset, zeros):
    rng = np.random.default_rng(4)
    X = np.maximum(rng.standard_normal((400, 250)) - offset, 0)
    X[np.arange(400), rng.integers(0, 250, 400)] += 0.5  # no row is zero before clipping
    assert (X == 0).mean() >= zeros - 0.01
    with pytest.warns(PrepareWarning, match="clipped at the 0.95-quantile of the non-zero magnitudes"):
        out = prepare(X, clip_quantile=0.95)
    nz = np.sort(np.abs(X[X != 0]))
    tau = nz[int(np.floor(0.95 * nz.size))]
    expected = np.clip(X, -tau, tau)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(out, expected, atol=1e-12)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)  # nothing destroyed (the old τ was ≈ 0)
    _, info = prepare(X, clip_quantile=0.95, return_info=True)
    assert isinstance(info, PrepareInfo) and info.sparse_fallback and info.tau == pytest.approx(tau)
    assert info.tau > 0 and info.clipped_fraction == pytest.approx(0.05, abs=0.01) and info.zero_rows == 0
    assert info.tau_paper < info.tau and "zero" in info.describe()
    values = compute_all(out, out[::-1].copy(), names=["cka", "unbiased_cka", "mutual_knn", "cknna", "svcca"])
    assert all(np.isfinite(v) for v in values.values())


def test_all_zero_matrix_and_single_entries():
    Z = np.zeros((5, 4))
    with pytest.warns(PrepareWarning, match="5 all-zero row"):
        assert np.array_equal(prepare(Z, clip_quantile=0.95), Z)
    X = np.zeros((5, 4))
    X[2, 1] = -3.0  # one non-zero entry in the whole matrix: kept (τ = 3), direction preserved
    out, info = prepare(X, clip_quantile=0.95, return_info=True)
    assert out[2, 1] == -1.0 and info.tau == 3.0 and info.zero_rows == 4


def test_all_zero_rows_are_kept_as_zero_rows(xy):
    X, Y = (a.copy() for a in xy)
    X[[3, 10]] = 0.0  # dead samples
    with pytest.warns(PrepareWarning, match="2 all-zero row"):
        P = prepare(X, clip_quantile=0.95)
    assert np.array_equal(P[[3, 10]], np.zeros((2, 6)))
    live = np.delete(np.arange(80), [3, 10])
    assert np.allclose(np.linalg.norm(P[live], axis=1), 1.0)
    assert np.array_equal(P[live], prepare(np.delete(X, [3, 10], 0), clip_quantile=0.95))
    Q = prepare(Y, clip_quantile=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = compute_all(P, Q, k=5)  # the whole comparison does not fail
    assert all(np.isfinite(v) for v in values.values())
    said = " ".join(str(w.message) for w in caught)
    assert "second_order_cosine: left out 2 sample(s)" in said and "rsa: left out 2 row(s)" in said


@pytest.mark.parametrize(
    "scale, dtype", [(1e20, np.float32), (1e-30, np.float32), (1e200, np.float64), (1e-300, np.float64)]
)
def test_l2_normalisation_of_extreme_rows(xy, scale, dtype):
    X = xy[0].copy()
    X[:5] *= scale  # a few rows far outside the safe range, the rest normal
    X = X.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no zero rows appear
        out = prepare(X, clip_quantile=None)
    assert np.allclose(np.linalg.norm(out.astype(np.float64), axis=1), 1.0, atol=1e-6)
    expected = xy[0] / np.linalg.norm(xy[0], axis=1, keepdims=True)
    assert np.allclose(out, expected, atol=1e-6)
    assert np.array_equal(out[5:], prepare(X[5:], clip_quantile=None))  # rows inside the band are computed as before
