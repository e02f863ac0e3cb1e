"""``compare_features``: features you already have → the same :class:`Comparison` as ``compare_models``.

A feature set (one model's features, one matrix per layer, rows = the same inputs in the same
order on both sides) is one of

* a dict ``{layer: (n, d) array or tensor}``, or one array / tensor (layer ``"features"``);
* a ``.npz`` file (one array per layer, in the file's order) or a ``.npy`` file (one matrix);
* a ``.safetensors`` file (one tensor per layer; the layer order recorded by
  :meth:`Comparison.save` is kept) or a ``.pt`` file (a tensor or a dict of tensors);
* a folder of ``.npy`` files, one per layer (the file stem is the layer name).

Floating features of any precision (bfloat16, float16, float32) are measured in float32;
float64 stays float64.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from reprsim.compare.result import Comparison
from reprsim.compare.table import (
    behaviour_table,
    check_behaviour_layers,
    check_table_options,
    layer_table,
    split_measures,
)
from reprsim.errors import ReprsimError

__all__ = ["FEATURE_FORMATS", "compare_features", "load_feature_set", "save_feature_set"]

#: File types a feature set may be read from (plus a folder of .npy files).
FEATURE_FORMATS = (".npz", ".safetensors", ".npy", ".pt")
SINGLE = "features"  # the layer name of a feature set given as one matrix
_ORDER_KEY = "reprsim_layers"  # safetensors metadata: the layer order as a JSON list


def _matrix(value: Any, where: str) -> np.ndarray:
    """One layer's features as a numpy array (low-precision floats → float32)."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.is_floating_point() and t.dtype != torch.float64:
            t = t.to(torch.float32)
        return t.numpy()
    arr = np.asarray(value)
    if arr.dtype.kind == "f" and arr.dtype != np.float64:
        arr = arr.astype(np.float32)
    if arr.dtype.kind not in "fiub":
        raise ReprsimError(f"{where}: features must be numbers; got dtype {arr.dtype}.")
    return arr


def _read_file(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return {SINGLE: np.load(path, allow_pickle=False)}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.keys()}
    if suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            order = json.loads((f.metadata() or {}).get(_ORDER_KEY, "null")) or keys
            if sorted(order) != sorted(keys):
                order = keys
            return {k: f.get_tensor(k) for k in order}
    if suffix == ".pt":
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, torch.Tensor):
            return {SINGLE: obj}
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        raise ReprsimError(f"{path} holds a {type(obj).__name__}; save a tensor, or a dict layer → tensor.")
    raise ReprsimError(
        f"{path}: unsupported feature file type {suffix!r}; use {', '.join(FEATURE_FORMATS)} "
        "or a folder of .npy files (one per layer)."
    )


def load_feature_set(source: Any, which: str = "A") -> tuple[dict[str, np.ndarray], str]:
    """One model's features, ``({layer: (n, d) array}, description)`` (see the module docstring).

    Raises:
        ReprsimError: a missing or unreadable path, an empty set, a layer that is not a 2-D matrix,
            or layers with different numbers of rows.
    """
    if isinstance(source, Mapping):
        raw, desc = dict(source), "in memory"
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        raw, desc = {SINGLE: source}, "in memory"
    elif isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.exists():
            raise ReprsimError(
                f"features {which}: {path} does not exist; give a {', '.join(FEATURE_FORMATS)} file "
                "or a folder of .npy files (one per layer)."
            )
        if path.is_dir():
            files = sorted(path.glob("*.npy"))
            if not files:
                raise ReprsimError(
                    f"features {which}: the folder {path} holds no .npy files; save one (n, d) "
                    "matrix per layer as LAYER.npy."
                )
            raw = {f.stem: np.load(f, allow_pickle=False) for f in files}
        else:
            try:
                raw = _read_file(path)
            except ReprsimError:
                raise
            except Exception as exc:  # a corrupt file: one line
                raise ReprsimError(f"features {which}: cannot read {path}: {str(exc).splitlines()[0]}") from exc
        desc = str(path)
    else:
        raise ReprsimError(
            f"features {which}: got a {type(source).__name__}; pass a dict layer → (n, d) array, an "
            f"array, or a {', '.join(FEATURE_FORMATS)} file or folder of .npy files."
        )
    if not raw:
        raise ReprsimError(f"features {which} ({desc}) hold no layers.")
    feats = {str(k): _matrix(v, f"features {which} layer {k!r}") for k, v in raw.items()}
    for layer, f in feats.items():
        if f.ndim != 2 or f.shape[0] == 0:
            raise ReprsimError(
                f"features {which} layer {layer!r} must be a non-empty (n_samples, n_features) "
                f"matrix; got shape {f.shape}. Pool or flatten it first."
            )
    rows = {layer: f.shape[0] for layer, f in feats.items()}
    if len(set(rows.values())) > 1:
        raise ReprsimError(
            f"features {which} ({desc}): layers have different numbers of rows {rows}; every layer "
            "must hold the same inputs."
        )
    return feats, desc


def _select(feats: dict[str, np.ndarray], spec: Any, which: str, desc: str) -> dict[str, np.ndarray]:
    if spec in (None, "all"):
        return feats
    names = [spec] if isinstance(spec, str) else list(spec) if isinstance(spec, (list, tuple)) else None
    if not names:
        raise ReprsimError(f"layers must be 'all', a layer name or a non-empty list of names; got {spec!r}.")
    missing = [n for n in names if n not in feats]
    if missing:
        raise ReprsimError(
            f"layer(s) {', '.join(map(repr, missing))} not in features {which} ({desc}); it has: {', '.join(feats)}."
        )
    return {n: feats[n] for n in names}


def save_feature_set(feats: Mapping[str, np.ndarray], path: str | Path, **meta: str) -> Path:
    """Write ``{layer: (n, d)}`` as one ``.safetensors`` file (layer order and ``meta`` kept) that
    :func:`load_feature_set` reads back. Returns the path."""
    from safetensors.torch import save

    from reprsim.storage import atomic_write_bytes

    out = Path(path)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feats.items()}
    # written by temp file + rename, never through a symlink planted at ``path``
    atomic_write_bytes(out, save(tensors, metadata={_ORDER_KEY: json.dumps(list(feats)), **meta}))
    return out


def compare_features(
    feats_a: Any,
    feats_b: Any,
    *,
    layers: Any = "all",
    measures: Any = "all",
    prepare: Any = "paper",
    n_permutations: int = 0,
    calibrate: int = 0,
    seed: int = 0,
    n_boot: int = 0,
    level: float = 0.95,
    params: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    device: str | None = None,
    labels: Any = None,
    outputs: str = "logits",
) -> Comparison:
    """Every measure at every (layer of A, layer of B) from features you already have.

    Args:
        feats_a, feats_b: feature sets (see the module docstring); row i of every layer is input i.
        layers: ``"all"`` (default: every layer of each set), a name or a list of names (in both
            sets), or ``{"a": spec, "b": spec}``.
        measures, prepare, n_permutations, calibrate, seed, n_boot, level, params, progress, device: as
            :func:`reprsim.compare.compare_models` (``prepare`` default ``"paper"``: clip 0.95 + L2).
            Behavioural measures (``agreement``, ``cohen_kappa``, ``error_consistency``, ``capa``,
            ``js_divergence``) are computed from each set's layer ``output``.
        labels: (n,) true class ids, for ``error_consistency`` and ``capa``.
        outputs: what the ``output`` layers hold: ``"logits"`` (a softmax is applied) or ``"probs"``
            (rows that already sum to 1); both sets in one class space.

    Returns:
        A :class:`Comparison` with the table of ``compare_models`` on the same features
        (``.table``, ``.matrix``, ``.plot``, ``.to_html``); no attack transfer.

    Raises:
        ReprsimError / ValueError (one line): unreadable sets, different row counts between the two
        sets, a requested layer missing from a set, unknown measures or parameters.
    """
    from reprsim.compare import _layer_specs
    from reprsim.metrics.prepare import resolve_prepare

    names, behaviour = split_measures(measures)
    if outputs not in ("logits", "probs"):
        raise ValueError(f"outputs must be 'logits' or 'probs' (what the 'output' layers hold); got {outputs!r}.")
    prep_fn, prep_desc = resolve_prepare(prepare)
    n_permutations, calibrate, n_boot, seed = check_table_options(
        n_permutations=n_permutations, calibrate=calibrate, n_boot=n_boot, seed=seed, level=level
    )
    spec_a, spec_b = _layer_specs(layers)
    t0 = time.perf_counter()
    fa, desc_a = load_feature_set(feats_a, "A")
    fb, desc_b = load_feature_set(feats_b, "B")
    fa, fb = _select(fa, spec_a, "A", desc_a), _select(fb, spec_b, "B", desc_b)
    na, nb = next(iter(fa.values())).shape[0], next(iter(fb.values())).shape[0]
    if na != nb:
        raise ReprsimError(
            f"features A ({desc_a}) have {na} rows but features B ({desc_b}) have {nb}; both must "
            "hold the same inputs in the same order."
        )
    check_behaviour_layers(behaviour, list(fa), list(fb))
    load_s = time.perf_counter() - t0
    measured = layer_table(
        fa,
        fb,
        prep_fn,
        names,
        params,
        n_permutations=n_permutations,
        n_boot=n_boot,
        level=level,
        seed=seed,
        progress=progress,
        device=device,
    )
    table = measured.table
    if calibrate and names:
        from reprsim.metrics.calibrate import calibrated_columns

        t0 = time.perf_counter()
        table = table.assign(**calibrated_columns(measured.engine, table, calibrate, seed))
        measured.timings["calibrate"] = time.perf_counter() - t0
    if behaviour:
        from reprsim.metrics.behaviour_rows import softmax

        read = softmax if outputs == "logits" else (lambda p, which: p)
        rows = behaviour_table(
            read(fa["output"], "features A 'output'"),
            read(fb["output"], "features B 'output'"),
            labels,
            behaviour,
            n_boot=n_boot,
            level=level,
            seed=seed,
        )
        table = pd.concat([table, rows], ignore_index=True) if names else rows
    if measured.notes:
        more = f" (+{len(measured.notes) - 1} more in Comparison.warnings)" if len(measured.notes) > 1 else ""
        warnings.warn(f"compare_features: {measured.notes[0]}{more}", stacklevel=2)
    return Comparison(
        table=table,
        layers_a=list(fa),
        layers_b=list(fb),
        measures=names + behaviour,
        model_a="features A" if desc_a == "in memory" else desc_a,
        model_b="features B" if desc_b == "in memory" else desc_b,
        inputs=f"{na} rows of given features",
        n_inputs=na,
        prepare=prep_desc,
        params=dict(params or {}),
        features={"a": fa, "b": fb},
        timings={"load": load_s} | measured.timings,
        cpu_timings=measured.cpu,
        warnings=measured.notes,
        engine=measured.engine,
    )
