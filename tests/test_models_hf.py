"""Tests for the Hugging Face adapter on tiny randomly initialised configs (skipped without transformers)."""

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from reprsim.features import extract  # noqa: E402
from reprsim.models import default_layer, layers, load_hf_model  # noqa: E402
from reprsim.models.adapters import HFModel  # noqa: E402
from reprsim.train import train  # noqa: E402


def _tiny_gpt2_dir(tmp_path, **extra):
    config = transformers.GPT2Config(
        vocab_size=40,
        n_positions=16,
        n_embd=32,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        **extra,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(tmp_path)
    return model.eval()


def test_load_local_causal_lm_matches_reference_and_exposes_layers(tmp_path):
    ref = _tiny_gpt2_dir(tmp_path)
    model = load_hf_model(tmp_path, task="causal-lm").eval()
    assert layers(model) == ["embed", "blocks.0", "blocks.1", "penultimate", "logits"]
    assert default_layer(model) == "penultimate"
    ids = torch.randint(0, 40, (3, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = ref(input_ids=ids, output_hidden_states=True)
    torch.testing.assert_close(model(ids), out.logits)
    emb = model.get_input_embeddings()
    torch.testing.assert_close(model(inputs_embeds=emb(ids)), out.logits)
    feats = extract(model, ids, layers=["penultimate", "blocks.0"], pool="mean")
    # hidden_states[-1] is the output after the final LayerNorm, i.e. the LM head's input
    np.testing.assert_allclose(feats["penultimate"], out.hidden_states[-1].mean(1).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats["blocks.0"], out.hidden_states[1].mean(1).numpy(), rtol=1e-5, atol=1e-5)


def test_fine_tune_causal_lm_reduces_loss(tmp_path):
    _tiny_gpt2_dir(tmp_path)
    model = load_hf_model(tmp_path)
    tokens = np.tile(np.arange(8), 300)
    cfg = dict(
        optimizer="adamw",
        lr=3e-3,
        batch_size=8,
        block_size=12,
        max_steps=40,
        eval_interval=20,
        eval_batches=2,
        num_threads=1,
    )
    result = train(model, tokens, cfg, seed=0, eval_dataset=tokens[:200], progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.eval_loss < np.log(40)  # better than uniform over the vocabulary


def test_sequence_classification_adapter(tmp_path):
    config = transformers.GPT2Config(
        vocab_size=40, n_positions=16, n_embd=32, n_layer=1, n_head=2, num_labels=3, pad_token_id=0
    )
    torch.manual_seed(0)
    transformers.GPT2ForSequenceClassification(config).save_pretrained(tmp_path)
    model = load_hf_model(tmp_path, task="sequence-classification", num_labels=3)
    ids = torch.randint(1, 40, (4, 6), generator=torch.Generator().manual_seed(2))
    assert model(ids).shape == (4, 3)
    feats = extract(model, ids, pool="last")
    assert feats["penultimate"].shape == (4, 32)


def test_bad_path_and_task():
    with pytest.raises(ValueError, match="never"):
        load_hf_model("/nonexistent/model/dir")
    with pytest.raises(ValueError, match="task"):
        HFModel(torch.nn.Linear(2, 2), task="vision")


def test_padded_batches_pass_the_attention_mask_to_hugging_face_models(tmp_path):
    """Issue 11: a text's features do not depend on the padding of its batch (bidirectional encoder
    and causal LM); pooling uses real tokens only."""
    torch.manual_seed(0)
    bert_cfg = transformers.BertConfig(
        vocab_size=30,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        pad_token_id=0,
    )
    transformers.BertModel(bert_cfg).save_pretrained(tmp_path / "bert")
    _tiny_gpt2_dir(tmp_path / "gpt")
    lengths = [5, 3, 8, 1]
    ids = torch.randint(1, 30, (4, 8), generator=torch.Generator().manual_seed(3))
    mask = (torch.arange(8)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = ids * mask  # pad id 0 after each text
    for path, task in ((tmp_path / "bert", "base"), (tmp_path / "gpt", "causal-lm")):
        model = load_hf_model(path, task=task)
        names = ["penultimate", "blocks.0", "embed"]
        padded = extract(model, {"input_ids": ids, "attention_mask": mask}, layers=names)
        last = extract(model, ids, layers="penultimate", attention_mask=mask, pool="last")["penultimate"]
        for i, n in enumerate(lengths):
            alone = extract(model, ids[i : i + 1, :n], layers=names)
            for k in names:
                np.testing.assert_allclose(padded[k][i], alone[k][0], rtol=1e-5, atol=1e-5)
            alone_last = extract(model, ids[i : i + 1, :n], layers="penultimate", pool="last")["penultimate"][0]
            np.testing.assert_allclose(last[i], alone_last, rtol=1e-5, atol=1e-5)
        if task == "base":  # without the mask a bidirectional encoder attends to the padding
            plain = extract(model, ids, layers="penultimate")["penultimate"]
            assert not np.allclose(plain[1], padded["penultimate"][1], atol=1e-3)


def test_vision_models_and_task_detection(tmp_path):
    from reprsim.models.adapters import HFVisionModel, detect_hf_task

    torch.manual_seed(0)
    cfg = transformers.ViTConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=8,
        patch_size=4,
        num_labels=3,
    )
    transformers.ViTForImageClassification(cfg).save_pretrained(tmp_path / "vitc")
    transformers.ViTModel(cfg).save_pretrained(tmp_path / "vit")
    _tiny_gpt2_dir(tmp_path / "gpt")
    assert detect_hf_task(tmp_path / "vitc") == "image-classification"
    assert detect_hf_task(tmp_path / "vit") == "image-base"
    assert detect_hf_task(tmp_path / "gpt") == "causal-lm"
    model = load_hf_model(tmp_path / "vitc", task="auto").eval()
    assert isinstance(model, HFVisionModel)
    assert layers(model) == ["embed", "blocks.0", "blocks.1", "penultimate", "logits"]
    x = torch.rand(5, 3, 8, 8)
    assert model(x).shape == (5, 3)
    feats = extract(model, x, layers=["penultimate", "blocks.1"])
    with torch.no_grad():
        hidden = model.hf.vit(pixel_values=x).last_hidden_state
    np.testing.assert_allclose(feats["penultimate"], hidden[:, 0].numpy(), rtol=1e-5, atol=1e-5)  # the CLS token
    with pytest.raises(ValueError, match=r"expects images \(N, 3, 8, 8\)"):
        model(torch.rand(2, 3, 16, 16))
    enc = load_hf_model(tmp_path / "vit", task="auto")
    assert enc.task == "image-base" and default_layer(enc) == "penultimate"
    assert extract(enc, x)["penultimate"].shape == (5, 16)
