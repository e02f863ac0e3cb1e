"""Tests for the nanoGPT-style decoder in reprsim.models.gpt."""

import pytest
import torch

from reprsim.models.gpt import GPT, GPT_PRESETS, build_gpt


def _tiny(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(vocab_size=17, block_size=8, n_layer=2, n_head=2, n_embd=16).eval()


def test_logits_shape_and_embeddings():
    model = _tiny()
    idx = torch.randint(0, 17, (3, 8), generator=torch.Generator().manual_seed(1))
    logits = model(idx)
    assert logits.shape == (3, 8, 17)
    emb = model.get_input_embeddings()
    assert isinstance(emb, torch.nn.Embedding) and emb.weight.shape == (17, 16)
    assert model.lm_head.weight is emb.weight  # tied


def test_inputs_embeds_matches_idx_and_one_hot_gradient():
    model = _tiny()
    idx = torch.randint(0, 17, (2, 6), generator=torch.Generator().manual_seed(2))
    ref = model(idx)
    emb = model.get_input_embeddings()
    torch.testing.assert_close(model(inputs_embeds=emb(idx)), ref)
    one_hot = torch.nn.functional.one_hot(idx, 17).float().requires_grad_(True)
    out = model(inputs_embeds=one_hot @ emb.weight)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    out[:, -1].logsumexp(-1).sum().backward()
    assert one_hot.grad is not None and one_hot.grad.shape == (2, 6, 17)
    assert one_hot.grad.abs().sum() > 0


def test_causality_future_tokens_do_not_change_past_logits():
    model = _tiny()
    idx = torch.randint(0, 17, (1, 8), generator=torch.Generator().manual_seed(3))
    changed = idx.clone()
    changed[0, 5:] = (changed[0, 5:] + 1) % 17
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_ln_f_is_a_named_module_with_hidden_states():
    model = _tiny()
    names = dict(model.named_modules())
    assert "ln_f" in names and "blocks.1" in names
    seen = {}
    handle = model.ln_f.register_forward_hook(lambda m, i, o: seen.setdefault("h", o))
    model(torch.zeros(2, 4, dtype=torch.long))
    handle.remove()
    assert seen["h"].shape == (2, 4, 16)
    # LayerNorm output with default affine init: per-token mean 0
    torch.testing.assert_close(seen["h"].mean(-1), torch.zeros(2, 4), atol=1e-5, rtol=0)


def test_bad_inputs_raise_clear_errors():
    model = _tiny()
    with pytest.raises(ValueError, match="exactly one"):
        model()
    with pytest.raises(ValueError, match="exactly one"):
        model(torch.zeros(1, 2, dtype=torch.long), inputs_embeds=torch.zeros(1, 2, 16))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(torch.zeros(9, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="inputs_embeds"):
        model(inputs_embeds=torch.zeros(1, 3, 15))
    with pytest.raises(ValueError, match="divisible"):
        GPT(10, 8, n_head=3, n_embd=16)
    with pytest.raises(ValueError, match="preset"):
        build_gpt(10, 8, "huge")


def test_presets_span_01M_to_10M_parameters():
    counts = {k: build_gpt(256, 128, k).num_parameters() for k in GPT_PRESETS}
    assert min(counts.values()) < 200_000
    assert 5_000_000 < max(counts.values()) <= 11_000_000
    assert list(counts.values()) == sorted(counts.values())


def test_same_seed_same_init_and_generate_is_greedy_argmax():
    a, b = _tiny(5), _tiny(5)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    start = torch.tensor([[1, 2, 3]])
    out = a.generate(start, 3)
    assert out.shape == (1, 6) and torch.equal(out[:, :3], start)
    assert out[0, 3].item() == a(start)[0, -1].argmax().item()
