"""The layer × layer table shared by ``compare_models`` and ``compare_features``.

Both entry points end here: each layer of each side is prepared once by the one preparation rule
(:func:`reprsim.metrics.prepare.resolve_prepare`), the :class:`~reprsim.compare.similarity.SimilarityEngine`
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

__all__ = ["LayerTable", "check_count", "layer_table"]


def check_count(value: Any, name: str) -> int:
    """``value`` as an int >= 0, or ValueError naming ``name`` and the value received."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0; got {value!r}.")
    return int(value)


@dataclass
class LayerTable:
    """The measured table and what it took.

    Attributes:
        table: one row per (layer_a, layer_b, measure): ``value`` (+ ``p_value``, ``ci_low``/``ci_high``).
        notes: measures undefined for a pair, preparation notes per layer, bootstrap notes.
        timings: wall seconds of ``measures`` (+ ``permutations``, ``bootstrap``).
        cpu: CPU seconds of the ``measures`` stage.
        engine: the engine (for later passes, e.g. calibration).
    """

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    engine: Any = None


def layer_table(feats_a: Mapping[str, Any], feats_b: Mapping[str, Any], prep_fn: Callable[[Any], Any],
                names: list[str], params: Mapping[str, Any] | None = None, *, n_permutations: int = 0,
                n_boot: int = 0, level: float = 0.95, seed: int = 0, progress: bool | None = None) -> LayerTable:
    """Every measure in ``names`` on every (layer of A, layer of B), features prepared once per layer.

    Args:
        feats_a, feats_b: ``{layer: raw features (n, d)}``, the same n rows (inputs) on both sides.
        prep_fn: the preparation (n, d) → (n, d) applied to each layer once.
        names: measure names (checked); params: measure parameters.
        n_permutations: adds ``p_value`` (one row permutation of B serves every pair).
        n_boot, level: adds ``ci_low`` / ``ci_high`` (percentile bootstrap over rows).
        seed: seeds permutations and resamples.

    Returns: a :class:`LayerTable`; rows in the order layers of A × layers of B × measures.
    """
    from reprsim.compare import similarity

    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared_a = similarity.prepare_layers(feats_a, prep_fn, "A")
        prepared_b = similarity.prepare_layers(feats_b, prep_fn, "B")
    notes = [str(w.message) for w in caught]
    engine = similarity.SimilarityEngine(prepared_a, prepared_b, names, params, progress=progress)
    values = engine.compute()
    timings = {"measures": time.perf_counter() - t0}
    cpu = {"measures": time.process_time() - c0}
    table = pd.DataFrame([{"layer_a": la, "layer_b": lb, "measure": m, "value": v}
                          for (la, lb, m), v in values.items()], columns=["layer_a", "layer_b", "measure", "value"])
    keys = list(table[["layer_a", "layer_b", "measure"]].itertuples(index=False, name=None))
    if n_permutations:
        t0 = time.perf_counter()
        pv = engine.permutation_pvalues(n_permutations, seed)
        table["p_value"] = [pv[k] for k in keys]
        timings["permutations"] = time.perf_counter() - t0
    if n_boot:
        t0 = time.perf_counter()
        ci = engine.bootstrap_intervals(n_boot, level, seed)
        table["ci_low"] = [ci[k][0] for k in keys]
        table["ci_high"] = [ci[k][1] for k in keys]
        timings["bootstrap"] = time.perf_counter() - t0
    return LayerTable(table, notes + engine.warnings, timings, cpu, engine)
