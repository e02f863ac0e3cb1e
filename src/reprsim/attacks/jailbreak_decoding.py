"""Answers of a causal LM to jailbreak prompts: greedy or sampled (temperature, nucleus top-p), batched.

:func:`decode_batch` is what the jailbreak transfer stage calls; :func:`sample_batch` and
:func:`sample_answers` are its sampled form. Hugging Face fine-tunes
(:class:`~reprsim.models.lora.FineTunedLM`: they have ``generate`` and ``hf_model``) use their
KV-cached ``generate`` on left-padded rows; any other causal LM a plain loop on right-padded rows
(causal: the padding after a row cannot change it), greedy through
:func:`reprsim.models.causal_lm.greedy_generate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from reprsim.models.causal_lm import greedy_generate

__all__ = ["decode_batch", "sample_answers", "sample_batch"]


def _top_p_filter(probs: Tensor, top_p: float) -> Tensor:
    sorted_p, order = probs.sort(dim=-1, descending=True)
    keep = sorted_p.cumsum(-1) - sorted_p < top_p  # the smallest prefix whose mass reaches top_p
    filtered = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
    return filtered / filtered.sum(-1, keepdim=True)


def sample_answers(model: nn.Module, prompt: Sequence[int], n: int, **kwargs: Any) -> list[list[int]]:
    """``n`` sampled continuations of one prompt: :func:`sample_batch` of ``[prompt]``."""
    return sample_batch(model, [prompt], n, **kwargs)[0]


def sample_batch(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    n: int,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    stop_ids: Sequence[int] = (),
    pad_id: int = 0,
    batch_rows: int = 256,
) -> list[list[list[int]]]:
    """``n`` sampled continuations (temperature, nucleus ``top_p``) of each prompt, each cut after a stop id.

    Returns one list of ``n`` token-id lists per prompt. The ``len(prompts) · n`` rows are decoded in
    batches of ``batch_rows``; batch ``b`` uses seed ``seed + b`` (``torch.manual_seed`` around a
    Hugging Face ``generate``, else a ``torch.Generator``); deterministic on CPU.
    """
    return decode_batch(
        model,
        prompts,
        n,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        stop_ids=stop_ids,
        pad_id=pad_id,
        batch_rows=batch_rows,
    )


def _hf_rows(
    model: nn.Module,
    chunk: list[list[int]],
    *,
    greedy: bool,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    stop_ids: Sequence[int],
    pad_id: int,
) -> list[list[int]]:
    """New tokens of a Hugging Face fine-tune's ``generate`` on left-padded rows."""
    from transformers import GenerationConfig

    from reprsim.devices import model_device

    device = model_device(model)
    longest = max(len(r) for r in chunk)
    ids = torch.full((len(chunk), longest), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(chunk):
        ids[i, longest - len(r) :] = torch.as_tensor(r)
        mask[i, longest - len(r) :] = 1
    sampling = {} if greedy else {"temperature": float(temperature), "top_p": float(top_p), "top_k": 0}
    config = GenerationConfig(
        do_sample=not greedy,
        **sampling,
        max_new_tokens=max_new_tokens,
        eos_token_id=list(stop_ids) or None,
        pad_token_id=pad_id,
    )
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        out = model.generate(ids.to(device), attention_mask=mask.to(device), generation_config=config)
    return out[:, longest:].tolist()


def _sampled_rows(
    model: nn.Module,
    chunk: list[list[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    pad_id: int,
) -> list[list[int]]:
    """New tokens of any causal LM sampled with a plain loop on right-padded rows."""
    from reprsim.devices import model_device
    from reprsim.models.causal_lm import as_causal_lm

    lm, device = as_causal_lm(model), model_device(model)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    longest = max(len(r) for r in chunk)
    ids = torch.full((len(chunk), longest + max_new_tokens), pad_id, dtype=torch.long, device=device)
    for i, r in enumerate(chunk):
        ids[i, : len(r)] = torch.as_tensor(r)
    pos = torch.as_tensor([len(r) for r in chunk], device=device)
    at = torch.arange(len(chunk), device=device)
    for _ in range(max_new_tokens):
        logits = lm.logits(ids[:, : int(pos.max())])[at, pos - 1].float() / float(temperature)
        probs = _top_p_filter(torch.softmax(logits, -1), float(top_p)).cpu()
        ids[at, pos] = torch.multinomial(probs, 1, generator=gen).squeeze(1).to(device)
        pos = pos + 1
    return [ids[i, len(r) : len(r) + max_new_tokens].tolist() for i, r in enumerate(chunk)]


@torch.no_grad()
def decode_batch(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    n: int = 1,
    *,
    max_new_tokens: int,
    greedy: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    stop_ids: Sequence[int] = (),
    pad_id: int = 0,
    batch_rows: int = 256,
) -> list[list[list[int]]]:
    """``n`` continuations of each prompt (greedy: ``n`` must be 1), each cut after its first stop id (kept).

    Returns one list of ``n`` token-id lists per prompt; rows are decoded ``batch_rows`` at a time,
    batch ``b`` with seed ``seed + b`` when sampled (see the module docstring for the two paths).
    """
    if greedy and n != 1:
        raise ValueError(f"decode_batch: greedy decoding gives one answer per prompt, got n={n}")
    rows = [list(map(int, p)) for p in prompts for _ in range(n)]
    hf = hasattr(model, "generate") and hasattr(model, "hf_model")
    was_training = model.training
    model.eval()
    new: list[list[int]] = []
    try:
        if greedy and not hf:  # stop ids are cut below, as for the other paths
            new = greedy_generate(model, rows, max_new_tokens, pad_id=pad_id, batch_size=batch_rows)
        else:
            for b, start in enumerate(range(0, len(rows), batch_rows)):
                chunk = rows[start : start + batch_rows]
                if hf:
                    new += _hf_rows(
                        model,
                        chunk,
                        greedy=greedy,
                        max_new_tokens=max_new_tokens,
                        temperature=temperature,
                        top_p=top_p,
                        seed=seed + b,
                        stop_ids=stop_ids,
                        pad_id=pad_id,
                    )
                else:
                    new += _sampled_rows(
                        model,
                        chunk,
                        max_new_tokens=max_new_tokens,
                        temperature=temperature,
                        top_p=top_p,
                        seed=seed + b,
                        pad_id=pad_id,
                    )
    finally:
        model.train(was_training)
    stops = {int(s) for s in stop_ids}
    out_ids = []
    for row in new:
        cut = next((i for i, t in enumerate(row) if t in stops), None)
        out_ids.append(row[: cut + 1] if cut is not None else row)
    return [out_ids[i * n : (i + 1) * n] for i in range(len(prompts))]
