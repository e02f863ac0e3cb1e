"""ResNet-18/34 (basic blocks) with a width multiplier, CIFAR-style or ImageNet-style stem.

Layers: ``normalize`` -> ``stem`` -> ``layer1..layer4`` -> ``penultimate`` (global average pool,
the paper's compared representation, 512 * width features) -> ``head``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from reprsim.models.common import GlobalAvgPool, check_input_shape, check_num_classes, make_normalize

__all__ = ["ResNet", "BasicBlock", "RESNET_DEPTHS"]

#: Number of basic blocks per stage.
RESNET_DEPTHS: dict[int, tuple[int, int, int, int]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet classifier; input (N, C, H, W) pixels in [0, 1], output (N, num_classes).

    Args:
        input_shape: (C, H, W).
        num_classes: number of output logits.
        depth: 18 or 34.
        width: multiplier on the stage widths 64-128-256-512 (e.g. 0.25 for a small model).
        stem: "cifar" (3x3 stride 1, no max-pool; for 32x32) or "imagenet" (7x7 stride 2 + max-pool).
        normalization: "default", None, or (mean, std) per channel.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        depth: int = 18,
        width: float = 1.0,
        stem: str = "cifar",
        normalization: tuple[Sequence[float], Sequence[float]] | None | str = "default",
    ) -> None:
        super().__init__()
        c, _, _ = check_input_shape(input_shape, ndim=3, model="resnet")
        check_num_classes(num_classes, "resnet")
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"resnet: depth must be one of {sorted(RESNET_DEPTHS)}, got {depth!r}.")
        if not width > 0:
            raise ValueError(f"resnet: width must be > 0, got {width!r}.")
        widths = [max(1, round(base * width)) for base in (64, 128, 256, 512)]
        self.normalize = make_normalize(c, normalization)
        if stem == "cifar":
            self.stem = nn.Sequential(
                nn.Conv2d(c, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
            )
        elif stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(c, widths[0], 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            raise ValueError(f"resnet: stem must be 'cifar' or 'imagenet', got {stem!r}.")
        c_in = widths[0]
        for i, (n_blocks, c_out) in enumerate(zip(RESNET_DEPTHS[depth], widths), start=1):
            blocks = []
            for j in range(n_blocks):
                blocks.append(BasicBlock(c_in, c_out, stride=2 if (j == 0 and i > 1) else 1))
                c_in = c_out
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.penultimate = GlobalAvgPool()
        self.head = nn.Linear(c_in, num_classes)
        self.reprsim_layers = {
            "stem": "stem",
            **{f"layer{i}": f"layer{i}" for i in range(1, 5)},
            "penultimate": "penultimate",
            "logits": "head",
        }
        self.reprsim_default_layer = "penultimate"

    def forward(self, x: Tensor) -> Tensor:
        """Return logits (N, num_classes)."""
        x = self.stem(self.normalize(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.head(self.penultimate(x))
