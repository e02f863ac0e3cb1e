"""Bad input, parameter routing, ties and duplicate rows."""

import numpy as np
import pytest
import torch

from reprsim.metrics import MEASURES, compute, compute_all, nearest_neighbors
from tests._metrics_refs import knn_ref

ALL = list(MEASURES)


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    return rng.standard_normal((30, 4)), rng.standard_normal((30, 3))


@pytest.mark.parametrize("name", ALL)
def test_bad_input_messages(name, xy):
    X, Y = xy
    with pytest.raises(ValueError, match="same number of rows"):
        compute(name, X, Y[:-1])
    with pytest.raises(ValueError, match="Y must be 2-D.*reshape"):
        compute(name, X, Y[:, 0])
    with pytest.raises(ValueError, match="X must be 2-D.*3-D"):
        compute(name, X[:, :, None], Y)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="X contains 1 NaN or inf.*row 3, column 1"):
        compute(name, Xn, Y)
    Yi = Y.copy()
    Yi[0, 0] = np.inf
    with pytest.raises(ValueError, match="Y contains 1 NaN or inf"):
        compute(name, X, Yi)
    with pytest.raises(ValueError, match="does not take parameter.*bogus"):
        compute(name, X, Y, bogus=1)
    with pytest.raises(ValueError, match="at least|k must be"):
        compute(name, X[:2], Y[:2], **({"k": 2} if "k" in MEASURES[name].params else {}))


def test_unknown_measure_lists_valid_names(xy):
    with pytest.raises(ValueError, match="unknown measure 'ckaa'.*cka, unbiased_cka"):
        compute("ckaa", *xy)
    with pytest.raises(ValueError, match="unknown measure"):
        compute_all(*xy, names=["cka", "nope"])


def test_k_checks(xy):
    X, Y = xy
    with pytest.raises(ValueError, match="k must be between 1 and 29.*got 30"):
        compute("mutual_knn", X, Y, k=30)
    with pytest.raises(TypeError, match="k must be an integer"):
        compute("mutual_knn", X, Y, k=2.5)
    with pytest.raises(ValueError, match="needs at least 4 samples"):
        compute("unbiased_cka", X[:3], Y[:3])
    with pytest.raises(ValueError, match="sigma must be > 0"):
        compute("rbf_cka", X, Y, sigma=-1.0)
    with pytest.raises(ValueError, match="dim=9 exceeds"):
        compute("svcca", X, Y, dim=9)


def test_type_errors():
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        compute("cka", "abc", np.zeros((3, 2)))
    with pytest.raises(TypeError, match="complex"):
        compute("cka", np.ones((5, 2), complex), np.ones((5, 2)))


def test_compute_all_param_routing(xy):
    X, Y = xy
    got = compute_all(X, Y, names=["cka", "mutual_knn"], k=3)
    assert got["mutual_knn"] == compute("mutual_knn", X, Y, k=3)
    with pytest.raises(ValueError, match="sigma.*not taken by any selected measure"):
        compute_all(X, Y, names=["cka", "mutual_knn"], sigma=1.0)
    with pytest.raises(ValueError, match="on_error"):
        compute_all(X, Y, on_error="ignore")


def test_constant_features_give_clear_error_or_nan(xy):
    X, _ = xy
    C = np.ones((30, 3))
    with pytest.raises(ValueError, match="constant"):
        compute("cka", X, C)
    with pytest.warns(UserWarning):
        got = compute_all(X, C, on_error="nan")
    # every row of C is the same point: no measure is defined (issue 27: never 1.0 or rounding noise)
    assert all(np.isnan(value) for value in got.values()), got


@pytest.mark.parametrize("tile_bytes", [None, 9 * 9 * 8])
def test_ties_broken_by_smaller_index(tile_bytes, monkeypatch):
    import reprsim.metrics._blocks as blocks

    if tile_bytes:
        monkeypatch.setattr(blocks, "TILE_BYTES", tile_bytes)  # 9×9 tiles: merged candidates
    rng = np.random.default_rng(4)
    X = rng.integers(0, 2, (60, 3)).astype(np.float64)  # massive exact ties, beyond the top-k window
    X[0] = 0.0
    idx, vals = nearest_neighbors(X, 12)
    assert idx.tolist() == knn_ref(X, 12)
    assert (np.diff(vals, axis=1) <= 0).all()
    idx32, _ = nearest_neighbors(torch.from_numpy(X).float(), 12)
    assert idx32.tolist() == idx.tolist()


def test_duplicate_rows_self_excluded():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 6))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X[7] = X[3]
    X[20] = X[3]
    idx, _ = nearest_neighbors(X, 5)
    assert all(i not in row for i, row in enumerate(idx.tolist()))
    assert idx[3, :2].tolist() == [7, 20] and idx[7, :2].tolist() == [3, 20]
    assert compute("mutual_knn", X, X) == 1.0


def test_nan_result_never_silent():
    # a measure that is undefined raises (or gives NaN with a warning in compute_all), never NaN silently
    X = np.ones((10, 2))
    for name in ALL:
        try:
            v = compute(name, X, X)
        except ValueError:
            continue
        assert np.isfinite(v), name
