"""The kind interface: what a model family supplies to the one unit driver.

Every sweep unit runs the same stages in the same order in :mod:`reprsim.experiments.driver`:
split → train A → train B → probe sets → features (cached by content) → measures →
consequences → rows. A *kind* supplies only what differs between model families:

* :meth:`Kind.check` — preflight: every problem of the config for this kind, found before any
  training (one line each); :meth:`Kind.recipe` parses a unit's ``train`` (the top-level section
  with the model entry's overrides) into the kind's training recipe;
* :meth:`Kind.pair` — a unit's two training sets (a :class:`Pair`, with realised overlaps);
* :meth:`Kind.build` / :meth:`Kind.fit` / :meth:`Kind.weights_key` — how a model is built, trained
  (through :func:`reprsim.train.train`) and what determines its weights (the model-cache key);
* :meth:`Kind.probes` — the probe sets, fed identically to both models;
* :meth:`Kind.features` — how representations are read out (default: forward hooks at the
  configured layers, :func:`reprsim.features.extract`);
* :meth:`Kind.pair_columns` — per-pair columns of the results table (accuracies, losses);
* :attr:`Kind.consequences` and :meth:`Kind.consequence` — which consequence stages apply, and
  each one's columns;
* :meth:`Kind.save_artifacts` — optional files for the unit's folder (e.g. generated samples).

Adding a kind (recipe)
----------------------
1. Write ``reprsim/experiments/kinds/<name>.py`` with a subclass of :class:`Kind` that sets
   :attr:`~Kind.name`, :attr:`~Kind.overlap_kinds`, :attr:`~Kind.model_kinds` (which zoo model
   kinds it can train, see :func:`reprsim.models.build`) and :attr:`~Kind.consequences`, and
   implements ``pair``, ``build``, ``fit``, ``weights_key`` and ``probes`` (override ``check``,
   ``recipe``, ``features``, ``pair_columns`` and ``consequence`` where the defaults do not fit).
2. Add one line to :data:`reprsim.experiments.kinds.KINDS` and give the data sources it trains
   on ``kind="<name>"`` in :data:`reprsim.data.registry.SOURCES`.
Nothing in the driver, the runner or the results table changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # type hints only: kinds never import the config module at run time
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.grid import Unit

__all__ = ["Kind", "Pair", "Probe", "Trained", "layer_problems"]


@dataclass
class Probe:
    """A probe set fed identically to both models of a pair.

    ``inputs`` is whatever the kind's models take (images (n, C, H, W), token windows (n, T)),
    with ``n`` = ``len(inputs)`` rows (0 for an empty set, e.g. no common class at task overlap 0).
    ``n_classes`` is the number of classes (tasks, domains) the set is drawn from, when defined.
    ``extra`` holds kind-specific inputs that must be identical for both models (e.g. a
    diffusion model's noise and timesteps).
    """

    name: str
    role: str  # one of reprsim.results.PROBE_ROLES
    inputs: Any
    n_classes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.inputs)


class Pair(Protocol):
    """What a kind builds for one unit: the split and each model's training data.

    Each kind has its own pair type holding what its stages need; the driver reads only the
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


class Kind:
    """A model family's part of the unit pipeline (see the module docstring for the recipe)."""

    #: name used in :data:`reprsim.data.registry.SOURCES` and :data:`reprsim.experiments.kinds.KINDS`
    name: ClassVar[str] = ""
    #: overlap designs (``overlap.designs[].kind``) this kind can build pairs for
    overlap_kinds: ClassVar[tuple[str, ...]] = ()
    #: zoo model kinds (:func:`reprsim.models.zoo` ``ModelSpec.kind``) this kind can train
    model_kinds: ClassVar[tuple[str, ...]] = ()
    #: consequence stages (``consequences[].kind``) that apply to this kind's pairs
    consequences: ClassVar[tuple[str, ...]] = ()
    #: whether its task splits take ``images: disjoint | shared`` (class splits of image data sets)
    task_images: ClassVar[bool] = False
    #: data-overlap arms (``overlap.designs[i].align`` / ``init``, :class:`~reprsim.experiments.config.DataDesign`)
    #: its ``build`` / ``fit`` implement; the preflight refuses the others
    design_arms: ClassVar[tuple[str, ...]] = ()
    #: batch size of feature extraction and how token/spatial outputs are pooled
    feature_batch_size: ClassVar[int] = 512
    feature_pool: ClassVar[str] = "avg"

    # ---- preflight ------------------------------------------------------------------------
    def check(self, config: ExperimentConfig, units: list[Unit]) -> list[str]:
        """Every problem of ``config`` for this kind's ``units``, one line each (empty: fine).

        Called before any training by ``reprsim config validate``, ``--dry-run`` and ``run``.
        Must not train; may load data and build models.
        """
        return []

    def recipe(self, unit: Unit) -> Any:
        """The unit's training recipe parsed from ``unit.train`` (the top-level ``train`` with the
        model entry's overrides); ValueError / TypeError naming a bad key. The preflight calls it
        once per model entry."""
        return train_config(unit.train)

    # ---- data -----------------------------------------------------------------------------
    def pair(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None) -> Pair:
        """The unit's split and each model's training data (cached under ``cache_dir`` if given)."""
        raise NotImplementedError

    def probes(self, config: ExperimentConfig, unit: Unit, pair: Pair) -> list[Probe]:
        """The unit's probe sets, each fed identically to model A and model B."""
        raise NotImplementedError

    # ---- models ---------------------------------------------------------------------------
    def build(self, config: ExperimentConfig, unit: Unit, pair: Pair, side: str) -> nn.Module:
        """Model ``side`` (``"a"`` or ``"b"``), freshly initialised from the unit's seed streams."""
        raise NotImplementedError

    def weights_key(self, config: ExperimentConfig, unit: Unit, pair: Pair, side: str) -> dict[str, Any]:
        """Everything that determines model ``side``'s trained weights (JSON-serialisable).

        Keyed by content, not by unit, so a model trained on the same data at several fractions
        (model A of a data-overlap sweep) is trained once.
        """
        raise NotImplementedError

    def fit(self, config: ExperimentConfig, unit: Unit, pair: Pair, side: str, model: nn.Module,
            checkpoint_dir: Path, device: torch.device, progress: bool) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
        """Train ``model`` on ``device`` (resuming from ``checkpoint_dir``); return it and JSON-able metrics.

        A kind whose :meth:`partner` names a side for ``side`` takes a keyword ``partner``: that
        side's :class:`Trained` model (e.g. B trained against a frozen A)."""
        raise NotImplementedError

    def partner(self, unit: Unit, side: str) -> str | None:
        """The earlier side whose trained model ``fit`` of ``side`` needs (passed as ``partner=``);
        default None: each side trains alone. Its weights key must then include the partner's."""
        return None

    # ---- read-out -------------------------------------------------------------------------
    def features(self, config: ExperimentConfig, model: nn.Module, probe: Probe) -> dict[str, np.ndarray]:
        """``{layer: (n, d) float32}`` at ``config.layers`` for one probe set (n > 0)."""
        from reprsim.features import extract

        return extract(model, probe.inputs, layers=config.layers, pool=self.feature_pool,
                       batch_size=self.feature_batch_size)  # fmt: skip

    def pair_columns(self, pair: Pair, a: Trained, b: Trained) -> dict[str, Any]:
        """Per-pair result columns (e.g. ``acc_a``, ``acc_b``) from the two trained models."""
        return {}

    def save_artifacts(self, config: ExperimentConfig, unit: Unit, pair: Pair, a: Trained, b: Trained,
                       folder: Path) -> None:  # fmt: skip
        """Write per-unit files a user should see (e.g. sample grids) into the unit's run folder; default: none.

        Called after the consequence stages, only when the unit runs with a run folder.
        """

    def consequence(self, spec: Any, config: ExperimentConfig, unit: Unit, pair: Pair, a: Trained, b: Trained,
                    seed: int) -> Mapping[str, Any]:  # fmt: skip
        """The columns of consequence stage ``spec.kind`` (one of :attr:`consequences`) for this pair."""
        raise NotImplementedError(f"kind {self.name!r} has no consequence stage {spec.kind!r}")


def train_config(train: Mapping[str, Any]) -> Any:
    """A ``train`` section (a unit's, or the config's) as a :class:`reprsim.train.TrainConfig`."""
    from reprsim.train import TrainConfig

    return TrainConfig.from_dict(dict(train))


def layer_problems(model: nn.Module, layers: list[str], model_name: str) -> list[str]:
    """One line naming the requested layers that ``model`` lacks (with the ones it has), or none."""
    from reprsim import models

    available = set(models.layers(model)) | {"penultimate"}
    missing = [layer for layer in layers if layer not in available]
    if not missing:
        return []
    return [f"layers: {missing} are not layers of model {model_name!r}; available: {sorted(available)}"]
