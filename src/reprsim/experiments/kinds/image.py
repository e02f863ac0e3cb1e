"""The ``image`` kind: two image classifiers trained on overlapping splits of one labelled data set.

Splits (:mod:`reprsim.experiments.pairs`): data overlap (shared examples per class), task overlap
(shared classes), the data × task grid, and attribute tasks on identical inputs. Probe sets: the
test set (or its common / ood_one / ood_all class subsets) plus the config's extra (OOD) sources,
reshaped to the training inputs. Consequence: adversarial transfer (``attack_transfer``).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from reprsim.errors import ReprsimError
from reprsim.experiments.kinds.base import Kind, Probe, Trained, layer_problems
from reprsim.experiments.pairs import PairData, make_pair_data

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig, ModelSpec, ProbeSpec, SourceSpec
    from reprsim.experiments.grid import Unit


@lru_cache(maxsize=16)
def _load_cached(name: str, split: str, options_json: str):
    from reprsim import data

    return data.load(name, split=split, **json.loads(options_json))


def load_source(source: SourceSpec, split: str, cache_dir: Path | None = None):
    """The train or test split of a configured source (the test split drops training subsampling).

    A source that caches what it generates (``colorshapes``) keeps it in the sweep's ``cache_dir``
    unless its options name another folder.
    """
    if split == "train":
        options = dict(source.options)
    else:  # the test split keeps the source's options but not its training-set subsampling
        options = {k: v for k, v in source.options.items() if k not in ("per_class", "n")} | source.test_options
    if cache_dir is not None and "cache_dir" not in options and _takes_cache_dir(source.name):
        options["cache_dir"] = str(cache_dir)
    return _load_cached(source.name, split, json.dumps(options, sort_keys=True))


def _takes_cache_dir(name: str) -> bool:
    import inspect

    from reprsim.data.registry import SOURCES

    loader = SOURCES[name].loader if name in SOURCES else None
    return loader is not None and "cache_dir" in inspect.signature(loader).parameters


def load_probe(spec: ProbeSpec):
    """The data set of an extra probe set of the config."""
    return _load_cached(spec.source, spec.split, json.dumps(spec.options, sort_keys=True))


def subsample(n_total: int, n: int, seed: int) -> np.ndarray:
    """A seeded subsample of ``n`` row indices (all rows, in order, when ``n >= n_total``)."""
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def _n_classes(labels: np.ndarray) -> int:
    return len(np.unique(labels))


def design_fractions(config: ExperimentConfig, unit: Unit) -> tuple[float, ...]:
    """Every task fraction of the class-split design the unit belongs to (empty for other designs)."""
    for design in config.overlap.designs:
        if not design.applies_to(unit.source.name, unit.model.name):
            continue
        fractions = {"task": getattr(design, "fractions", None),
                     "combined": getattr(design, "task_fractions", None)}.get(design.kind)  # fmt: skip
        if design.kind == unit.overlap_kind and fractions is not None and unit.task_fraction in fractions:
            return tuple(fractions)
    return ()


def _pretrained_key(model: ModelSpec) -> dict[str, str]:
    """What a model entry starts from, by content: a changed checkpoint or folder retrains."""
    from reprsim.models.pretrained import weights_fingerprint

    start = model.hf if model.hf is not None else model.checkpoint
    return {} if start is None else {"pretrained": weights_fingerprint(start)}


def _init_side(unit: Unit, side: str) -> str:
    """Whose initial weights model ``side`` starts from: A's for B of an ``init: shared`` unit."""
    return "a" if unit.init == "shared" else side


def attack_eps(spec: Any, unit: Unit) -> float:
    """The ε of an ``attack_transfer`` stage for ``unit``: fixed by overlap kind (``eps_data`` /
    ``eps_task``), or with ``eps: auto`` the one the runner's pre-pass chose for the unit's design."""
    if spec.eps != "auto":
        return spec.eps_data if unit.overlap_kind == "data" else spec.eps_task
    if unit.attack_eps is None:
        raise ValueError(f"unit {unit.unit_id}: eps: auto has not been resolved for its design; run the sweep "
                         "through reprsim.experiments.run_experiment (or set the unit's attack_eps with "
                         "reprsim.experiments.attack_eps.with_attack_eps)")  # fmt: skip
    return unit.attack_eps


def _attack_stage(spec: Any, source: nn.Module, victim: nn.Module, pair: PairData, eps: float, seed: int,
                  **options: Any) -> dict[str, float]:  # fmt: skip
    """:func:`~reprsim.attacks.transfer.attack_transfer_stage` on the pair's attack set with ``spec``'s settings."""
    from reprsim.attacks.transfer import attack_transfer_stage

    inputs, labels, shared = pair.attack_set()
    return attack_transfer_stage(source, victim, inputs, labels, attack=spec.attack, eps=eps, steps=spec.steps,
                                 n=spec.n, seed=seed, num_shared_classes=shared, **options, **spec.params)  # fmt: skip


class ImageKind(Kind):
    name = "image"
    overlap_kinds = ("data", "task", "combined", "attribute", "factorial")
    model_kinds = ("image", "hf_image")
    consequences = ("attack_transfer",)
    task_images = True
    design_arms = ("align", "init")
    feature_batch_size = 512
    feature_pool = "avg"

    # ---- data -----------------------------------------------------------------------------
    def pair(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None) -> PairData:
        return make_pair_data(unit, load_source(unit.source, "train", cache_dir), load_source(unit.source, "test", cache_dir),
                              unit.seeds()["split"], cache_dir, design_fractions(config, unit))  # fmt: skip

    def probes(self, config: ExperimentConfig, unit: Unit, pair: PairData) -> list[Probe]:
        """In-distribution sets (the test set, or common / ood_one / ood_all for class splits), then extra OOD sets."""
        from reprsim.data.transforms import match_shape

        seed = unit.seeds()["probe"]
        probes = []
        test_labels = pair.test.labels[pair.label]
        for name, role, indices in pair.probe_indices():
            idx = indices[subsample(len(indices), config.probe_size, seed)]
            probes.append(Probe(name, role, pair.test.inputs[idx], _n_classes(test_labels[idx])))
        shape = tuple(pair.test.inputs.shape[1:])
        for spec in config.probes:
            probe_data = load_probe(spec)
            idx = subsample(len(probe_data.inputs), config.probe_size, seed)
            labels = probe_data.labels.get("label")
            n_classes = _n_classes(labels[idx]) if labels is not None else None
            probes.append(Probe(spec.name, "ood", match_shape(probe_data.inputs[idx], shape), n_classes))
        return probes

    # ---- models ---------------------------------------------------------------------------
    def build(self, config: ExperimentConfig, unit: Unit, pair: PairData, side: str) -> nn.Module:
        """A zoo model (optionally started from ``checkpoint``) or a local Hugging Face image model,
        either way with a new head of the side's classes, initialised from the unit's seed."""
        from reprsim import models
        from reprsim.models import pretrained

        x, _ = pair.train_set(side)
        seed, num_classes = unit.seeds()[f"init_{_init_side(unit, side)}"], pair.num_classes(side)
        if unit.model.hf is not None:
            return pretrained.hf_image_classifier(unit.model.hf, num_classes, seed=seed, input_size=unit.model.input_size,
                                                  in_channels=int(x.shape[1]) if x.ndim == 4 else None)  # fmt: skip
        model = models.build(unit.model.name, input_shape=tuple(x.shape[1:]), num_classes=num_classes, seed=seed,
                             **unit.model.options)  # fmt: skip
        if unit.model.checkpoint is not None:
            pretrained.start_from_checkpoint(model, unit.model.checkpoint, what=f"models.{unit.model.name}.checkpoint")
        return model

    def weights_key(self, config: ExperimentConfig, unit: Unit, pair: PairData, side: str) -> dict[str, Any]:
        seeds = unit.seeds()
        _, y = pair.train_set(side)
        examples = hashlib.sha256(np.ascontiguousarray(pair.split.indices(side)).tobytes() + y.tobytes()).hexdigest()
        return {"source": unit.source.model_dump(mode="json"), "model": unit.model.model_dump(mode="json"),
                "train": unit.train, "init": seeds[f"init_{_init_side(unit, side)}"], "order": seeds[f"order_{side}"],
                "examples": examples, "classes": pair.num_classes(side)} | _pretrained_key(unit.model) | (
                    # B trained against A: its weights depend on the dose and on A's weights
                    {"align": unit.align, "partner": self.weights_key(config, unit, pair, "a")}
                    if self.partner(unit, side) else {})  # fmt: skip

    def partner(self, unit: Unit, side: str) -> str | None:
        """Model B of an alignment unit (``align`` > 0) trains against the trained model A."""
        return "a" if side == "b" and unit.align > 0 else None

    def fit(self, config: ExperimentConfig, unit: Unit, pair: PairData, side: str, model: nn.Module,
            checkpoint_dir: Path, device: torch.device, progress: bool,
            partner: Trained | None = None) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
        """Train ``model``; model B of an alignment unit adds ``align`` · (1 − CKA to the frozen ``partner`` A)."""
        from contextlib import nullcontext

        from reprsim.train import TrainConfig, train
        from reprsim.training.alignment import AlignmentLoss

        if self.partner(unit, side) and partner is None:
            raise ValueError(f"unit {unit.unit_id}: model B (align {unit.align:g}) trains against model A; pass partner=")
        aligned = (AlignmentLoss(model, partner.model, unit.align, pool=self.feature_pool)
                   if self.partner(unit, side) else nullcontext())  # fmt: skip
        with aligned as extra_loss:
            result = train(model, pair.train_set(side), TrainConfig.from_dict(unit.train), unit.seeds()[f"order_{side}"],
                           eval_dataset=pair.eval_set(side), checkpoint_dir=checkpoint_dir, progress=progress,
                           device=device, extra_loss=extra_loss)  # fmt: skip
        info = {"train_accuracy": float(result.train_accuracy), "eval_accuracy": float(result.eval_accuracy),
                "seconds": float(result.seconds)}  # fmt: skip
        return result.model, info

    def pair_columns(self, pair: PairData, a: Trained, b: Trained) -> dict[str, Any]:
        return {"acc_a": a.info["eval_accuracy"], "acc_b": b.info["eval_accuracy"],
                "train_acc_a": a.info["train_accuracy"], "train_acc_b": b.info["train_accuracy"],
                "attribute_pair": pair.attribute_pair}  # fmt: skip

    # ---- consequences ---------------------------------------------------------------------
    def consequence(self, spec: Any, config: ExperimentConfig, unit: Unit, pair: PairData, a: Trained, b: Trained,
                    seed: int) -> dict[str, Any]:  # fmt: skip
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
        return _attack_stage(spec, a.model, a.model, pair, eps, unit.seeds()["attack"], both_directions=False)["whitebox_asr"]

    # ---- preflight ------------------------------------------------------------------------
    def check(self, config: ExperimentConfig, units: list[Unit]) -> list[str]:
        """Probe sources load, every unit's split is feasible, the layers exist and k fits every probe set."""
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
                pair = self.pair(config, unit, cache_dir=None)
            except (ValueError, FileNotFoundError, KeyError, ReprsimError) as exc:
                problems.append(f"unit {unit.unit_id}: {exc}")
                continue
            if isinstance(k, int):
                sizes = {name: min(len(idx), config.probe_size) for name, _, idx in pair.probe_indices()}
                small = {name: n for name, n in sizes.items() if 0 < n <= k}
                if small:
                    problems.append(f"measures.params.k={k} is not smaller than probe set(s) {small} of unit "
                                    f"{unit.unit_id}; lower k or raise probe_size")  # fmt: skip
            model_key = (json.dumps(unit.model.model_dump(mode="json"), sort_keys=True), pair.num_classes("a"))
            if model_key in checked_models:
                continue
            checked_models.add(model_key)
            problems += self._model_problems(config, unit, pair)
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
                    problems.append(f"overlap.designs.{i}.images: disjoint images need at least 2 training images in "
                                    f"every class of source {name!r} (one half per model), but class {cls} has {n} "
                                    f"({len(small)} class(es) with fewer than 2); set images: shared for this "
                                    "design, or give the source more images per class (its n or per_class)")  # fmt: skip
                    unsplittable.add(name)
        return problems, unsplittable

    def _model_problems(self, config: ExperimentConfig, unit: Unit, pair: PairData) -> list[str]:
        """The model entry builds (a pretrained one loads), has the layers, and runs on two training images."""
        spec, what = unit.model, f"models.{unit.model.name}"
        if spec.hf is not None:
            from reprsim.llm.spec import hf_path_problem

            problem = hf_path_problem(spec.hf)
            if problem:
                return [f"{what}: {problem}"]
            try:
                import transformers  # noqa: F401
            except ImportError:
                return [f"{what}: hf: models need transformers: pip install 'reprsim[hf]'"]
        try:
            model = self.build(config, unit, pair, "a")
        except (TypeError, ValueError, OSError, ReprsimError) as exc:
            return [f"{what}: {exc}"]
        problems = layer_problems(model, config.layers, spec.name)
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
