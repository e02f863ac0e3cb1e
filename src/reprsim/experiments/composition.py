"""A unit's world × family: the data world of its source composed with the model family of its model entry.

:func:`compose` picks the world (:func:`reprsim.experiments.worlds.world_name_of`) and the family
(:func:`reprsim.experiments.families.family_name_of`) and checks the pair is allowed: a family
trains on the worlds listed in its :attr:`~reprsim.experiments.families.base.ModelFamily.kinds`.
A :class:`Composition` routes each stage of the one unit driver to the side that owns it; its
:attr:`~Composition.name` is the *kind name* of the pair (``image``, ``diffusion``, ``text``,
``chat``, ``llm``), the prefix of its cache keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from reprsim.experiments.families import ModelFamily, family_name_of, get_family
from reprsim.experiments.worlds import (
    DataWorld,
    ProbeSet,
    Trained,
    TrainingPair,
    get_world,
    world_name_of,
)

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.grid import Unit

__all__ = ["Composition", "compose", "composition_of"]


@dataclass(frozen=True)
class Composition:
    """One world and one family that train together (see the module docstring)."""

    world: DataWorld
    family: ModelFamily

    @property
    def name(self) -> str:
        """The kind name of the pair: the prefix of its model- and feature-cache keys."""
        return self.family.kinds[self.world.name]

    @property
    def overlap_kinds(self) -> tuple[str, ...]:
        allowed = self.family.overlap_kinds
        return tuple(k for k in self.world.overlap_kinds if allowed is None or k in allowed)

    @property
    def consequences(self) -> tuple[str, ...]:
        return self.world.stages(self.family)

    @property
    def feature_pool(self) -> str:
        return self.family.feature_pool

    def recipe(self, unit: Unit) -> Any:
        return self.world.recipe(unit)

    def pair(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None) -> TrainingPair:
        return self.world.pair(config, unit, cache_dir, self.family)

    def probes(self, config: ExperimentConfig, unit: Unit, pair: TrainingPair) -> list[ProbeSet]:
        return self.family.prepare_probes(config, unit, pair, self.world.probes(config, unit, pair))

    def build(self, config: ExperimentConfig, unit: Unit, pair: TrainingPair, side: str) -> nn.Module:
        return self.family.build(config, unit, pair, side)

    def weights_key(self, config: ExperimentConfig, unit: Unit, pair: TrainingPair, side: str) -> dict[str, Any]:
        return self.family.weights_key(config, unit, pair, side, self.world)

    def partner(self, unit: Unit, side: str) -> str | None:
        return self.family.partner(unit, side)

    def fit(
        self,
        config: ExperimentConfig,
        unit: Unit,
        pair: TrainingPair,
        side: str,
        model: nn.Module,
        checkpoint_dir: Path,
        device: torch.device,
        progress: bool,
        **partner: Trained,
    ) -> tuple[nn.Module, dict]:
        return self.family.fit(config, unit, pair, side, model, checkpoint_dir, device, progress, self.world, **partner)

    def features(self, config: ExperimentConfig, model: nn.Module, probe: ProbeSet) -> dict[str, np.ndarray]:
        return self.family.features(config, model, probe, self.world)

    def pair_columns(self, pair: TrainingPair, a: Trained, b: Trained) -> dict[str, Any]:
        return self.family.columns(pair, a, b) | self.world.columns(pair, a, b)

    def consequence(
        self, spec: Any, config: ExperimentConfig, unit: Unit, pair: TrainingPair, a: Trained, b: Trained, seed: int
    ) -> dict[str, Any]:
        if spec.kind not in self.consequences:
            raise NotImplementedError(f"kind {self.name!r} has no consequence stage {spec.kind!r}")
        return dict(self.world.consequence(spec, config, unit, pair, a, b, seed, self.family))

    def whitebox_asr(self, spec: Any, unit: Unit, pair: TrainingPair, a: Trained, eps: float) -> float | None:
        """Model A's white-box success at ``eps`` (``eps: auto``; worlds with an attack set only)."""
        return self.world.whitebox_asr(spec, unit, pair, a, eps)

    def save_artifacts(
        self, config: ExperimentConfig, unit: Unit, pair: TrainingPair, a: Trained, b: Trained, folder: Path
    ) -> None:
        self.family.save_artifacts(config, unit, pair, a, b, folder)

    def check(self, config: ExperimentConfig, units: list[Unit]) -> list[str]:
        """The family's model problems, then the world's data problems, each said once."""
        return list(
            dict.fromkeys(self.family.check(config, units, self.world) + self.world.check(config, units, self.family))
        )


def compose(source_name: str, model) -> Composition:  # noqa: ANN001 - a config ModelSpec
    """The world of ``source_name`` with the family of ``model``; ValueError when either is unknown or
    the family cannot train on that world (naming the worlds it trains on)."""
    world = get_world(world_name_of(source_name))
    family = get_family(family_name_of(model))
    if world.name not in family.kinds:
        raise ValueError(
            f"model {model.name!r} cannot be trained on source {source_name!r} (the {world.name} world): "
            f"the {family.name} family trains on the worlds {sorted(family.kinds)}"
        )
    return Composition(world, family)


def composition_of(unit) -> Composition:  # noqa: ANN001 - a grid Unit
    """The world × family of a sweep unit."""
    return compose(unit.source.name, unit.model)
