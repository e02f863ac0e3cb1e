"""The sweep's behavioural stage (reprsim.experiments.behaviour) and the calibrate_names option."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from reprsim.experiments.behaviour import behaviour_stage_rows, label_spaces, logits
from reprsim.experiments.config import MeasureSpec
from reprsim.experiments.similarity import similarity_rows


def _linear(weight: list[list[float]]) -> nn.Module:
    layer = nn.Linear(len(weight[0]), len(weight), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
    return layer.eval()


def _unit(a_classes, b_classes, kind="task", class_outputs=True):
    family = SimpleNamespace(class_outputs=class_outputs)
    split = SimpleNamespace(kind=kind, a_classes=a_classes, b_classes=b_classes)
    return SimpleNamespace(family=family), SimpleNamespace(split=split)


# Inputs are one-hot rows e_0..e_3; a linear model's logits on e_i are column i of its weight,
# so each model's prediction per input can be read off the weights.
INPUTS = np.eye(4, dtype=np.float32)
# A knows classes (5, 7): predicts 5, 5, 7, 7.   B knows (5, 7) too: predicts 5, 7, 7, 5.
A_W = [[4.0, 4.0, 0.0, 0.0], [0.0, 0.0, 4.0, 4.0]]
B_W = [[4.0, 0.0, 0.0, 4.0], [0.0, 4.0, 4.0, 0.0]]


class _Probe(SimpleNamespace):
    def __len__(self):
        return len(self.inputs)


def test_logits_are_the_models_outputs():
    np.testing.assert_allclose(logits(_linear(A_W), INPUTS), np.array(A_W).T)


def test_rows_by_hand_on_a_shared_label_space():
    kind, pair = _unit([5, 7], [5, 7], kind="data")
    trained = {"a": SimpleNamespace(model=_linear(A_W)), "b": SimpleNamespace(model=_linear(B_W))}
    labels = np.array([5, 7, 7, 7])
    probe = _Probe(name="test", role="id", inputs=INPUTS, n_classes=2, labels=labels)
    spec = MeasureSpec(names=["cka"], params={}, behavioural="all")
    rows = {r["measure"]: r for r in behaviour_stage_rows(spec, kind, pair, trained, [probe], seed=0)}
    assert set(rows) == {"agreement", "cohen_kappa", "error_consistency", "capa", "js_divergence"}
    # predictions A = 5, 5, 7, 7 and B = 5, 7, 7, 5 agree on inputs 0 and 2
    assert rows["agreement"]["value"] == pytest.approx(0.5, abs=1e-6)
    # correct: A = T, F, T, T; B = T, T, T, F -> same correctness on inputs 0, 2: c_obs = 1/2;
    # p_a = p_b = 3/4 -> c_exp = 9/16 + 1/16 = 5/8 -> kappa = (1/2 - 5/8) / (1 - 5/8) = -1/3
    assert rows["error_consistency"]["value"] == pytest.approx(-1 / 3, abs=1e-6)
    assert rows["agreement"]["layer_a"] == rows["agreement"]["layer_b"] == "output"
    assert rows["agreement"]["probe_set"] == "test" and rows["agreement"]["n_probe"] == 4


def test_labelled_measures_only_where_both_models_know_every_class():
    kind, pair = _unit([5, 7], [7, 9])  # task split: A knows 5, 7; B knows 7, 9
    trained = {"a": SimpleNamespace(model=_linear(A_W)), "b": SimpleNamespace(model=_linear(B_W))}
    mixed = _Probe(name="test", role="id", inputs=INPUTS, n_classes=2, labels=np.array([5, 7, 7, 9]))
    common = _Probe(name="common", role="id", inputs=INPUTS, n_classes=1, labels=np.array([7, 7, 7, 7]))
    spec = MeasureSpec(names=["cka"], params={}, behavioural="all")
    rows = behaviour_stage_rows(spec, kind, pair, trained, [mixed, common], seed=0)
    by_set = {s: {r["measure"] for r in rows if r["probe_set"] == s} for s in ("test", "common")}
    assert by_set["test"] == {"agreement", "cohen_kappa", "js_divergence"}
    assert "error_consistency" in by_set["common"] and "capa" in by_set["common"]
    # in the union (5, 7, 9): A predicts 5, 5, 7, 7; B (columns 7, 9) predicts 7, 9, 9, 7: agree on input 3 only
    agreement = next(r["value"] for r in rows if r["probe_set"] == "test" and r["measure"] == "agreement")
    assert agreement == pytest.approx(0.25, abs=1e-6)


def test_no_rows_when_off_or_without_a_label_space():
    trained = {"a": SimpleNamespace(model=_linear(A_W)), "b": SimpleNamespace(model=_linear(B_W))}
    probe = _Probe(name="test", role="id", inputs=INPUTS, n_classes=2, labels=None)
    kind, pair = _unit([5, 7], [5, 7])
    assert behaviour_stage_rows(MeasureSpec(names=["cka"], params={}), kind, pair, trained, [probe], 0) == []
    on = MeasureSpec(names=["cka"], params={}, behavioural=["agreement"])
    assert label_spaces(*_unit([5, 7], [5, 7], kind="attribute")) is None
    assert label_spaces(*_unit([5, 7], [5, 7], class_outputs=False)) is None
    rows = behaviour_stage_rows(on, kind, pair, trained, [probe], 0)
    assert [r["measure"] for r in rows] == ["agreement"]


def test_measure_spec_options_are_checked_and_not_dumped_when_off():
    with pytest.raises(ValueError, match="calibrate_names"):
        MeasureSpec(calibrate=10, calibrate_names=["no_such_measure"])
    with pytest.raises(ValueError, match="behavioural"):
        MeasureSpec(behavioural=["cka"])
    dumped = MeasureSpec().model_dump()
    assert not {"calibrate", "calibrate_names", "behavioural"} & set(dumped)
    spec = MeasureSpec(names=["cka", "cknna", "mutual_knn"], calibrate=5, calibrate_names=["cknna", "cka"])
    assert spec.calibrated_names() == ["cka", "cknna"]
    assert MeasureSpec(behavioural="all").resolved_behavioural()[0] == "agreement"


def test_calibrate_names_restricts_columns_and_keeps_values():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8)).astype(np.float32)
    feats_a = {"h": X, "p": np.tanh(X @ rng.standard_normal((8, 6)).astype(np.float32))}
    feats_b = {"h": X + 0.3 * rng.standard_normal((60, 8)).astype(np.float32), "p": rng.standard_normal((60, 5))}
    names = ["cka", "mutual_knn"]
    full = similarity_rows(MeasureSpec(names=names, params={"k": 5}, calibrate=20), feats_a, feats_b, ["h", "p"], 3)
    some = similarity_rows(
        MeasureSpec(names=names, params={"k": 5}, calibrate=20, calibrate_names=["cka"]),
        feats_a,
        feats_b,
        ["h", "p"],
        3,
    )
    key = lambda r: (r["layer_a"], r["layer_b"], r["measure"])  # noqa: E731
    full_by, some_by = {key(r): r for r in full}, {key(r): r for r in some}
    assert ("best", "best", "cka") in some_by and ("best", "best", "mutual_knn") not in some_by
    for k, row in some_by.items():
        assert row["value"] == full_by[k]["value"]
        if k[2] == "cka":  # the same permutations: identical calibration
            assert row["calibrated"] == full_by[k]["calibrated"] and row["tau"] == full_by[k]["tau"]
        else:
            assert np.isnan(row["calibrated"]) and np.isnan(row["null_mean"])
