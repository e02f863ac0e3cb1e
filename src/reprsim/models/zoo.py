"""Model registry: build zoo models by name and query their named layers.

``build(name, ...)`` returns a plain ``torch.nn.Module``. Zoo models follow the layer-naming
protocol of :mod:`reprsim.models.common` (``reprsim_layers`` / ``reprsim_default_layer``);
any other module is served by a generic fallback (all module paths; the default layer is the
input of the last ``nn.Linear``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from reprsim.models.cnn import CNN
from reprsim.models.common import Normalize
from reprsim.models.gpt import GPT_PRESETS, build_gpt
from reprsim.models.layers import PENULTIMATE, default_layer, layers, resolve_layer
from reprsim.models.mlp import MLP
from reprsim.models.resnet import ResNet
from reprsim.models.unet import UNET_PRESETS, DiffusionUNet
from reprsim.models.vit import VIT_PRESETS, ViT

__all__ = [
    "available",
    "build",
    "model_kind",
    "usable_models",
    "default_layer",
    "input_normalization",
    "layers",
    "resolve_layer",
    "PENULTIMATE",
]


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: the constructor, its kind ("image" or "lm"), fixed kwargs and a summary."""

    factory: Callable[..., nn.Module]
    kind: str
    summary: str
    fixed: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {
    "mlp": ModelSpec(MLP, "image", "multi-layer perceptron (hidden=(512, 256))"),
    "cnn": ModelSpec(CNN, "image", "small VGG-style CNN, channels 32-64-128, fast on CPU"),
    "resnet": ModelSpec(ResNet, "image", "CIFAR-style ResNet (depth 18|34, width multiplier)"),
    "resnet18": ModelSpec(ResNet, "image", "ResNet-18 (width multiplier)", {"depth": 18}),
    "resnet34": ModelSpec(ResNet, "image", "ResNet-34 (width multiplier)", {"depth": 34}),
    "vit": ModelSpec(ViT, "image", "Vision Transformer (preset tiny|small|base, patch/depth/width)"),
    **{f"vit_{p}": ModelSpec(ViT, "image", f"ViT-{p} preset", {"preset": p}) for p in VIT_PRESETS},
    "gpt": ModelSpec(build_gpt, "lm", "nanoGPT-style decoder (preset nano|micro|mini|small)"),
    **{f"gpt_{p}": ModelSpec(build_gpt, "lm", f"GPT {p} preset", {"preset": p}) for p in GPT_PRESETS},
    "unet": ModelSpec(DiffusionUNet, "unet", "class-conditional DDPM UNet, diffusers (preset tiny|small|paper)"),
    **{f"unet_{p}": ModelSpec(DiffusionUNet, "unet", f"DDPM UNet {p} preset", {"preset": p}) for p in UNET_PRESETS},
}


def available() -> list[str]:
    """Return the sorted names accepted by :func:`build`."""
    return sorted(_REGISTRY)


def model_kind(name: str) -> str:
    """The kind of zoo model ``name`` (``"image"`` or ``"lm"``); ValueError listing the names for an unknown one."""
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(available())}")
    return _REGISTRY[key].kind


def usable_models(kinds: Sequence[str]) -> list[str]:
    """The sorted zoo names whose kind is one of ``kinds``."""
    return sorted(name for name, spec in _REGISTRY.items() if spec.kind in kinds)


def _check_kwargs(name: str, factory: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    params = inspect.signature(factory).parameters
    allowed = [p for p in params if p not in ("self",)]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"build({name!r}): unknown option(s) {unknown}; accepted options are {allowed}.")


def build(
    name: str,
    *,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    seed: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a zoo model by name and return it (an ``nn.Module`` in train mode, on CPU).

    Image models (``mlp``, ``cnn``, ``resnet``, ``resnet18``, ``resnet34``, ``vit``, ``vit_*``)
    need ``input_shape=(C, H, W)`` and ``num_classes``; they take pixels in [0, 1] of shape
    (N, C, H, W) and return logits (N, num_classes). Language models (``gpt``, ``gpt_*``) need
    ``vocab_size`` and ``block_size`` (and accept ``preset``); they map token ids (B, T) to
    logits (B, T, vocab_size). Diffusion UNets (``unet``, ``unet_*``; the ``diffusion`` extra) need
    ``input_shape`` and ``num_classes`` too (:class:`reprsim.models.unet.DiffusionUNet`).
    Other keyword arguments go to the model's constructor.
    ``seed``, when given, makes the initial weights reproducible without touching the global
    random state.
    """
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}; available models: {', '.join(available())}.")
    spec = _REGISTRY[key]
    clash = sorted(set(kwargs) & set(spec.fixed))
    if clash:
        raise ValueError(
            f"build({name!r}) fixes {clash}; use the generic name (e.g. 'resnet', 'vit', 'gpt') to set it."
        )
    options = {**spec.fixed, **kwargs}
    if spec.kind in ("image", "unet"):  # a UNet: num_classes real classes (+ the null class inside)
        if input_shape is None or num_classes is None:
            raise ValueError(f"build({name!r}) needs input_shape=(C, H, W) and num_classes.")
        options.update(input_shape=tuple(input_shape), num_classes=num_classes)
    elif input_shape is not None or num_classes is not None:
        raise ValueError(
            f"build({name!r}) is a language model: pass vocab_size and block_size, not input_shape/num_classes."
        )
    _check_kwargs(name, spec.factory, options)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = spec.factory(**options)
    # How to build it again: reprsim.train writes this into its checkpoints, so that a checkpoint
    # of any zoo model loads without its factory (compare_models, compare-models).
    shape = {} if input_shape is None else {"input_shape": list(input_shape), "num_classes": num_classes}
    recipe = {"name": name, "options": {**kwargs, **shape}}
    try:
        json.dumps(recipe)
    except TypeError:  # an option that JSON cannot hold (a module, a callable): no recipe
        return model
    model.reprsim_build = recipe
    return model


def input_normalization(model: nn.Module) -> tuple[Tensor, Tensor] | None:
    """Return the model's internal input normalisation ``(mean, std)`` (each shape (C,)), or None.

    Attacks use it to work in pixel space: the model's input is ``pixels`` in [0, 1] and it
    computes ``(pixels - mean) / std`` itself in its first module ``normalize``.
    """
    norm = getattr(model, "normalize", None)
    if not isinstance(norm, Normalize):
        found = [m for m in model.modules() if isinstance(m, Normalize)]
        norm = found[0] if len(found) == 1 else None
    if norm is None:
        return None
    return norm.mean.detach().clone(), norm.std.detach().clone()
