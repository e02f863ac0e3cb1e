"""compare_models on models as they come: PEFT adapter folders, a model of a reprsim sweep by unit
id, a compute dtype, and a label map for attacks between different label spaces.

Independent paths: the unmerged PeftModel's hidden states read in the test; models rebuilt and
loaded from the sweep's cache by hand; a bf16 copy of a model hooked by hand; the attack run by hand
on logit columns chosen in the test."""

import json

import numpy as np
import pytest
import torch

import reprsim.models as M
from _compare_refs import paper_prepare as _paper
from reprsim import metrics
from reprsim.compare import compare_models
from reprsim.errors import ReprsimError

torch.set_num_threads(1)

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


def _gpt2(path, n_embd=16, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=n_embd, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg)
    model.save_pretrained(path)
    return transformers.GPT2LMHeadModel.from_pretrained(path)


@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    """A tiny random GPT-2 base and a LoRA adapter with random (non-zero) B, saved as a practitioner would."""
    root = tmp_path_factory.mktemp("lora")
    base = _gpt2(root / "base")
    torch.manual_seed(1)
    cfg = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], init_lora_weights=False)
    tuned = peft.get_peft_model(base, cfg)
    tuned.save_pretrained(root / "adapter")
    ids = np.random.default_rng(0).integers(0, 64, (24, 8))
    return root, tuned.eval(), ids


def _last_hidden_mean(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(ids), output_hidden_states=True)
    return out.hidden_states[-1].mean(1).numpy()


def test_a_lora_adapter_folder_is_its_base_with_the_adapter(lora):
    root, tuned, ids = lora
    assert json.loads((root / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        root / "base"
    )
    comp = compare_models(
        root / "adapter", root / "base", ids, layers="penultimate", measures=["cka", "procrustes"], progress=False
    )
    with tuned.disable_adapter():
        plain = _last_hidden_mean(tuned, ids)
    adapted = _last_hidden_mean(tuned, ids)  # the unmerged adapter, computed by peft's forward
    assert not np.allclose(adapted, plain, atol=1e-4)  # the adapter changes the model
    for name in ("cka", "procrustes"):
        want = metrics.compute(name, _paper(adapted), _paper(plain))
        assert comp.table.set_index("measure").loc[name, "value"] == pytest.approx(want, rel=1e-4, abs=1e-5)
    assert comp.table.set_index("measure").loc["cka", "value"] < 0.999
    assert "adapter" in comp.model_a


def test_adapter_base_errors(lora, tmp_path):
    root, _, ids = lora
    with pytest.raises(ReprsimError, match="base of adapter .* is not a local Hugging Face folder.*base=PATH"):
        compare_models(root / "adapter", root / "base", ids, base={"a": tmp_path / "missing"}, measures="cka")
    moved = tmp_path / "adapter"
    moved.mkdir()
    for f in (root / "adapter").iterdir():
        moved.joinpath(f.name).write_bytes(f.read_bytes())
    cfg = json.loads((moved / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "gpt2"  # a hub id, never downloaded
    (moved / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ReprsimError, match="names 'gpt2'.*--base-a"):
        compare_models(moved, root / "base", ids, measures="cka")
    _gpt2(tmp_path / "wide", n_embd=32)
    with pytest.raises(ReprsimError, match="does not fit its base"):
        compare_models(moved, root / "base", ids, base={"a": tmp_path / "wide"}, measures="cka")
    with pytest.raises(ReprsimError, match="base= is for PEFT adapter folders"):
        compare_models(root / "base", root / "base", ids, base=tmp_path / "wide", measures="cka")


# ---- dtype -----------------------------------------------------------------------------------------
def _cnn(seed, classes=4):
    return M.build(
        "cnn", input_shape=(3, 16, 16), num_classes=classes, channels=(8, 16, 16), penultimate_width=16, seed=seed
    )


def test_bfloat16_models_give_the_features_of_a_bf16_copy_hooked_by_hand():
    a, b = _cnn(0), _cnn(1)
    x = np.random.default_rng(0).random((30, 3, 16, 16), dtype=np.float32)
    comp = compare_models(a, b, x, layers="penultimate", measures="cka", dtype="bfloat16", progress=False)
    got = {}
    for side, m in (("a", _cnn(0)), ("b", _cnn(1))):
        m = m.to(torch.bfloat16).eval()
        with torch.no_grad():
            h = []
            handle = m.penultimate.register_forward_hook(lambda mod, i, o: h.append(o))
            m(torch.from_numpy(x).to(torch.bfloat16))
            handle.remove()
        got[side] = h[0].float().numpy()
        assert comp.features[side]["penultimate"].dtype == np.float32
        np.testing.assert_allclose(comp.features[side]["penultimate"], got[side], rtol=1e-6, atol=1e-6)
    full = compare_models(a, b, x, layers="penultimate", measures="cka", progress=False)
    assert not np.allclose(comp.features["a"]["penultimate"], full.features["a"]["penultimate"], atol=1e-5)
    assert "bfloat16" in comp.model_a
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16; got 'int8'"):
        compare_models(a, b, x, dtype="int8")


# ---- label map ------------------------------------------------------------------------------------
def test_label_map_attacks_in_the_shared_label_space():
    from reprsim.attacks import make_attack
    from reprsim.attacks.transfer import probe_subset, transfer

    a, b = _cnn(0, classes=4), _cnn(1, classes=6)
    rng = np.random.default_rng(0)
    x = rng.random((60, 3, 16, 16), dtype=np.float32)
    y = rng.integers(0, 4, 60)
    lmap = {0: 3, 1: 5, 2: None, 3: 0}  # A's class 2 is not a class of B
    comp = compare_models(
        a, b, x, labels=y, measures="cka", attack={"name": "fgsm", "eps": 0.2, "n": 40}, label_map=lmap, progress=False
    )

    class Cols(torch.nn.Module):  # the test's own column selection
        def __init__(self, m, cols):
            super().__init__()
            self.m, self.cols = m, cols

        def forward(self, t):
            return self.m(t)[:, self.cols]

    idx = probe_subset(60, 40, 0)
    keep = [i for i in idx if y[i] != 2]
    new = {0: 0, 1: 1, 3: 2}
    xs, ys = torch.from_numpy(x[keep]), torch.as_tensor([new[int(y[i])] for i in keep])
    want = transfer(
        Cols(a.eval(), [0, 1, 3]), Cols(b.eval(), [3, 5, 0]), xs, ys, make_attack("fgsm", eps=0.2), both_directions=True
    ).summary()
    got = comp.transfer_summary
    assert {"transfer_asr", "whitebox_asr", "transfer_asr_ba", "source_clean_error"} <= set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, nan_ok=True), key
    assert got["attack_n"] == len(keep) < 40  # the inputs of A's class 2 were left out
    assert 0 < got["transfer_asr"] < 1 and got["whitebox_asr_ba"] != got["whitebox_asr"]
    with pytest.raises(ReprsimError, match="no entry for probe label\\(s\\) \\[3\\]"):
        compare_models(a, b, x, labels=y, attack="fgsm", label_map={0: 3, 1: 5, 2: None})
    with pytest.raises(ReprsimError, match="one-to-one"):
        compare_models(a, b, x, labels=y, attack="fgsm", label_map={0: 3, 1: 3, 2: None, 3: 0})
    with pytest.raises(ValueError, match="label_map= is for attack transfer"):
        compare_models(a, b, x, labels=y, label_map=lmap)


# ---- a model of a reprsim sweep -------------------------------------------------------------------
SWEEP = {
    "name": "tiny",
    "sources": [{"name": "digits", "options": {}}],
    "probe_size": 40,
    "models": [{"name": "mlp", "options": {"hidden": [16, 8]}}],
    "train": {"epochs": 1, "batch_size": 64, "optimizer": "adamw", "lr": 0.003},
    "overlap": {"designs": [{"kind": "data", "fractions": [0.0]}]},
    "seeds": [0],
    "layers": ["penultimate"],
    "measures": {"names": ["cka"], "params": {}},
    "consequences": [],
    "execution": {"workers": 1},
}


def test_a_sweep_model_by_unit_id(tmp_path):
    from reprsim import storage
    from reprsim.experiments import parse_config, run_experiment

    config = parse_config(SWEEP)
    run_experiment(config, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    unit_id = next(p.name for p in (tmp_path / "run" / "units").iterdir())
    status = json.loads((tmp_path / "run" / "units" / unit_id / "status.json").read_text())
    x = np.random.default_rng(0).random((30, 1, 8, 8), dtype=np.float32)
    ref = f"{tmp_path / 'run'}:{unit_id}"
    comp = compare_models(
        f"{ref}:a", f"{ref}:b", x, layers="penultimate", measures="cka", cache_dir=tmp_path / "cache", progress=False
    )
    feats = {}
    for side in "ab":  # rebuilt by hand and loaded from the cache file the status names
        tensors, _ = storage.read_verified_state_dict(
            tmp_path / "cache" / "models" / f"{status['artifacts'][f'model_{side}']}.rsv"
        )
        hidden = tensors["penultimate.0.weight"].shape[0]
        m = M.build("mlp", input_shape=(1, 8, 8), num_classes=tensors["head.weight"].shape[0], hidden=(16, hidden))
        m.load_state_dict(tensors)
        h = []
        handle = m.penultimate.register_forward_hook(lambda mod, i, o: h.append(o))
        with torch.no_grad():
            m.eval()(torch.from_numpy(x))
        handle.remove()
        feats[side] = h[0].numpy()
    assert not np.allclose(feats["a"], feats["b"])
    want = metrics.compute("cka", _paper(feats["a"]), _paper(feats["b"]))
    assert comp.table["value"][0] == pytest.approx(want, rel=1e-5)
    with pytest.raises(ReprsimError, match="not in the cache"):
        compare_models(f"{ref}:a", f"{ref}:b", x, measures="cka", cache_dir=tmp_path / "elsewhere")
    with pytest.raises(ReprsimError, match="has no unit 'nope'"):
        compare_models(f"{tmp_path / 'run'}:nope:a", f"{ref}:b", x, measures="cka", cache_dir=tmp_path / "cache")


# ---- input_size for Hugging Face vision models ----------------------------------------------------
def test_input_size_resizes_grey_images_inside_a_hf_vit(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=16,
        patch_size=4,
        num_channels=3,
        num_labels=4,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    hf = transformers.ViTForImageClassification(cfg).eval()
    hf.save_pretrained(tmp_path / "vit")
    x = np.random.default_rng(0).random((12, 1, 8, 8), dtype=np.float32)  # grey 8 × 8, the ViT takes RGB 16 × 16
    zoo = M.build("mlp", input_shape=(1, 8, 8), num_classes=4, hidden=(16,), seed=0)
    comp = compare_models(
        tmp_path / "vit",
        zoo,
        x,
        layers={"a": "logits", "b": "penultimate"},
        measures="cka",
        input_size=16,
        progress=False,
    )
    rgb = torch.from_numpy(x).expand(-1, 3, -1, -1)
    resized = torch.nn.functional.interpolate(rgb, size=(16, 16), mode="bilinear", align_corners=False)
    with torch.no_grad():
        logits = hf(pixel_values=resized).logits.numpy()
    np.testing.assert_allclose(comp.features["a"]["logits"], logits, rtol=1e-4, atol=1e-5)
    with pytest.raises(ReprsimError, match="cannot take the inputs"):
        compare_models(tmp_path / "vit", zoo, x, layers={"a": "logits", "b": "penultimate"}, measures="cka")
    with pytest.raises(ReprsimError, match="input_size is for Hugging Face vision models"):
        compare_models(zoo, zoo, x, measures="cka", input_size=16)


def test_cli_adapter_without_a_local_base_exits_2_with_one_line(lora, tmp_path, capsys):
    from reprsim.cli import main

    root, _, ids = lora
    np.save(tmp_path / "ids.npy", ids)
    assert (
        main(
            [
                "compare-models",
                str(root / "adapter"),
                str(root / "base"),
                "--probe",
                str(tmp_path / "ids.npy"),
                "-m",
                "cka",
                "--base-a",
                str(tmp_path / "nowhere"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a local Hugging Face folder" in err[0]
    assert (
        main(
            [
                "compare-models",
                str(root / "adapter"),
                str(root / "base"),
                "--probe",
                str(tmp_path / "ids.npy"),
                "-m",
                "cka",
                "--format",
                "json",
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)[0]["value"] < 0.999


def test_a_dtype_the_model_cannot_run_is_named_in_the_error():
    class NoHalf(torch.nn.Module):  # a model whose kernel has no half-precision version
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            if x.dtype != torch.float32:
                raise RuntimeError(f"\"addmm\" not implemented for '{'Half' if x.dtype == torch.float16 else x.dtype}'")
            return self.fc(x)

    x = np.ones((5, 4), dtype=np.float32)
    with pytest.raises(ReprsimError, match="runs in dtype='float16'.*use dtype='float32'"):
        compare_models(NoHalf(), NoHalf(), x, layers="fc", measures="cka", dtype="float16", progress=False)
