"""Tests for the model zoo registry, layer names, input normalisation and the NamedLayers adapter."""

import pytest
import torch
from torch import nn

import reprsim.models as M
from reprsim.features import extract
from reprsim.models.common import CIFAR_MEAN, CIFAR_STD, Normalize

SMALL = {
    "mlp": {"hidden": (32, 16)},
    "cnn": {},
    "resnet18": {"width": 0.125},
    "resnet34": {"width": 0.125},
    "vit": {"preset": "tiny", "depth": 2, "width": 48, "heads": 2, "patch_size": 8},
}
EXPECTED_DIM = {"mlp": 16, "cnn": 128, "resnet18": 64, "resnet34": 64, "vit": 48}


def _x(n=6, shape=(3, 16, 16), seed=0):
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


def test_available_lists_every_family():
    names = M.available()
    for family in ("mlp", "cnn", "resnet", "resnet18", "resnet34", "vit", "vit_tiny", "vit_small", "vit_base", "gpt"):
        assert family in names
    assert names == sorted(names)


@pytest.mark.parametrize("name", list(SMALL))
def test_image_models_shapes_layers_and_normalize_first(name):
    model = M.build(name, input_shape=(3, 16, 16), num_classes=5, seed=0, **SMALL[name])
    assert model(_x()).shape == (6, 5)
    assert isinstance(next(iter(model.children())), Normalize)
    assert M.default_layer(model) == "penultimate"
    names = M.layers(model)
    assert "penultimate" in names and names[-1] == "logits"
    feats = extract(model, _x(), layers=["penultimate", "head:input", "logits"])
    assert feats["penultimate"].shape == (6, EXPECTED_DIM[name])
    # the penultimate representation is exactly what the classification head receives
    assert (feats["penultimate"] == feats["head:input"]).all()
    model.eval()
    torch.testing.assert_close(torch.from_numpy(feats["logits"]), model(_x()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["cnn", "resnet18", "vit"])
def test_internal_normalisation_equals_external(name):
    kw = dict(input_shape=(3, 16, 16), num_classes=4, seed=3, **SMALL[name])
    inside = M.build(name, **kw).eval()
    outside = M.build(name, normalization=None, **kw).eval()
    assert M.input_normalization(outside) is None
    mean, std = M.input_normalization(inside)
    torch.testing.assert_close(mean, torch.tensor(CIFAR_MEAN))
    torch.testing.assert_close(std, torch.tensor(CIFAR_STD))
    x = _x()
    torch.testing.assert_close(inside(x), outside((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)))


def test_seeded_build_is_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = M.build("cnn", input_shape=(3, 16, 16), num_classes=3, seed=11)
    b = M.build("cnn", input_shape=(3, 16, 16), num_classes=3, seed=11)
    c = M.build("cnn", input_shape=(3, 16, 16), num_classes=3, seed=12)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.block1[0].weight, c.block1[0].weight)


def test_resnet_depth_width_and_stems():
    r18 = M.build("resnet", input_shape=(3, 32, 32), num_classes=10, depth=18, width=0.25)
    r34 = M.build("resnet", input_shape=(3, 32, 32), num_classes=10, depth=34, width=0.25)
    assert [len(getattr(r18, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    assert [len(getattr(r34, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert r18.head.in_features == 128
    wide = M.build("resnet18", input_shape=(3, 32, 32), num_classes=10, width=0.5)
    n_small = sum(p.numel() for p in r18.parameters())
    n_wide = sum(p.numel() for p in wide.parameters())
    assert 3.5 < n_wide / n_small < 4.1  # parameters grow ~quadratically with width
    tin = M.build("resnet18", input_shape=(3, 64, 64), num_classes=7, width=0.125, stem="imagenet")
    assert tin(torch.rand(2, 3, 64, 64)).shape == (2, 7)


def test_cnn_block_orders_and_width():
    fast = M.build("cnn", input_shape=(3, 16, 16), num_classes=3, seed=0)
    classic = M.build("cnn", input_shape=(3, 16, 16), num_classes=3, seed=0, pool_before_norm=False)
    assert [type(m).__name__ for m in fast.block1] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    assert [type(m).__name__ for m in classic.block1] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    deep = M.build("cnn", input_shape=(3, 16, 16), num_classes=3, convs_per_block=2, width=0.5)
    assert sum(isinstance(m, nn.Conv2d) for m in deep.modules()) == 6
    assert deep.block3[-4].out_channels == 64 and deep.penultimate[0].in_features == 64
    x = _x()
    assert classic(x).shape == deep(x).shape == (6, 3)


def test_vit_presets_and_patch_tokens():
    for preset, width in (("tiny", 192), ("small", 384), ("base", 768)):
        assert M.VIT_PRESETS[preset].width == width
    vit = M.build("vit_small", input_shape=(3, 32, 32), num_classes=10, depth=1, patch_size=8)
    assert vit.pos_embed.shape == (1, 1 + 16, 384)
    assert vit.head.in_features == 384 and len(vit.blocks) == 1


def test_gpt_through_registry():
    gpt = M.build("gpt", vocab_size=30, block_size=12, preset="nano", seed=0)
    assert isinstance(gpt, M.GPT) and gpt.n_layer == 2
    assert M.default_layer(gpt) == "penultimate"
    module, as_input = M.resolve_layer(gpt, "penultimate")
    assert module is gpt.ln_f and not as_input
    assert M.input_normalization(gpt) is None
    assert M.layers(gpt) == ["embed", "blocks.0", "blocks.1", "penultimate", "logits"]
    micro = M.build("gpt_micro", vocab_size=30, block_size=12)
    assert micro.n_embd == 128


def test_build_errors_are_clear():
    with pytest.raises(ValueError, match="available models"):
        M.build("alexnet", input_shape=(3, 8, 8), num_classes=2)
    with pytest.raises(ValueError, match="accepted options"):
        M.build("cnn", input_shape=(3, 32, 32), num_classes=2, widht=2)
    with pytest.raises(ValueError, match="input_shape"):
        M.build("cnn", num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        M.build("mlp", input_shape=(3, 8, 8), num_classes=1)
    with pytest.raises(ValueError, match="depth"):
        M.build("resnet", input_shape=(3, 8, 8), num_classes=2, depth=50)
    with pytest.raises(ValueError, match="patch_size"):
        M.build("vit", input_shape=(3, 30, 30), num_classes=2, patch_size=4)
    with pytest.raises(ValueError, match="embedding dimension"):
        M.build("vit", input_shape=(3, 8, 8), num_classes=2, width=0.5)
    with pytest.raises(ValueError, match="fixes"):
        M.build("resnet18", input_shape=(3, 8, 8), num_classes=2, depth=34)
    with pytest.raises(ValueError, match="language model"):
        M.build("gpt", vocab_size=5, block_size=4, num_classes=3)
    with pytest.raises(ValueError, match="at least|>= 8|H and W"):
        M.build("cnn", input_shape=(3, 4, 4), num_classes=2)
    cnn = M.build("cnn", input_shape=(3, 16, 16), num_classes=2)
    with pytest.raises(ValueError, match="valid names"):
        M.resolve_layer(cnn, "nope")


def test_mlp_on_flat_vectors_has_no_normalisation():
    mlp = M.build("mlp", input_shape=(10,), num_classes=3, hidden=(8,))
    assert M.input_normalization(mlp) is None
    assert mlp(torch.randn(4, 10)).shape == (4, 3)
    assert M.layers(mlp) == ["penultimate", "logits"]


class _UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.body(x))


def test_named_layers_adapter_defaults_to_head_input():
    torch.manual_seed(0)
    net = _UserNet()
    wrapped = M.NamedLayers(net, layers={"hidden": "body.0"})
    assert M.layers(wrapped) == ["hidden", "penultimate"]
    x = torch.randn(5, 4)
    feats = extract(wrapped, x, layers=["hidden", "penultimate"])
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(feats["hidden"]), net.body[0](x))
        torch.testing.assert_close(torch.from_numpy(feats["penultimate"]), net.body(x))
    torch.testing.assert_close(wrapped(x), net(x))
    # the fallback for an unwrapped module finds the same layer
    assert M.default_layer(net) == "fc:input"
    with pytest.raises(ValueError, match="not a sub-module"):
        M.NamedLayers(net, layers={"x": "body.7"})


def test_named_layers_adapter_with_pixel_normalisation():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    wrapped = M.NamedLayers(conv, layers=["0"], normalization=((0.5,), (0.5,)))
    mean, std = M.input_normalization(wrapped)
    assert mean.tolist() == [0.5] and std.tolist() == [0.5]
    x = torch.rand(2, 1, 6, 6)
    torch.testing.assert_close(wrapped(x), conv((x - 0.5) / 0.5))
    assert M.default_layer(wrapped) == "penultimate"
    module, as_input = M.resolve_layer(wrapped, "penultimate")
    assert module is conv[2] and as_input
