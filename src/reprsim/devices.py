"""Where tensors live: one rule for every stage — inputs go to the device of the model they feed."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["model_device", "to_model_device", "resolve_device"]


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); CPU for a module with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def to_model_device(model: nn.Module, *tensors: Any) -> Any:
    """``tensors`` (arrays or tensors) as tensors on ``model``'s device: one value for one, else a tuple."""
    device = model_device(model)
    moved = tuple(torch.as_tensor(t).to(device) if not isinstance(t, Tensor) else t.to(device) for t in tensors)
    return moved[0] if len(moved) == 1 else moved


def resolve_device(name: str | None) -> torch.device:
    """``"auto"``/None: CUDA when available, else CPU; ``"cpu"``/``"cuda"``/``"cuda:N"`` as given.

    Raises ValueError when CUDA is asked for and none is available.
    """
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"execution.device={name!r} but no CUDA device is available; use 'cpu' or 'auto'")
    return device
