"""The world interface: what a unit's data source supplies to the one unit driver.

A *world* (chosen by the unit's data source, :data:`reprsim.experiments.worlds.WORLDS`) owns the
data side of a unit; the model side is its *family* (:mod:`reprsim.experiments.families.base`).
The driver composes one of each (:mod:`reprsim.experiments.composition`) and runs
split → train A → train B → probe sets → features → measures → consequences → rows.

A world supplies:

* :meth:`DataWorld.recipe` — the unit's ``train`` section parsed into the world's training recipe;
* :meth:`DataWorld.pair` — the unit's split and each model's training data (a :class:`TrainingPair`,
  with its realised overlaps);
* :meth:`DataWorld.probes` — the probe sets (:class:`ProbeSet`), fed identically to both models;
* :meth:`DataWorld.columns` — the world's per-pair columns of the results table;
* :meth:`DataWorld.stages` and :meth:`DataWorld.consequence` — which consequence stages apply to
  a pair of the given family, and each one's columns (the attack set; behaviours and judge);
* :meth:`DataWorld.check` — the preflight of the data: every problem before any training.

Adding a world (recipe)
-----------------------
1. Write ``reprsim/experiments/worlds/<name>.py`` with a subclass of :class:`DataWorld` that sets
   :attr:`~DataWorld.name`, :attr:`~DataWorld.overlap_kinds` and :attr:`~DataWorld.consequences`,
   and implements ``pair`` and ``probes`` (override the others where the defaults do not fit).
2. Add one line to :data:`reprsim.experiments.worlds.WORLDS` naming the module, the class and the
   data sources it reads; then list the world in the ``kinds`` of each family that can train on it
   (:attr:`reprsim.experiments.families.base.ModelFamily.kinds`).
Nothing in the driver, the runner, the data sources or the results table changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from torch import nn

if TYPE_CHECKING:  # type hints only: worlds never import the config module at run time
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.families.base import ModelFamily
    from reprsim.experiments.grid import Unit

__all__ = ["DataWorld", "ProbeSet", "Trained", "TrainingPair", "train_config"]


@dataclass
class ProbeSet:
    """A probe set fed identically to both models of a pair.

    ``inputs`` is whatever the unit's models take (images (n, C, H, W), token windows (n, T)),
    with ``n`` = ``len(inputs)`` rows (0 for an empty set, e.g. no common class at task overlap 0).
    ``n_classes`` is the number of classes (tasks, domains) the set is drawn from, when defined.
    ``labels`` is each input's class id (n,) in one label space shared by both models, or None.
    ``rows`` is each input's row in the pair's test set (n,), or None for a set drawn elsewhere.
    ``extra`` holds family-specific inputs that must be identical for both models (e.g. a
    diffusion model's noise and timesteps).
    """

    name: str
    role: str  # one of reprsim.results.PROBE_ROLES
    inputs: Any
    n_classes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    labels: np.ndarray | None = None
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs)


class TrainingPair(Protocol):
    """What a world builds for one unit: the split and each model's training data.

    Each world has its own pair type holding what its stages need; the driver reads only the
    realised overlaps.
    """

    realised_data_fraction: float
    realised_task_fraction: float


@dataclass
class Trained:
    """A trained model of a pair, its per-model metrics and its model-cache key."""

    model: nn.Module
    info: dict[str, Any]
    key: str


class DataWorld:
    """A data source's part of the unit pipeline (see the module docstring for the recipe)."""

    #: name used in :data:`reprsim.experiments.worlds.WORLDS` and in the families' ``kinds``
    name: ClassVar[str] = ""
    #: overlap designs (``overlap.designs[].kind``) this world can build pairs for
    overlap_kinds: ClassVar[tuple[str, ...]] = ()
    #: consequence stages (``consequences[].kind``) this world has inputs for
    consequences: ClassVar[tuple[str, ...]] = ()
    #: whether its task splits take ``images: disjoint | shared`` (class splits of image data sets)
    task_images: ClassVar[bool] = False

    def recipe(self, unit: Unit) -> Any:
        """The unit's training recipe parsed from ``unit.train`` (the top-level ``train`` with the
        model entry's overrides); ValueError / TypeError naming a bad key."""
        return train_config(unit.train)

    def pair(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None, family: ModelFamily) -> TrainingPair:
        """The unit's split and each model's training data (cached under ``cache_dir`` if given)."""
        raise NotImplementedError

    def probes(self, config: ExperimentConfig, unit: Unit, pair: TrainingPair) -> list[ProbeSet]:
        """The unit's probe sets, each fed identically to model A and model B."""
        raise NotImplementedError

    def columns(self, pair: TrainingPair, a: Trained, b: Trained) -> dict[str, Any]:
        """The world's per-pair result columns; default: none."""
        return {}

    def stages(self, family: ModelFamily) -> tuple[str, ...]:
        """The consequence stages that apply to a pair of ``family``'s models: the world's that the family runs."""
        return tuple(s for s in self.consequences if s in family.consequences)

    def consequence(
        self,
        spec: Any,
        config: ExperimentConfig,
        unit: Unit,
        pair: TrainingPair,
        a: Trained,
        b: Trained,
        seed: int,
        family: ModelFamily,
    ) -> Mapping[str, Any]:
        """The columns of consequence stage ``spec.kind`` (one of :meth:`stages`) for this pair."""
        raise NotImplementedError(f"world {self.name!r} has no consequence stage {spec.kind!r}")

    def check(self, config: ExperimentConfig, units: list[Unit], family: ModelFamily) -> list[str]:
        """Every problem of ``config``'s data for ``units`` (trained by ``family``), one line each.

        Called before any training; must not train, may load data and build models."""
        return []


def train_config(train: Mapping[str, Any]) -> Any:
    """A ``train`` section (a unit's, or the config's) as a :class:`reprsim.train.TrainConfig`."""
    from reprsim.train import TrainConfig

    return TrainConfig.from_dict(dict(train))
