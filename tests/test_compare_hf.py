"""compare_models on local Hugging Face folders (tiny random models saved in tmp_path; nothing is
downloaded): image classifiers, vision and text encoders, causal LMs with their tokenizers."""

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

import reprsim.models as M  # noqa: E402
from reprsim.compare import compare_models  # noqa: E402
from reprsim.compare.references import load_model  # noqa: E402
from reprsim.errors import ReprsimError  # noqa: E402

torch.set_num_threads(1)
WORDS = "the a cat dog sat ran on under mat tree big small red blue quickly slowly".split()


def _save_tokenizer(path, pad=True):
    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "[EOS]", *WORDS])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    extra = {"pad_token": "[PAD]"} if pad else {}
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]", **extra)
    fast.save_pretrained(path)
    return fast


def _gpt2(path, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=len(WORDS) + 3,
        n_positions=32,
        n_embd=16,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = transformers.GPT2LMHeadModel(cfg)
    model.save_pretrained(path)
    _save_tokenizer(path, pad=False)  # GPT-2 style: no pad token, the eos token pads
    return model.eval()


def _bert(path, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(
        vocab_size=len(WORDS) + 3,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=1,
    )
    model = transformers.BertModel(cfg)
    model.save_pretrained(path)
    _save_tokenizer(path)
    return model.eval()


def _resnet(path, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=4
    )
    model = transformers.ResNetForImageClassification(cfg)
    model.save_pretrained(path)
    return model.eval()


def _vit(path, cls=None, seed=0):
    torch.manual_seed(seed)
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
    model = (cls or transformers.ViTForImageClassification)(cfg)
    model.save_pretrained(path)
    return model.eval()


TEXTS = [
    "the cat sat on the mat",
    "a dog ran",
    "the big red dog ran quickly under the small blue tree",
    "cat",
    "the small cat sat slowly on a big mat",
    "a blue tree",
    "dog sat under a tree",
    "the red cat ran on the mat quickly",
    "a small dog",
    "the mat",
]


def test_causal_lm_default_layer_is_the_final_norm_mean_over_real_tokens(tmp_path):
    hf = _gpt2(tmp_path / "gpt")
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "gpt")
    comp = compare_models(
        tmp_path / "gpt",
        tmp_path / "gpt",
        TEXTS,
        layers=["penultimate", "transformer.h.0"],
        measures=["cka", "mutual_knn"],
        params={"k": 3},
        batch_size=4,
    )
    for i, text in enumerate(TEXTS):  # each text alone, no padding: the independent path
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            hs = hf(input_ids=ids, output_hidden_states=True).hidden_states
        np.testing.assert_allclose(
            comp.features["a"]["penultimate"][i], hs[-1][0].mean(0).numpy(), rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            comp.features["a"]["transformer.h.0"][i], hs[1][0].mean(0).numpy(), rtol=1e-4, atol=1e-5
        )
    np.testing.assert_allclose(np.diag(comp.matrix("cka").to_numpy()), 1.0, atol=1e-6)
    assert "GPT2LMHeadModel" in comp.model_a
    _gpt2(tmp_path / "gpt2", seed=1)
    other = compare_models(tmp_path / "gpt", tmp_path / "gpt2", TEXTS, measures=["cka"])
    assert other.matrix("cka").iloc[0, 0] < 0.999


def test_text_encoder_with_padding_matches_unpadded_texts(tmp_path):
    hf = _bert(tmp_path / "bert")
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "bert")
    ref = load_model(tmp_path / "bert")
    assert ref.kind == "text" and ref.tokenizer is not None
    comp = compare_models(tmp_path / "bert", tmp_path / "bert", TEXTS, layers="all", measures=["cka"])
    assert comp.layers_a == ["embed", "blocks.0", "blocks.1", "penultimate", "logits"]
    for i, text in enumerate(TEXTS):
        with torch.no_grad():
            out = hf(input_ids=torch.tensor([tok(text)["input_ids"]])).last_hidden_state
        np.testing.assert_allclose(comp.features["a"]["penultimate"][i], out[0].mean(0).numpy(), rtol=1e-4, atol=1e-5)


def test_texts_need_a_tokenizer_and_bytes_work_for_reprsim_gpts(tmp_path):
    gpt = M.build("gpt", vocab_size=256, block_size=64, preset="nano", seed=0)
    with pytest.raises(ReprsimError, match="no tokenizer for the texts: pass tokenizer="):
        compare_models(gpt, gpt, TEXTS)
    comp = compare_models(gpt, gpt, TEXTS, tokenizer="bytes", measures=["cka"])
    from reprsim.data.text import encode
    from reprsim.features import extract

    for i in (0, 3):
        alone = extract(gpt, torch.from_numpy(encode(TEXTS[i]).astype(np.int64))[None])["penultimate"][0]
        np.testing.assert_allclose(comp.features["a"]["penultimate"][i], alone, rtol=1e-4, atol=1e-5)
    _resnet(tmp_path / "resnet")
    with pytest.raises(ReprsimError, match="image model but the inputs are texts"):
        compare_models(tmp_path / "resnet", gpt, TEXTS, tokenizer="bytes")


def test_image_classifier_layers_and_penultimate_are_the_pooled_features(tmp_path):
    hf = _resnet(tmp_path / "resnet")
    x = np.random.default_rng(0).random((24, 3, 16, 16), dtype=np.float32)
    zoo = M.build("cnn", input_shape=(3, 16, 16), num_classes=4, channels=(8, 16), seed=0)
    comp = compare_models(
        tmp_path / "resnet", zoo, x, layers={"a": "all", "b": ["block2", "penultimate"]}, measures=["cka", "svcca"]
    )
    assert comp.layers_a == ["embed", "blocks.0", "blocks.1", "penultimate", "logits"]
    assert comp.matrix("cka").shape == (5, 2)
    with torch.no_grad():
        pooled = hf.resnet(torch.from_numpy(x)).pooler_output.flatten(1).numpy()
        logits = hf(torch.from_numpy(x)).logits.numpy()
    np.testing.assert_allclose(comp.features["a"]["penultimate"], pooled, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(comp.features["a"]["logits"], logits, rtol=1e-4, atol=1e-5)
    raw = compare_models(
        tmp_path / "resnet", tmp_path / "resnet", x, layers=["resnet.encoder.stages.0"], measures=["cka"]
    )
    assert raw.matrix("cka").iloc[0, 0] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ReprsimError, match=r"no layer 'resnet.encoder.stage9'.*available layers: embed, blocks.0"):
        compare_models(tmp_path / "resnet", zoo, x, layers={"a": "resnet.encoder.stage9", "b": "penultimate"})
    labels = np.arange(24) % 4
    attacked = compare_models(
        tmp_path / "resnet", zoo, x, labels=labels, attack={"name": "fgsm", "eps": 0.03}, measures=["cka"]
    )
    assert set(attacked.transfer["direction"]) == {"A→B", "B→A"}


def test_vision_transformer_normalisation_size_check_and_encoder(tmp_path):
    hf = _vit(tmp_path / "vit")
    (tmp_path / "vit" / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3], "do_normalize": True})
    )
    x = np.random.default_rng(0).random((12, 3, 16, 16), dtype=np.float32)
    comp = compare_models(tmp_path / "vit", tmp_path / "vit", x, layers=["logits", "penultimate"], measures=["cka"])
    mean, std = torch.tensor([0.5, 0.4, 0.3])[:, None, None], torch.tensor([0.2, 0.25, 0.3])[:, None, None]
    with torch.no_grad():
        logits = hf(pixel_values=(torch.from_numpy(x) - mean) / std).logits.numpy()
    np.testing.assert_allclose(comp.features["a"]["logits"], logits, rtol=1e-4, atol=1e-5)
    assert M.input_normalization(load_model(tmp_path / "vit").module) is not None  # attacks work in pixels
    with pytest.raises(
        ReprsimError,
        match=r"model A \(ViTForImageClassification \(vit\)\) cannot take the inputs "
        r"of shape \(12, 3, 32, 32\).*\(N, 3, 16, 16\)",
    ):
        compare_models(tmp_path / "vit", tmp_path / "vit", np.zeros((12, 3, 32, 32), np.float32))
    enc = _vit(tmp_path / "enc", cls=transformers.ViTModel)
    ref = load_model(tmp_path / "enc")
    assert ref.kind == "image" and ref.module.task == "image-base"
    comp = compare_models(tmp_path / "enc", tmp_path / "vit", x, measures=["cka"])
    with torch.no_grad():
        hidden = enc(pixel_values=torch.from_numpy(x)).last_hidden_state.mean(1).numpy()
    np.testing.assert_allclose(comp.features["a"]["penultimate"], hidden, rtol=1e-4, atol=1e-5)
    with pytest.raises(ReprsimError, match="weights= is for MODULE:CALLABLE factories"):
        load_model(tmp_path / "enc", tmp_path / "w.safetensors")
