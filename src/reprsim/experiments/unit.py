"""One unit of a sweep: split → train models A and B → probe features → measures → consequences.

:func:`execute_unit` is the function every executor runs; it never raises: a failing unit
(NaN loss, out of memory, ...) comes back as ``status: failed`` with its error, and the sweep goes
on. Splits, trained weights and features are cached by content hash under the cache folder, so
rerunning a sweep with other measures or probes retrains nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reprsim.errors import ReprsimError
from reprsim.experiments.config import ExperimentConfig, ProbeSpec, SourceSpec
from reprsim.experiments.grid import Unit, content_hash
from reprsim.experiments.pairs import PairData, make_pair_data
from reprsim.experiments.similarity import probe_rows
from reprsim.experiments.weights import cached_model

log = logging.getLogger("reprsim.unit")


@dataclass
class Probe:
    """A probe set fed identically to both models."""

    name: str
    role: str  # id | common | ood_one | ood_all | ood
    inputs: np.ndarray


# ---------------------------------------------------------------------------------------------
# data loading (cached per process)
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _load_cached(name: str, split: str, options_json: str):
    from reprsim import data

    return data.load(name, split=split, **json.loads(options_json))


def load_source(source: SourceSpec, split: str):
    if split == "train":
        options = source.options
    else:  # the test split keeps the source's options but not its training-set subsampling
        options = {k: v for k, v in source.options.items() if k not in ("per_class", "n")} | source.test_options
    return _load_cached(source.name, split, json.dumps(options, sort_keys=True))


def load_probe(spec: ProbeSpec):
    return _load_cached(spec.source, spec.split, json.dumps(spec.options, sort_keys=True))


def _subsample(n_total: int, n: int, seed: int) -> np.ndarray:
    """A seeded subsample of ``n`` row indices (all rows, in order, when ``n >= n_total``)."""
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def probe_sets(config: ExperimentConfig, pair: PairData, seed: int) -> list[Probe]:
    """The unit's probe sets: in-distribution (or common / ood_one / ood_all for class splits) and extra OOD sets."""
    from reprsim.data.transforms import match_shape

    probes = []
    for name, role, indices in pair.probe_indices():
        idx = indices[_subsample(len(indices), config.probe_size, seed)]
        probes.append(Probe(name, role, pair.test.inputs[idx]))
    shape = tuple(pair.test.inputs.shape[1:])
    for spec in config.probes:
        probe_data = load_probe(spec)
        idx = _subsample(len(probe_data.inputs), config.probe_size, seed)
        probes.append(Probe(spec.name, "ood", match_shape(probe_data.inputs[idx], shape)))
    return probes


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
def trained_model(unit: Unit, side: str, pair: PairData, cache_dir: Path, progress: bool):
    """Model ``side`` ('a' or 'b') of the unit, trained or loaded from the checkpoint cache.

    Returns ``(model, info)`` with ``info`` holding test accuracy and training time.
    """
    from reprsim import models
    from reprsim.train import TrainConfig, train

    seeds = unit.seeds()
    x, y = pair.train_set(side)
    num_classes = pair.num_classes(side)
    # Keyed by what determines the weights, not by the unit: model A of a data- or task-overlap
    # sweep trains on the same examples at every fraction (only B's share changes), so it is
    # trained once per seed and reused.
    examples = hashlib.sha256(np.ascontiguousarray(pair.split.indices(side)).tobytes() + y.tobytes()).hexdigest()
    key = content_hash({
        "source": unit.source.model_dump(mode="json"), "model": unit.model.model_dump(mode="json"),
        "train": unit.train, "init": seeds[f"init_{side}"], "order": seeds[f"order_{side}"],
        "examples": examples, "classes": num_classes,
    })  # fmt: skip
    model = models.build(unit.model.name, input_shape=tuple(x.shape[1:]), num_classes=num_classes,
                         seed=seeds[f"init_{side}"], **unit.model.options)  # fmt: skip

    def fit(model, checkpoint_dir):
        result = train(model, (x, y), TrainConfig.from_dict(unit.train), seeds[f"order_{side}"],
                       eval_dataset=pair.eval_set(side), checkpoint_dir=checkpoint_dir, progress=progress)  # fmt: skip
        info = {"train_accuracy": float(result.train_accuracy), "eval_accuracy": float(result.eval_accuracy),
                "seconds": float(result.seconds)}  # fmt: skip
        return result.model, info

    return cached_model(model, key, cache_dir, fit)


# ---------------------------------------------------------------------------------------------
# the unit
# ---------------------------------------------------------------------------------------------
@contextmanager
def timed_stage(timings: dict, name: str, bar=None):
    t0 = time.perf_counter()
    log.info("stage %s", name)
    if bar is not None:
        bar.set_description_str(name)
    yield
    timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - t0, 3)
    if bar is not None:
        bar.update(1)


def _image_unit(config: ExperimentConfig, unit: Unit, cache_dir: Path, timings: dict, progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    from reprsim.features import extract

    seeds = unit.seeds()
    stages = 5 + len(config.consequences)
    bar = tqdm(total=stages, desc="split", leave=False, position=1, disable=not progress)
    with timed_stage(timings, "split", bar):
        pair = make_pair_data(unit, load_source(unit.source, "train"), load_source(unit.source, "test"), seeds["split"], cache_dir)
    with timed_stage(timings, "train_a", bar):
        model_a, info_a = trained_model(unit, "a", pair, cache_dir, progress)
    with timed_stage(timings, "train_b", bar):
        model_b, info_b = trained_model(unit, "b", pair, cache_dir, progress)
    with timed_stage(timings, "features", bar):
        probes = probe_sets(config, pair, seeds["probe"])
        feats = {}
        for probe in probes:
            for side, model in (("a", model_a), ("b", model_b)):
                feats[probe.name, side] = (
                    extract(model, probe.inputs, layers=config.layers, batch_size=512,
                            cache_dir=cache_dir / "features", cache_key=_probe_key(config, unit, probe, seeds))
                    if len(probe.inputs) else {}
                )  # fmt: skip
    with timed_stage(timings, "measures", bar):
        rows = [
            row
            for probe in probes
            for row in probe_rows(config.measures, probe.name, probe.role, len(probe.inputs), feats[probe.name, "a"],
                                  feats[probe.name, "b"], config.layers, seeds["probe"])  # fmt: skip
        ]
    consequences: dict[str, Any] = {}
    attack = config.consequence("attack_transfer")
    if attack is not None:
        with timed_stage(timings, "attack_transfer", bar):
            consequences.update(_attack_columns(attack, unit, pair, model_a, model_b, seeds["attack"]))
    bar.close()

    common = unit.describe() | {
        "status": "ok",
        "realised_data_fraction": pair.split.realised_data_fraction,
        "realised_task_fraction": pair.split.realised_task_fraction,
        "acc_a": info_a["eval_accuracy"],
        "acc_b": info_b["eval_accuracy"],
        "train_acc_a": info_a["train_accuracy"],
        "train_acc_b": info_b["train_accuracy"],
        "attribute_pair": pair.attribute_pair,
    }
    return [common | row | consequences for row in rows]


def _probe_key(config: ExperimentConfig, unit: Unit, probe: Probe, seeds: dict) -> str:
    spec = next((p.model_dump(mode="json") for p in config.probes if p.name == probe.name), None)
    return content_hash({"unit": unit.key(), "probe": probe.name, "spec": spec, "size": config.probe_size,
                         "seed": seeds["probe"], "n": len(probe.inputs)})  # fmt: skip


def _attack_columns(spec, unit: Unit, pair: PairData, model_a, model_b, seed: int) -> dict[str, float]:
    from reprsim.attacks.transfer import attack_transfer_stage

    inputs, labels, shared = pair.attack_set()
    if len(labels) == 0 or (shared is not None and shared < 2):
        # No shared label space with at least two classes (e.g. task overlap 0, or one shared
        # class, where the restricted prediction is constant and no attack can succeed).
        return {"transfer_asr": float("nan")}
    eps = spec.eps_data if unit.overlap_kind == "data" else spec.eps_task
    return attack_transfer_stage(
        model_a, model_b, inputs, labels, attack=spec.attack, eps=eps, steps=spec.steps, n=spec.n,
        seed=seed, num_shared_classes=shared, **spec.params,
    )  # fmt: skip


def execute_unit(config: ExperimentConfig, unit: Unit, cache_dir: Path, *, log_path: Path | None = None,
                 progress: bool = False, stage_queue: Any = None) -> dict:  # fmt: skip
    """Run one unit; return ``{"rows": [...] | None, "status": {...}}`` (never raises).

    Stages are logged to ``log_path`` and, when ``stage_queue`` (a multiprocessing queue) is given,
    sent to it as log records carrying ``unit_id``, so a driver can show what each worker is doing.
    """
    handlers = [h for h in (_file_handler(log_path), _stage_handler(stage_queue, unit.unit_id)) if h is not None]
    root = logging.getLogger("reprsim")
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.execution.threads_per_unit)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        if unit.source.name == "chat":
            from reprsim.experiments.chat_unit import chat_unit

            rows = chat_unit(config, unit, Path(cache_dir), timings, progress)
        elif unit.source.name == "text":
            from reprsim.experiments.text_unit import text_unit

            rows = text_unit(config, unit, Path(cache_dir), timings, progress)
        else:
            rows = _image_unit(config, unit, Path(cache_dir), timings, progress)
        timings["total"] = round(time.perf_counter() - t0, 3)
        return {"rows": rows, "status": {"status": "ok", "timings": timings, "n_rows": len(rows)}}
    except Exception as exc:  # recorded, not raised: the sweep continues with the other units
        log.exception("unit %s failed", unit.unit_id)
        timings["total"] = round(time.perf_counter() - t0, 3)
        return {"rows": None, "status": {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                         "traceback": traceback.format_exc(), "timings": timings}}  # fmt: skip
    finally:
        torch.set_num_threads(previous_threads)
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


def _file_handler(log_path: Path | None) -> logging.Handler | None:
    if log_path is None:
        return None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


class _StageRecords(logging.Filter):
    """Passes only this module's "stage NAME" records, tagged with the unit they belong to."""

    def __init__(self, unit_id: str):
        super().__init__()
        self.unit_id = unit_id

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != log.name or not record.getMessage().startswith("stage "):
            return False
        record.unit_id = self.unit_id
        return True


def _stage_handler(queue: Any, unit_id: str) -> logging.Handler | None:
    if queue is None:
        return None
    handler = logging.handlers.QueueHandler(queue)
    handler.addFilter(_StageRecords(unit_id))
    return handler


def preflight(config: ExperimentConfig, units: list[Unit]) -> None:
    """Check, before any training, that every unit's data loads, split is feasible and layers exist.

    Raises :class:`ReprsimError` with the unit and the fix.
    """
    if not units:
        return
    if units[0].source.name == "chat":
        from reprsim.experiments.chat_unit import chat_preflight

        chat_preflight(config, units)
        return
    if units[0].source.name == "text":
        from reprsim.experiments.text_unit import text_preflight

        text_preflight(config, units)
        return
    from reprsim import models

    for spec in config.probes:
        try:
            load_probe(spec)
        except (ValueError, FileNotFoundError, ReprsimError) as exc:
            raise ReprsimError(f"probes.{spec.name}: {exc}") from None
    checked_models = set()
    for unit in units:
        try:
            train_set, test_set = load_source(unit.source, "train"), load_source(unit.source, "test")
            pair = make_pair_data(unit, train_set, test_set, unit.seeds()["split"], cache_dir=None)
        except (ValueError, FileNotFoundError, ReprsimError) as exc:
            raise ReprsimError(f"unit {unit.unit_id}: {exc}") from None
        model_key = (unit.model.name, json.dumps(unit.model.options, sort_keys=True), pair.num_classes("a"))
        if model_key in checked_models:
            continue
        checked_models.add(model_key)
        x, _ = pair.train_set("a")
        model = models.build(unit.model.name, input_shape=tuple(x.shape[1:]), num_classes=pair.num_classes("a"),
                             **unit.model.options)  # fmt: skip
        check_layers(model, config.layers, unit.model.name)


def check_layers(model, layers: list[str], model_name: str) -> None:
    """Raise :class:`ReprsimError` when a requested layer is not a layer of ``model``."""
    from reprsim import models

    available = set(models.layers(model)) | {"penultimate"}
    missing = [layer for layer in layers if layer not in available]
    if missing:
        raise ReprsimError(f"layers: {missing} are not layers of model {model_name!r}; available: {sorted(available)}")
