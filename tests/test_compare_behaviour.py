"""Behavioural measures in compare_models / compare_features: values against metrics.behavioural
on outputs computed independently, the layer 'output' rule, and the errors."""

import numpy as np
import pytest
import torch

from _compare_refs import random_images as _images
from _compare_refs import small_cnn as _cnn
from reprsim.compare import compare_features, compare_models
from reprsim.metrics.behavioural import behavioural

torch.set_num_threads(1)

BEH = ["agreement", "cohen_kappa", "error_consistency", "capa", "js_divergence"]


def _softmax(model, x):
    with torch.no_grad():
        return torch.softmax(model.eval()(torch.from_numpy(x)).double(), dim=1).numpy()


def test_compare_models_classifier_outputs_match_the_metric():
    a, b, x = _cnn(0), _cnn(1), _images(80)
    y = np.random.default_rng(0).integers(0, 4, 80)
    comp = compare_models(a, b, x, labels=y, layers=["penultimate", "output"], measures=["cka", *BEH], progress=False)
    assert comp.behavioural == BEH and comp.layer_measures == ["cka"]
    rows = comp.table[comp.table.measure.isin(BEH)]
    assert (rows.layer_a == "output").all() and (rows.layer_b == "output").all() and len(rows) == len(BEH)
    pa, pb = _softmax(a, x), _softmax(b, x)
    for name in BEH:
        want = behavioural(name, pa, pb, y, n_boot=0)["value"]
        assert rows.set_index("measure").loc[name, "value"] == pytest.approx(want, abs=1e-6), name
    ec = rows.set_index("measure").loc["error_consistency"]
    assert ec.ci_low <= ec.value <= ec.ci_high  # bootstrap over inputs even without n_boot
    assert len(comp.table[comp.table.measure == "cka"]) == 4  # the layer measure on every pair
    from reprsim.compare.html import render

    page = render(comp)
    assert "Behavioural similarity" in page and "error_consistency" in page
    with pytest.raises(ValueError, match="behavioural measure"):
        comp.best("agreement")


def test_causal_lm_next_token_distributions():
    from reprsim.models import GPT

    torch.manual_seed(0)
    a, b = GPT(11, 8, n_layer=1, n_head=2, n_embd=16), GPT(11, 8, n_layer=1, n_head=2, n_embd=16)
    ids = torch.randint(0, 11, (6, 8))
    comp = compare_models(a, b, ids, layers="output", measures=["agreement", "error_consistency"], progress=False)
    with torch.no_grad():  # every position predicts the next token: 6 windows × 7 positions
        za, zb = a.eval()(ids), b.eval()(ids)
        za, zb = za[0] if isinstance(za, tuple) else za, zb[0] if isinstance(zb, tuple) else zb
    pa = torch.softmax(za[:, :-1].reshape(-1, 11).double(), -1).numpy()
    pb = torch.softmax(zb[:, :-1].reshape(-1, 11).double(), -1).numpy()
    nxt = ids[:, 1:].reshape(-1).numpy()
    got = comp.table.set_index("measure")["value"]
    assert got["agreement"] == pytest.approx(behavioural("agreement", pa, pb)["value"])
    assert got["error_consistency"] == pytest.approx(behavioural("error_consistency", pa, pb, nxt)["value"])


def test_errors():
    a, x = _cnn(0), _images(20)
    with pytest.raises(ValueError, match="on the layer 'output' only; got layer 'penultimate'"):
        compare_models(a, a, x, labels=np.zeros(20, int), measures=["agreement"], progress=False)
    with pytest.raises(ValueError, match="need labels"):
        compare_models(a, a, x, layers="output", measures=["capa"], progress=False)
    logits = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="one class id per input"):
        compare_features(
            {"output": logits}, {"output": logits}, measures=["error_consistency"], labels=np.zeros(19, int)
        )
    with pytest.raises(ValueError, match="sums to"):
        compare_features(
            {"output": np.abs(logits)}, {"output": np.abs(logits)}, measures=["agreement"], outputs="probs"
        )
    with pytest.raises(ValueError, match="negative"):
        probs = np.full((20, 3), 0.5)
        probs[:, 2] = 0.0
        probs[0] = [1.2, -0.2, 0.0]
        compare_features({"output": probs}, {"output": probs}, measures=["agreement"], outputs="probs")
    with pytest.raises(ValueError, match="on the layer 'output' only"):
        compare_features({"h": logits}, {"h": logits}, measures=["agreement"])


def test_compare_features_behaviour_best_and_difference():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(60, 8))
    rot = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    out = rng.normal(size=(60, 3))
    fa, fb = {"h": h, "output": out}, {"h": h @ rot, "output": out + rng.normal(size=(60, 3))}
    y = rng.integers(0, 3, 60)
    comp = compare_features(fa, fb, measures=["cka", "agreement", "capa"], labels=y, prepare=None, progress=False)
    capa = comp.table.set_index("measure").loc["capa"]
    want = behavioural("capa", _np_softmax(out), _np_softmax(fb["output"]), y, n_boot=0)["value"]
    assert capa.value == pytest.approx(want)
    best = comp.best("cka", n_permutations=20)
    assert (best["layer_a"], best["layer_b"]) == ("h", "h") and best["n_pairs"] == 4
    assert best["value"] == pytest.approx(1.0)  # a rotated copy
    other = compare_features(
        fa, {"h": rng.normal(size=(60, 8)), "output": out}, measures=["cka"], prepare=None, progress=False
    )
    diff = comp.difference(other, n_boot=50)
    assert set(diff.measure) == {"cka"}  # behavioural measures have no paired layer difference
    row = diff[(diff.layer_a == "h") & (diff.layer_b == "h")].iloc[0]
    assert row.difference == pytest.approx(row.value - row.other_value) and row.difference > 0.5


def _np_softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_html_does_not_import_the_result_module():
    import ast
    import inspect

    import reprsim.compare.html as page

    tree = ast.parse(inspect.getsource(page))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "reprsim.compare.result" not in imported  # result.py imports html lazily; no cycle back


def test_markdown_lists_the_behavioural_rows():
    logits = np.random.default_rng(1).normal(size=(30, 3))
    comp = compare_features(
        {"h": logits, "output": logits}, {"h": logits, "output": logits}, measures=["cka", "agreement"], progress=False
    )
    md = comp.to_markdown()
    assert "## Behavioural similarity (layer 'output')" in md
    assert "| agreement | 1 |" in md  # the same outputs agree on every input
    assert md.count("| output | output |") == 1  # one row per layer pair in the measure table
