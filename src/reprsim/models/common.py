"""Building blocks shared by the zoo: input normalisation, pooling and the layer-naming protocol.

Layer-naming protocol: a model may carry two plain attributes,

* ``reprsim_layers``: an ordered ``dict`` from a public layer name to a module path in
  ``model.named_modules()``; a path ending in ``":input"`` means "the first positional input
  of that module" (e.g. ``"fc:input"`` = the representation fed to a classification head);
* ``reprsim_default_layer``: the public name of the default representation (``"penultimate"``).

:func:`reprsim.models.layers` and :func:`reprsim.features.extract` read them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["Normalize", "GlobalAvgPool", "default_normalization", "check_input_shape"]

#: CIFAR statistics used by the paper (0–255 values divided by 255).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` for pixel inputs in [0, 1].

    ``mean`` and ``std`` are buffers of shape (C,) (saved in checkpoints). Input (N, C, *),
    output the same shape.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.shape != std_t.shape:
            raise ValueError(f"Normalize: mean has {mean_t.numel()} values but std has {std_t.numel()}.")
        if not bool((std_t > 0).all()):
            raise ValueError(f"Normalize: every std must be > 0, got {std_t.tolist()}.")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] != self.mean.numel():
            raise ValueError(
                f"Normalize: expected input (N, {self.mean.numel()}, ...) with pixels in [0, 1], "
                f"got shape {tuple(x.shape)}."
            )
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


class GlobalAvgPool(nn.Module):
    """Average over all spatial positions: (N, C, H, W) -> (N, C)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))


def default_normalization(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return (mean, std) per channel: CIFAR statistics for 3 channels, (0.5, 0.25) otherwise."""
    if channels == 3:
        return CIFAR_MEAN, CIFAR_STD
    return (0.5,) * channels, (0.25,) * channels


def make_normalize(
    channels: int, normalization: tuple[Sequence[float], Sequence[float]] | None | str = "default"
) -> nn.Module:
    """Build the ``normalize`` first module: a :class:`Normalize`, or ``nn.Identity`` for ``None``."""
    if normalization is None:
        return nn.Identity()
    if isinstance(normalization, str):
        if normalization != "default":
            raise ValueError(f"normalization must be 'default', None or (mean, std), got {normalization!r}.")
        normalization = default_normalization(channels)
    mean, std = normalization
    if len(mean) != channels:
        raise ValueError(f"normalization has {len(mean)} channel means but the input has {channels} channels.")
    return Normalize(mean, std)


def check_input_shape(input_shape: Sequence[int], *, ndim: int | tuple[int, ...], model: str) -> tuple[int, ...]:
    """Validate ``input_shape`` (without the batch axis) and return it as a tuple of ints."""
    shape = tuple(int(s) for s in input_shape)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if len(shape) not in allowed or any(s < 1 for s in shape):
        want = " or ".join({1: "(D,)", 3: "(C, H, W)"}.get(n, f"{n}-D") for n in allowed)
        raise ValueError(f"{model}: input_shape must be {want} with positive sizes, got {tuple(input_shape)}.")
    return shape


def check_num_classes(num_classes: int, model: str) -> int:
    """Validate the number of classes (>= 2) and return it."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"{model}: num_classes must be an int >= 2, got {num_classes!r}.")
    return num_classes
