"""Behavioural similarity on small tables computed by hand (error consistency, κ, CAPA, JS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reprsim.metrics.behavioural import behavioural, check_output_layer


def _onehot(cls: list[int], C: int, peak: float = 1.0) -> np.ndarray:
    P = np.full((len(cls), C), (1.0 - peak) / (C - 1))
    P[np.arange(len(cls)), cls] = peak
    return P


def _error_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10 inputs, label 0: both right 4, only A right 2, only B right 1, both wrong 3."""
    a = [0] * 4 + [0] * 2 + [1] * 1 + [2] * 3
    b = [0] * 4 + [2] * 2 + [0] * 1 + [1] * 3
    return _onehot(a, 3, 0.7), _onehot(b, 3, 0.6), np.zeros(10, dtype=int)


def test_error_consistency_on_a_2x2_table_by_hand():
    pa, pb, y = _error_table()
    # c_obs = (4 + 3)/10; p_a = 0.6, p_b = 0.5; c_exp = 0.3 + 0.2 = 0.5; κ = (0.7 − 0.5)/0.5 = 0.4
    assert behavioural("error_consistency", pa, pb, y, n_boot=0)["value"] == pytest.approx(0.4)
    # agreement of the argmax: both right (4) + the both-wrong rows that pick the same class (0 here)
    assert behavioural("agreement", pa, pb, n_boot=0)["value"] == pytest.approx(0.4)


def test_cohen_kappa_on_a_2x2_table_by_hand():
    # (A, B) predictions: (0,0)×3, (0,1)×1, (1,0)×2, (1,1)×4
    a = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    b = [0, 0, 0, 1, 0, 0, 1, 1, 1, 1]
    # p_o = 0.7; f_a = (0.4, 0.6), f_b = (0.5, 0.5): p_e = 0.5; κ = 0.4
    got = behavioural("cohen_kappa", _onehot(a, 2, 0.9), _onehot(b, 2, 0.8), n_boot=0)
    assert got["value"] == pytest.approx(0.4)
    assert behavioural("cohen_kappa", _onehot(a, 2), _onehot(a, 2), n_boot=0)["value"] == pytest.approx(1.0)


def test_capa_on_a_two_model_toy_by_hand():
    pa = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    pb = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]])
    y = np.array([0, 1])
    observed = (0.6 * 0.5 + 0.3 * 0.25 + 0.1 * 0.25 + 0.2 * 0.1 + 0.5 * 0.8 + 0.3 * 0.1) / 2  # 0.425
    pa_hat, pb_hat = (0.6 + 0.5) / 2, (0.5 + 0.8) / 2
    expected = pa_hat * pb_hat + (1 / 2) * (1 - pa_hat) * (1 - pb_hat)  # C = 3: 1/(C − 1) = 1/2
    want = (observed - expected) / (1 - expected)
    assert want == pytest.approx(-0.019955654, abs=1e-8)
    assert behavioural("capa", pa, pb, y, n_boot=0)["value"] == pytest.approx(want)


def test_js_divergence_by_hand():
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    m = [0.75, 0.25]
    row1 = 0.5 * (0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])) + 0.5 * math.log(1 / m[0])
    row2 = math.log(2.0)  # disjoint supports
    assert behavioural("js_divergence", p, q, n_boot=0)["value"] == pytest.approx((row1 + row2) / 2)
    assert behavioural("js_divergence", p, p, n_boot=0)["value"] == pytest.approx(0.0, abs=1e-15)


def test_bootstrap_interval_matches_a_resampling_loop_written_here():
    rng = np.random.default_rng(4)
    n = 60
    y = rng.integers(0, 3, n)
    ca = rng.random(n) < 0.7
    cb = np.where(rng.random(n) < 0.6, ca, ~ca)
    pa = _onehot(list(np.where(ca, y, (y + 1) % 3)), 3, 0.8)
    pb = _onehot(list(np.where(cb, y, (y + 2) % 3)), 3, 0.9)
    got = behavioural("error_consistency", pa, pb, y, n_boot=200, seed=np.random.default_rng(9))
    g = np.random.default_rng(9)
    reps = []
    for _ in range(200):
        i = g.integers(0, n, n)
        a, b = ca[i].mean(), cb[i].mean()
        ce = a * b + (1 - a) * (1 - b)
        reps.append(((ca[i] == cb[i]).mean() - ce) / (1 - ce))
    lo, hi = np.quantile(reps, [0.025, 0.975])
    assert (got["ci_low"], got["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert got["ci_low"] < got["value"] < got["ci_high"]
    assert (
        behavioural("capa", pa, pb, y, n_boot=50, seed=1)["ci_low"] < behavioural("capa", pa, pb, y, n_boot=0)["value"]
    )


@pytest.mark.parametrize(
    "name, a, b, labels, match",
    [
        ("error_consistency", np.eye(3), np.eye(3), np.array([0, 1]), "one class id per input: 3 inputs"),
        ("capa", np.eye(3), np.eye(3), None, "capa needs labels"),
        ("agreement", np.eye(3) * 0.5, np.eye(3), None, "row 0 sums to 0.5"),
        ("agreement", np.array([[1.2, -0.2], [0.5, 0.5]]), np.eye(2), None, "negative entry"),
        ("agreement", np.eye(3), np.eye(2), None, "same shape"),
        ("kappa", np.eye(3), np.eye(3), None, "unknown behavioural measure"),
        ("error_consistency", np.eye(3), np.eye(3), np.array([0, 1, 5]), r"class ids in \[0, 3\)"),
    ],
)
def test_bad_input_is_one_clear_error(name, a, b, labels, match):
    with pytest.raises(ValueError, match=match):
        behavioural(name, a, b, labels, n_boot=0)


def test_undefined_kappa_and_non_output_layer():
    P = _onehot([0, 1, 2], 3)
    with pytest.raises(ValueError, match="expected agreement is 1"):
        behavioural("error_consistency", P, P, np.array([0, 1, 2]), n_boot=0)  # both always right
    with pytest.raises(ValueError, match="layer 'output' only; got layer 'fc1'"):
        check_output_layer("fc1")
    check_output_layer("output")
