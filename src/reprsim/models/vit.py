"""Vision Transformer (pre-LN, CLS token, learned positions) with tiny/small/base presets.

Layers: ``normalize`` -> ``patch_embed`` (conv, (N, D, H/p, W/p)) -> ``blocks.<i>`` (token
sequences (N, 1 + P, D)) -> ``norm`` -> ``penultimate`` (CLS token after the final norm, as
timm's ``pre_logits``; (N, D)) -> ``head``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reprsim.models.common import check_input_shape, check_num_classes, make_normalize

__all__ = ["ViT", "VIT_PRESETS", "ViTPreset"]


@dataclass(frozen=True)
class ViTPreset:
    """Width (embedding dim), depth and number of heads of a ViT preset."""

    width: int
    depth: int
    heads: int


#: The standard ViT sizes (as timm's vit_tiny / vit_small / vit_base).
VIT_PRESETS: dict[str, ViTPreset] = {
    "tiny": ViTPreset(width=192, depth=12, heads=3),
    "small": ViTPreset(width=384, depth=12, heads=6),
    "base": ViTPreset(width=768, depth=12, heads=12),
}


class Attention(nn.Module):
    """Bidirectional multi-head self-attention; (N, T, D) -> (N, T, D)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class EncoderBlock(nn.Module):
    """Pre-LN encoder block: attention then MLP, each with a residual connection."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClsToken(nn.Module):
    """Select the CLS token: (N, T, D) -> (N, D)."""

    def forward(self, x: Tensor) -> Tensor:
        return x[:, 0]


class ViT(nn.Module):
    """Vision Transformer classifier; input (N, C, H, W) pixels in [0, 1], output (N, num_classes).

    Args:
        input_shape: (C, H, W); H and W must be divisible by ``patch_size``.
        num_classes: number of output logits.
        preset: "tiny", "small" or "base" (sets width, depth, heads), or None.
        patch_size: side of the square patches (default 4, suited to 32x32 images).
        depth, width, heads: override the preset.
        mlp_ratio: hidden width of the MLP relative to ``width``.
        dropout: dropout in attention and MLP.
        normalization: "default", None, or (mean, std) per channel.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        preset: str | None = "tiny",
        patch_size: int = 4,
        depth: int | None = None,
        width: int | None = None,
        heads: int | None = None,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        normalization: tuple[Sequence[float], Sequence[float]] | None | str = "default",
    ) -> None:
        super().__init__()
        c, h, w = check_input_shape(input_shape, ndim=3, model="vit")
        check_num_classes(num_classes, "vit")
        if preset is not None and preset not in VIT_PRESETS:
            raise ValueError(f"vit: unknown preset {preset!r}; choose one of {sorted(VIT_PRESETS)} or None.")
        base = VIT_PRESETS[preset] if preset is not None else VIT_PRESETS["tiny"]
        depth = base.depth if depth is None else depth
        width = base.width if width is None else width
        heads = base.heads if heads is None else heads
        if patch_size < 1 or h % patch_size or w % patch_size:
            raise ValueError(f"vit: patch_size {patch_size} must divide the image size {h}x{w}.")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (depth, width, heads)):
            raise ValueError(
                f"vit: depth, width (the embedding dimension) and heads must be ints; got "
                f"depth={depth!r}, width={width!r}, heads={heads!r}."
            )
        if depth < 1 or heads < 1 or width % heads:
            raise ValueError(
                f"vit: need depth >= 1 and width divisible by heads; got depth={depth}, width={width}, heads={heads}."
            )
        self.normalize = make_normalize(c, normalization)
        self.patch_embed = nn.Conv2d(c, width, patch_size, stride=patch_size)
        n_patches = (h // patch_size) * (w // patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + n_patches, width) * 0.02)
        self.blocks = nn.Sequential(*(EncoderBlock(width, heads, mlp_ratio, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.penultimate = ClsToken()
        self.head = nn.Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.reprsim_layers = {
            "patch_embed": "patch_embed",
            **{f"blocks.{i}": f"blocks.{i}" for i in range(depth)},
            "penultimate": "penultimate",
            "logits": "head",
        }
        self.reprsim_default_layer = "penultimate"

    def forward(self, x: Tensor) -> Tensor:
        """Return logits (N, num_classes)."""
        x = self.patch_embed(self.normalize(x)).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(self.penultimate(x))
