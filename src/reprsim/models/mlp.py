"""Multi-layer perceptron classifier for images or flat vectors.

Layers: ``normalize`` -> ``flatten`` -> ``hidden.<i>`` (Linear + ReLU) -> ``penultimate``
(last hidden Linear + ReLU) -> ``head`` (Linear to logits).
"""

from __future__ import annotations

from collections.abc import Sequence

import math

from torch import Tensor, nn

from reprsim.models.common import check_input_shape, check_num_classes, make_normalize

__all__ = ["MLP"]


class MLP(nn.Module):
    """MLP classifier; input (N, *input_shape) (pixels in [0, 1] for images), output (N, num_classes).

    Args:
        input_shape: (C, H, W) for images or (D,) for vectors (vectors are not normalised).
        num_classes: number of output logits.
        hidden: widths of the hidden layers; the last one is the penultimate representation.
        normalization: "default", None, or (mean, std) per channel.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (512, 256),
        normalization: tuple[Sequence[float], Sequence[float]] | None | str = "default",
    ) -> None:
        super().__init__()
        shape = check_input_shape(input_shape, ndim=(1, 3), model="mlp")
        check_num_classes(num_classes, "mlp")
        widths = [int(h) for h in hidden]
        if not widths or any(h < 1 for h in widths):
            raise ValueError(f"mlp: hidden must be a non-empty list of positive widths, got {hidden!r}.")
        self.normalize = make_normalize(shape[0], normalization) if len(shape) == 3 else nn.Identity()
        self.flatten = nn.Flatten()
        dims = [math.prod(shape), *widths]
        self.hidden = nn.Sequential(*(nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in zip(dims[:-2], dims[1:-1])))
        self.penultimate = nn.Sequential(nn.Linear(dims[-2], dims[-1]), nn.ReLU())
        self.head = nn.Linear(dims[-1], num_classes)
        names = {f"hidden.{i}": f"hidden.{i}" for i in range(len(widths) - 1)}
        self.reprsim_layers = {**names, "penultimate": "penultimate", "logits": "head"}
        self.reprsim_default_layer = "penultimate"

    def forward(self, x: Tensor) -> Tensor:
        """Return logits (N, num_classes)."""
        x = self.flatten(self.normalize(x))
        return self.head(self.penultimate(self.hidden(x)))
