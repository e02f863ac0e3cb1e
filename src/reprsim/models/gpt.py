"""nanoGPT-style decoder-only language model (pre-LayerNorm, causal self-attention).

Layer names (usable by :func:`reprsim.features.extract`): ``embed`` (token + position
embeddings), ``blocks.<i>`` (residual stream after block ``i``), ``penultimate`` = module ``ln_f``
(hidden states after the final LayerNorm, the representation the paper compares) and ``logits``
(module ``lm_head``). Raw module paths such as ``ln_f`` work too.

Shape:
    - ``idx``: (B, T) int64 token ids with ``T <= block_size``
    - ``inputs_embeds``: (B, T, n_embd) float token embeddings (e.g. one-hot @ ``wte.weight``,
      as jailbreak attacks such as GCG need)
    - output: (B, T, vocab_size) logits
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GPT", "GPT_PRESETS", "GPTPreset", "build_gpt"]


@dataclass(frozen=True)
class GPTPreset:
    """Size of a GPT preset: number of blocks, attention heads and embedding width."""

    n_layer: int
    n_head: int
    n_embd: int


#: Presets from ~0.1M to ~10M parameters (counted for a byte-level vocabulary of 256).
GPT_PRESETS: dict[str, GPTPreset] = {
    "nano": GPTPreset(n_layer=2, n_head=2, n_embd=64),  # ~0.12M
    "micro": GPTPreset(n_layer=4, n_head=4, n_embd=128),  # ~0.8M
    "mini": GPTPreset(n_layer=6, n_head=6, n_embd=192),  # ~2.7M
    "small": GPTPreset(n_layer=8, n_head=8, n_embd=320),  # ~9.9M
}


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention; input and output (B, T, n_embd)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.dropout = dropout
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        hs = c // self.n_head
        q = q.view(b, t, self.n_head, hs).transpose(1, 2)
        k = k.view(b, t, self.n_head, hs).transpose(1, 2)
        v = v.view(b, t, self.n_head, hs).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.resid_drop(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward block (4x expansion, GELU); (B, T, C) -> (B, T, C)."""

    def __init__(self, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.act = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only transformer LM with learned positions and tied input/output embeddings.

    Args:
        vocab_size: number of token ids (e.g. 256 for bytes).
        block_size: maximum context length T.
        n_layer, n_head, n_embd: depth, heads and width (``n_embd % n_head == 0``).
        dropout: dropout probability (embeddings, attention, residual branches).
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("block_size", block_size),
            ("n_layer", n_layer),
            ("n_head", n_head),
            ("n_embd", n_embd),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPT: {name} must be a positive int, got {value!r}.")
        if n_embd % n_head != 0:
            raise ValueError(
                f"GPT: n_embd ({n_embd}) must be divisible by n_head ({n_head}); pick e.g. n_embd = 64 * n_head."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"GPT: dropout must be in [0, 1), got {dropout!r}.")
        self.vocab_size = vocab_size
        self.block_size = block_size
        self.n_layer, self.n_head, self.n_embd = n_layer, n_head, n_embd
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.apply(self._init_weights)
        self.reprsim_layers = {
            "embed": "drop",
            **{f"blocks.{i}": f"blocks.{i}" for i in range(n_layer)},
            "penultimate": "ln_f",
            "logits": "lm_head",
        }
        self.reprsim_default_layer = "penultimate"
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_input_embeddings(self) -> nn.Embedding:
        """Return the token embedding table ``wte`` (weight shape (vocab_size, n_embd))."""
        return self.wte

    def num_parameters(self) -> int:
        """Return the number of distinct trainable parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: Tensor | None = None, *, inputs_embeds: Tensor | None = None) -> Tensor:
        """Return logits of shape (B, T, vocab_size); pass exactly one of ``idx`` / ``inputs_embeds``."""
        if (idx is None) == (inputs_embeds is None):
            raise ValueError("GPT.forward: pass exactly one of idx (B, T) or inputs_embeds (B, T, C).")
        if idx is not None:
            if idx.dim() != 2:
                raise ValueError(f"GPT.forward: idx must have shape (B, T), got {tuple(idx.shape)}.")
            if idx.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
                raise TypeError(f"GPT.forward: idx must hold integer token ids, got dtype {idx.dtype}.")
            x = self.wte(idx.long())
        else:
            assert inputs_embeds is not None
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.n_embd:
                raise ValueError(
                    f"GPT.forward: inputs_embeds must have shape (B, T, {self.n_embd}), "
                    f"got {tuple(inputs_embeds.shape)}."
                )
            x = inputs_embeds
        t = x.shape[1]
        if t > self.block_size:
            raise ValueError(
                f"GPT.forward: sequence length {t} exceeds block_size {self.block_size}; "
                "crop the input to the last block_size tokens."
            )
        pos = torch.arange(t, device=x.device)
        x = self.drop(x + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        greedy: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Append ``max_new_tokens`` tokens to ``idx`` (B, T); returns (B, T + max_new_tokens).

        Greedy by default; with ``greedy=False`` samples from softmax(logits / temperature)
        using the given ``generator`` (for reproducibility).
        """
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.block_size :])[:, -1, :]
            if greedy:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                probs = F.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
        return idx


def build_gpt(
    vocab_size: int,
    block_size: int,
    preset: str | None = "micro",
    *,
    n_layer: int | None = None,
    n_head: int | None = None,
    n_embd: int | None = None,
    dropout: float = 0.0,
) -> GPT:
    """Build a :class:`GPT` from a preset name (``GPT_PRESETS``), with optional overrides."""
    if preset is None:
        base = GPTPreset(4, 4, 128)
    else:
        key = preset.removeprefix("gpt-")
        if key not in GPT_PRESETS:
            raise ValueError(
                f"Unknown GPT preset {preset!r}; choose one of {sorted(GPT_PRESETS)} or pass n_layer/n_head/n_embd."
            )
        base = GPT_PRESETS[key]
    return GPT(
        vocab_size,
        block_size,
        n_layer=n_layer if n_layer is not None else base.n_layer,
        n_head=n_head if n_head is not None else base.n_head,
        n_embd=n_embd if n_embd is not None else base.n_embd,
        dropout=dropout,
    )
