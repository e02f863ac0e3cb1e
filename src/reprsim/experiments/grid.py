"""The sweep grid: one :class:`Unit` per (source, model, overlap design point, seed).

A unit's identity is a content hash of everything that determines its trained models (source,
model, training recipe, overlap point, split mode, seed). Measures, probes and consequence
settings are *not* part of it: changing them reuses the trained checkpoints and cached features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Any

import numpy as np

from reprsim.experiments.config import ExperimentConfig, ModelSpec, SourceSpec
from reprsim.hashing import content_hash

# Component streams of a unit's master seed (order is part of the contract: appending is safe).
SEED_COMPONENTS = ("split", "init_a", "init_b", "order_a", "order_b", "probe", "attack")


@dataclass(frozen=True)
class Unit:
    """One model pair of the sweep."""

    source: SourceSpec
    model: ModelSpec
    overlap_kind: str
    data_fraction: float | None
    task_fraction: float | None
    seed: int
    mode: str
    train: dict[str, Any] = field(default_factory=dict)
    attributes: tuple = ()  # attribute overlap: (task_a attributes, task_b attributes)
    images: str | None = None  # task overlap on image data: "disjoint" or "shared" images (None elsewhere)
    align: float = 0.0  # data overlap: dose λ of B's alignment loss to A (0 = ordinary training)
    init: str = "independent"  # data overlap: "shared" = B starts from A's initial weights
    # not part of the unit's identity: its design's index in overlap.designs, and the ε that
    # `eps: auto` chose for that design (set by the runner's pre-pass, reprsim.experiments.attack_eps)
    design: int | None = None
    attack_eps: float | None = None

    def key(self) -> dict[str, Any]:
        """Everything that determines the unit's trained models."""
        # disjoint images are new: only they add a key, so shared-image and other units keep their ids
        images = {"images": self.images} if self.images == "disjoint" else {}
        # likewise the data-overlap arms: only an alignment dose or a shared initialisation adds a key
        arms = {"align": self.align} if self.align > 0 else {}
        arms |= {"init": self.init} if self.init != "independent" else {}
        return (
            images
            | arms
            | {
                "source": self.source.model_dump(mode="json"),
                "model": self.model.model_dump(mode="json"),
                "overlap_kind": self.overlap_kind,
                "data_fraction": self.data_fraction,
                "task_fraction": self.task_fraction,
                "seed": self.seed,
                "mode": self.mode,
                "train": self.train,
                "attributes": list(self.attributes),
            }
        )

    @property
    def unit_id(self) -> str:
        frac = lambda x: "na" if x is None else f"{x:g}"  # noqa: E731
        arms = (f"-al{self.align:g}" if self.align > 0 else "") + ("-init_shared" if self.init == "shared" else "")
        label = f"{self.source.name}-{self.model.name}-{self.overlap_kind}-d{frac(self.data_fraction)}-t{frac(self.task_fraction)}{arms}-s{self.seed}"
        return f"{label}-{content_hash(self.key(), 8)}"

    def seeds(self) -> dict[str, int]:
        """Per-component seeds spawned from the unit's master seed (``SeedSequence.spawn``).

        The master seed is the config seed, so units that differ only in overlap share their
        initialisations and data orders (common random numbers): differences between fractions
        then come from the overlap, not from a different draw of initial weights.
        """
        children = np.random.SeedSequence(self.seed).spawn(len(SEED_COMPONENTS))
        return {name: int(child.generate_state(1)[0]) for name, child in zip(SEED_COMPONENTS, children)}

    def describe(self) -> dict[str, Any]:
        """The unit's varying values, as result-table columns."""
        return {
            "unit_id": self.unit_id,
            "source": self.source.name,
            "model": self.model.name,
            "overlap_kind": self.overlap_kind,
            "data_fraction": np.nan if self.data_fraction is None else self.data_fraction,
            "task_fraction": np.nan if self.task_fraction is None else self.task_fraction,
            "seed": self.seed,
            "task_images": self.images,
            "align": float(self.align),
            "init": self.init,
        }


def expand(config: ExperimentConfig) -> list[Unit]:
    """The grid sources × models × designs × fractions × seeds, in a deterministic order."""
    units: list[Unit] = []
    for source in config.sources:
        for model in config.models:
            for index, design in enumerate(config.overlap.designs):
                if not design.applies_to(source.name, model.name):
                    continue
                for (data_f, task_f, attributes), (align, init) in product(
                    _design_points(design), _design_arms(design)
                ):
                    for seed in config.seeds:
                        units.append(
                            Unit(
                                source=source,
                                model=model,
                                overlap_kind=design.kind,
                                data_fraction=data_f,
                                task_fraction=task_f,
                                seed=seed,
                                mode=config.overlap.mode,
                                train=dict(config.train) | dict(model.train),  # per-model overrides
                                attributes=attributes,
                                images=_task_images(design, source, model),
                                align=align,
                                init=init,
                                design=index,
                            )
                        )
    ids = [u.unit_id for u in units]
    if len(set(ids)) != len(ids):
        raise ValueError("the sweep grid contains the same unit twice (duplicate sources, models or designs)")
    return units


def _task_images(design, source: SourceSpec, model: ModelSpec) -> str | None:
    """A task design's ``images`` where the unit's world splits images by class (None elsewhere)."""
    if design.kind != "task":
        return None
    from reprsim.experiments.worlds import get_world, world_name_of

    try:
        world = get_world(world_name_of(source.name))
    except ValueError:  # an unknown source: the preflight reports it
        return None
    return design.images if world.task_images else None


def _design_arms(design) -> list[tuple[float, str]]:
    """The (align dose, init) arms a design crosses with its points: data designs' ``align`` × ``init``."""
    if design.kind != "data":
        return [(0.0, "independent")]
    return [(float(a), i) for a in design.align for i in design.init]


def _design_points(design) -> list[tuple[float | None, float | None, tuple[str, ...]]]:
    if design.kind == "data":
        # every class is shared: task overlap is complete
        return [(f, 1.0, ()) for f in design.fractions]
    if design.kind == "task":
        # a shared class brings all of its images: data overlap is not a free parameter
        return [(None, f, ()) for f in design.fractions]
    if design.kind == "combined":
        return [(d, t, ()) for t in design.task_fractions for d in design.data_fractions]
    if design.kind == "factorial":
        # images disjoint / shared (data 0 / 1) x other / same task (task 0 / 1)
        return [(d, t, ((design.task,), (design.other_task,))) for t in (0.0, 1.0) for d in (0.0, 1.0)]
    if design.kind == "attribute":
        # identical inputs for both models: data overlap is complete; one unit per task pair of a level
        from reprsim.data.splits import colorshapes_task_levels

        pairs = colorshapes_task_levels(tuple(design.attributes))
        return [(1.0, level, pair) for level in design.levels for pair in pairs[level]]
    raise ValueError(f"unknown overlap kind {design.kind!r}")


def unit_record(unit: Unit) -> dict[str, Any]:
    """A JSON-serialisable record of a unit (stored beside its results)."""
    record = asdict(unit)
    record["source"] = unit.source.model_dump(mode="json")
    record["model"] = unit.model.model_dump(mode="json")
    record["unit_id"] = unit.unit_id
    record["seeds"] = unit.seeds()
    return record
