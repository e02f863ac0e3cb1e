"""Work a layer keeps for every pair it enters (issue 23): reusing it changes no value, bit for bit.

Each check computes a measure on a pair whose X (or Y) side has already served another pair — so the
side's cached ridge factorisations, RBF kernel or neighbour lists are reused — and compares it with
the value on fresh sides (``==``, not a tolerance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprsim import metrics
from reprsim.metrics._pair import Side, SidePair
from reprsim.metrics.calibrate import calibrate_engine
from reprsim.metrics.engine import SimilarityEngine
from reprsim.metrics.registry import MEASURES, call_measure, resolve_params


def _layers(dtype=np.float32, n=120):
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(n, 6))
    x = (Z @ rng.normal(size=(6, 40)) + rng.normal(size=(n, 40))).astype(dtype)
    y1 = (Z @ rng.normal(size=(6, 30)) + rng.normal(size=(n, 30))).astype(dtype)
    y2 = np.tanh(Z @ rng.normal(size=(6, 25))).astype(dtype)
    return x, y1, y2


def _value(name: str, x: Side, y: Side) -> float:
    m = MEASURES[name]
    return call_measure(m, SidePair(x, y), resolve_params(m, x.n, {"k": 5} if "k" in m.params else {}))


@pytest.mark.parametrize("name", ["linear_regression", "rbf_cka", "cknna", "svcca", "pwcca"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_side_reused_across_pairs_gives_the_fresh_value_exactly(name, dtype):
    x, y1, y2 = (torch.as_tensor(a) for a in _layers(dtype))
    shared = Side(x)
    _value("mutual_knn", shared, Side(y1))  # the side's neighbour lists: later passes need no tiles for them
    _value(name, shared, Side(y1))  # fills the side's caches
    # the fresh value by compute_all, whose one pass also searches neighbours (so rbf_cka takes the tiles)
    fresh = metrics.compute_all(x.numpy(), y2.numpy(), names=[name, "mutual_knn"], k=5)[name]
    assert _value(name, shared, Side(y2)) == fresh
    if name == "linear_regression":
        assert shared.reuse, "the ridge folds are kept on the predictor's side"
    if name == "rbf_cka" and dtype == np.float32:
        assert any(key[0] == "rbf_kernel" for key in shared.reuse)


def test_a_permuted_side_gathers_its_rows_only_when_asked_and_keeps_the_invariants():
    x, _, _ = _layers()
    side = Side(torch.as_tensor(x))
    _ = side.centred, side.eig
    perm = torch.as_tensor(np.random.default_rng(0).permutation(len(x)))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(x))
    p = side.permuted(perm, inv)
    assert p._F is None and p.n == side.n and p.d == side.d and p.dtype == side.dtype
    assert p.eig is side.eig  # permutation-invariant caches are shared
    assert torch.equal(p.centred, side.centred[perm]) and p._F is None  # the centred copy does not need F
    assert torch.equal(p.F, torch.as_tensor(x)[perm])


def test_restricted_engine_shares_the_layers_and_calibrates_as_a_fresh_engine():
    x, y1, y2 = _layers(n=80)
    A, B = {"x": x}, {"y1": y1, "y2": y2}
    full = SimilarityEngine(A, B, list(metrics.MEASURES), {"k": 5}, progress=False)
    full.compute()
    sub = full.restricted(["cka", "cknna"])
    assert sub.sa is full.sa and sub.sb is full.sb and set(k[2] for k in sub.values) == {"cka", "cknna"}
    fresh = SimilarityEngine(A, B, ["cka", "cknna"], {"k": 5}, progress=False)
    got = calibrate_engine(sub, 12, seed=3, best="max")
    want = calibrate_engine(fresh, 12, seed=3, best="max")
    assert got.keys() == want.keys()
    for key in want:
        for col in ("value", "null_mean", "tau", "calibrated", "p_value"):
            assert got[key][col] == pytest.approx(want[key][col], abs=1e-12), (key, col)
    # restricted before anything is computed: its layers' shared work (here rsa's ranks) is built on demand
    early = SimilarityEngine(A, B, list(metrics.MEASURES), {"k": 5}, progress=False).restricted(["cka"])
    assert early.compute() == {key: v for key, v in full.values.items() if key[2] == "cka"}
    with pytest.raises(ValueError, match="not among"):
        full.restricted(["cka", "no_such_measure"])
