"""The one unit driver: every sweep unit, of every kind, runs these stages in this order.

split → train A → train B → probe sets → features (cached by content) → measures →
consequences → rows. What differs comes from the unit's *world* (by data source,
:mod:`reprsim.experiments.worlds`) and *family* (by model entry, :mod:`reprsim.experiments.families`),
composed by :func:`reprsim.experiments.composition.composition_of`; nothing here depends on which
world or family it is.

:func:`execute_unit` is what every executor runs; it never raises: a failing unit (NaN loss, out
of memory, ...) comes back as ``status: failed`` with its error, and the sweep goes on. Trained
weights and features are cached by content under the cache folder, so rerunning a sweep with
other measures or probes retrains nothing.
"""

from __future__ import annotations

import hashlib
import logging
import logging.handlers
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from reprsim.devices import resolve_device
from reprsim.experiments.composition import Composition, composition_of
from reprsim.experiments.grid import Unit
from reprsim.hashing import content_hash
from reprsim.experiments.behaviour import behaviour_stage_rows
from reprsim.experiments.similarity import probe_rows
from reprsim.experiments.weights import cached_features, cached_model
from reprsim.threads import limited_threads
from reprsim.experiments.worlds import ProbeSet, Trained, TrainingPair

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig

log = logging.getLogger("reprsim.unit")

SIDES = ("a", "b")


@contextmanager
def timed_stage(timings: dict, name: str, bar: Any = None):
    """Log the stage, show it on ``bar`` and add its wall time to ``timings[name]``."""
    t0 = time.perf_counter()
    log.info("stage %s", name)
    if bar is not None:
        bar.set_description_str(name)
    yield
    timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - t0, 3)
    if bar is not None:
        bar.update(1)


def trained_model(
    kind: Composition,
    config: ExperimentConfig,
    unit: Unit,
    pair: TrainingPair,
    side: str,
    cache_dir: Path,
    device: torch.device,
    progress: bool,
    partner: Trained | None = None,
) -> Trained:
    """Model ``side`` of the unit, trained or loaded from the content-keyed model cache, on ``device``.

    ``kind``: the unit's world × family (its name prefixes the key); ``partner``: the trained model of
    the side the family's ``partner`` names, handed to its ``fit``."""
    key = f"{kind.name}-{content_hash(kind.weights_key(config, unit, pair, side))}"
    extra = {} if partner is None else {"partner": partner}

    def fit(model, checkpoint_dir):
        return kind.fit(config, unit, pair, side, model, checkpoint_dir, device, progress, **extra)

    model, info = cached_model(kind.build(config, unit, pair, side), key, cache_dir, fit)
    return Trained(model.to(device).eval(), info, key)


def probe_key(probe: ProbeSet) -> str:
    """A content hash of everything a probe feeds the models (inputs and extra inputs)."""
    from reprsim.features import inputs_hash

    digest = hashlib.sha256(inputs_hash(np.asarray(probe.inputs)).encode())
    for name in sorted(probe.extra):
        digest.update(f"|{name}:{inputs_hash(np.asarray(probe.extra[name]))}".encode())
    return digest.hexdigest()[:32]


def probe_features(
    kind: Composition, config: ExperimentConfig, trained: Trained, probe: ProbeSet, cache_dir: Path
) -> dict[str, np.ndarray]:
    """``{layer: (n, d)}`` of one model on one probe set, cached by (model key, probe content, layers)."""
    if len(probe) == 0:
        return {}
    key = feature_key(kind, config, trained, probe)
    return cached_features(key, list(config.layers), cache_dir, lambda: kind.features(config, trained.model, probe))


def feature_key(kind: Composition, config: ExperimentConfig, trained: Trained, probe: ProbeSet) -> str:
    """The feature-cache key of one model on one probe set (``features/<key>.rsv``)."""
    return content_hash(
        {
            "model": trained.key,
            "probe": probe_key(probe),
            "layers": list(config.layers),
            "kind": kind.name,
            "pool": kind.feature_pool,
        },
        40,
    )


def run_unit(
    config: ExperimentConfig,
    unit: Unit,
    cache_dir: Path,
    timings: dict,
    progress: bool = False,
    artifacts: dict | None = None,
    unit_dir: Path | None = None,
) -> list[dict]:
    """Run one unit's stages; return one row per (probe set, layer pair, measure).

    ``timings`` receives each stage's wall time; ``artifacts`` (if given) the two models' cache
    keys (``model_a``, ``model_b``) so a result can be traced to its weights; ``unit_dir`` (if
    given) receives the family's per-unit files (``save_artifacts``).
    """
    from tqdm.auto import tqdm

    kind = composition_of(unit)
    seeds = unit.seeds()
    device = resolve_device(config.execution.device)
    n_stages = 6 + len(config.consequences)
    bar = tqdm(total=n_stages, desc="split", leave=False, position=1, disable=not progress)
    with timed_stage(timings, "split", bar):
        pair = kind.pair(config, unit, cache_dir)
    trained: dict[str, Trained] = {}
    for side in SIDES:
        with timed_stage(timings, f"train_{side}", bar):
            other = kind.partner(unit, side)
            trained[side] = trained_model(
                kind,
                config,
                unit,
                pair,
                side,
                cache_dir,
                device,
                progress,
                partner=trained[other] if other is not None else None,
            )
    with timed_stage(timings, "probes", bar):
        probes = kind.probes(config, unit, pair)
    with timed_stage(timings, "features", bar):
        feats = {
            (p.name, side): probe_features(kind, config, trained[side], p, cache_dir) for p in probes for side in SIDES
        }
    with timed_stage(timings, "measures", bar):
        rows = [
            {"n_probe_classes": probe.n_classes} | row
            for probe in probes
            for row in probe_rows(
                config.measures,
                probe.name,
                probe.role,
                len(probe),
                feats[probe.name, "a"],
                feats[probe.name, "b"],
                config.layers,
                seeds["probe"],
            )
        ]
        rows += behaviour_stage_rows(config.measures, kind, pair, trained, probes, seeds["probe"])
    consequences: dict[str, Any] = {}
    for spec in config.consequences:
        with timed_stage(timings, spec.kind, bar):
            consequences.update(kind.consequence(spec, config, unit, pair, trained["a"], trained["b"], seeds["attack"]))
    if unit_dir is not None:
        kind.save_artifacts(config, unit, pair, trained["a"], trained["b"], unit_dir)
        if config.measures.paired is not None:  # where the paired stage finds this unit's cached features
            from reprsim.experiments.paired import write_feature_index

            keys = {(p.name, side): feature_key(kind, config, trained[side], p) for p in probes for side in SIDES}
            write_feature_index(unit_dir, {p.name: (probe_key(p), len(p)) for p in probes}, keys)
    bar.close()
    common = (
        unit.describe()
        | {
            "status": "ok",
            "realised_data_fraction": float(pair.realised_data_fraction),
            "realised_task_fraction": float(pair.realised_task_fraction),
        }
        | kind.pair_columns(pair, trained["a"], trained["b"])
    )
    row_keys = set(rows[0]) if rows else set()
    clash = sorted(set(common) & set(consequences) | (set(common) | set(consequences)) & row_keys)
    if clash:  # a stage must never overwrite another stage's column (e.g. n_probe)
        raise RuntimeError(f"kind {kind.name!r}: columns {clash} are written by more than one stage")
    if artifacts is not None:
        artifacts.update({f"model_{side}": trained[side].key for side in SIDES})
    return [common | consequences | row for row in rows]


def execute_unit(
    config: ExperimentConfig,
    unit: Unit,
    cache_dir: Path,
    *,
    log_path: Path | None = None,
    progress: bool = False,
    stage_queue: Any = None,
) -> dict:
    """Run one unit; return ``{"rows": [...] | None, "status": {...}}`` (never raises).

    Stages are logged to ``log_path`` and, when ``stage_queue`` (a multiprocessing queue) is given,
    sent to it as log records carrying ``unit_id``, so a driver can show what each worker is doing.
    Torch and the BLAS under NumPy/SciPy run ``execution.threads_per_unit`` threads for the unit's life,
    whatever the executor (:func:`reprsim.threads.limited_threads`).
    """
    handlers = [h for h in (_file_handler(log_path), _stage_handler(stage_queue, unit.unit_id)) if h is not None]
    root = logging.getLogger("reprsim")
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    timings: dict[str, float] = {}
    artifacts: dict[str, str] = {}
    t0 = time.perf_counter()
    try:
        unit_dir = log_path.parent if log_path is not None else None
        with limited_threads(config.execution.threads_per_unit):
            rows = run_unit(config, unit, Path(cache_dir), timings, progress, artifacts, unit_dir)
        timings["total"] = round(time.perf_counter() - t0, 3)
        return {
            "rows": rows,
            "status": {"status": "ok", "timings": timings, "n_rows": len(rows), "artifacts": artifacts},
        }
    except Exception as exc:  # recorded, not raised: the sweep continues with the other units
        log.exception("unit %s failed", unit.unit_id)
        timings["total"] = round(time.perf_counter() - t0, 3)
        return {
            "rows": None,
            "status": {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
                "timings": timings,
            },
        }
    finally:
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
