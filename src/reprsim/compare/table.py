"""The layer × layer table shared by ``compare_models`` and ``compare_features``.

Both entry points end here: each layer of each side is prepared once by the one preparation rule
(:func:`reprsim.metrics.prepare.resolve_prepare`), the :class:`~reprsim.metrics.engine.SimilarityEngine`
fills every (layer_a, layer_b, measure), and permutation p-values and bootstrap intervals are
added when asked. Nothing here knows where the features came from.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from reprsim.threads import limited_threads

__all__ = [
    "BEHAVIOUR_BOOT",
    "DEVICE_ERRORS",
    "LayerTable",
    "behaviour_table",
    "check_behaviour_layers",
    "check_count",
    "layer_table",
    "measure_device",
    "split_measures",
]

#: Bootstrap resamples behind the error-consistency and CAPA intervals when ``n_boot`` is 0.
BEHAVIOUR_BOOT = 1000


def check_count(value: Any, name: str) -> int:
    """``value`` as an int >= 0, or ValueError naming ``name`` and the value received."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0; got {value!r}.")
    return int(value)


def check_table_options(
    *, n_permutations: Any, calibrate: Any, n_boot: Any, seed: Any, level: float
) -> tuple[int, int, int, int]:
    """The resample counts and seed of a comparison, checked (one error naming the option): the counts
    within :data:`reprsim.metrics._validate.MAX_RESAMPLES`, ``n_boot`` 0 or ≥ 2, ``level`` in (0, 1).
    Returns ``(n_permutations, calibrate, n_boot, seed)``."""
    from reprsim.metrics._validate import check_resamples

    n_permutations = check_resamples(n_permutations, "n_permutations")
    calibrate = check_resamples(calibrate, "calibrate")
    n_boot = check_resamples(n_boot, "n_boot")
    seed = check_count(seed, "seed")
    if n_boot == 1:
        raise ValueError("n_boot must be 0 (no intervals) or >= 2.")
    if n_boot and not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}.")
    return n_permutations, calibrate, n_boot, seed


def split_measures(measures: Any) -> tuple[list[str], list[str]]:
    """``measures`` as ``(layer measures, behavioural measures)``, both checked: ``"all"`` / ``"paper"``
    name layer measures only; a behavioural name (:data:`reprsim.metrics.behavioural.BEHAVIOURAL`) must
    be listed explicitly."""
    from reprsim.metrics.behavioural import BEHAVIOURAL
    from reprsim.metrics.engine import resolve_measures

    given = [measures] if isinstance(measures, str) else list(measures) if isinstance(measures, (list, tuple)) else None
    rest = (
        measures
        if given is None or not any(m in BEHAVIOURAL for m in given)
        else [m for m in given if m not in BEHAVIOURAL]
    )
    try:
        names = resolve_measures(rest) if rest else []
    except ValueError as exc:
        if "unknown measure" not in str(exc):
            raise
        raise ValueError(
            f"{str(exc).rstrip('.')}; behavioural measures (layer 'output'): {', '.join(BEHAVIOURAL)}."
        ) from None
    return names, list(dict.fromkeys(m for m in (given or []) if m in BEHAVIOURAL))


def check_behaviour_layers(behaviour: list[str], layers_a: list[str], layers_b: list[str]) -> None:
    """One clear error when behavioural measures are asked but a model's layers do not include
    ``output`` (they compare output distributions, not an internal layer)."""
    from reprsim.metrics.behavioural import OUTPUT_LAYER, check_output_layer

    for layers in (layers_a, layers_b):
        if behaviour and OUTPUT_LAYER not in layers:
            check_output_layer(layers[0] if len(layers) == 1 else ", ".join(layers), ", ".join(behaviour))


def behaviour_table(
    probs_a: Any, probs_b: Any, labels: Any, names: list[str], *, n_boot: int, level: float, seed: int
) -> pd.DataFrame:
    """The behavioural rows of a comparison: ``layer_a`` = ``layer_b`` = ``"output"``, ``measure``,
    ``value``, ``ci_low`` / ``ci_high`` (the bootstrap over inputs, for error consistency and CAPA:
    ``n_boot`` resamples, :data:`BEHAVIOUR_BOOT` when 0; NaN for the others); no permutation p-value. Errors (one line) for
    distributions of different shapes, rows not summing to 1, labels of another length."""
    from reprsim.metrics.behaviour_rows import behaviour_rows

    pa, pb = np.asarray(probs_a), np.asarray(probs_b)
    if pa.shape != pb.shape:
        raise ValueError(
            f"behavioural measures need both models' outputs in one class space on the same inputs; got "
            f"output distributions of shape {pa.shape} (A) and {pb.shape} (B)."
        )
    rows = behaviour_rows(pa, pb, labels, seed=seed, n_boot=n_boot or BEHAVIOUR_BOOT, level=level, measures=names)
    frame = pd.DataFrame(rows).rename(columns={"value_ci_low": "ci_low", "value_ci_high": "ci_high"})
    return frame[["layer_a", "layer_b", "measure", "value", "ci_low", "ci_high"]]


@dataclass
class LayerTable:
    """The measured table and what it took.

    Attributes:
        table: one row per (layer_a, layer_b, measure): ``value`` (+ ``p_value``, ``ci_low``/``ci_high``).
        notes: measures undefined for a pair, preparation notes per layer, bootstrap notes.
        timings: wall seconds of ``measures`` (+ ``permutations``, ``bootstrap``).
        cpu: CPU seconds of the ``measures`` stage.
        engine: the engine of every measure (for later passes, e.g. calibration); after a per-measure
            device fallback, a CPU engine of every measure is built (and computed) on first access.
    """

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    _engine: Any = None
    _make_engine: Callable[[], Any] | None = None

    @property
    def engine(self) -> Any:
        """The :class:`~reprsim.metrics.engine.SimilarityEngine` holding every measure's values."""
        if self._engine is None and self._make_engine is not None:
            self._engine = self._make_engine()
        return self._engine


#: Errors that mean "this measure cannot run on this device" (an op without a CUDA kernel, out of
#: GPU memory, a driver error); the measure is then computed on the CPU and the table says so.
DEVICE_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, NotImplementedError, MemoryError)


def measure_device(device: Any) -> torch.device:
    """Where the measures run: the ``device`` named (None: the CPU, so that a table's numbers do not
    depend on whether the machine has a GPU unless one is asked for)."""
    dev = torch.device("cpu") if device is None else torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r}, but torch sees no CUDA device here; use device='cpu'.")
    return dev


def _run_engine(
    engine: Any, n_permutations: int, n_boot: int, level: float, seed: int, timings: dict[str, float]
) -> dict[str, dict]:
    """The engine's values (+ p-values, intervals); wall seconds of each pass added to ``timings``. The
    BLAS under NumPy runs torch's thread count, so the values follow the caller's torch setting, not the
    machine's core count (:mod:`reprsim.threads`)."""
    with limited_threads(torch.get_num_threads()):
        t0 = time.perf_counter()
        out: dict[str, dict] = {"values": dict(engine.compute())}
        timings["measures"] = timings.get("measures", 0.0) + time.perf_counter() - t0
        for key, name, run in (
            ("p", "permutations", lambda: engine.permutation_pvalues(n_permutations, seed)),
            ("ci", "bootstrap", lambda: engine.bootstrap_intervals(n_boot, level, seed)),
        ):
            if n_permutations if key == "p" else n_boot:
                t0 = time.perf_counter()
                out[key] = run()
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
    return out


def _on_device(prepared: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in prepared.items()}


def layer_table(
    feats_a: Mapping[str, Any],
    feats_b: Mapping[str, Any],
    prep_fn: Callable[[Any], Any],
    names: list[str],
    params: Mapping[str, Any] | None = None,
    *,
    n_permutations: int = 0,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
    progress: bool | None = None,
    device: Any = "cpu",
) -> LayerTable:
    """Every measure in ``names`` on every (layer of A, layer of B), features prepared once per layer.

    Args:
        feats_a, feats_b: ``{layer: raw features (n, d)}``, the same n rows (inputs) on both sides.
        prep_fn: the preparation (n, d) → (n, d) applied to each layer once.
        names: measure names (checked); params: measure parameters.
        n_permutations: adds ``p_value`` (one row permutation of B serves every pair).
        n_boot, level: adds ``ci_low`` / ``ci_high`` (percentile bootstrap over rows).
        seed: seeds permutations and resamples.
        device: where the measures run (torch; None: the CPU). On a GPU, a measure that
            fails there (:data:`DEVICE_ERRORS`) is recomputed on the CPU; the table then has a
            ``device`` column saying where each row was computed.

    Returns: a :class:`LayerTable`; rows in the order layers of A × layers of B × measures.
    """
    from reprsim.metrics import MEASURES
    from reprsim.metrics import engine as similarity

    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared_a = similarity.prepare_layers(feats_a, prep_fn, "A")
        prepared_b = similarity.prepare_layers(feats_b, prep_fn, "B")
    notes = [str(w.message) for w in caught]
    timings = {"measures": time.perf_counter() - t0}  # preparation counts as measuring
    dev = measure_device(device)
    where: dict[str, str] = {}
    if dev.type == "cpu":
        engine = similarity.SimilarityEngine(prepared_a, prepared_b, names, params, progress=progress)
        results = _run_engine(engine, n_permutations, n_boot, level, seed, timings)
        warned = engine.warnings
    else:
        results, warned, engine = {"values": {}, "p": {}, "ci": {}}, [], None
        groups = [names]  # all measures in one engine (shared per-layer work); one by one after a failure
        while groups:
            group = groups.pop(0)
            for target in (dev, torch.device("cpu")):
                taken = (
                    params
                    if len(group) > 1
                    else {k: v for k, v in (params or {}).items() if k in MEASURES[group[0]].params}
                )
                try:
                    engine = similarity.SimilarityEngine(
                        _on_device(prepared_a, target), _on_device(prepared_b, target), group, taken, progress=progress
                    )
                    got = _run_engine(engine, n_permutations, n_boot, level, seed, timings)
                except DEVICE_ERRORS as exc:
                    if target.type == "cpu":
                        raise
                    if len(group) > 1:  # find which measure fails: retry them one by one
                        groups = [[n] for n in group] + groups
                        break
                    notes.append(
                        f"{group[0]}: computed on the CPU ({type(exc).__name__} on {dev}: "
                        f"{str(exc).splitlines()[0][:120]})"
                    )
                    continue
                for key, part in got.items():
                    results[key].update(part)
                warned += engine.warnings
                where.update({n: str(target) for n in group})
                break
        results["values"] = {
            k: results["values"][k]
            for k in sorted(
                results["values"],
                key=lambda k: (list(feats_a).index(k[0]), list(feats_b).index(k[1]), names.index(k[2])),
            )
        }
    cpu = {"measures": time.process_time() - c0}
    table = pd.DataFrame(
        [{"layer_a": la, "layer_b": lb, "measure": m, "value": v} for (la, lb, m), v in results["values"].items()],
        columns=["layer_a", "layer_b", "measure", "value"],
    )
    keys = list(table[["layer_a", "layer_b", "measure"]].itertuples(index=False, name=None))
    if n_permutations:
        table["p_value"] = [results["p"][k] for k in keys]
    if n_boot:
        table["ci_low"] = [results["ci"][k][0] for k in keys]
        table["ci_high"] = [results["ci"][k][1] for k in keys]
    if where:
        table["device"] = [where[k[2]] for k in keys]

    def make_whole() -> Any:  # after a fallback split the measures: one CPU engine of them all, on demand
        whole = similarity.SimilarityEngine(prepared_a, prepared_b, names, params, progress=False)
        whole.compute()
        return whole

    split = engine is not None and list(engine.names) != list(names)
    return LayerTable(table, notes + warned, timings, cpu, None if split else engine, make_whole if split else None)
