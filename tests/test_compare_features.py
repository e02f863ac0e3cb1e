"""One preparation rule, compare_features (features in) and ``reprsim compare`` on feature sets.

Independent paths: the paper's clip + L2 written out in numpy; features read with plain forward
hooks written here; ``metrics.compute`` on those hand-prepared features."""

import json

import numpy as np
import pytest
import torch

import reprsim
from _compare_refs import hooked, paper_prepare, random_images, small_cnn
from reprsim import metrics
from reprsim.cli import main
from reprsim.compare import compare_features, compare_models
from reprsim.errors import ReprsimError
from reprsim.metrics.prepare import resolve_prepare

torch.set_num_threads(1)

_cnn, _hooked, _paper = small_cnn, hooked, paper_prepare


def _images(n=40, seed=0):
    return random_images(n, seed)


LAYERS = ["block1", "block2", "penultimate"]
SOME = ["cka", "mutual_knn", "procrustes", "rsa", "linear_regression"]
FEW = ["cka", "mutual_knn", "procrustes"]


@pytest.fixture(scope="module")
def pair():
    a, b = _cnn(0), _cnn(1)
    x = _images()
    return a, b, x, _hooked(a, x, LAYERS), _hooked(b, x, LAYERS)


# ---- one preparation rule ------------------------------------------------------------------------
def test_prepare_with_no_options_is_the_papers_clip_then_l2():
    X = np.random.default_rng(3).standard_normal((30, 6)) * 2
    np.testing.assert_allclose(metrics.prepare(X), _paper(X), atol=1e-12)
    assert not np.allclose(metrics.prepare(X), X / np.linalg.norm(X, axis=1, keepdims=True))  # the clip acts
    fn, desc = resolve_prepare("paper")
    np.testing.assert_allclose(fn(X), _paper(X), atol=1e-12)
    assert desc.startswith("paper")
    fn, desc = resolve_prepare("l2")
    np.testing.assert_allclose(fn(X), X / np.linalg.norm(X, axis=1, keepdims=True), atol=1e-12)
    fn, desc = resolve_prepare(None)
    assert np.array_equal(fn(X), X) and desc.startswith("none")
    fn, desc = resolve_prepare({"clip_quantile": 0.95})  # the paper's rule spelt as a dict
    assert desc.startswith("paper")
    fn, desc = resolve_prepare(np.tanh)
    assert desc == "custom (tanh)"
    with pytest.raises(ValueError, match="prepare must be one of 'paper', 'l2', 'none'.*got 'zscore'"):
        resolve_prepare("zscore")
    with pytest.raises(ValueError, match="unknown keys \\['center'\\]"):
        resolve_prepare({"center": True})


def test_the_sweeps_default_preparation_is_the_same_rule(pair):
    from reprsim.experiments.config import MeasureSpec
    from reprsim.experiments.similarity import similarity_rows

    _, _, _, fa, fb = pair
    spec = MeasureSpec(names=["cka"], params={})
    assert (spec.prepare.normalize, spec.prepare.clip_quantile) == ("l2", 0.95)
    rows = similarity_rows(spec, fa, fb, ["penultimate"], seed=0)
    want = metrics.compute("cka", _paper(fa["penultimate"]), _paper(fb["penultimate"]))
    assert rows[0]["value"] == pytest.approx(want, rel=1e-5)
    by_name = {name: MeasureSpec(prepare=name).prepare for name in ("paper", "l2", "none")}  # rule names in YAML
    assert [(p.normalize, p.clip_quantile) for p in by_name.values()] == [("l2", 0.95), ("l2", None), (None, None)]


# ---- compare_features ----------------------------------------------------------------------------
def test_compare_features_on_hooked_features_equals_compare_models(pair):
    a, b, x, fa, fb = pair
    by_models = compare_models(a, b, x, layers=LAYERS, measures=SOME, calibrate=4, progress=False)
    by_feats = compare_features(fa, fb, measures=SOME, calibrate=4, progress=False)
    assert by_feats.layers_a == LAYERS == by_feats.layers_b
    assert list(by_feats.table.columns) == list(by_models.table.columns)
    assert by_feats.prepare == by_models.prepare and by_feats.prepare.startswith("paper")
    for col in by_models.table.columns[3:]:  # value and the calibrated columns
        np.testing.assert_allclose(by_feats.table[col], by_models.table[col], rtol=1e-5, atol=1e-6, err_msg=col)
    for la in LAYERS:  # and both equal the library on features prepared by the rule written above
        for lb in LAYERS:
            want = metrics.compute("cka", _paper(fa[la]), _paper(fb[lb]))
            assert by_feats.matrix("cka").loc[la, lb] == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert (by_feats.matrix("cka").to_numpy() < 0.999).all()  # two different models


def test_prepare_option_reaches_the_values(pair):
    _, _, _, fa, fb = pair
    raw = compare_features(fa, fb, layers="penultimate", measures="cka", prepare="none", progress=False)
    l2 = compare_features(fa, fb, layers="penultimate", measures="cka", prepare="l2", progress=False)
    X, Y = fa["penultimate"].astype(np.float64), fb["penultimate"].astype(np.float64)
    assert raw.table["value"][0] == pytest.approx(metrics.compute("cka", X, Y), rel=1e-5)
    unit = lambda Z: Z / np.linalg.norm(Z, axis=1, keepdims=True)  # noqa: E731
    assert l2.table["value"][0] == pytest.approx(metrics.compute("cka", unit(X), unit(Y)), rel=1e-5)
    assert raw.table["value"][0] != pytest.approx(l2.table["value"][0], rel=1e-4)


def test_files_folders_and_saved_comparisons_give_the_same_table(pair, tmp_path):
    a, b, x, fa, fb = pair
    want = compare_features(fa, fb, measures=FEW, n_permutations=3, n_boot=3, progress=False)
    assert {"p_value", "ci_low", "ci_high"} <= set(want.table.columns)
    np.savez(tmp_path / "a.npz", **fa)
    from safetensors.torch import save_file

    save_file({k: torch.from_numpy(v) for k, v in fb.items()}, str(tmp_path / "b.safetensors"))
    (tmp_path / "bdir").mkdir()
    for k, v in fb.items():
        np.save(tmp_path / "bdir" / f"{k}.npy", v)
    for src_b in (tmp_path / "b.safetensors", tmp_path / "bdir"):
        got = compare_features(tmp_path / "a.npz", src_b, measures=FEW, n_permutations=3, n_boot=3, progress=False)
        assert sorted(got.layers_b) == sorted(LAYERS)
        g = got.table.set_index(["layer_a", "layer_b", "measure"]).sort_index()
        w = want.table.set_index(["layer_a", "layer_b", "measure"]).sort_index()
        np.testing.assert_allclose(g.to_numpy(), w.to_numpy(), rtol=1e-6, atol=1e-7)
    # Comparison.save(features=True) keeps the raw features and their layer order
    comp = compare_models(a, b, x, layers=LAYERS, measures=FEW, progress=False)
    paths = comp.save(tmp_path / "out", features=True)
    again = compare_features(paths["features_a"], paths["features_b"], measures=FEW, progress=False)
    assert again.layers_a == LAYERS == again.layers_b
    np.testing.assert_allclose(again.table["value"], comp.table["value"], rtol=1e-6, atol=1e-7)


def test_low_precision_features_are_measured_in_float32(pair):
    _, _, _, fa, fb = pair
    half = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in fa.items()}
    got = compare_features(half, fb, layers="penultimate", measures="cka", progress=False)
    X = torch.from_numpy(fa["penultimate"]).to(torch.bfloat16).float().numpy()
    assert got.features["a"]["penultimate"].dtype == np.float32
    assert got.table["value"][0] == pytest.approx(
        metrics.compute("cka", _paper(X), _paper(fb["penultimate"])), rel=1e-5
    )


def test_bad_feature_sets_get_one_clear_error(pair, tmp_path):
    _, _, _, fa, fb = pair
    short = {k: v[:30] for k, v in fb.items()}
    with pytest.raises(ReprsimError, match="have 40 rows but features B .* have 30"):
        compare_features(fa, short)
    no_block2 = {k: v for k, v in fb.items() if k != "block2"}
    with pytest.raises(ReprsimError, match="'block2' not in features B .*it has: block1, penultimate"):
        compare_features(fa, no_block2, layers=["block1", "block2"])
    with pytest.raises(ReprsimError, match="different numbers of rows"):
        compare_features({"x": fa["block1"], "y": fa["block2"][:20]}, fb)
    with pytest.raises(ReprsimError, match="does not exist"):
        compare_features(tmp_path / "nope.npz", fb)
    with pytest.raises(ReprsimError, match="must be a non-empty \\(n_samples, n_features\\) matrix; got shape"):
        compare_features({"x": np.zeros((4, 2, 2))}, fb)


# ---- reprsim compare on feature sets -------------------------------------------------------------
def test_cli_compare_feature_sets(pair, tmp_path, capsys):
    _, _, _, fa, fb = pair
    np.savez(tmp_path / "a.npz", **fa)
    np.savez(tmp_path / "b.npz", **fb)
    want = compare_features(
        fa,
        fb,
        layers=["block2", "penultimate"],
        measures=["cka", "mutual_knn"],
        params={"k": 5},
        n_permutations=4,
        progress=False,
    )
    assert (
        main(
            [
                "compare",
                str(tmp_path / "a.npz"),
                str(tmp_path / "b.npz"),
                "--layers",
                "block2",
                "penultimate",
                "-m",
                "cka",
                "-m",
                "mutual_knn",
                "--k",
                "5",
                "--permutations",
                "4",
                "--format",
                "json",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    records = json.loads(out.out)
    assert len(records) == 2 * 2 * 2 and {"p_value"} <= set(records[0])
    np.testing.assert_allclose([r["value"] for r in records], want.table["value"], rtol=1e-6)
    assert [r["p_value"] for r in records] == pytest.approx(list(want.table["p_value"]))
    assert "features prepared: paper" in out.err
    assert (tmp_path / "out" / "comparison.html").read_text().startswith("<!DOCTYPE html>")
    assert main(["compare", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "-m", "cka", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "prepare: paper" in text and "block1" in text


def test_cli_bad_feature_sets_exit_2_with_one_line(pair, tmp_path, capsys):
    _, _, _, fa, fb = pair
    np.savez(tmp_path / "a.npz", **fa)
    np.savez(tmp_path / "short.npz", **{k: v[:25] for k, v in fb.items()})
    np.savez(tmp_path / "b.npz", **{k: v for k, v in fb.items() if k != "block2"})
    for argv, said in [(["short.npz"], "same inputs"), (["b.npz", "--layers", "block2"], "'block2' not in features B")]:
        assert main(["compare", str(tmp_path / "a.npz"), str(tmp_path / argv[0]), *argv[1:]]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err


def test_reprsim_exports_compare_features():
    assert reprsim.compare_features is compare_features


def test_cli_compare_models_saves_features_that_reprsim_compare_reloads(tmp_path, capsys, monkeypatch):
    factory = (
        "import reprsim.models as M\n\n"
        "def one():\n    return M.build('mlp', input_shape=(1, 8, 8), num_classes=10, hidden=(16, 8), seed=0)\n\n"
        "def two():\n    return M.build('mlp', input_shape=(1, 8, 8), num_classes=10, hidden=(12, 8), seed=1)\n"
    )
    (tmp_path / "featfactory.py").write_text(factory)
    monkeypatch.chdir(tmp_path)
    x = np.random.default_rng(0).random((30, 1, 8, 8), dtype=np.float32)
    np.save(tmp_path / "probe.npy", x)
    assert (
        main(
            [
                "compare-models",
                "featfactory:one",
                "featfactory:two",
                "--probe",
                "probe.npy",
                "--layers",
                "all",
                "-m",
                "cka",
                "--out",
                "cmp",
                "--save-features",
                "--quiet",
                "--format",
                "json",
            ]
        )
        == 0
    )
    first = json.loads(capsys.readouterr().out)
    assert (tmp_path / "cmp" / "features_a.safetensors").is_file()
    assert (
        main(["compare", "cmp/features_a.safetensors", "cmp/features_b.safetensors", "-m", "cka", "--format", "json"])
        == 0
    )
    again = json.loads(capsys.readouterr().out)
    assert [(r["layer_a"], r["layer_b"]) for r in again] == [(r["layer_a"], r["layer_b"]) for r in first]
    np.testing.assert_allclose([r["value"] for r in again], [r["value"] for r in first], rtol=1e-6)
    assert (
        main(["compare-models", "featfactory:one", "featfactory:two", "--probe", "probe.npy", "--label-map", "lm.json"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "label_map= is for attack transfer" in err[0]


# ---- measures on a device ------------------------------------------------------------------------
def test_torch_engine_in_float32_equals_the_numpy_float64_path(pair):
    _, _, _, fa, fb = pair
    got = compare_features(fa, fb, layers="penultimate", measures="all", params={"k": 5}, device="cpu", progress=False)
    X, Y = _paper(fa["penultimate"]), _paper(fb["penultimate"])  # numpy, float64
    for name in metrics.MEASURES:
        want = metrics.compute(name, X, Y, **({"k": 5} if "k" in metrics.MEASURES[name].params else {}))
        assert got.matrix(name).iloc[0, 0] == pytest.approx(want, abs=1e-5), name


def test_a_measure_that_fails_on_the_device_falls_back_to_the_cpu_and_the_table_says_so(pair):
    # the meta device runs no kernel at all: every measure fails there, as an op without a CUDA kernel would
    _, _, _, fa, fb = pair
    cpu = compare_features(fa, fb, layers=["block2", "penultimate"], measures=FEW, n_permutations=3, progress=False)
    with pytest.warns(UserWarning, match="computed on the CPU"):
        moved = compare_features(
            fa, fb, layers=["block2", "penultimate"], measures=FEW, n_permutations=3, device="meta", progress=False
        )
    assert "device" not in cpu.table.columns and set(moved.table["device"]) == {"cpu"}
    assert sum("computed on the CPU (RuntimeError on meta" in n for n in moved.warnings) == len(FEW)
    np.testing.assert_array_equal(moved.table["value"], cpu.table["value"])
    np.testing.assert_array_equal(moved.table["p_value"], cpu.table["p_value"])
