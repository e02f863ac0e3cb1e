"""The family interface: what a unit's model entry supplies to the one unit driver.

A *family* (chosen by the unit's model entry, :data:`reprsim.experiments.families.FAMILIES`) owns
the model side of a unit: it builds a model, says what determines its trained weights (the
model-cache key), trains it and reads out its features. The data side is the unit's *world*
(:mod:`reprsim.experiments.worlds.base`); the driver composes one of each
(:mod:`reprsim.experiments.composition`).

A family supplies:

* :attr:`ModelFamily.kinds` — the worlds it can train on, each with the *kind name* that prefixes
  its model- and feature-cache keys (kept from the kinds these pairs were first written by, so old
  caches and run folders resume);
* :meth:`ModelFamily.build` / :meth:`ModelFamily.weights_key` / :meth:`ModelFamily.fit` — a fresh
  model of a side, everything that determines its trained weights, and its training;
* :meth:`ModelFamily.features` — how representations are read out (default: forward hooks at the
  configured layers, :func:`reprsim.features.extract`);
* :meth:`ModelFamily.columns` — the family's per-pair columns (e.g. accuracies of classifiers);
* :meth:`ModelFamily.check` — the preflight of the models: every problem before any training;
* :meth:`ModelFamily.save_artifacts` — optional files for the unit's folder (e.g. generated samples).

Adding a family (recipe)
------------------------
1. Write ``reprsim/experiments/families/<name>.py`` with a subclass of :class:`ModelFamily` that
   sets :attr:`~ModelFamily.name`, :attr:`~ModelFamily.model_kinds` (the model entries it takes,
   see :func:`reprsim.experiments.families.model_kind_of`), :attr:`~ModelFamily.kinds` and
   :attr:`~ModelFamily.consequences`, and implements ``build``, ``weights_key`` and ``fit``.
2. Add one line to :data:`reprsim.experiments.families.FAMILIES`.
Nothing in the driver, the runner, the worlds or the results table changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.grid import Unit
    from reprsim.experiments.worlds.base import (
        DataWorld,
        ProbeSet,
        Trained,
        TrainingPair,
    )

__all__ = ["ModelFamily", "layer_problems"]


class ModelFamily:
    """A model entry's part of the unit pipeline (see the module docstring for the recipe)."""

    #: name used in :data:`reprsim.experiments.families.FAMILIES`
    name: ClassVar[str] = ""
    #: model kinds it takes: a zoo model's registry kind (``image``, ``lm``, ``unet``) or ``hf_image`` /
    #: ``hf_causal_lm`` for a local Hugging Face folder
    model_kinds: ClassVar[tuple[str, ...]] = ()
    #: world name -> kind name of the pairs it trains there (the prefix of their cache keys)
    kinds: ClassVar[dict[str, str]] = {}
    #: consequence stages its models can be put through (the world supplies the inputs)
    consequences: ClassVar[tuple[str, ...]] = ()
    #: data-overlap arms (``overlap.designs[i].align`` / ``init``) its ``build`` / ``fit`` implement
    design_arms: ClassVar[tuple[str, ...]] = ()
    #: overlap designs it can train (None: every design of the world)
    overlap_kinds: ClassVar[tuple[str, ...] | None] = None
    #: batch size of feature extraction and how token/spatial outputs are pooled
    feature_batch_size: ClassVar[int] = 512
    feature_pool: ClassVar[str] = "avg"
    #: whether its models output class scores (logits) in the split's label ids: the behavioural stage
    #: (:mod:`reprsim.experiments.behaviour`) compares such outputs
    class_outputs: ClassVar[bool] = False

    def build(self, config: ExperimentConfig, unit: Unit, pair: TrainingPair, side: str) -> nn.Module:
        """Model ``side`` (``"a"`` or ``"b"``), freshly initialised from the unit's seed streams."""
        raise NotImplementedError

    def weights_key(
        self, config: ExperimentConfig, unit: Unit, pair: TrainingPair, side: str, world: DataWorld
    ) -> dict[str, Any]:
        """Everything that determines model ``side``'s trained weights (JSON-serialisable).

        Keyed by content, not by unit, so a model trained on the same data at several fractions
        (model A of a data-overlap sweep) is trained once.
        """
        raise NotImplementedError

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
        world: DataWorld,
        partner: Trained | None = None,
    ) -> tuple[nn.Module, dict[str, Any]]:
        """Train ``model`` on ``device`` (resuming from ``checkpoint_dir``); return it and JSON-able metrics.

        ``partner``: the trained model of the side :meth:`partner` names (e.g. B trained against a frozen A)."""
        raise NotImplementedError

    def partner(self, unit: Unit, side: str) -> str | None:
        """The earlier side whose trained model ``fit`` of ``side`` needs (passed as ``partner=``);
        default None: each side trains alone. Its weights key must then include the partner's."""
        return None

    def prepare_probes(
        self, config: ExperimentConfig, unit: Unit, pair: TrainingPair, probes: list[ProbeSet]
    ) -> list[ProbeSet]:
        """The world's probe sets with what this family's models need besides the inputs; default: as they are."""
        return probes

    def features(
        self, config: ExperimentConfig, model: nn.Module, probe: ProbeSet, world: DataWorld
    ) -> dict[str, np.ndarray]:
        """``{layer: (n, d) float32}`` at ``config.layers`` for one probe set (n > 0) of ``world``."""
        from reprsim.features import extract

        return extract(
            model, probe.inputs, layers=config.layers, pool=self.feature_pool, batch_size=self.feature_batch_size
        )

    def columns(self, pair: TrainingPair, a: Trained, b: Trained) -> dict[str, Any]:
        """The family's per-pair result columns; default: none."""
        return {}

    def save_artifacts(
        self, config: ExperimentConfig, unit: Unit, pair: TrainingPair, a: Trained, b: Trained, folder: Path
    ) -> None:
        """Write per-unit files a user should see (e.g. sample grids) into the unit's run folder; default: none."""

    def check(self, config: ExperimentConfig, units: list[Unit], world: DataWorld) -> list[str]:
        """Every problem of ``config``'s models for ``units`` (on ``world``), one line each; default: none."""
        return []


class LanguageModelFamily(ModelFamily):
    """A family of language models that its world trains (:meth:`train_language_model` of the text
    and chat worlds: the world knows its corpus, windows and phases)."""

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
        world: DataWorld,
        partner: Trained | None = None,
    ) -> tuple[nn.Module, dict[str, Any]]:
        """The world's training of a language model on the side's data (its held-out scores as info)."""
        return world.train_language_model(config, unit, pair, side, model, checkpoint_dir, device, progress)


def layer_problems(model: nn.Module, layers: list[str], model_name: str) -> list[str]:
    """One line naming the requested layers that ``model`` lacks (with the ones it has), or none."""
    from reprsim import models

    available = set(models.layers(model)) | {"penultimate"}
    missing = [layer for layer in layers if layer not in available]
    if not missing:
        return []
    return [f"layers: {missing} are not layers of model {model_name!r}; available: {sorted(available)}"]
