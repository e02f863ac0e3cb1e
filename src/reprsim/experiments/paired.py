"""The paired stage after the sweep (``measures.paired``): is a pair's similarity at the highest overlap
different from the pair's at the lowest, within one seed, beyond the noise of sampling the probe inputs?

For every design arm (all factors but the fraction equal: source, model, design, align, init, images)
and seed, the unit at the highest fraction is compared with the unit at the lowest on each probe set
whose inputs are *identical* at both (same content hash of the inputs, in the same order — so rows are
matched by position): :func:`reprsim.metrics.paired_difference` of each measure at the headline layer,
one paired bootstrap of the shared inputs per (comparison, measure). A probe set whose inputs change
with the fraction (e.g. the task design's class subsets ``common``, ``ood_one``, ``ood_all``) is left
out; the task design's ``test`` is the whole test set at every fraction (only the classes' roles
change), so it is paired.

Each unit records, in ``units/<id>/paired_features.json``, the content hash of each probe set and the
feature-cache keys of its two models there; the stage reads the features back from the cache, so unit
ids and cache keys are unchanged. Units finished before ``paired`` was turned on have no such file and
are left out (logged). The stage is cheap next to training and is simply recomputed on every run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from reprsim import metrics, storage
from reprsim.analysis.paired import PAIRED_FILE
from reprsim.results import UNITS_DIR
from reprsim.threads import limited_threads

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.grid import Unit

log = logging.getLogger("reprsim.paired")

FEATURE_INDEX = "paired_features.json"
#: the factor columns that identify a design arm in ``paired.csv`` (``design`` is the overlap kind)
ARM_COLUMNS = ("design", "source", "model", "align", "init", "task_images")
PAIRED_COLUMNS = (
    *ARM_COLUMNS,
    "probe_set",
    "measure",
    "layer",
    "seed",
    "fraction_1",
    "fraction_2",
    "value1",
    "value2",
    "difference",
    "ci_low",
    "ci_high",
    "level",
    "p_value",
    "n",
    "n_boot",
    "unit_1",
    "unit_2",
)


def write_feature_index(
    unit_dir: Path, probes: dict[str, tuple[str, int]], feature_keys: dict[tuple[str, str], str]
) -> None:
    """Write ``paired_features.json``: per probe set its inputs hash, size and the two models' feature keys."""
    index = {
        name: {"inputs": inputs, "n": n, "a": feature_keys[name, "a"], "b": feature_keys[name, "b"]}
        for name, (inputs, n) in probes.items()
    }
    storage.atomic_write_json(Path(unit_dir) / FEATURE_INDEX, index)


def read_feature_index(unit_dir: Path) -> dict[str, dict[str, Any]] | None:
    """The unit's feature index, or None when it has none (or an unreadable one)."""
    path = Path(unit_dir) / FEATURE_INDEX
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("paired: cannot read %s (%s); the unit is left out", path, exc)
        return None


def headline_layer(layers: list[str]) -> str:
    """The layer the report headlines: ``penultimate`` when swept, else the first layer."""
    return "penultimate" if "penultimate" in layers else layers[0]


def varying_fraction(unit: Unit) -> float | None:
    """The fraction a unit's design varies (data or task overlap), or None for other kinds."""
    value = {"data": unit.data_fraction, "task": unit.task_fraction}.get(unit.overlap_kind)
    return None if value is None else float(value)


def arm_of(unit: Unit) -> dict[str, Any]:
    """The factor values that identify the unit's design arm (everything but the fraction and the seed)."""
    d = unit.describe()
    return {"design": unit.overlap_kind} | {k: d[k] for k in ARM_COLUMNS[1:]}


@dataclass(frozen=True)
class Comparison:
    """The unit at the highest fraction (``unit_1``) vs the lowest (``unit_2``) on one probe set."""

    arm: tuple[tuple[str, Any], ...]
    seed: int
    probe_set: str
    unit_1: Unit
    unit_2: Unit
    keys_1: dict[str, Any]
    keys_2: dict[str, Any]


def comparisons(units: list[Unit], indexes: dict[str, dict[str, Any]]) -> list[Comparison]:
    """Every (arm, seed, probe set) comparison of the highest vs the lowest fraction.

    ``indexes``: the feature index of each unit id (units without one are left out). A probe set
    enters only when both units have it with the same inputs hash and at least one row."""
    groups: dict[tuple, list[Unit]] = {}
    for unit in units:
        if varying_fraction(unit) is not None and unit.unit_id in indexes:
            arm = tuple(arm_of(unit).items()) + (("design_index", unit.design),)
            groups.setdefault((arm, unit.seed), []).append(unit)
    out = []
    for (arm, seed), members in groups.items():
        fractions = sorted({varying_fraction(u) for u in members})
        if len(fractions) < 2:
            continue
        high = next(u for u in members if varying_fraction(u) == fractions[-1])
        low = next(u for u in members if varying_fraction(u) == fractions[0])
        index_1, index_2 = indexes[high.unit_id], indexes[low.unit_id]
        for name, keys_1 in index_1.items():
            keys_2 = index_2.get(name)
            if keys_2 is None or keys_2["inputs"] != keys_1["inputs"] or not keys_1["n"]:
                continue  # inputs that change with the fraction: no shared inputs to pair
            out.append(Comparison(arm[:-1], seed, name, high, low, keys_1, keys_2))
    return out


def _features(cache_dir: Path, key: str, layer: str) -> np.ndarray:
    stored = storage.read_verified_arrays(Path(cache_dir) / "features" / f"{key}.rsv")
    if stored is None or layer not in stored:
        raise FileNotFoundError(f"features {key} (layer {layer!r}) are not in the cache {cache_dir}")
    return np.asarray(stored[layer])


def comparison_rows(config: ExperimentConfig, comp: Comparison, cache_dir: Path, measures: list[str]) -> list[dict]:
    """One ``paired.csv`` row per measure of one comparison (features prepared as in the sweep)."""
    from reprsim.experiments.similarity import _params_for

    spec, paired = config.measures, config.measures.paired
    layer = headline_layer(list(config.layers))

    def prepared(keys: dict[str, Any], side: str) -> np.ndarray:
        feats = _features(cache_dir, keys[side], layer)
        return metrics.prepare(feats, normalize=spec.prepare.normalize, clip_quantile=spec.prepare.clip_quantile)

    pair_1 = (prepared(comp.keys_1, "a"), prepared(comp.keys_1, "b"))
    pair_2 = (prepared(comp.keys_2, "a"), prepared(comp.keys_2, "b"))
    seed = comp.unit_1.seeds()["probe"]  # equal for both units: the seeds depend on the config seed only
    rows = []
    for measure in measures:
        result = metrics.paired_difference(
            measure,
            pair_1,
            pair_2,
            n_boot=paired.n_boot,
            level=paired.level,
            seed=seed,
            **_params_for([measure], spec.params),
        )
        rows.append(
            dict(comp.arm)
            | {
                "probe_set": comp.probe_set,
                "measure": measure,
                "layer": layer,
                "seed": comp.seed,
                "fraction_1": varying_fraction(comp.unit_1),
                "fraction_2": varying_fraction(comp.unit_2),
            }
            | {k: result[k] for k in ("value1", "value2", "difference", "ci_low", "ci_high", "level", "p_value")}
            | {
                "n": result["n"],
                "n_boot": result["n_boot"],
                "unit_1": comp.unit_1.unit_id,
                "unit_2": comp.unit_2.unit_id,
            }
        )
    return rows


def run_paired_stage(config: ExperimentConfig, units: list[Unit], run_dir: Path, cache_dir: Path) -> Path | None:
    """Write ``paired.csv`` in ``run_dir`` from the finished units (None when ``measures.paired`` is off).

    ``units``: the sweep's finished units. A comparison whose features cannot be read or whose measure is
    undefined is logged and left out; the file always has :data:`PAIRED_COLUMNS`."""
    if config.measures.paired is None:
        return None
    measures = config.measures.paired.measures or list(config.analysis.primary.measures)
    indexes = {}
    for unit in units:
        index = read_feature_index(Path(run_dir) / UNITS_DIR / unit.unit_id)
        if index is not None:
            indexes[unit.unit_id] = index
    if len(indexes) < len(units):
        log.warning(
            "paired: %d of %d units have no feature index and are left out", len(units) - len(indexes), len(units)
        )
    rows: list[dict] = []
    with limited_threads(max(1, config.execution.workers * config.execution.threads_per_unit)):
        for comp in comparisons(units, indexes):
            try:
                rows += comparison_rows(config, comp, cache_dir, measures)
            except (FileNotFoundError, ValueError) as exc:
                log.warning(
                    "paired: %s vs %s on %r left out: %s", comp.unit_1.unit_id, comp.unit_2.unit_id, comp.probe_set, exc
                )
    path = Path(run_dir) / PAIRED_FILE
    frame = pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))
    storage.atomic_write_bytes(path, frame.to_csv(index=False).encode("utf-8"))
    return path
