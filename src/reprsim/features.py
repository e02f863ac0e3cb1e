"""Representation extraction with forward hooks, pooling and an on-disk cache.

``extract(model, inputs, layers)`` runs the model in eval mode without gradients, batch by
batch, and returns one float32 matrix of shape (n_inputs, n_features) per layer. Spatial maps
(N, C, H, W) are average-pooled or flattened; token sequences (N, T, D) are pooled by mean,
last token or a given position. Results can be cached on disk, keyed by (weights hash,
probe-set key, layer, pooling).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reprsim.models.zoo import default_layer, resolve_layer

__all__ = ["extract", "pool_features", "state_hash", "inputs_hash"]

Pool = str | int
_POOLS = ("avg", "mean", "flatten", "last")


def state_hash(model: nn.Module) -> str:
    """Return a hex SHA-256 (32 chars) of the model's state dict: names, dtypes, shapes and values.

    Two models with bit-identical weights and buffers get the same hash.
    """
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def inputs_hash(inputs: np.ndarray | Tensor) -> str:
    """Return a hex SHA-256 (32 chars) of an input array: dtype, shape and bytes."""
    arr = inputs.detach().cpu().numpy() if isinstance(inputs, Tensor) else np.asarray(inputs)
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{arr.dtype}|{arr.shape}|".encode())
    h.update(arr.view(np.uint8).reshape(-1).data)
    return h.hexdigest()[:32]


def pool_features(t: Tensor, pool: Pool) -> Tensor:
    """Reduce one layer's output to (N, d).

    * (N, D): returned unchanged for "avg", "mean" and "flatten".
    * (N, T, D) token sequences: "avg"/"mean" average over T, "last" takes the last token,
      an int takes that position (negative counts from the end), "flatten" gives (N, T*D).
    * (N, C, H, W) or higher: "avg"/"mean" average over all axes after C, "flatten" gives
      (N, C*H*W).
    """
    if t.dim() < 2:
        raise ValueError(f"pool_features: a layer output must be at least (N, D), got shape {tuple(t.shape)}.")
    if isinstance(pool, bool) or not isinstance(pool, (str, int)):
        raise TypeError(f"pool must be one of {_POOLS} or an int token position, got {pool!r}.")
    if isinstance(pool, str) and pool not in _POOLS:
        raise ValueError(f"Unknown pool {pool!r}; use one of {_POOLS} or an int token position.")
    if pool == "flatten":
        return t.reshape(t.shape[0], -1)
    if t.dim() == 2:
        if pool in ("avg", "mean"):
            return t
        raise ValueError(f"pool={pool!r} selects a token, but this layer's output is already (N, D) = "
                         f"{tuple(t.shape)}; use pool='avg'.")
    if pool in ("avg", "mean"):
        return t.mean(dim=1) if t.dim() == 3 else t.mean(dim=tuple(range(2, t.dim())))
    if t.dim() != 3:
        raise ValueError(f"pool={pool!r} needs a token sequence (N, T, D), got {tuple(t.shape)}; "
                         "use 'avg' or 'flatten' for spatial maps.")
    pos = -1 if pool == "last" else int(pool)
    if not -t.shape[1] <= pos < t.shape[1]:
        raise ValueError(f"pool position {pos} is outside a sequence of length {t.shape[1]}.")
    return t[:, pos]


def _unwrap(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    for attr in ("last_hidden_state", "logits"):
        value = getattr(out, attr, None)
        if isinstance(value, Tensor):
            return value
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"A hooked layer returned {type(out).__name__}, not a tensor; pick another layer.")


def _as_batches(inputs: Any, batch_size: int) -> tuple[int, Any]:
    """Return (n, iterator over input batches)."""
    if isinstance(inputs, torch.utils.data.Dataset) and not isinstance(inputs, Tensor):
        loader = torch.utils.data.DataLoader(inputs, batch_size=batch_size, shuffle=False)

        def gen_ds() -> Any:
            for batch in loader:
                yield batch[0] if isinstance(batch, (tuple, list)) else batch

        return len(inputs), gen_ds()  # type: ignore[arg-type]
    data = inputs if isinstance(inputs, Tensor) else torch.from_numpy(np.ascontiguousarray(inputs))
    if data.dim() < 1 or data.shape[0] == 0:
        raise ValueError(f"extract: inputs must be a non-empty batch (N, ...), got shape {tuple(data.shape)}.")

    def gen() -> Any:
        for start in range(0, data.shape[0], batch_size):
            yield data[start:start + batch_size]

    return int(data.shape[0]), gen()


def _prepare(x: Tensor, device: torch.device) -> Tensor:
    if x.dtype == torch.uint8 and x.dim() == 4:
        return x.to(device).float().div_(255.0)
    if x.dtype == torch.float64:
        x = x.float()
    return x.to(device)


def _cache_file(cache_dir: Path, parts: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:40]
    return cache_dir / f"features_{digest}.npy"


def extract(
    model: nn.Module,
    inputs: np.ndarray | Tensor | torch.utils.data.Dataset,
    layers: str | Sequence[str] | None = None,
    batch_size: int = 256,
    pool: Pool | Mapping[str, Pool] = "avg",
    device: str | torch.device | None = None,
    cache_dir: str | Path | None = None,
    cache_key: str | None = None,
) -> dict[str, np.ndarray]:
    """Read representations of ``inputs`` at named layers.

    Args:
        model: any ``nn.Module``; layer names come from :func:`reprsim.models.layers`
            (``"penultimate"`` always works for zoo and adapted models), or raw module paths
            (``"fc:input"`` = the input of module ``fc``).
        inputs: array/tensor (N, ...) (uint8 images (N, C, H, W) are scaled to [0, 1];
            token ids stay integers) or a torch Dataset yielding ``x`` or ``(x, y)``.
        layers: one name, a list of names, or None for the model's default layer.
        batch_size: inputs per forward pass (memory stays bounded by one batch).
        pool: "avg" (= "mean"), "flatten", "last" or an int token position (see
            :func:`pool_features`); a mapping gives one per layer.
        device: where to run; None = CUDA when available, else CPU. The model is moved there
            for the call and moved back afterwards.
        cache_dir: directory for cached features; reused when weights, probe set, layer and
            pooling match.
        cache_key: name of the probe set in the cache key; defaults to a hash of ``inputs``
            (required for Dataset inputs).

    Returns:
        ``{layer_name: float32 array of shape (N, d)}`` in the order of ``layers``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"extract: model must be a torch.nn.Module, got {type(model).__name__}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"extract: batch_size must be a positive int, got {batch_size!r}.")
    names = [default_layer(model)] if layers is None else [layers] if isinstance(layers, str) else list(layers)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"extract: layers must be a non-empty list of distinct names, got {names!r}.")
    if isinstance(pool, Mapping):
        missing = sorted(set(names) - set(pool))
        if missing:
            raise ValueError(f"extract: the pool mapping has no entry for layers {missing}.")
        pools = {n: pool[n] for n in names}
    else:
        pools = {n: pool for n in names}
    targets = {n: resolve_layer(model, n) for n in names}
    for n, p in pools.items():
        if isinstance(p, str) and p not in _POOLS or isinstance(p, bool) or not isinstance(p, (str, int)):
            raise ValueError(f"extract: unknown pool {p!r} for layer {n!r}; use one of {_POOLS} or an int.")

    results: dict[str, np.ndarray] = {}
    files: dict[str, Path] = {}
    if cache_dir is not None:
        if cache_key is None:
            if isinstance(inputs, torch.utils.data.Dataset) and not isinstance(inputs, Tensor):
                raise ValueError("extract: pass cache_key (a name for the probe set) when inputs is a Dataset.")
            cache_key = "inputs:" + inputs_hash(inputs)  # type: ignore[arg-type]
        is_dataset = isinstance(inputs, torch.utils.data.Dataset) and not isinstance(inputs, Tensor)
        n_rows = None if is_dataset else len(inputs)
        cdir = Path(cache_dir)
        cdir.mkdir(parents=True, exist_ok=True)
        weights = state_hash(model)
        for n in names:
            module, as_input = targets[n]
            path = {m: k for k, m in model.named_modules()}.get(module, "?")
            files[n] = _cache_file(cdir, {"state": weights, "probe": cache_key, "layer": n,
                                          "module": path, "input": as_input, "pool": pools[n]})
            if files[n].is_file():
                cached = np.load(files[n])
                if n_rows is None or cached.shape[0] == n_rows:  # a stale key for other inputs is recomputed
                    results[n] = cached
    todo = [n for n in names if n not in results]
    if todo:
        results.update(_run(model, inputs, todo, targets, pools, batch_size, device))
        for n in todo:
            if n in files:
                tmp = files[n].with_suffix(f".tmp{os.getpid()}.npy")
                np.save(tmp, results[n])
                os.replace(tmp, files[n])
    return {n: results[n] for n in names}


def _run(
    model: nn.Module,
    inputs: Any,
    names: list[str],
    targets: dict[str, tuple[nn.Module, bool]],
    pools: dict[str, Pool],
    batch_size: int,
    device: str | torch.device | None,
) -> dict[str, np.ndarray]:
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    first = next(iter(model.parameters()), None)
    if first is None:
        first = next(iter(model.buffers()), None)
    home = first.device if first is not None else torch.device("cpu")
    n_total, batches = _as_batches(inputs, batch_size)
    out: dict[str, np.ndarray] = {}
    current: dict[str, Tensor] = {}

    def make_hook(name: str, as_input: bool) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            current[name] = pool_features(_unwrap(args[0] if as_input else output), pools[name])
        return hook

    handles = [targets[n][0].register_forward_hook(make_hook(n, targets[n][1])) for n in names]
    was_training = model.training
    model.to(dev).eval()
    try:
        row = 0
        with torch.no_grad():
            for xb in batches:
                current.clear()
                model(_prepare(xb, dev))
                for n in names:
                    if n not in current:
                        raise RuntimeError(f"extract: layer {n!r} was not called during the forward pass.")
                    feats = current[n].detach().float().cpu().numpy()
                    if n not in out:
                        out[n] = np.empty((n_total, feats.shape[1]), dtype=np.float32)
                    out[n][row:row + feats.shape[0]] = feats
                row += xb.shape[0]
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        model.to(home)
    return out
