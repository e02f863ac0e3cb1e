"""Behavioural result rows (experiments/behaviour_rows.py) against values computed by hand."""

import math

import numpy as np
import pytest

from reprsim.metrics.behaviour_rows import behaviour_rows, shared_space_probs
from reprsim.results import BEHAVIOUR_INTERVAL_COLUMNS

# Four inputs, three classes, true labels y = [0, 1, 2, 0].
Y = np.array([0, 1, 2, 0])
PA = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2]])  # argmax 0 1 2 1
PB = np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.6, 0.2, 0.2], [0.8, 0.1, 0.1]])  # argmax 0 1 0 0

# agreement: argmax equal on inputs 0 and 1 of 4 -> 1/2.
# Cohen's kappa: prediction frequencies f_a = (1/4, 2/4, 1/4), f_b = (3/4, 1/4, 0);
#   p_e = 3/16 + 2/16 + 0 = 5/16; kappa = (1/2 - 5/16) / (1 - 5/16) = (3/16) / (11/16) = 3/11.
# error consistency: A right on 0,1,2 (acc 3/4), B right on 0,1,3 (acc 3/4); both right or both
#   wrong on inputs 0 and 1 -> c_obs = 1/2; c_exp = 9/16 + 1/16 = 5/8;
#   kappa = (1/2 - 5/8) / (3/8) = -1/3.
# CAPA: sum_c p_a p_b per input = .52, .52, .24, .24 -> observed .38; mean true-class probability
#   p_a = (.8 + .8 + .8 + .2)/4 = .65, p_b = (.6 + .6 + .2 + .8)/4 = .55;
#   expected = .65 * .55 + (1/(3-1)) * .35 * .45 = .3575 + .07875 = .43625;
#   kappa_p = (.38 - .43625) / (1 - .43625) = -.05625 / .56375.
HAND = {"agreement": 0.5, "cohen_kappa": 3 / 11, "error_consistency": -1 / 3, "capa": -0.05625 / 0.56375}


def _by_measure(rows):
    return {r["measure"]: r for r in rows}


def test_hand_values_and_row_contract():
    rows = _by_measure(behaviour_rows(PA, PB, Y, seed=0, n_boot=50))
    assert list(rows) == ["agreement", "cohen_kappa", "error_consistency", "capa", "js_divergence"]
    for name, want in HAND.items():
        assert rows[name]["value"] == pytest.approx(want, abs=1e-12), name
    for r in rows.values():
        assert r["layer_a"] == r["layer_b"] == "output"
        assert math.isnan(r["p_value"])
        assert set(BEHAVIOUR_INTERVAL_COLUMNS) <= set(r)
    for name in ("agreement", "cohen_kappa", "js_divergence"):  # no interval: NaN, 0 resamples
        assert math.isnan(rows[name]["value_ci_low"]) and rows[name]["ci_n_boot"] == 0
    for name in ("error_consistency", "capa"):
        assert rows[name]["ci_n_boot"] == 50
        assert rows[name]["value_ci_low"] <= rows[name]["value_ci_high"]


def test_js_divergence_by_hand():
    # disjoint one-hot outputs: m = (1/2, 1/2), JS = 1/2 ln 2 + 1/2 ln 2 = ln 2; identical outputs: 0
    a = np.array([[1.0, 0.0], [0.5, 0.5]])
    b = np.array([[0.0, 1.0], [0.5, 0.5]])
    rows = _by_measure(behaviour_rows(a, b, seed=0))
    assert rows["js_divergence"]["value"] == pytest.approx(math.log(2) / 2)


def test_without_labels_only_label_free_measures():
    rows = behaviour_rows(PA, PB, seed=0)
    assert [r["measure"] for r in rows] == ["agreement", "cohen_kappa", "js_divergence"]
    with pytest.raises(ValueError, match="need labels"):
        behaviour_rows(PA, PB, seed=0, measures=["capa"])


def test_bootstrap_seeded_from_the_unit_seed():
    rng = np.random.default_rng(3)
    n, c = 200, 4
    y = rng.integers(0, c, n)
    pa = rng.dirichlet(np.ones(c), n)
    pb = 0.5 * pa + 0.5 * rng.dirichlet(np.ones(c), n)
    one = _by_measure(behaviour_rows(pa, pb, y, seed=7, n_boot=200))
    again = _by_measure(behaviour_rows(pa, pb, y, seed=7, n_boot=200))
    other = _by_measure(behaviour_rows(pa, pb, y, seed=8, n_boot=200))
    for name in ("error_consistency", "capa"):
        r = one[name]
        assert r["value_ci_low"] < r["value"] < r["value_ci_high"]
        assert (r["value_ci_low"], r["value_ci_high"]) == (again[name]["value_ci_low"], again[name]["value_ci_high"])
        assert r["value_ci_low"] != other[name]["value_ci_low"]


def test_undefined_kappa_is_nan_with_a_warning():
    # both models always right: expected agreement of errors is 1, kappa = 0/0
    p = np.eye(3)
    with pytest.warns(UserWarning) as caught:
        rows = _by_measure(behaviour_rows(p, p, np.arange(3), seed=0, n_boot=0))
    said = " ".join(str(w.message) for w in caught)
    assert "error_consistency" in said and "capa" in said
    assert math.isnan(rows["error_consistency"]["value"]) and math.isnan(rows["capa"]["value"])
    assert rows["agreement"]["value"] == 1.0


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(probs_a=PA * 2), "sums to"),
        (dict(probs_a=PA - 0.15), "negative"),
        (dict(labels=Y[:3]), "one class id per input"),
        (dict(n_boot=1), "n_boot"),
    ],
)
def test_bad_input_one_clear_error(bad, match):
    args = dict(probs_a=PA, probs_b=PB, labels=Y, n_boot=10) | bad
    with pytest.raises(ValueError, match=match):
        behaviour_rows(args.pop("probs_a"), args.pop("probs_b"), args.pop("labels"), seed=0, **args)


def test_shared_space_union_of_class_ids():
    # A knows classes {0, 1}, B knows {1, 2}; softmax of A's logits (0, 0) = (.5, .5) on classes 0, 1;
    # softmax of B's (ln 3, 0) = (.75, .25) on classes 1, 2; the union is (0, 1, 2).
    pa, pb, y, classes = shared_space_probs([[0.0, 0.0]], [0, 1], [[math.log(3), 0.0]], [1, 2], labels=[2])
    assert classes.tolist() == [0, 1, 2]
    np.testing.assert_allclose(pa, [[0.5, 0.5, 0.0]])
    np.testing.assert_allclose(pb, [[0.0, 0.75, 0.25]])
    assert y.tolist() == [2]
    # column order of a model's logits follows its class ids, not their sort order
    pa2, _, _, _ = shared_space_probs([[math.log(3), 0.0]], [1, 0], [[0.0]], [5])
    np.testing.assert_allclose(pa2, [[0.25, 0.75, 0.0]])


def test_shared_space_bad_input():
    with pytest.raises(ValueError, match="classes of neither model"):
        shared_space_probs([[0.0, 0.0]], [0, 1], [[0.0, 0.0]], [1, 2], labels=[7])
    with pytest.raises(ValueError, match="one class id per logit column"):
        shared_space_probs([[0.0, 0.0]], [0], [[0.0, 0.0]], [1, 2])
    with pytest.raises(ValueError, match="more than once"):
        shared_space_probs([[0.0, 0.0]], [1, 1], [[0.0, 0.0]], [1, 2])
    with pytest.raises(ValueError, match="same inputs"):
        shared_space_probs([[0.0, 0.0]], [0, 1], [[0.0, 0.0]] * 2, [1, 2])
