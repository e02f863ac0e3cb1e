"""Model references for compare_models: factories with weights, reprsim checkpoints, TorchScript,
and paths that are not models."""

import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import reprsim.models as M
from reprsim.compare import compare_models
from reprsim.compare.references import load_model
from reprsim.errors import ReprsimError
from reprsim.features import extract

torch.set_num_threads(1)

FACTORY = """
import reprsim.models as M

def build():
    return M.build("mlp", input_shape=(1, 8, 8), num_classes=3, hidden=(12, 6), seed=123)

class Zoo:
    @staticmethod
    def wide():
        return M.build("mlp", input_shape=(1, 8, 8), num_classes=3, hidden=(24, 6), seed=0)

not_a_model = 3
"""


@pytest.fixture
def factory(tmp_path, monkeypatch):
    """A module ``refmodels`` in the current folder (as a user's project would have)."""
    (tmp_path / "refmodels.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "refmodels", raising=False)  # each test imports its own copy
    yield tmp_path


def _trained_mlp():
    model = M.build("mlp", input_shape=(1, 8, 8), num_classes=3, hidden=(12, 6), seed=7)  # other weights than build()
    return model.eval()


def _x(n=30):
    return np.random.default_rng(0).random((n, 1, 8, 8), dtype=np.float32)


def test_factory_with_safetensors_and_state_dict_weights_round_trip(factory):
    trained = _trained_mlp()
    state = {k: v.clone().contiguous() for k, v in trained.state_dict().items()}
    save_file(state, str(factory / "w.safetensors"))
    torch.save(state, factory / "w.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, factory / "ddp.pt")
    x = _x()
    want = extract(trained, x, layers=["hidden.0", "penultimate"])
    for weights in ("w.safetensors", "w.pt", "ddp.pt"):
        ref = load_model("refmodels:build", weights)
        got = extract(ref.module, x, layers=["hidden.0", "penultimate"])
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
        assert ref.label == f"refmodels:build + {weights}"
    comp = compare_models(
        "refmodels:build",
        trained,
        x,
        weights_a="w.safetensors",
        measures=["cka", "mutual_knn"],
        params={"k": 5},
        layers=["hidden.0", "penultimate"],
    )
    np.testing.assert_allclose(np.diag(comp.matrix("cka").to_numpy()), 1.0, atol=1e-6)
    np.testing.assert_array_equal(comp.features["a"]["penultimate"], want["penultimate"])
    # without weights the factory's own initialisation is used: a different model
    fresh = compare_models("refmodels:build", trained, x, measures=["cka"])
    assert fresh.matrix("cka").iloc[0, 0] < 0.999
    assert load_model("refmodels:Zoo.wide").module.hidden[0][0].out_features == 24


def test_factory_and_weights_errors_are_clear(factory):
    with pytest.raises(ReprsimError, match="cannot import 'nosuchmodule'"):
        load_model("nosuchmodule:build")
    with pytest.raises(ReprsimError, match="has no attribute 'missing'"):
        load_model("refmodels:missing")
    with pytest.raises(ReprsimError, match="not callable"):
        load_model("refmodels:not_a_model")
    wide = M.build("mlp", input_shape=(1, 8, 8), num_classes=3, hidden=(24, 6), seed=0)
    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, str(factory / "wide.safetensors"))
    with pytest.raises(
        ReprsimError, match=r"do not fit MLP: shape of hidden.0.0.weight: file \(24, 64\) vs model \(12, 64\)"
    ):
        load_model("refmodels:build", "wide.safetensors")
    torch.save({"a": 1}, factory / "junk.pt")
    with pytest.raises(ReprsimError, match="does not hold a state dict"):
        load_model("refmodels:build", "junk.pt")
    torch.save(torch.nn.Linear(2, 2), factory / "pickled_module.pt")
    with pytest.raises(ReprsimError, match="weights_only=True"):
        load_model("refmodels:build", "pickled_module.pt")
    with pytest.raises(ReprsimError, match="not found"):
        load_model("refmodels:build", "nope.safetensors")


def test_reprsim_checkpoint_is_rebuilt_and_verified(tmp_path):
    from reprsim.train import TrainConfig, train

    rng = np.random.default_rng(0)
    x = rng.random((48, 3, 16, 16), dtype=np.float32)
    y = rng.integers(0, 4, 48)
    results = {}
    for name, options in (
        ("cnn", {"channels": (8, 16)}),
        ("resnet18", {"width": 0.125}),
        ("mlp", {"hidden": (16, 8)}),
        ("vit", {"preset": "tiny", "patch_size": 8, "depth": 1}),
    ):
        model = M.build(name, input_shape=(3, 16, 16), num_classes=4, seed=0, **options)
        out = tmp_path / name
        trained = train(
            model, (x, y), TrainConfig(epochs=1, batch_size=16), seed=0, checkpoint_dir=out, progress=False
        ).model.eval()
        for ref in (out / "model.safetensors", out, out / "last.safetensors"):
            loaded = load_model(ref)
            assert type(loaded.module) is type(trained)
            a = extract(loaded.module, x[:10])["penultimate"]
            np.testing.assert_array_equal(a, extract(trained, x[:10])["penultimate"])
        results[name] = compare_models(out / "model.safetensors", trained, x, measures=["cka"])
    for comp in results.values():
        assert comp.matrix("cka").iloc[0, 0] == pytest.approx(1.0, abs=1e-6)
    # the architecture must match the checkpoint's fingerprint when given as a factory + weights
    wrong = M.build("cnn", input_shape=(3, 16, 16), num_classes=4, channels=(8, 32), seed=0)
    with pytest.raises(ReprsimError, match="different architecture"):
        load_model(wrong, tmp_path / "cnn" / "model.safetensors")


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_torchscript_output_only_with_a_clear_error_for_inner_layers(tmp_path):
    model = M.build("cnn", input_shape=(3, 16, 16), num_classes=4, channels=(8,), seed=0).eval()
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.trace(model, torch.rand(2, 3, 16, 16)), str(path))
    x = np.random.default_rng(1).random((20, 3, 16, 16), dtype=np.float32)
    comp = compare_models(path, model, x, layers="output", measures=["cka"])
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(comp.features["a"]["output"], logits, rtol=1e-5, atol=1e-6)
    assert comp.matrix("cka").iloc[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert load_model(path).scripted
    for layers in ("penultimate", ["output", "block1"]):
        with pytest.raises(
            ReprsimError,
            match=r"TorchScript: PyTorch does not support forward hooks.*layers='output'.*"
            r"MODULE:CALLABLE",
        ):
            compare_models(path, model, x, layers=layers)
    with pytest.raises(ReprsimError, match="model file with its own weights"):
        load_model(path, tmp_path / "w.safetensors")
    with pytest.raises(ReprsimError, match="cannot be loaded into a TorchScript module"):
        load_model(load_model(path).module, tmp_path / "w.safetensors")


def test_paths_that_are_not_models(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ReprsimError, match="notes.txt is not a model"):
        load_model(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReprsimError, match="not a model \\(no config.json"):
        load_model(tmp_path / "empty")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(ReprsimError, match="bare weights without an architecture"):
        load_model(tmp_path / "bare.safetensors")
    torch.save({"w": torch.zeros(2)}, tmp_path / "state.pt")
    with pytest.raises(ReprsimError, match="not a TorchScript file.*MODULE:CALLABLE"):
        load_model(tmp_path / "state.pt")
    with pytest.raises(ReprsimError, match="got a int"):
        load_model(3)
