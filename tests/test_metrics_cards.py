"""Measure cards: every declared invariance holds on random inputs, every undeclared one fails on at
least one input; declared symmetry, kind (similarity / distance) and range are checked likewise."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from reprsim import metrics
from reprsim.cli import main
from reprsim.metrics.registry import INVARIANCES

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NAMES = list(metrics.MEASURES)
PARAMS = {"k": 5}


def _orth(rng: np.random.Generator, d: int) -> np.ndarray:
    return np.linalg.qr(rng.normal(size=(d, d)))[0]


TRANSFORMS = {
    "orthogonal_transform": lambda rng, A: A @ _orth(rng, A.shape[1]),
    "isotropic_scaling": lambda rng, A: A * rng.uniform(0.2, 5.0),
    "translation": lambda rng, A: A + 3.0 * rng.normal(size=A.shape[1]),
    "invertible_linear_transform": lambda rng, A: (
        A @ (_orth(rng, A.shape[1]) @ np.diag(rng.uniform(0.3, 3.0, A.shape[1])) @ _orth(rng, A.shape[1]))
    ),
    "feature_permutation": lambda rng, A: A[:, rng.permutation(A.shape[1])],
}


def _inputs(trial: int) -> tuple[np.ndarray, np.ndarray]:
    """Related X (40, 6), Y (40, 5 or 6), some with offsets and non-negative features."""
    rng = np.random.default_rng(trial)
    X = rng.normal(size=(40, 6))
    Y = X @ rng.normal(size=(6, 6 if trial % 2 else 5)) + rng.normal(size=(40, 6 if trial % 2 else 5))
    if trial % 3 == 1:
        X, Y = X + rng.normal(size=6), np.abs(Y)
    return X, Y


def _all(X: np.ndarray, Y: np.ndarray) -> dict[str, float]:
    # module fixtures run before the function-scoped one_torch_thread: pin one thread here
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return metrics.compute_all(X, Y, **PARAMS)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def changes() -> dict[tuple[str, str], list[float]]:
    """|Δ value| of every measure under every transform, over 6 inputs × both sides."""
    out: dict[tuple[str, str], list[float]] = {(n, t): [] for n in NAMES for t in INVARIANCES}
    for trial in range(6):
        X, Y = _inputs(trial)
        base = _all(X, Y)
        variants = []
        for t, f in TRANSFORMS.items():
            variants += [
                (t, f(np.random.default_rng(50 + trial), X), Y),
                (t, X, f(np.random.default_rng(70 + trial), Y)),
            ]
        p = np.random.default_rng(90 + trial).permutation(len(X))
        variants.append(("sample_permutation", X[p], Y[p]))
        for t, Xt, Yt in variants:
            got = _all(Xt, Yt)
            for n in NAMES:
                out[(n, t)].append(abs(got[n] - base[n]))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_declared_invariances_hold_and_undeclared_ones_fail(name, changes):
    m = metrics.MEASURES[name]
    assert set(m.invariances) <= set(INVARIANCES)
    for t in INVARIANCES:
        worst = max(changes[(name, t)])
        if t in m.invariances:
            assert worst < 1e-8, f"{name} declares invariance to {t} but changed by {worst:.2e}"
        else:
            assert worst > 1e-6, f"{name} does not declare {t}, yet no input changed it (max {worst:.2e})"


@pytest.fixture(scope="module")
def orders() -> list[tuple[dict[str, float], dict[str, float], dict[str, float]]]:
    """(m(X, Y), m(Y, X), m(X, X)) of every measure on the 6 inputs."""
    return [(_all(X, Y), _all(Y, X), _all(X, X)) for X, Y in map(_inputs, range(6))]


@pytest.mark.parametrize("name", NAMES)
def test_declared_symmetry_kind_and_range(name, orders):
    m = metrics.MEASURES[name]
    asym, lo, hi = [], *m.value_range
    for vxy, vyx, vxx in orders:
        xy, yx, xx = vxy[name], vyx[name], vxx[name]
        asym.append(abs(xy - yx))
        assert lo - 1e-12 <= xy <= hi + 1e-12 and lo - 1e-12 <= xx <= hi + 1e-12
        if m.kind == "similarity":
            assert xx >= xy - 1e-12  # identical inputs are at least as similar
        else:
            assert m.kind == "distance" and xx <= xy + 1e-12 and xx == pytest.approx(0.0, abs=1e-6)
    if m.symmetric:
        assert max(asym) < 1e-9
    else:
        assert max(asym) > 1e-6, f"{name} is declared not symmetric, yet m(X, Y) = m(Y, X) on every input"
    assert m.bounded == bool(np.isfinite(lo) and np.isfinite(hi))


def test_describe_and_the_cli_print_the_cards(capsys):
    cards = metrics.describe()
    assert [c["name"] for c in cards] == NAMES
    cka = next(c for c in cards if c["name"] == "cka")
    assert "invertible_linear_transform" in cka["not_invariant_to"] and "orthogonal_transform" in cka["invariant_to"]
    assert main(["measures", "cka", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == metrics.describe(["cka"])
    assert main(["measures", "mutual_knn"]) == 0
    out = capsys.readouterr().out
    assert "mutual_knn  (similarity" in out and "not invariant to: translation, invertible_linear_transform" in out
    with pytest.raises(ValueError, match="unknown measure 'nope'"):
        metrics.describe(["nope"])
