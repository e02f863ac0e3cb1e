"""Pretrained models in sweeps: local Hugging Face image models (tiny random ResNet and ViT saved
in tmp_path; nothing is downloaded) and zoo models started from a checkpoint, each with a new
seeded head, images resized to the model, and per-model training recipes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from reprsim import models as M  # noqa: E402
from reprsim.errors import ConfigError, ReprsimError  # noqa: E402
from reprsim.experiments import load_results, parse_config, run_experiment  # noqa: E402
from reprsim.experiments.composition import composition_of
from reprsim.experiments.families import model_kind_of  # noqa: E402
from reprsim.experiments.grid import expand  # noqa: E402
from reprsim.experiments.preflight import preflight_problems  # noqa: E402
from reprsim.models.pretrained import (  # noqa: E402
    hf_image_classifier,
    start_from_checkpoint,
    weights_fingerprint,
)

torch.set_num_threads(1)


def _resnet(path, seed=0, channels=3, labels=4):
    torch.manual_seed(seed)
    cfg = transformers.ResNetConfig(
        num_channels=channels,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        num_labels=labels,
    )
    model = transformers.ResNetForImageClassification(cfg)
    model.save_pretrained(path)
    return model.eval()


def _vit(path, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.ViTConfig(
        image_size=16,
        patch_size=8,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = transformers.ViTModel(cfg, add_pooling_layer=False)  # a bare encoder: the sweep adds the head
    model.save_pretrained(path)
    return model.eval()


def _gpt2(path):
    cfg = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=8, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(path)


# ---- building ---------------------------------------------------------------------------------
def test_hf_classifier_keeps_the_body_and_always_gets_a_new_seeded_head(tmp_path):
    saved = _resnet(tmp_path / "r", labels=4)
    model = hf_image_classifier(tmp_path / "r", 4, seed=1, in_channels=1)  # same size as the saved head
    body = {k: v for k, v in saved.state_dict().items() if not k.startswith("classifier.")}
    own = model.hf.state_dict()
    for key, value in body.items():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0)
    assert not torch.equal(own["classifier.1.weight"], saved.state_dict()["classifier.1.weight"])
    again = hf_image_classifier(tmp_path / "r", 4, seed=1).hf.state_dict()["classifier.1.weight"]
    other = hf_image_classifier(tmp_path / "r", 4, seed=2).hf.state_dict()["classifier.1.weight"]
    assert torch.equal(again, own["classifier.1.weight"]) and not torch.equal(other, again)
    assert hf_image_classifier(tmp_path / "r", 3, seed=1).eval()(torch.rand(2, 3, 12, 12)).shape == (2, 3)


def test_grey_images_are_repeated_and_resized_to_the_models_resolution(tmp_path):
    _vit(tmp_path / "v")
    model = hf_image_classifier(tmp_path / "v", 5, seed=0, in_channels=1).eval()
    assert model.resize_to == (16, 16) and model.grey_to_rgb
    x = torch.rand(3, 1, 28, 28)
    by_hand = torch.nn.functional.interpolate(
        x.expand(-1, 3, -1, -1), size=(16, 16), mode="bilinear", align_corners=False
    )
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.hf(pixel_values=model.normalize(by_hand)).logits)
    assert model(x).shape == (3, 5)
    _resnet(tmp_path / "r")  # a conv net has no native size: only an explicit input_size resizes
    assert hf_image_classifier(tmp_path / "r", 2, seed=0).resize_to is None
    assert hf_image_classifier(tmp_path / "r", 2, seed=0, input_size=24).resize_to == (24, 24)


def test_non_image_folders_and_channel_mismatches_are_refused(tmp_path):
    _gpt2(tmp_path / "g")
    with pytest.raises(ReprsimError, match="not an image model"):
        hf_image_classifier(tmp_path / "g", 2, seed=0)
    _resnet(tmp_path / "grey", channels=1)
    with pytest.raises(ReprsimError, match="takes 1-channel images, the data has 3"):
        hf_image_classifier(tmp_path / "grey", 2, seed=0, in_channels=3)


def test_a_zoo_model_starts_from_a_checkpoint_of_another_task(tmp_path):
    from safetensors.torch import save_file

    trained = M.build("cnn", input_shape=(1, 12, 12), num_classes=5, channels=(4, 8), seed=7)
    save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    fresh = M.build("cnn", input_shape=(1, 12, 12), num_classes=3, channels=(4, 8), seed=0)
    head_before = {k: v.clone() for k, v in fresh.state_dict().items() if k.startswith("head.")}
    start_from_checkpoint(fresh, tmp_path / "w.safetensors")
    for key, value in fresh.state_dict().items():
        want = head_before[key] if key.startswith("head.") else trained.state_dict()[key]
        torch.testing.assert_close(value, want, rtol=0, atol=0)
    wider = M.build("cnn", input_shape=(1, 12, 12), num_classes=3, channels=(6, 8), seed=0)
    with pytest.raises(ReprsimError, match=r"do not fit .*shape of"):
        start_from_checkpoint(wider, tmp_path / "w.safetensors")


def test_the_fingerprint_follows_the_weights_content(tmp_path):
    _resnet(tmp_path / "r", seed=0)
    first = weights_fingerprint(tmp_path / "r")
    assert weights_fingerprint(tmp_path / "r") == first
    _resnet(tmp_path / "r", seed=1)
    assert weights_fingerprint(tmp_path / "r") != first


# ---- configs ----------------------------------------------------------------------------------
def _config(models, **extra):
    return {
        "name": "pretrained",
        "sources": [{"name": "fashion_mnist", "options": {"per_class": 8, "seed": 0}}],
        "probe_size": 40,
        "models": models,
        "train": {"epochs": 1, "batch_size": 16, "optimizer": "sgd", "lr": 0.01},
        "overlap": {"designs": [{"kind": "data", "fractions": [0.0, 1.0]}]},
        "seeds": [0],
        "layers": ["penultimate"],
        "measures": {"names": ["cka", "mutual_knn"], "params": {"k": 5}},
        **extra,
    }


def _needs_fashion():
    from reprsim.data.images import fashion_mnist_available

    if not fashion_mnist_available():
        pytest.skip("needs Fashion-MNIST: run scripts/setup.sh")


def test_entries_name_what_they_are_and_bad_combinations_are_config_errors(tmp_path):
    _resnet(tmp_path / "r")
    _gpt2(tmp_path / "g")
    config = parse_config(_config([{"hf": str(tmp_path / "r")}, {"hf": str(tmp_path / "g")}]))
    assert [model_kind_of(m) for m in config.models] == ["hf_image", "hf_causal_lm"]
    with pytest.raises(ConfigError, match="checkpoint applies to zoo models"):
        parse_config(_config([{"hf": str(tmp_path / "r"), "checkpoint": "w.pt"}]))
    with pytest.raises(ConfigError, match="input_size applies to Hugging Face image models"):
        parse_config(_config([{"name": "cnn", "input_size": 32}]))


def test_per_model_train_overrides_reach_their_units_only(tmp_path):
    config = parse_config(
        _config(
            [{"name": "mlp", "options": {"hidden": [8]}}, {"name": "cnn", "train": {"optimizer": "adamw", "lr": 0.001}}]
        )
    )
    recipes = {u.model.name: u.train for u in expand(config)}
    assert recipes["mlp"] == config.train
    assert recipes["cnn"] == {**config.train, "optimizer": "adamw", "lr": 0.001}
    plain = {u.unit_id for u in expand(parse_config(_config([{"name": "mlp", "options": {"hidden": [8]}}])))}
    assert {u.unit_id for u in expand(config) if u.model.name == "mlp"} == plain  # ids of plain entries unchanged


def test_preflight_reports_each_bad_pretrained_entry(tmp_path):
    _needs_fashion()
    from safetensors.torch import save_file

    _gpt2(tmp_path / "g")
    wrong = M.build("cnn", input_shape=(1, 28, 28), num_classes=10, channels=(6, 8), seed=0)
    save_file(wrong.state_dict(), str(tmp_path / "w.safetensors"))

    def problems(entry):
        config = parse_config(_config([entry]))
        return "\n".join(preflight_problems(config, expand(config)))

    assert "missing does not exist; give the local folder of a Hugging Face model" in problems(
        {"hf": str(tmp_path / "missing")}
    )
    found = problems({"hf": str(tmp_path / "g")})
    assert (
        "'g' cannot be trained on source" in found and "the hf_lm family trains on the worlds ['chat', 'text']" in found
    )
    found = problems({"name": "cnn", "options": {"channels": [4, 8]}, "checkpoint": str(tmp_path / "w.safetensors")})
    assert "models.cnn: models.cnn.checkpoint: the weights" in found and "shape of" in found
    found = problems({"name": "mlp", "train": {"optimiser": "adamw"}})
    assert "models.mlp.train:" in found and "optimiser" in found
    _resnet(tmp_path / "grey", channels=1)
    source = {
        "name": "colorshapes",
        "label": "shape",
        "options": {"n": 64, "seed": 0, "image_size": 16},
        "test_options": {"n": 64},
    }
    config = parse_config(_config([{"hf": str(tmp_path / "grey")}]) | {"sources": [source]})
    assert "takes 1-channel images, the data has 3" in "\n".join(preflight_problems(config, expand(config)))


def test_a_sweep_fine_tunes_hf_resnet_and_vit_with_their_own_recipes(tmp_path):
    _needs_fashion()
    _resnet(tmp_path / "resnet")
    _vit(tmp_path / "vit")
    config = parse_config(
        _config(
            [
                {"hf": str(tmp_path / "resnet"), "train": {"optimizer": "sgd", "lr": 0.05}},
                {"hf": str(tmp_path / "vit"), "train": {"optimizer": "adamw", "lr": 0.001}},
            ],
            consequences=[{"attack_transfer": {"n": 16, "eps_data": 0.1, "eps_task": 0.1, "steps": 2}}],
        )
    )
    assert preflight_problems(config, expand(config)) == []
    run_experiment(config, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    df = load_results(tmp_path / "run")
    assert set(df["model"]) == {"resnet", "vit"} and df["value"].notna().all()
    assert df["transfer_asr"].between(0, 1).all() and df["whitebox_asr"].between(0, 1).all()
    # the value is that of the cached fine-tunes: CKA of their penultimate features on the test probe
    from reprsim import features, metrics, storage

    unit = next(u for u in expand(config) if u.model.name == "vit" and u.data_fraction == 0.0)
    kind = composition_of(unit)
    pair = kind.pair(config, unit, cache_dir=None)
    probe = next(p for p in kind.probes(config, unit, pair) if p.name == "test")
    import json

    status = json.loads((tmp_path / "run" / "units" / unit.unit_id / "status.json").read_text())
    feats = []
    for side in "ab":
        model = kind.build(config, unit, pair, side)
        stored = storage.read_verified_state_dict(
            tmp_path / "cache" / "models" / f"{status['artifacts'][f'model_{side}']}.rsv"
        )
        model.load_state_dict(stored[0])
        feats.append(
            features.extract(model.eval(), probe.inputs, layers=["penultimate"], pool=kind.feature_pool)["penultimate"]
        )
    assert not np.allclose(feats[0], feats[1])
    prep = config.measures.prepare
    want = metrics.compute(
        "cka", *(metrics.prepare(f, normalize=prep.normalize, clip_quantile=prep.clip_quantile) for f in feats)
    )
    row = df[(df.unit_id == unit.unit_id) & (df.probe_set == "test") & (df.measure == "cka")]
    assert row["value"].iloc[0] == pytest.approx(float(want), rel=1e-5, abs=1e-6)
    # a changed pretrained folder is a different starting point: its models are retrained
    before = kind.weights_key(config, unit, pair, "a")
    _vit(tmp_path / "vit", seed=5)
    assert kind.weights_key(config, unit, pair, "a") != before
