"""A thin adapter over causal language models, plus batched greedy decoding.

The attacks only need two things from a model: its token-embedding matrix ``E`` (V, d) and a
map ``inputs_embeds (B, T, d) -> logits (B, T, V)``. :class:`CausalLM` gets both from
reprsim's :class:`~reprsim.models.gpt.GPT`, from Hugging Face ``*ForCausalLM`` models
(``model(inputs_embeds=...).logits``), or from a user callable.

Batches are right-padded: in a causal model the pad positions after a sequence cannot change the
logits of the positions before them, so no attention mask is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["CausalLM", "as_causal_lm", "pad_right", "greedy_generate"]


class CausalLM:
    """Adapter that exposes a causal LM as ``embedding_matrix`` and ``logits_from_embeds``.

    Args:
        model: a module with ``get_input_embeddings()`` (reprsim GPT, Hugging Face LMs).
        forward: optional callable ``inputs_embeds (B, T, d) -> logits (B, T, V)``; by default
            ``model(inputs_embeds=...)``, taking ``.logits`` when the output has it.
        embedding_matrix: optional (V, d) tensor to use instead of ``model.get_input_embeddings()``.
        max_len: optional longest sequence the model accepts (``model.block_size`` by default).
    """

    def __init__(
        self,
        model: nn.Module | None,
        *,
        forward: Callable[[Tensor], Tensor] | None = None,
        embedding_matrix: Tensor | None = None,
        max_len: int | None = None,
    ) -> None:
        if embedding_matrix is None:
            if model is None or not hasattr(model, "get_input_embeddings"):
                raise TypeError(
                    "CausalLM: the model has no get_input_embeddings(); pass embedding_matrix=(V, d) "
                    "and forward=callable(inputs_embeds) -> logits."
                )
            embedding_matrix = model.get_input_embeddings().weight
        if embedding_matrix.dim() != 2:
            raise ValueError(f"CausalLM: embedding_matrix must be (V, d), got shape {tuple(embedding_matrix.shape)}.")
        if forward is None and model is None:
            raise TypeError("CausalLM: pass a model or a forward callable.")
        self.model = model
        self._forward = forward
        self.embedding_matrix: Tensor = embedding_matrix
        self.max_len = max_len if max_len is not None else getattr(model, "block_size", None)

    @property
    def vocab_size(self) -> int:
        """Number of rows of the embedding matrix."""
        return int(self.embedding_matrix.shape[0])

    @property
    def device(self) -> torch.device:
        """Device of the embedding matrix (inputs are moved there)."""
        return self.embedding_matrix.device

    def logits_from_embeds(self, embeds: Tensor) -> Tensor:
        """Return logits (B, T, V) for input embeddings (B, T, d)."""
        if self.max_len is not None and embeds.shape[1] > self.max_len:
            raise ValueError(
                f"CausalLM: sequence length {embeds.shape[1]} exceeds the model's maximum "
                f"{self.max_len}; use a shorter suffix or a model with a larger block_size."
            )
        out = self._forward(embeds) if self._forward is not None else self.model(inputs_embeds=embeds)
        return out.logits if hasattr(out, "logits") else out

    def embed(self, ids: Tensor) -> Tensor:
        """Return token embeddings (B, T, d) of ids (B, T)."""
        return self.embedding_matrix[ids.to(self.device)]

    def logits(self, ids: Tensor) -> Tensor:
        """Return logits (B, T, V) of token ids (B, T)."""
        return self.logits_from_embeds(self.embed(ids))


def as_causal_lm(model: nn.Module | CausalLM) -> CausalLM:
    """Return ``model`` itself if it is a :class:`CausalLM`, else wrap it with the default adapter."""
    return model if isinstance(model, CausalLM) else CausalLM(model)


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int, length: int | None = None) -> tuple[Tensor, Tensor]:
    """Right-pad token lists into a LongTensor (N, T); returns (ids, lengths (N,))."""
    if len(seqs) == 0:
        raise ValueError("pad_right: got no sequences.")
    lens = [len(s) for s in seqs]
    t = max(lens) if length is None else length
    if t < max(lens):
        raise ValueError(f"pad_right: length {t} is shorter than the longest sequence ({max(lens)}).")
    out = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out, torch.as_tensor(lens, dtype=torch.long)


@torch.no_grad()
def greedy_generate(
    model: nn.Module | CausalLM,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    pad_id: int = 0,
    stop_id: int | None = None,
    batch_size: int = 256,
) -> list[list[int]]:
    """Greedy-decode ``max_new_tokens`` tokens after each prompt (prompts may differ in length).

    Returns one list of generated ids per prompt, cut after ``stop_id`` (kept) when given.
    Works on right-padded batches without a KV cache (fine for the short sequences used here).
    """
    lm = as_causal_lm(model)
    if max_new_tokens < 1:
        raise ValueError(f"greedy_generate: max_new_tokens must be >= 1, got {max_new_tokens}.")
    was_training = lm.model.training if lm.model is not None else False
    if lm.model is not None:
        lm.model.eval()
    results: list[list[int]] = []
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            longest = max(len(p) for p in chunk) + max_new_tokens
            ids, lens = pad_right(chunk, pad_id, length=longest)
            ids = ids.to(lm.device)
            rows = torch.arange(len(chunk), device=lm.device)
            pos = lens.to(lm.device)
            gen = torch.empty((len(chunk), max_new_tokens), dtype=torch.long, device=lm.device)
            for step in range(max_new_tokens):
                cur = int(pos.max())
                logits = lm.logits(ids[:, :cur])  # (B, cur, V)
                nxt = logits[rows, pos - 1].argmax(-1)
                ids[rows, pos] = nxt
                gen[:, step] = nxt
                pos = pos + 1
            for row in gen.tolist():
                if stop_id is not None and stop_id in row:
                    row = row[: row.index(stop_id) + 1]
                results.append(row)
    finally:
        if lm.model is not None and was_training:
            lm.model.train()
    return results
