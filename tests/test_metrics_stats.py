"""Permutation tests, bootstrap intervals, layer tables, streaming CKA, prepare() and the CLI."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from reprsim.cli import main
from reprsim.metrics import (
    StreamingCKA,
    bootstrap_ci,
    compare_layers,
    compute,
    compute_all,
    permutation_test,
    PrepareWarning,
    prepare,
)
from reprsim.metrics._pair import make_pair
from reprsim.metrics.registry import MEASURES


@pytest.fixture(scope="module")
def related():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((80, 6))
    return X, X @ rng.standard_normal((6, 5)) + 0.5 * rng.standard_normal((80, 5))


@pytest.mark.parametrize("name", ["cka", "mutual_knn", "cknna", "svcca", "procrustes_distance"])
def test_permutation_test_related_vs_independent(name, related):
    X, Y = related
    p = permutation_test(name, X, Y, n_permutations=49, seed=0)
    assert p == pytest.approx(0.02)  # nothing in the null beats a strong relation: (1 + 0) / 50
    Z = np.random.default_rng(2).standard_normal(Y.shape)
    p0 = permutation_test(name, X, Z, n_permutations=49, seed=0)
    assert 0.05 < p0 <= 1.0
    assert permutation_test(name, X, Z, n_permutations=49, seed=0) == p0  # seeded


@pytest.mark.parametrize("name", [n for n, m in MEASURES.items() if m.uses_knn])
def test_relabelled_neighbours_equal_recomputed(name, related):
    X, Y = related
    perm = torch.as_tensor(np.random.default_rng(3).permutation(len(X)))
    pair = make_pair(torch.from_numpy(X), torch.from_numpy(Y))
    MEASURES[name].fn(pair, k=5)  # fills the neighbour cache
    relabelled = MEASURES[name].fn(pair.permuted(perm), k=5)
    assert relabelled == pytest.approx(compute(name, X, Y[perm.numpy()], k=5), abs=1e-9)


def test_permutation_null_of_unbiased_cka_centred_at_zero():
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((200, 5)), rng.standard_normal((200, 5))
    pair = make_pair(torch.from_numpy(X), torch.from_numpy(Y))
    vals = [MEASURES["unbiased_cka"].fn(pair.permuted(torch.as_tensor(rng.permutation(200)))) for _ in range(80)]
    assert abs(np.mean(vals)) < 3 * np.std(vals) / np.sqrt(80)


def test_bootstrap_ci_contains_estimate_and_is_seeded(related):
    X, Y = related
    for name in ["cka", "unbiased_cka", "mutual_knn", "cknna", "rsa"]:
        lo, hi = bootstrap_ci(name, X, Y, n_boot=40, level=0.9, seed=1)
        assert lo < hi, name
        assert lo - 0.05 <= compute(name, X, Y) <= hi + 0.05, name
        assert bootstrap_ci(name, X, Y, n_boot=40, level=0.9, seed=1) == (lo, hi)


def test_bootstrap_copies_are_not_neighbours():
    X = np.random.default_rng(5).standard_normal((30, 4))
    idx = np.array([0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 2)
    g = torch.as_tensor(idx)
    pair = make_pair(torch.from_numpy(X[idx]), torch.from_numpy(X[idx]), groups=g)
    from reprsim.metrics._blocks import neighbours

    nb, _ = neighbours(pair, pair.x, 3)
    assert not (g[nb] == g[:, None]).any()
    # with copies excluded, the unbiased HSIC ignores copy pairs: X vs X is still exactly 1
    assert MEASURES["unbiased_cka"].fn(pair) == pytest.approx(1.0, abs=1e-12)


def test_unbiased_hsic_copy_exclusion_matches_gram_path():
    from reprsim.metrics.cka import _hsic_u_feature, hsic_unbiased_gram

    rng = np.random.default_rng(6)
    base = rng.standard_normal((25, 3))
    idx = rng.integers(0, 25, 25)
    X = torch.from_numpy(base[idx])
    Y = torch.from_numpy((base @ rng.standard_normal((3, 4)) + rng.standard_normal((25, 4)))[idx])
    g = torch.as_tensor(idx)
    pair = make_pair(X, Y, groups=g)
    feat = _hsic_u_feature(pair.x, pair.y, pair.cross_c, pair.multiplicity())
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    gram = hsic_unbiased_gram(Xc @ Xc.T, Yc @ Yc.T, exclude=g[:, None] == g[None, :])
    assert feat == pytest.approx(gram, rel=1e-9)


def test_compare_layers_table(related):
    X, Y = related
    a = {"l1": X, "l2": X[:, :3]}
    b = {"m1": Y, "m2": X, "m3": torch.from_numpy(Y).float()}
    t = compare_layers(a, b, "mutual_knn", k=5)
    assert isinstance(t, pd.DataFrame) and t.shape == (2, 3)
    assert list(t.index) == ["l1", "l2"] and list(t.columns) == ["m1", "m2", "m3"]
    assert t.loc["l1", "m2"] == 1.0
    assert t.loc["l2", "m1"] == pytest.approx(compute("mutual_knn", X[:, :3], Y, k=5))
    with pytest.raises(ValueError, match="same number of rows"):
        compare_layers({"a": X}, {"b": Y[:10]}, "cka")


def test_streaming_cka_equals_cka():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((1000, 20)) + 500.0
    Y = X @ rng.standard_normal((20, 12)) + rng.standard_normal((1000, 12))
    s = StreamingCKA()
    for start in range(0, 1000, 137):
        s.update(X[start : start + 137].astype(np.float32), Y[start : start + 137].astype(np.float32))
    assert s.n == 1000
    assert s.value() == pytest.approx(
        compute("cka", X.astype(np.float32).astype(np.float64), Y.astype(np.float32).astype(np.float64)), abs=1e-10
    )
    with pytest.raises(ValueError, match="same two layers"):
        s.update(X[:5, :3], Y[:5])
    with pytest.raises(ValueError, match="at least 2 rows"):
        StreamingCKA().value()


def test_prepare_matches_paper_definition():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((50, 7)) * 3
    flat = np.sort(np.abs(X).ravel())
    tau = flat[int(np.floor(0.95 * flat.size))]
    expected = np.clip(X, -tau, tau)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(prepare(X, clip_quantile=0.95), expected, atol=1e-12)
    assert np.allclose(np.linalg.norm(prepare(X), axis=1), 1.0)
    assert np.array_equal(prepare(X, normalize=None, clip_quantile=None), X)
    assert isinstance(prepare(torch.from_numpy(X)), torch.Tensor)
    with pytest.warns(PrepareWarning, match="3 all-zero row"):  # kept as zero rows (documented)
        assert np.array_equal(prepare(np.zeros((3, 2))), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="normalize must be"):
        prepare(X, normalize="l1")


def test_cli_formats_and_errors(tmp_path, related, capsys):
    X, Y = related
    np.save(tmp_path / "a.npy", X)
    np.savez(tmp_path / "b.npz", feats=Y)
    torch.save(torch.from_numpy(Y), tmp_path / "b.pt")
    from safetensors.torch import save_file

    save_file({"f": torch.from_numpy(Y).contiguous()}, str(tmp_path / "b.safetensors"))
    for b in ["b.npz", "b.pt", "b.safetensors"]:
        assert (
            main(
                [
                    "compare",
                    str(tmp_path / "a.npy"),
                    str(tmp_path / b),
                    "-m",
                    "cka",
                    "--prepare",
                    "none",
                    "--format",
                    "json",
                ]
            )
            == 0
        )
        out = json.loads(capsys.readouterr().out)
        assert out["cka"] == pytest.approx(compute("cka", X, Y))
    assert (
        main(
            [
                "compare",
                str(tmp_path / "a.npy"),
                str(tmp_path / "b.npz"),
                "-m",
                "mutual_knn",
                "--k",
                "5",
                "--prepare",
                "l2",
                "--clip-quantile",
                "0.95",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "measure,value"
    expected = compute("mutual_knn", prepare(X, clip_quantile=0.95), prepare(Y, clip_quantile=0.95), k=5)
    assert float(lines[1].split(",")[1]) == pytest.approx(expected)
    np.save(tmp_path / "short.npy", Y[:10])
    assert main(["compare", str(tmp_path / "a.npy"), str(tmp_path / "short.npy")]) == 2
    err = capsys.readouterr().err
    assert "same number of rows" in err and len(err.strip().splitlines()) == 1
    np.savez(tmp_path / "two.npz", a=X, b=X[:, ::-1])  # a feature set: one matrix per layer → a 1 × 2 table
    assert (
        main(
            [
                "compare",
                str(tmp_path / "a.npy"),
                str(tmp_path / "two.npz"),
                "-m",
                "cka",
                "--prepare",
                "none",
                "--format",
                "json",
            ]
        )
        == 0
    )
    records = json.loads(capsys.readouterr().out)
    assert [(r["layer_a"], r["layer_b"]) for r in records] == [("features", "a"), ("features", "b")]
    assert records[0]["value"] == pytest.approx(compute("cka", X, X), abs=1e-6)


def test_cli_table_default_all_measures(tmp_path, related, capsys):
    X, Y = related
    np.save(tmp_path / "a.npy", X)
    np.save(tmp_path / "b.npy", Y)
    assert main(["compare", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--prepare", "none"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [r.split()[0] for r in rows] == list(MEASURES)
    ref = compute_all(X, Y)
    assert float(rows[0].split()[1]) == pytest.approx(ref["cka"], abs=1e-6)
