"""The ``image`` world: overlapping splits of one labelled image data set (every array data source).

Splits (:mod:`reprsim.experiments.pairs`): data overlap (shared examples per class), task overlap
(shared classes), the data × task grid, and attribute tasks on identical inputs. Probe sets: the
test set (or its common / ood_one / ood_all class subsets, and for task designs the
fixed-composition common_fixed / ood_one_fixed) plus the config's extra (OOD) sources, reshaped to
the training inputs. In-distribution sets carry each image's class id (``ProbeSet.labels``, the
source's label space, shared by both models) and its test-set row (``ProbeSet.rows``).
Consequence: adversarial transfer (``attack_transfer``) on the pair's attack set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from reprsim.data.config_sets import load_probe, load_source, subsample
from reprsim.errors import ReprsimError
from reprsim.experiments.pairs import PairData, make_pair_data
from reprsim.experiments.worlds.base import DataWorld, ProbeSet, Trained

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.families.base import ModelFamily
    from reprsim.experiments.grid import Unit


def n_classes(labels: np.ndarray) -> int:
    """The number of distinct classes among ``labels``."""
    return len(np.unique(labels))


def design_fractions(config: ExperimentConfig, unit: Unit) -> tuple[float, ...]:
    """Every task fraction of the class-split design the unit belongs to (empty for other designs)."""
    for design in config.overlap.designs:
        if not design.applies_to(unit.source.name, unit.model.name):
            continue
        fractions = {
            "task": getattr(design, "fractions", None),
            "combined": getattr(design, "task_fractions", None),
        }.get(design.kind)
        if design.kind == unit.overlap_kind and fractions is not None and unit.task_fraction in fractions:
            return tuple(fractions)
    return ()


def attack_eps(spec: Any, unit: Unit) -> float:
    """The ε of an ``attack_transfer`` stage for ``unit``: fixed by overlap kind (``eps_data`` /
    ``eps_task``), or with ``eps: auto`` the one the runner's pre-pass chose for the unit's design."""
    if spec.eps != "auto":
        return spec.eps_data if unit.overlap_kind == "data" else spec.eps_task
    if unit.attack_eps is None:
        raise ValueError(
            f"unit {unit.unit_id}: eps: auto has not been resolved for its design; run the sweep "
            "through reprsim.experiments.run_experiment (or set the unit's attack_eps with "
            "reprsim.experiments.attack_eps.with_attack_eps)"
        )
    return unit.attack_eps


def _attack_stage(
    spec: Any, source: nn.Module, victim: nn.Module, pair: PairData, eps: float, seed: int, **options: Any
) -> dict[str, float]:
    """:func:`~reprsim.attacks.transfer.attack_transfer_stage` on the pair's attack set with ``spec``'s settings."""
    from reprsim.attacks.transfer import attack_transfer_stage

    inputs, labels, shared = pair.attack_set()
    return attack_transfer_stage(
        source,
        victim,
        inputs,
        labels,
        attack=spec.attack,
        eps=eps,
        steps=spec.steps,
        n=spec.n,
        seed=seed,
        num_shared_classes=shared,
        **options,
        **spec.params,
    )


class ImageWorld(DataWorld):
    name = "image"
    overlap_kinds = ("data", "task", "combined", "attribute", "factorial")
    consequences = ("attack_transfer",)
    task_images = True

    def pair(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None, family: ModelFamily) -> PairData:
        return make_pair_data(
            unit,
            load_source(unit.source, "train", cache_dir),
            load_source(unit.source, "test", cache_dir),
            unit.seeds()["split"],
            cache_dir,
            design_fractions(config, unit),
        )

    def probes(self, config: ExperimentConfig, unit: Unit, pair: PairData) -> list[ProbeSet]:
        """In-distribution sets (the test set, or its class subsets), then the extra OOD sets reshaped to the training images."""
        from reprsim.data.transforms import match_shape

        seed = unit.seeds()["probe"]
        probes = []
        test_labels = pair.test.labels[pair.label]
        for name, role, indices in pair.probe_indices():
            idx = indices[subsample(len(indices), config.probe_size, seed)]
            probes.append(
                ProbeSet(
                    name, role, pair.test.inputs[idx], n_classes(test_labels[idx]), labels=test_labels[idx], rows=idx
                )
            )
        shape = tuple(pair.test.inputs.shape[1:])
        for spec in config.probes:
            probe_data = load_probe(spec)
            idx = subsample(len(probe_data.inputs), config.probe_size, seed)
            labels = probe_data.labels.get("label")
            count = n_classes(labels[idx]) if labels is not None else None
            probes.append(ProbeSet(spec.name, "ood", match_shape(probe_data.inputs[idx], shape), count))
        return probes

    # ---- consequences ---------------------------------------------------------------------
    def consequence(
        self,
        spec: Any,
        config: ExperimentConfig,
        unit: Unit,
        pair: PairData,
        a: Trained,
        b: Trained,
        seed: int,
        family: ModelFamily,
    ) -> dict[str, Any]:
        inputs, labels, shared = pair.attack_set()
        eps = attack_eps(spec, unit)
        label_space = ({} if shared is None else {"attack_classes": shared}) | {"attack_eps": eps}
        if len(labels) == 0:
            # No fixed label space shared by both models (task overlap below the fraction that
            # shares the fixed attack classes; different attribute tasks): nothing to transfer.
            return label_space | {"transfer_asr": float("nan"), "whitebox_asr": float("nan")}
        return label_space | _attack_stage(spec, a.model, b.model, pair, eps, seed)

    def whitebox_asr(self, spec: Any, unit: Unit, pair: PairData, a: Trained, eps: float) -> float | None:
        """Model A's white-box success at ``eps`` on the unit's attack set, with the stage's settings and
        the unit's attack seed (as in :meth:`consequence`), or None when the pair has no attack set.
        ``eps: auto`` chooses ε from it (:mod:`reprsim.experiments.attack_eps`)."""
        if len(pair.attack_set()[1]) == 0:
            return None
        return _attack_stage(spec, a.model, a.model, pair, eps, unit.seeds()["attack"], both_directions=False)[
            "whitebox_asr"
        ]

    # ---- preflight ------------------------------------------------------------------------
    def check(self, config: ExperimentConfig, units: list[Unit], family: ModelFamily) -> list[str]:
        """Probe sources load, every unit's split is feasible, k fits every probe set, and each model
        entry passes the family's checks on the split (``family.model_problems``)."""
        problems = []
        for spec in config.probes:
            try:
                load_probe(spec)
            except (ValueError, FileNotFoundError, ReprsimError) as exc:
                problems.append(f"probes.{spec.name}: {exc}")
        halves, unsplittable = self._disjoint_image_problems(config, units)
        problems += halves
        k = config.measures.params.get("k")
        checked_models: set[tuple] = set()
        for unit in units:
            if unit.images == "disjoint" and unit.source.name in unsplittable:
                continue  # said once, for its design, above
            try:
                pair = self.pair(config, unit, None, family)
            except (ValueError, FileNotFoundError, KeyError, ReprsimError) as exc:
                problems.append(f"unit {unit.unit_id}: {exc}")
                continue
            if isinstance(k, int):
                sizes = {name: min(len(idx), config.probe_size) for name, _, idx in pair.probe_indices()}
                small = {name: n for name, n in sizes.items() if 0 < n <= k}
                if small:
                    problems.append(
                        f"measures.params.k={k} is not smaller than probe set(s) {small} of unit "
                        f"{unit.unit_id}; lower k or raise probe_size"
                    )
            model_key = (json.dumps(unit.model.model_dump(mode="json"), sort_keys=True), pair.num_classes("a"))
            if model_key in checked_models:
                continue
            checked_models.add(model_key)
            problems += family.model_problems(config, unit, pair)
        return list(dict.fromkeys(problems))

    def _disjoint_image_problems(self, config: ExperimentConfig, units: list[Unit]) -> tuple[list[str], set[str]]:
        """Task designs with ``images: disjoint`` on a source with a class of fewer than 2 training
        images (no two disjoint halves): one problem per design and source, and those sources' names."""
        from reprsim.data.splits import classes_too_small_to_halve

        problems, unsplittable = [], set()
        sources = {u.source.name: u.source for u in units if u.images == "disjoint"}
        for i, design in enumerate(config.overlap.designs):
            if design.kind != "task" or design.images != "disjoint":
                continue
            for name, source in sources.items():
                if design.sources is not None and name not in design.sources:
                    continue
                try:
                    small = classes_too_small_to_halve(load_source(source, "train").labels[source.label])
                except (ValueError, FileNotFoundError, KeyError, ReprsimError):
                    continue  # the source itself does not load: the unit checks below say why
                if small:
                    (cls, n), *_ = small.items()
                    problems.append(
                        f"overlap.designs.{i}.images: disjoint images need at least 2 training images in "
                        f"every class of source {name!r} (one half per model), but class {cls} has {n} "
                        f"({len(small)} class(es) with fewer than 2); set images: shared for this "
                        "design, or give the source more images per class (its n or per_class)"
                    )
                    unsplittable.add(name)
        return problems, unsplittable
