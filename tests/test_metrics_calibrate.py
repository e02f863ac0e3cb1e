"""Calibrated scores (Algorithm 1) and the layer aggregate with its null (Algorithm 2), against a
brute-force loop in the test: every measure recomputed with ``metrics.compute`` on each permuted Y,
τ / p / calibrated from their formulas written out here."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from reprsim import metrics
from reprsim.metrics.calibrate import calibrate, calibrate_layers, calibration_record, draw_permutations

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _params(name: str, k: int) -> dict:
    return {"k": k} if "k" in metrics.MEASURES[name].params else {}


def _expected(obs: float, null: np.ndarray, top: float, alpha: float) -> dict:
    """Algorithm 1 written out: τ = ⌈(1−α)(K+1)⌉-th smallest of {obs} ∪ null; p; clamp."""
    K = len(null)
    allv = sorted([obs, *null])
    r = math.ceil(round((1 - alpha) * (K + 1), 9))
    tau = allv[r - 1]
    p = (1 + sum(v >= obs for v in null)) / (K + 1)
    cal = min(1.0, max(0.0, (obs - tau) / (top - tau))) if top > tau else 0.0
    return {"tau": tau, "p_value": p, "calibrated": cal, "null_mean": float(np.mean(null)), "max": top}


def _related(n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    return X, X @ rng.normal(size=(6, 5)) + 1.5 * rng.normal(size=(n, 5))


def test_every_measure_matches_a_brute_force_loop_over_the_same_permutations():
    X, Y = _related()
    P = np.stack([np.random.default_rng(100 + i).permutation(len(X)) for i in range(9)])
    alpha = 0.35  # with K = 9, τ is the 7th smallest of 10 values: a real null quantile, not the maximum
    got = calibrate(None, X, Y, permutations=P, alpha=alpha, k=4)
    assert list(got) == list(metrics.MEASURES)
    n_interior = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, rec in got.items():
            sign = -1.0 if metrics.MEASURES[name].kind == "distance" else 1.0
            kw = _params(name, 4)
            obs = sign * metrics.compute(name, X, Y, **kw)
            null = np.array([sign * metrics.compute(name, X, Y[p], **kw) for p in P])
            top = sign * metrics.compute(name, X, X, **kw)
            want = _expected(obs, null, top, alpha)
            tol = 1e-6 if name == "rbf_cka" else 1e-9  # the engine forms rbf's kernel in float64
            assert rec["value"] == pytest.approx(obs, abs=tol), name
            for key, v in want.items():
                assert rec[key] == pytest.approx(v, abs=tol), (name, key)
            assert rec["n_permutations"] == 9
            assert rec["orientation"] == ("similarity" if sign > 0 else "negated distance (-d)")
            n_interior += 0 < rec["calibrated"] < 1
    assert n_interior >= 3  # the clamp is not what makes every case agree


def _within_subsample(p, n, max_rows, seed=0):
    # rsa's null above max_rows, by hand: p's relative order on the subsample S permutes S, other rows stay
    S = np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
    q = np.arange(n)
    q[S] = S[np.argsort(np.argsort(p[S]))]
    return q


@pytest.mark.parametrize("case", ["plain", "ties", "constant_row"])
def test_rsa_with_a_row_subsample_matches_recomputation_on_its_within_subsample_null(case):
    # n > max_rows: rsa's null permutes Y's rows within its subsample S; the engine relabels Y[S]'s
    # ranks (plain, ties) or recomputes with the library (a row constant across features)
    rng = np.random.default_rng(11)
    X = rng.normal(size=(50, 5))
    Y = X @ rng.normal(size=(5, 4)) + rng.normal(size=(50, 4))
    if case == "ties":  # few distinct values: many equal correlation distances (no row constant across features)
        Y = rng.integers(0, 3, size=(50, 4)).astype(float)
        Y[:, 0] = np.where((Y == Y[:, :1]).all(1), Y[:, 0] + 1, Y[:, 0])
        from reprsim.metrics.other import _corr_rdm_upper
        import torch

        D = _corr_rdm_upper(torch.as_tensor(Y), "Y").numpy()[np.triu_indices(50, 1)]
        assert len(np.unique(D)) < len(D) / 10
    if case == "constant_row":
        S = np.sort(np.random.default_rng(0).choice(50, 20, replace=False))
        Y[S[3]] = 2.0
    P = np.stack([np.random.default_rng(i).permutation(50) for i in range(6)])
    got = calibrate("rsa", X, Y, permutations=P, alpha=0.3, max_rows=20)["rsa"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the subsample note
        null = np.array([metrics.compute("rsa", X, Y[_within_subsample(p, 50, 20)], max_rows=20) for p in P])
        obs = metrics.compute("rsa", X, Y, max_rows=20)
        full = np.array([metrics.compute("rsa", X, Y[p], max_rows=20) for p in P])
    assert not np.allclose(null, full)  # the definition matters: it is not the full-permutation null
    want = _expected(obs, null, 1.0, 0.3)
    for key, v in want.items():
        assert got[key] == pytest.approx(v, abs=1e-12), key


def test_rsa_null_permutation_permutes_only_the_subsample():
    from reprsim.metrics.other import rsa_null_permutation

    p = np.random.default_rng(3).permutation(30)
    assert np.array_equal(rsa_null_permutation(p, max_rows=30), p)  # no subsample: the permutation itself
    q = rsa_null_permutation(p, max_rows=8, seed=2)
    S = np.sort(np.random.default_rng(2).choice(30, 8, replace=False))
    outside = np.setdiff1d(np.arange(30), S)
    assert np.array_equal(q[outside], outside)
    assert np.array_equal(np.sort(q[S]), S)
    assert np.array_equal(np.argsort(q[S]), np.argsort(p[S]))  # the same relative order as p on S
    assert np.array_equal(q, _within_subsample(p, 30, 8, seed=2))


def test_tau_and_p_value_by_hand_on_a_tiny_null():
    # K = 4, α = 0.5: τ = the ⌈0.5·5⌉ = 3rd smallest of {0.5, 0.1, 0.6, 0.3, 0.2} = 0.3
    rec = calibration_record(0.5, np.array([0.1, 0.6, 0.3, 0.2]), 1.0, "similarity", 0.5)
    assert rec["tau"] == pytest.approx(0.3)
    assert rec["p_value"] == pytest.approx(2 / 5)  # only 0.6 ≥ 0.5
    assert rec["null_mean"] == pytest.approx(0.3)
    assert rec["calibrated"] == pytest.approx((0.5 - 0.3) / (1.0 - 0.3))
    # α = 0.25: ⌈0.75·5⌉ = 4th smallest = 0.5 = the observed value → calibrated 0
    rec = calibration_record(0.5, np.array([0.1, 0.6, 0.3, 0.2]), 1.0, "similarity", 0.25)
    assert rec["tau"] == pytest.approx(0.5) and rec["calibrated"] == 0.0
    # K = 19, α = 0.05: ⌈0.95·20⌉ = 19 exactly (no rounding up to 20): τ = the 19th smallest
    null = np.arange(19) / 100.0  # 0.00 … 0.18
    rec = calibration_record(0.5, null, 1.0, "similarity", 0.05)
    assert rec["tau"] == pytest.approx(0.18)
    assert rec["p_value"] == pytest.approx(1 / 20)
    # a distance: calibrated in the orientation s = −d; smaller null distances count as "≥"
    rec = calibration_record(0.2, np.array([0.9, 0.1, 0.7, 0.8]), 0.0, "distance", 0.5)
    assert rec["value"] == -0.2 and rec["raw_value"] == 0.2 and rec["max"] == 0.0
    assert rec["tau"] == pytest.approx(-0.7)  # sorted −d: −0.9 −0.8 −0.7 −0.2 −0.1 → 3rd
    assert rec["p_value"] == pytest.approx(2 / 5)  # only d = 0.1 ≤ 0.2
    assert rec["calibrated"] == pytest.approx((-0.2 + 0.7) / (0.0 + 0.7))


def test_null_mean_of_mutual_knn_is_k_over_n_minus_1_for_independent_inputs():
    rng = np.random.default_rng(1)
    n, k = 300, 10
    X, Y = rng.normal(size=(n, 8)), rng.normal(size=(n, 8))
    rec = calibrate(["mutual_knn", "jaccard_knn"], X, Y, n_permutations=40, seed=2, k=k)
    # one permutation's mean overlap has sd ≈ sqrt(k/(n−1)/ (k n)) ≈ 0.0024; over 40 draws ≈ 0.0004
    assert rec["mutual_knn"]["null_mean"] == pytest.approx(k / (n - 1), abs=0.002)
    assert rec["mutual_knn"]["calibrated"] < 0.05
    assert rec["mutual_knn"]["p_value"] > 0.01


def test_rotated_copy_calibrates_to_one():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 5))
    Q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    names = ["cka", "unbiased_cka", "mutual_knn", "procrustes", "procrustes_distance", "rbf_cka", "mean_cca"]
    rec = calibrate(names, X, X @ Q, n_permutations=30, seed=0, k=5)
    for name in names:
        assert rec[name]["calibrated"] == pytest.approx(1.0, abs=1e-6), name
        assert rec[name]["p_value"] == pytest.approx(1 / 31), name
    # and an independent Y is not calibrated to 1
    assert calibrate("cka", X, rng.normal(size=(60, 5)), n_permutations=30)["cka"]["calibrated"] < 0.5


def test_seeded_permutations_are_reproducible_and_match_numpys_draws():
    P = draw_permutations(50, 5, seed=7)
    rng = np.random.default_rng(7)
    assert np.array_equal(P, np.stack([rng.permutation(50) for _ in range(5)]))
    X, Y = _related()
    a = calibrate("cka", X, Y, n_permutations=20, seed=4)["cka"]
    b = calibrate("cka", X, Y, permutations=draw_permutations(30, 20, seed=4))["cka"]
    c = calibrate("cka", X, Y, n_permutations=20, seed=5)["cka"]
    assert a == b and a["null_mean"] != c["null_mean"]
    small = draw_permutations(4, 24, seed=0)  # all 4! permutations, each once
    assert len({tuple(p) for p in small}) == 24


def test_calibrate_layers_matches_a_brute_force_loop():
    rng = np.random.default_rng(5)
    n = 30
    Z = rng.normal(size=(n, 4))
    Xl = {"x1": Z @ rng.normal(size=(4, 5)) + rng.normal(size=(n, 5)), "x2": rng.normal(size=(n, 3))}
    Yl = {"y1": rng.normal(size=(n, 4)), "y2": Z + 0.5 * rng.normal(size=(n, 4)), "y3": Z @ rng.normal(size=(4, 6))}
    P = np.stack([np.random.default_rng(i).permutation(n) for i in range(11)])
    alpha = 0.3
    for name in ("cka", "mutual_knn", "procrustes_distance"):
        sign = -1.0 if metrics.MEASURES[name].kind == "distance" else 1.0
        kw = _params(name, 4)

        def table(perm: np.ndarray) -> np.ndarray:
            return np.array(
                [[sign * metrics.compute(name, x, y[perm], **kw) for y in Yl.values()] for x in Xl.values()]
            )

        ident = np.arange(n)
        obs_t = table(ident)
        tops = [sign * metrics.compute(name, x, x, **kw) for x in Xl.values()]
        for agg, red in (("max", np.max), ("mean", np.mean)):
            got = calibrate_layers(name, Xl, Yl, agg=agg, permutations=P, alpha=alpha, **kw)
            want = _expected(float(red(obs_t)), np.array([red(table(p)) for p in P]), float(red(tops)), alpha)
            assert got["value"] == pytest.approx(red(obs_t), abs=1e-9), (name, agg)
            for key, v in want.items():
                assert got[key] == pytest.approx(v, abs=1e-9), (name, agg, key)
            assert got["n_pairs"] == 6
        best = np.unravel_index(np.argmax(obs_t), obs_t.shape)
        got = calibrate_layers(name, Xl, Yl, agg="max", permutations=P, **kw)
        assert (got["layer_a"], got["layer_b"]) == (list(Xl)[best[0]], list(Yl)[best[1]])


def test_the_layer_maximum_null_is_above_a_single_pairs_null():
    # selecting the best of 2×3 pairs raises the null: its mean exceeds one pair's null mean
    rng = np.random.default_rng(8)
    Xl = [rng.normal(size=(40, 5)) for _ in range(2)]
    Yl = [rng.normal(size=(40, 5)) for _ in range(3)]
    agg = calibrate_layers("cka", Xl, Yl, n_permutations=20, seed=0)
    one = calibrate("cka", Xl[0], Yl[0], n_permutations=20, seed=0)["cka"]
    assert agg["null_mean"] > one["null_mean"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_permutations": 0}, "n_permutations must be between|n_permutations must be >= 1"),
        ({"permutations": np.zeros((3, 30), dtype=int)}, r"permutations\[0\] is not a permutation"),
        ({"permutations": np.arange(30)}, "must be a \\(K, n\\) integer array"),
        ({"permutations": np.tile(np.arange(29), (2, 1))}, "n = 30"),
        ({"alpha": 1.0}, "alpha must be in \\(0, 1\\)"),
        ({"alpha": 0.0}, "alpha must be > 0"),
    ],
)
def test_bad_input_is_one_clear_error(kwargs, match):
    X, Y = _related()
    with pytest.raises(ValueError, match=match):
        calibrate("cka", X, Y, **kwargs)


def test_too_few_rows_for_k_distinct_permutations():
    X, Y = _related(n=5)
    with pytest.raises(ValueError, match="n_permutations=200 distinct row permutations need more rows: n=5"):
        calibrate("cka", X, Y, n_permutations=200)
    with pytest.raises(ValueError, match="agg must be one of"):
        calibrate_layers("cka", [X], [Y], agg="median")
    with pytest.raises(ValueError, match="unknown measure"):
        calibrate(["cka", "nope"], X, Y)


# ---- compare_models: calibrate=K, Comparison.best, Comparison.difference ------------------------


def _models_and_inputs():
    import reprsim.models as M

    def cnn(seed):
        return M.build(
            "cnn", input_shape=(3, 16, 16), num_classes=4, channels=(8, 16, 16), penultimate_width=16, seed=seed
        )

    return cnn(0), cnn(1), cnn(2), np.random.default_rng(0).random((40, 3, 16, 16), dtype=np.float32)


def _prepared(comp, which: str, layer: str) -> np.ndarray:
    """The comparison's preparation ("paper": clip at the 0.95 quantile, then L2 rows), redone here."""
    return metrics.prepare(comp.features[which][layer], normalize="l2", clip_quantile=0.95)


def test_compare_models_calibrate_columns_best_and_difference():
    from reprsim.compare import compare_models

    a, b, c, x = _models_and_inputs()
    layers = ["block2", "penultimate"]
    comp = compare_models(a, b, x, layers=layers, measures=["cka", "mutual_knn"], params={"k": 5}, calibrate=15, seed=2)
    assert {"null_mean", "tau", "calibrated"} <= set(comp.table.columns)
    P = draw_permutations(len(x), 15, seed=2)
    for r in comp.table.itertuples(index=False):
        X, Y = _prepared(comp, "a", r.layer_a), _prepared(comp, "b", r.layer_b)
        want = calibrate(r.measure, X, Y, permutations=P, **_params(r.measure, 5))[r.measure]
        for col in ("null_mean", "tau", "calibrated"):
            assert getattr(r, col) == pytest.approx(want[col], abs=1e-6), (r.layer_a, r.layer_b, r.measure, col)
    # the best pair with the selection's null = calibrate_layers on the same prepared layers
    best = comp.best("cka", n_permutations=15, seed=4)
    Xl = {la: _prepared(comp, "a", la) for la in layers}
    Yl = {lb: _prepared(comp, "b", lb) for lb in layers}
    want = calibrate_layers("cka", Xl, Yl, permutations=draw_permutations(len(x), 15, seed=4))
    for key in ("value", "null_mean", "tau", "p_value", "calibrated", "layer_a", "layer_b"):
        assert (
            best[key] == pytest.approx(want[key], abs=1e-6) if isinstance(want[key], float) else best[key] == want[key]
        )
    # paired difference against a second comparison on the same inputs
    other = compare_models(a, c, x, layers=layers, measures=["cka"])
    diff = comp.difference(other, measure="cka", n_boot=20, seed=1)
    assert len(diff) == 4
    from reprsim.metrics import paired_difference

    r = diff.iloc[0]
    want = paired_difference(
        "cka",
        (_prepared(comp, "a", r.layer_a), _prepared(comp, "b", r.layer_b)),
        (_prepared(other, "a", r.layer_a), _prepared(other, "b", r.layer_b)),
        n_boot=20,
        seed=1,
    )
    assert r["difference"] == pytest.approx(want["difference"], abs=1e-6)
    assert (r["ci_low"], r["ci_high"]) == (
        pytest.approx(want["ci_low"], abs=1e-6),
        pytest.approx(want["ci_high"], abs=1e-6),
    )
    with pytest.raises(ValueError, match="measure 'rsa' was not computed"):
        comp.best("rsa")


# ---- sweep rows: measures.calibrate --------------------------------------------------------------


def test_sweep_rows_gain_calibrated_columns_only_when_asked():
    from reprsim.experiments.config import MeasureSpec
    from reprsim.experiments.similarity import similarity_rows

    rng = np.random.default_rng(6)
    Z = rng.normal(size=(40, 4))
    fa = {"l1": Z @ rng.normal(size=(4, 7)), "l2": rng.normal(size=(40, 5))}
    fb = {"l1": Z @ rng.normal(size=(4, 6)) + 0.5 * rng.normal(size=(40, 6)), "l2": rng.normal(size=(40, 5))}
    names = ["cka", "mutual_knn", "procrustes_distance"]
    plain = similarity_rows(MeasureSpec(names=names, params={"k": 4}), fa, fb, ["l1", "l2"], seed=3)
    cal = similarity_rows(MeasureSpec(names=names, params={"k": 4}, calibrate=12), fa, fb, ["l1", "l2"], seed=3)
    assert not {"null_mean", "tau", "calibrated"} & set(plain[0])  # existing tables unchanged
    P = draw_permutations(40, 12, seed=3)
    for p_row, c_row in zip(plain, cal):
        same = {k: v for k, v in c_row.items() if k not in ("null_mean", "tau", "calibrated")}
        assert pd.Series(same).equals(pd.Series(p_row))  # NaN p_value equal to NaN
        prep = lambda f: metrics.prepare(f, normalize="l2", clip_quantile=0.95)  # noqa: E731  the sweep's default
        want = calibrate(
            c_row["measure"],
            prep(fa[c_row["layer_a"]]),
            prep(fb[c_row["layer_b"]]),
            permutations=P,
            **_params(c_row["measure"], 4),
        )[c_row["measure"]]
        for col in ("null_mean", "tau", "calibrated"):
            assert c_row[col] == pytest.approx(want[col], abs=1e-9)
    assert MeasureSpec().model_dump() == MeasureSpec(calibrate=0).model_dump()
    assert "calibrate" not in MeasureSpec().model_dump()  # configs without it dump (and hash) as before


def test_an_undefined_measure_raises_or_gives_nan_fields():
    X, _ = _related()
    Y = np.ones((30, 3))  # constant: CKA undefined
    with pytest.raises(ValueError, match="cka"):
        calibrate("cka", X, Y, n_permutations=5)
    with pytest.warns(UserWarning, match="cka"):
        rec = calibrate("cka", X, Y, n_permutations=5, on_error="nan")["cka"]
    assert all(math.isnan(rec[k]) for k in ("value", "null_mean", "tau", "p_value", "calibrated"))


def test_sweep_best_rows_are_the_layer_maximum_with_its_own_null():
    from reprsim.experiments.config import MeasureSpec
    from reprsim.experiments.similarity import similarity_rows

    rng = np.random.default_rng(8)
    Z = rng.normal(size=(40, 4))
    fa = {"l1": Z @ rng.normal(size=(4, 7)), "l2": rng.normal(size=(40, 5))}
    fb = {"l1": Z @ rng.normal(size=(4, 6)) + 0.5 * rng.normal(size=(40, 6)), "l2": rng.normal(size=(40, 5))}
    names = ["cka", "mutual_knn", "procrustes_distance"]
    rows = similarity_rows(MeasureSpec(names=names, params={"k": 4}, calibrate=15), fa, fb, ["l1", "l2"], seed=2)
    pairs = [r for r in rows if r["layer_a"] != "best"]
    best = {r["measure"]: r for r in rows if r["layer_a"] == "best"}
    assert len(pairs) == 4 * len(names) and list(best) == names and rows[-len(names) :] == list(best.values())
    prep = lambda f: metrics.prepare(f, normalize="l2", clip_quantile=0.95)  # noqa: E731  the sweep's default
    P = draw_permutations(40, 15, seed=2)
    for name, row in best.items():
        sign = -1.0 if metrics.MEASURES[name].kind == "distance" else 1.0
        assert row["layer_b"] == "best"
        assert row["value"] == max(sign * r["value"] for r in pairs if r["measure"] == name)
        want = calibrate_layers(
            name,
            {k: prep(v) for k, v in fa.items()},
            {k: prep(v) for k, v in fb.items()},
            permutations=P,
            **_params(name, 4),
        )
        for col in ("value", "p_value", "null_mean", "tau", "calibrated"):
            assert row[col] == pytest.approx(want[col], abs=1e-12), (name, col)
    one = similarity_rows(MeasureSpec(names=names, params={"k": 4}, calibrate=15), fa, fb, ["l1"], seed=2)
    assert all(r["layer_a"] == "l1" for r in one)  # a single pair has no selection to correct for


@pytest.mark.parametrize("dtype, rel", [(np.float64, 1e-10), (np.float32, 1e-6)])
def test_null_values_match_recomputation_on_every_permutation(dtype, rel):
    # the eigenvalue forms of the spectral measures (metrics/_null.py) against metrics.compute on Y[π];
    # float32 products in another row order round differently (~1e-8), float64 agrees to rounding
    from reprsim.metrics.calibrate import engine_null
    from reprsim.metrics.engine import SimilarityEngine

    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 12)).astype(dtype)
    Y = (X[:, :9] @ rng.normal(size=(9, 10)) + rng.normal(size=(60, 10))).astype(dtype)
    P = draw_permutations(60, 6, seed=5)
    names = list(metrics.MEASURES)
    engine = SimilarityEngine({"X": X}, {"Y": Y}, names, {"k": 5}, progress=False, share_rbf=False)
    null = engine_null(engine, P)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            want = [metrics.compute(name, X, Y[p], **_params(name, 5)) for p in P]
            assert null[("X", "Y", name)] == pytest.approx(want, rel=rel, abs=rel / 10), name


@pytest.mark.parametrize("dtype, rel", [(np.float64, 1e-10), (np.float32, 1e-6)])
def test_layer_table_nulls_from_shared_matrices_match_recomputation(dtype, rel):
    # 2 × 2 layers wide enough (Σd_a·Σd_b > n·n_b·(45 + 10·n_a)) that linear CKA's null takes the centred-Gram route; rbf_cka,
    # rsa and cka gather each permuted B layer's n×n matrix once for both A layers, cknna reuses its self terms
    from reprsim.metrics.calibrate import engine_null
    from reprsim.metrics.engine import SimilarityEngine

    rng = np.random.default_rng(6)
    n = 50
    Z = rng.normal(size=(n, 8))
    A = {"a1": Z @ rng.normal(size=(8, 64)) + rng.normal(size=(n, 64)), "a2": rng.normal(size=(n, 48))}
    B = {"b1": Z @ rng.normal(size=(8, 56)) + 2 * rng.normal(size=(n, 56)), "b2": np.tanh(Z @ rng.normal(size=(8, 72)))}
    A, B = ({k: v.astype(dtype) for k, v in d.items()} for d in (A, B))
    P = draw_permutations(n, 5, seed=7)
    names = ["cka", "rbf_cka", "rsa", "cknna", "second_order_cosine"]
    engine = SimilarityEngine(A, B, names, {"k": 5}, progress=False)
    assert engine.share_centred_gram and engine.share_rbf and engine.share_rsa
    null = engine_null(engine, P)
    for la, X in A.items():
        for lb, Y in B.items():
            for name in names:
                want = [metrics.compute(name, X, Y[p], **_params(name, 5)) for p in P]
                tol = max(rel, 1e-7) if name == "rbf_cka" else rel  # the shared kernel is formed in float64
                assert null[(la, lb, name)] == pytest.approx(want, rel=tol, abs=tol / 10), (la, lb, name)


def test_narrow_layers_keep_the_cross_product_route_for_linear_ckas_null():
    from reprsim.metrics.engine import SimilarityEngine

    X = np.random.default_rng(0).normal(size=(200, 10))
    assert not SimilarityEngine({"X": X}, {"Y": X[:, :8]}, ["cka"], progress=False).share_centred_gram
    W = np.random.default_rng(1).normal(size=(200, 120))  # 120 · 120 > 200 · (45 + 10): the Gram route
    assert SimilarityEngine({"X": W}, {"Y": W[:, ::-1]}, ["cka"], progress=False).share_centred_gram
