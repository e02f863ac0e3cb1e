"""Local Hugging Face causal LMs for the llm kind: tiny random models built here, loading, LoRA, features.

The helpers ``tiny_tokenizer``, ``tiny_llama_dir`` and ``tiny_gpt2_dir`` are imported by the other
``test_llm*`` files: they build random models from configs in a temporary folder (``save_pretrained``);
nothing is downloaded.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from reprsim.models.lora import FineTunedLM, apply_lora, hidden_features, layer_names  # noqa: E402
from reprsim.models.hf_lm import base_identity, load_causal_lm, model_dir_problems, module_names  # noqa: E402
from reprsim.models.hf_spec import LoraOptions, lora_options  # noqa: E402

EOT = "<|endoftext|>"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_TEXT = (
    "The quick brown fox jumps over the lazy dog. Sure, here is how to bake bread: mix flour, water and salt. "
    "I cannot help with that. def add(a, b):\n    return a + b\n"
) * 40


@lru_cache(maxsize=2)
def tiny_tokenizer(chat: bool = True):
    """A 300-token byte-level BPE as a ``PreTrainedTokenizerFast`` (optionally with a chat template)."""
    from transformers import PreTrainedTokenizerFast

    from reprsim.data.corpora import train_bpe

    tok = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe([_TEXT], 300, (EOT, "<|user|>", "<|assistant|>")),
        eos_token=EOT,
        pad_token=EOT,
        unk_token=None,
    )
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_llama_dir(folder: Path, *, chat: bool = True, layers: int = 2, seed: int = 0, positions: int = 256) -> Path:
    """A random 2-layer, 32-wide Llama and its tokenizer saved in ``folder``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer(chat)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=positions,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_gpt2_dir(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer, 32-wide GPT-2 and its tokenizer saved in ``folder``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer(True)
    config = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=256,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return tiny_llama_dir(tmp_path_factory.mktemp("llama"))


def test_lora_state_is_the_adapter_only_and_round_trips(llama):
    model = apply_lora(load_causal_lm(llama), LoraOptions(r=4, alpha=8, dropout=0.0), seed=3)
    state = model.state_dict()
    assert state and all(".lora_A." in k or ".lora_B." in k for k in state)
    assert len(state) == 2 * 7 * 2  # A and B of 7 projections in 2 layers
    assert all(torch.count_nonzero(v) == 0 for k, v in state.items() if "lora_B" in k)  # B starts at zero
    # the same seed gives the same adapter initialisation; another seed another one
    again = apply_lora(load_causal_lm(llama), LoraOptions(r=4, alpha=8, dropout=0.0), seed=3).state_dict()
    other = apply_lora(load_causal_lm(llama), LoraOptions(r=4, alpha=8, dropout=0.0), seed=4).state_dict()
    first_a = next(k for k in state if "lora_A" in k)
    assert torch.equal(state[first_a], again[first_a]) and not torch.equal(state[first_a], other[first_a])
    changed = {k: torch.randn_like(v) for k, v in state.items()}
    model.load_state_dict(changed)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in changed.items())
    with pytest.raises(RuntimeError, match="not this model's adapter"):
        model.load_state_dict({k: v for k, v in list(changed.items())[1:]})


def test_full_finetuning_state_is_the_whole_model(llama):
    model = apply_lora(load_causal_lm(llama), lora_options(False), seed=0)
    assert model.full and set(model.state_dict()) == {f"lm.{k}" for k in load_causal_lm(llama).state_dict()}


def test_features_are_the_final_norm_mean_over_real_tokens(llama):
    model = apply_lora(load_causal_lm(llama), LoraOptions(r=4), seed=0).eval()
    ids = torch.randint(0, 300, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding
    feats = hidden_features(model, ids, ["penultimate", "blocks.1"], attention_mask=mask)
    assert layer_names(model) == ["penultimate", "blocks.0", "blocks.1"]
    with torch.no_grad():
        out = model.lm(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    want = out.hidden_states[-1]  # after the final norm
    assert np.allclose(feats["penultimate"][0], want[0].mean(0).numpy(), atol=1e-5)
    assert np.allclose(feats["penultimate"][1], want[1, :6].mean(0).numpy(), atol=1e-5)
    # padding does not change a row's features: the same text alone
    alone = hidden_features(model, ids[1:2, :6], ["penultimate"])["penultimate"]
    assert np.allclose(alone[0], feats["penultimate"][1], atol=1e-5)
    with pytest.raises(ValueError, match="unknown layer"):
        hidden_features(model, ids, ["blocks.9"])


def test_wrapper_trains_through_the_one_loop_and_resumes(llama, tmp_path):
    from reprsim.train import train

    tokens = [np.random.default_rng(0).integers(0, 300, 2000)]
    cfg = {"block_size": 16, "max_steps": 6, "eval_interval": 3, "batch_size": 4, "optimizer": "adamw", "lr": 1e-2}

    def run(ckpt):
        model = apply_lora(load_causal_lm(llama), LoraOptions(r=4, dropout=0.0), seed=1)
        return train(model, tokens, cfg, 0, checkpoint_dir=ckpt, progress=False).model.state_dict()

    a = run(tmp_path / "a")
    b = run(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)  # deterministic on CPU
    assert any(torch.count_nonzero(v) for k, v in a.items() if "lora_B" in k)  # the adapter moved
    # the checkpoint holds the adapter, not the base
    from safetensors import safe_open

    with safe_open(str(tmp_path / "a" / "model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(a)


def test_module_names_and_model_folder_checks(llama, tmp_path):
    model = load_causal_lm(llama)
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= set(module_names(model))
    assert model_dir_problems(llama) == []
    (tmp_path / "empty").mkdir()
    assert "no config.json" in model_dir_problems(tmp_path / "empty")[0]
    ident = base_identity(llama)
    assert ident["path"] == str(llama.resolve()) and ident["weights"][0][0] == "model.safetensors"


def test_gpt2_takes_its_own_module_names(tmp_path):
    gpt2 = tiny_gpt2_dir(tmp_path / "gpt2")
    model = apply_lora(load_causal_lm(gpt2), LoraOptions(r=2, target_modules=("c_attn", "c_proj", "c_fc")), seed=0)
    assert isinstance(model, FineTunedLM) and layer_names(model)[-1] == "blocks.1"
    feats = hidden_features(model, torch.randint(0, 300, (2, 5)), ["penultimate"])
    assert feats["penultimate"].shape == (2, 32)
