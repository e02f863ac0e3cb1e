"""compare_models on in-memory models: values against an independent path, layer tables,
statistics, attack transfer, the page and the errors."""

import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import reprsim
import reprsim.models as M
from _compare_refs import hooked as _hooked
from _compare_refs import random_images as _images
from _compare_refs import small_cnn as _cnn
from reprsim import metrics
from reprsim.compare import compare_models, similarity
from reprsim.errors import ReprsimError

torch.set_num_threads(1)


def test_same_model_gives_cka_one_on_the_diagonal_and_a_layer_by_layer_matrix():
    model = _cnn()
    comp = compare_models(
        model,
        model,
        _images(),
        layers=["block1", "block2", "penultimate"],
        measures=["cka", "unbiased_cka", "mutual_knn", "procrustes"],
    )
    assert list(comp.table.columns) == ["layer_a", "layer_b", "measure", "value"]
    assert len(comp.table) == 3 * 3 * 4
    mat = comp.matrix("cka")
    assert mat.shape == (3, 3)
    assert list(mat.index) == ["block1", "block2", "penultimate"] == list(mat.columns)
    np.testing.assert_allclose(np.diag(mat.to_numpy()), 1.0, atol=1e-6)
    np.testing.assert_allclose(mat.to_numpy(), mat.to_numpy().T, atol=1e-6)  # cka is symmetric
    assert (mat.to_numpy()[~np.eye(3, dtype=bool)] < 0.999).all()
    np.testing.assert_allclose(np.diag(comp.matrix("mutual_knn").to_numpy()), 1.0)
    assert "3×3 layers" in repr(comp)


def test_values_equal_metrics_compute_on_features_from_plain_hooks():
    a, b = _cnn(0), _cnn(1)
    x = _images(50)
    comp = compare_models(a, b, x, layers=["block2", "penultimate"], measures="all")
    fa, fb = _hooked(a, x, ["block2", "penultimate"]), _hooked(b, x, ["block2", "penultimate"])
    prep = {k: metrics.prepare(v, normalize="l2", clip_quantile=0.95) for k, v in fa.items()}
    prep_b = {k: metrics.prepare(v, normalize="l2", clip_quantile=0.95) for k, v in fb.items()}
    for la in prep:
        for lb in prep_b:
            for name in metrics.MEASURES:
                want = metrics.compute(name, prep[la], prep_b[lb])
                got = comp.matrix(name).loc[la, lb]
                assert got == pytest.approx(want, rel=1e-5, abs=1e-6), (name, la, lb)
    assert (comp.matrix("cka").to_numpy() < 0.999).all()  # two different models


def test_prepare_options_and_measure_selection():
    a, b = _cnn(0), _cnn(1)
    x = _images(40)
    raw = compare_models(a, b, x, layers="penultimate", measures=["cka", "rbf_cka"], prepare=None)
    fa, fb = _hooked(a, x, ["penultimate"])["penultimate"], _hooked(b, x, ["penultimate"])["penultimate"]
    assert raw.matrix("cka").iloc[0, 0] == pytest.approx(metrics.compute("cka", fa, fb), rel=1e-6)
    assert raw.matrix("rbf_cka").iloc[0, 0] == pytest.approx(metrics.compute("rbf_cka", fa, fb), rel=1e-6)
    paper = compare_models(a, b, x, measures="paper")
    assert paper.measures == list(metrics.PAPER_MEASURES)
    with pytest.raises(ValueError, match="unknown measure"):
        compare_models(a, b, x, measures=["ckaa"])
    with pytest.raises(ValueError, match="not taken by any selected measure"):
        compare_models(a, b, x, measures=["cka"], params={"k": 5})


def test_shared_rbf_and_rsa_match_the_library_pass(monkeypatch):
    a, b = _cnn(0), _cnn(1)
    x = _images(45)
    names = ["rbf_cka", "rsa", "cka"]
    shared = compare_models(a, b, x, layers=["block1", "penultimate"], measures=names, n_permutations=9)
    monkeypatch.setattr(similarity, "SHARED_BYTES", 0)
    plain = compare_models(a, b, x, layers=["block1", "penultimate"], measures=names, n_permutations=9)
    np.testing.assert_allclose(shared.table["value"], plain.table["value"], rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(shared.table["p_value"], plain.table["p_value"])


def test_permutation_p_values_and_bootstrap_intervals_equal_the_metrics_functions():
    a, b = _cnn(0), _cnn(1)
    x = _images(40)
    shared = ["cka", "mutual_knn", "rsa", "linear_regression", "pwcca", "mean_cca", "procrustes", "procrustes_distance"]
    comp = compare_models(
        a, b, x, layers="penultimate", measures=shared + ["rbf_cka"], n_permutations=19, n_boot=12, seed=3
    )
    assert list(comp.table.columns) == ["layer_a", "layer_b", "measure", "value", "p_value", "ci_low", "ci_high"]
    fa = metrics.prepare(_hooked(a, x, ["penultimate"])["penultimate"], clip_quantile=0.95)
    fb = metrics.prepare(_hooked(b, x, ["penultimate"])["penultimate"], clip_quantile=0.95)
    rows = comp.table.set_index("measure")
    for name in shared:
        assert rows.loc[name, "p_value"] == metrics.permutation_test(name, fa, fb, n_permutations=19, seed=3)
        lo, hi = metrics.bootstrap_ci(name, fa, fb, n_boot=12, seed=3)
        assert rows.loc[name, "ci_low"] == pytest.approx(lo, abs=1e-9)
        assert rows.loc[name, "ci_high"] == pytest.approx(hi, abs=1e-9)
    assert ((rows["p_value"] > 0) & (rows["p_value"] <= 1)).all()
    assert (rows["ci_low"] <= rows["ci_high"]).all()


def test_layers_all_gives_the_full_table_and_dict_specs_pick_per_model():
    a = _cnn(0)
    mlp = M.build("mlp", input_shape=(3, 16, 16), num_classes=4, hidden=(32, 16), seed=0)
    x = _images(30)
    comp = compare_models(a, mlp, x, layers={"a": "all", "b": ["hidden.0", "penultimate"]}, measures=["cka", "svcca"])
    assert comp.layers_a == M.layers(a) == ["block1", "block2", "block3", "pool", "penultimate", "logits"]
    assert comp.layers_b == ["hidden.0", "penultimate"]
    assert comp.matrix("svcca").shape == (6, 2)
    assert len(comp.table) == 6 * 2 * 2
    # a plain nn.Module: its top-level children (containers expanded), in the order they run
    seq = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(768, 20), torch.nn.ReLU(), torch.nn.Linear(20, 4))
    plain = compare_models(seq, seq, x, layers="all", measures=["cka"])
    assert plain.layers_a == ["0", "1", "2", "3", "penultimate"]
    np.testing.assert_allclose(np.diag(plain.matrix("cka").to_numpy()), 1.0, atol=1e-6)
    # module paths and ':input' work as layer names, 'output' is the model output
    paths = compare_models(seq, seq, x, layers=["1", "3:input", "output"], measures=["cka"])
    assert paths.matrix("cka").loc["1", "1"] == pytest.approx(1.0)
    assert paths.matrix("cka").loc["3:input", "output"] < 1.0


class _TwoHeads(torch.nn.Module):
    """A plain module whose second head never runs: ``layers="all"`` must leave it out."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(768, 12), torch.nn.ReLU())
        self.unused = torch.nn.Linear(12, 2)
        self.head = torch.nn.Linear(12, 4)

    def forward(self, x):
        return self.head(self.body(x))


def test_layers_all_of_a_plain_module_keeps_the_modules_that_run_in_order():
    model = _TwoHeads()
    comp = compare_models(model, model, _images(20), layers="all", measures=["cka"])
    assert comp.layers_a == ["body.0", "body.1", "body.2", "head", "penultimate"]


def test_unknown_layer_lists_the_available_ones():
    model = _cnn()
    with pytest.raises(
        ReprsimError,
        match=r"model B .* no layer 'block9'; available layers: block1, block2, block3, "
        r"pool, penultimate, logits",
    ):
        compare_models(model, model, _images(10), layers={"a": "penultimate", "b": "block9"})


def test_wrong_input_shape_says_which_model_and_what_it_expects():
    good = _cnn()
    grey = M.build("cnn", input_shape=(1, 16, 16), num_classes=4, channels=(4,), seed=0)
    with pytest.raises(
        ReprsimError,
        match=r"model B \(CNN\) cannot take the inputs of shape \(8, 3, 16, 16\).*"
        r"expects images \(N, 1, H, W\)",
    ):
        compare_models(good, grey, _images(8))


def test_bad_arguments_fail_before_any_model_runs():
    calls = []
    model = _cnn()
    model.register_forward_hook(lambda *a: calls.append(1))
    x = _images(10)
    with pytest.raises(ValueError, match="attack= needs labels"):
        compare_models(model, model, x, attack="mi_fgsm")
    with pytest.raises(ValueError, match="unknown attack"):
        compare_models(model, model, x, attack="deepfool", labels=np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match="n_permutations"):
        compare_models(model, model, x, n_permutations=-1)
    with pytest.raises(ValueError, match="prepare"):
        compare_models(model, model, x, prepare="zscore")
    with pytest.raises(ReprsimError, match="labels must be integer class ids of shape \\(10,\\)"):
        compare_models(model, model, x, labels=np.zeros(9, dtype=int))
    with pytest.raises(ReprsimError, match="neither an existing file"):
        compare_models("no/such/model.pt", model, x)
    with pytest.raises(ReprsimError, match="not a data source"):
        compare_models(model, model, "no_such_source")
    assert not calls


def _fgsm_by_hand(model, x, y, eps):
    """clip(x + eps · sign(∇_x CE(model(x), y)), 0, 1): Goodfellow et al.'s step, written here."""
    xt = torch.as_tensor(x).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xt), torch.as_tensor(y)), xt)
    return (xt + eps * grad.sign()).clamp(0, 1).detach()


def test_attack_transfer_both_directions_by_hand():
    """The transfer table recomputed without reprsim.attacks: the documented seeded subset
    (``default_rng(seed).choice``), FGSM written out, each model's error on the other's examples."""
    a = M.build("mlp", input_shape=(1, 8, 8), num_classes=3, hidden=(16,), seed=0)
    b = M.build("mlp", input_shape=(1, 8, 8), num_classes=3, hidden=(16,), seed=1)
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 3, 40)
    comp = compare_models(a, b, x, labels=y, measures=["cka"], attack={"name": "fgsm", "eps": 0.2, "n": 30}, seed=1)
    idx = np.sort(np.random.default_rng(1).choice(40, 30, replace=False))
    xs, ys = torch.as_tensor(x[idx]), torch.as_tensor(y[idx])
    a.eval(), b.eval()
    adv = {"a": _fgsm_by_hand(a, xs, ys, 0.2), "b": _fgsm_by_hand(b, xs, ys, 0.2)}
    with torch.no_grad():
        wrong = {
            (m, on): (model(adv[on]).argmax(1) != ys).double().mean().item()
            for m, model in (("a", a), ("b", b))
            for on in "ab"
        }
        clean = {m: (model(xs).argmax(1) != ys).double().mean().item() for m, model in (("a", a), ("b", b))}
    want = {
        ("A→B", "whitebox_asr"): wrong["a", "a"],
        ("A→B", "transfer_asr"): wrong["b", "a"],
        ("A→B", "victim_clean_error"): clean["b"],
        ("B→A", "whitebox_asr"): wrong["b", "b"],
        ("B→A", "transfer_asr"): wrong["a", "b"],
        ("B→A", "victim_clean_error"): clean["a"],
    }
    assert wrong["b", "a"] != wrong["b", "b"] and wrong["a", "b"] != wrong["a", "a"]  # crafting on the victim shows
    tr = comp.transfer.set_index(["direction", "quantity"])
    for key, value in want.items():
        row = tr.loc[key]
        assert row["value"] == pytest.approx(value, abs=1e-12), key
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert comp.transfer_summary["whitebox_asr"] == pytest.approx(wrong["a", "a"], abs=1e-12)
    assert set(tr.reset_index()["n"]) == {30.0}
    frame = comp.to_frame()
    assert {"transfer_asr_a_to_b", "whitebox_asr_b_to_a"} <= set(frame["measure"])
    assert list(frame.columns) == ["layer_a", "layer_b", "measure", "value", "ci_low", "ci_high"]


def test_attack_needs_two_classifiers():
    a = _cnn()
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(768, 3))
    head_less = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3))
    x = _images(12)
    with pytest.raises(ReprsimError, match="labels go up to 3 but model B"):
        compare_models(a, enc, x, labels=np.arange(12) % 4, attack="fgsm", measures=["cka"], layers="output")
    with pytest.raises(ReprsimError, match="not logits"):
        compare_models(
            a,
            head_less,
            x,
            labels=np.arange(12) % 2,
            attack="fgsm",
            measures=["cka"],
            layers={"a": "output", "b": "output"},
        )


def test_data_source_inputs_carry_labels_for_the_attack():
    a = M.build("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(16,), seed=0)
    b = M.build("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(16,), seed=1)
    comp = compare_models(
        a, b, "digits:n=80", measures=["cka", "mutual_knn"], attack={"name": "fgsm", "eps": 0.05}, params={"k": 5}
    )
    assert comp.n_inputs == 80 and "digits" in comp.inputs
    assert comp.transfer is not None and comp.transfer["n"].iloc[0] == 80


def test_html_page_is_self_contained_and_plot_returns_a_figure(tmp_path):
    import matplotlib.figure

    a, b = _cnn(0), _cnn(1)
    comp = compare_models(
        a, b, _images(30), layers=["block1", "penultimate"], measures=["cka", "procrustes_distance"], n_boot=4
    )
    fig = comp.plot()
    assert isinstance(fig, matplotlib.figure.Figure) and len([ax for ax in fig.axes if ax.images]) == 2
    one = compare_models(a, b, _images(30), measures=["cka", "svcca"]).plot()
    assert isinstance(one, matplotlib.figure.Figure)
    page = comp.to_html(tmp_path / "sub" / "comparison.html")
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "data:image/png;base64," in text
    assert not re.search(r"(src|href)=['\"]https?:", text)  # nothing loaded from the network
    assert "procrustes_distance" in text and "block1" in text
    paths = comp.save(tmp_path / "out")
    assert pd.read_parquet(paths["parquet"]).equals(comp.to_frame())
    assert len(pd.read_csv(paths["csv"])) == len(comp.table)


def test_undefined_measures_become_nan_with_a_note():
    const = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(768, 4))
    with torch.no_grad():
        const[1].weight.zero_()
        const[1].bias.fill_(1.0)
    model = _cnn()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        comp = compare_models(
            model,
            const,
            _images(20),
            layers={"a": "penultimate", "b": "output"},
            measures=["cka", "mutual_knn"],
            prepare=None,
        )
    assert math.isnan(comp.matrix("cka").iloc[0, 0])
    assert any("cka" in w for w in comp.warnings)
    assert any("compare_models" in str(w.message) for w in caught)


def test_lazy_top_level_export():
    assert reprsim.compare_models is compare_models
