"""What the families trained on the image world share: a zoo model of the side's classes, its key, its checks.

:class:`ImageModels` builds a zoo model (optionally started from ``checkpoint``) for the input shape
and class count of the side's split, keys it by the side's examples and seeds, and checks that a
model entry builds, has the layers and runs on two training images. Its subclasses
(:mod:`~reprsim.experiments.families.classifier`, :mod:`~reprsim.experiments.families.unet`) add
how it trains and what it reports.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from reprsim.errors import ReprsimError
from reprsim.experiments.families.base import ModelFamily, layer_problems

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig, ModelSpec
    from reprsim.experiments.grid import Unit
    from reprsim.experiments.pairs import PairData
    from reprsim.experiments.worlds.base import DataWorld


def pretrained_key(model: ModelSpec) -> dict[str, str]:
    """What a model entry starts from, by content: a changed checkpoint or folder retrains."""
    from reprsim.models.pretrained import weights_fingerprint

    start = model.hf if model.hf is not None else model.checkpoint
    return {} if start is None else {"pretrained": weights_fingerprint(start)}


def init_side(unit: Unit, side: str) -> str:
    """Whose initial weights model ``side`` starts from: A's for B of an ``init: shared`` unit."""
    return "a" if unit.init == "shared" else side


class ImageModels(ModelFamily):
    """A model of the side's classes on the image world's split (see the module docstring)."""

    def build(self, config: ExperimentConfig, unit: Unit, pair: PairData, side: str) -> nn.Module:
        """A zoo model with a head of the side's classes, initialised from the unit's seed
        (then loaded from the entry's ``checkpoint``, if any)."""
        from reprsim import models
        from reprsim.models import pretrained

        x, _ = pair.train_set(side)
        seed, num_classes = unit.seeds()[f"init_{init_side(unit, side)}"], pair.num_classes(side)
        model = models.build(
            unit.model.name, input_shape=tuple(x.shape[1:]), num_classes=num_classes, seed=seed, **unit.model.options
        )
        if unit.model.checkpoint is not None:
            pretrained.start_from_checkpoint(model, unit.model.checkpoint, what=f"models.{unit.model.name}.checkpoint")
        return model

    def weights_key(
        self, config: ExperimentConfig, unit: Unit, pair: PairData, side: str, world: DataWorld
    ) -> dict[str, Any]:
        seeds = unit.seeds()
        _, y = pair.train_set(side)
        examples = hashlib.sha256(np.ascontiguousarray(pair.split.indices(side)).tobytes() + y.tobytes()).hexdigest()
        key = {
            "source": unit.source.model_dump(mode="json"),
            "model": unit.model.model_dump(mode="json"),
            "train": unit.train,
            "init": seeds[f"init_{init_side(unit, side)}"],
            "order": seeds[f"order_{side}"],
            "examples": examples,
            "classes": pair.num_classes(side),
        } | pretrained_key(unit.model)
        if self.partner(unit, side):  # B trained against A: its weights depend on the dose and on A's weights
            key |= {"align": unit.align, "partner": self.weights_key(config, unit, pair, "a", world)}
        return key

    def model_problems(self, config: ExperimentConfig, unit: Unit, pair: PairData) -> list[str]:
        """The model entry builds (a pretrained one loads), has the layers, and runs on two training images."""
        what = f"models.{unit.model.name}"
        try:
            model = self.build(config, unit, pair, "a")
        except (TypeError, ValueError, OSError, ReprsimError) as exc:
            return [f"{what}: {exc}"]
        problems = layer_problems(model, config.layers, unit.model.name)
        x, _ = pair.train_set("a")
        try:
            with torch.no_grad():
                self.dry_forward(model.eval(), torch.as_tensor(x[:2], dtype=torch.float32))
        except (RuntimeError, ValueError) as exc:
            first = str(exc).splitlines()[0]
            problems.append(f"{what}: cannot run on the source's images of shape {tuple(x.shape[1:])}: {first}")
        return problems

    def dry_forward(self, model: nn.Module, x: torch.Tensor) -> None:
        """One forward pass on two training images (preflight: the model takes the source's images)."""
        model(x)
