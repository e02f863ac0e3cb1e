"""Representation extraction with forward hooks, pooling and an on-disk cache.

``extract(model, inputs, layers)`` runs the model in eval mode without gradients, batch by
batch, and returns one float32 matrix of shape (n_inputs, n_features) per layer. Spatial maps
(N, C, H, W) are average-pooled or flattened; token sequences (N, T, D) are pooled by mean,
last token or a given position. Results can be cached on disk, keyed by (weights hash,
probe-set key, layer, pooling).

Padded token batches: pass an ``attention_mask`` (N, T) (or inputs as a mapping such as a
tokenizer's output, ``{"input_ids": (N, T), "attention_mask": (N, T)}``). The mask is passed to
the model's ``forward`` when it accepts one, and ``"avg"``/``"mean"`` pooling averages over the
real tokens only (``"last"`` takes the last real token), so a text's features do not depend on
how much padding its batch needed.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
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


def inputs_hash(inputs: np.ndarray | Tensor | Mapping[str, Any]) -> str:
    """Return a hex SHA-256 (32 chars) of an input array (dtype, shape and bytes), or of every
    array of a mapping such as ``{"input_ids": ..., "attention_mask": ...}`` (keys included)."""
    h = hashlib.sha256()
    items = sorted(inputs.items()) if isinstance(inputs, Mapping) else [("", inputs)]
    for key, value in items:
        arr = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
        arr = np.ascontiguousarray(arr)
        h.update(f"{key}|{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.view(np.uint8).reshape(-1).data)
    return h.hexdigest()[:32]


def pool_features(t: Tensor, pool: Pool, mask: Tensor | None = None) -> Tensor:
    """Reduce one layer's output to (N, d).

    * (N, D): returned unchanged for "avg", "mean" and "flatten".
    * (N, T, D) token sequences: "avg"/"mean" average over T, "last" takes the last token,
      an int takes that position (negative counts from the end), "flatten" gives (N, T*D).
    * (N, C, H, W) or higher: "avg"/"mean" average over all axes after C, "flatten" gives
      (N, C*H*W).

    ``mask``: optional attention mask (N, T) (1 = real token, 0 = padding) for token sequences.
    With it, "avg"/"mean" average over the real tokens only and "last" takes each row's last real
    token; int positions and "flatten" ignore it. Outputs that are not (N, T, D) with the mask's
    T are pooled as without a mask.
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
        raise ValueError(
            f"pool={pool!r} selects a token, but this layer's output is already (N, D) = "
            f"{tuple(t.shape)}; use pool='avg'."
        )
    masked = mask is not None and t.dim() == 3 and tuple(mask.shape) == tuple(t.shape[:2])
    if pool in ("avg", "mean"):
        if masked:
            w = mask.to(device=t.device, dtype=t.dtype)
            count = w.sum(dim=1, keepdim=True)
            if bool((count == 0).any()):
                row = int((count[:, 0] == 0).nonzero()[0])
                raise ValueError(
                    f"pool_features: row {row} of the attention mask has no real token; "
                    "every input needs at least one token with mask 1."
                )
            return (t * w[:, :, None]).sum(dim=1) / count
        return t.mean(dim=1) if t.dim() == 3 else t.mean(dim=tuple(range(2, t.dim())))
    if t.dim() != 3:
        raise ValueError(
            f"pool={pool!r} needs a token sequence (N, T, D), got {tuple(t.shape)}; "
            "use 'avg' or 'flatten' for spatial maps."
        )
    if pool == "last" and masked:
        real = mask.to(device=t.device) != 0
        if not bool(real.any(dim=1).all()):
            raise ValueError("pool_features: a row of the attention mask has no real token.")
        # the last position holding a real token (right or left padding alike)
        last = t.shape[1] - 1 - real.flip(1).to(torch.int8).argmax(dim=1)
        return t[torch.arange(t.shape[0], device=t.device), last]
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


def _is_dataset(inputs: Any) -> bool:
    return isinstance(inputs, torch.utils.data.Dataset) and not isinstance(inputs, Tensor)


def _as_tensor(value: Any, what: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    try:
        return torch.from_numpy(np.ascontiguousarray(value))
    except TypeError as exc:
        raise TypeError(f"extract: {what} must be a numpy array or torch tensor, got {type(value).__name__}.") from exc


def _split_inputs(inputs: Any, attention_mask: Any) -> tuple[Any, dict[str, Tensor]]:
    """(main input, extra per-row keyword tensors such as ``attention_mask``) with checked shapes."""
    extras: dict[str, Tensor] = {}
    if isinstance(inputs, Mapping):
        if "input_ids" not in inputs:
            raise ValueError(
                f"extract: a mapping of inputs needs an 'input_ids' entry (N, T); got keys {sorted(inputs)}."
            )
        main = _as_tensor(inputs["input_ids"], "inputs['input_ids']")
        extras = {str(k): _as_tensor(v, f"inputs[{k!r}]") for k, v in inputs.items() if k != "input_ids"}
    else:
        main = inputs
    if attention_mask is not None:
        if "attention_mask" in extras:
            raise ValueError(
                "extract: the attention mask was given twice (in inputs and as attention_mask=); pass one."
            )
        if _is_dataset(main):
            raise ValueError("extract: attention_mask= needs array inputs (N, T), not a Dataset.")
        extras["attention_mask"] = _as_tensor(attention_mask, "attention_mask")
    if extras:
        main = _as_tensor(main, "inputs")
        for key, value in extras.items():
            if value.shape[:1] != main.shape[:1] or (key == "attention_mask" and value.shape != main.shape[:2]):
                want = tuple(main.shape[:2]) if key == "attention_mask" else (int(main.shape[0]), "...")
                raise ValueError(
                    f"extract: {key} has shape {tuple(value.shape)} but the token ids have shape "
                    f"{tuple(main.shape)}; it must be {want} (one row per input)."
                )
    return main, extras


def _as_batches(inputs: Any, batch_size: int, extras: Mapping[str, Tensor] | None = None) -> tuple[int, Any]:
    """Return (n, iterator over (input batch, {key: extra batch}))."""
    extras = dict(extras or {})
    if _is_dataset(inputs):
        loader = torch.utils.data.DataLoader(inputs, batch_size=batch_size, shuffle=False)

        def gen_ds() -> Any:
            for batch in loader:
                yield (batch[0] if isinstance(batch, (tuple, list)) else batch), {}

        return len(inputs), gen_ds()  # type: ignore[arg-type]
    data = inputs if isinstance(inputs, Tensor) else torch.from_numpy(np.ascontiguousarray(inputs))
    if data.dim() < 1 or data.shape[0] == 0:
        raise ValueError(f"extract: inputs must be a non-empty batch (N, ...), got shape {tuple(data.shape)}.")

    def gen() -> Any:
        for start in range(0, data.shape[0], batch_size):
            stop = start + batch_size
            yield data[start:stop], {k: v[start:stop] for k, v in extras.items()}

    return int(data.shape[0]), gen()


def _accepted_keywords(model: nn.Module, keys: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``keys`` into those ``model.forward`` accepts as keywords and those it does not."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # builtins / scripted modules: assume nothing extra is taken
        return [], list(keys)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return list(keys), []
    ok = [k for k in keys if k in params and params[k].kind is not inspect.Parameter.POSITIONAL_ONLY]
    return ok, [k for k in keys if k not in ok]


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
    inputs: np.ndarray | Tensor | torch.utils.data.Dataset | Mapping[str, Any],
    layers: str | Sequence[str] | None = None,
    batch_size: int = 256,
    pool: Pool | Mapping[str, Pool] = "avg",
    device: str | torch.device | None = None,
    cache_dir: str | Path | None = None,
    cache_key: str | None = None,
    *,
    attention_mask: np.ndarray | Tensor | None = None,
    progress: bool | None = False,
    desc: str = "features",
) -> dict[str, np.ndarray]:
    """Read representations of ``inputs`` at named layers.

    Args:
        model: any ``nn.Module``; layer names come from :func:`reprsim.models.layers`
            (``"penultimate"`` always works for zoo and adapted models), or raw module paths
            (``"fc:input"`` = the input of module ``fc``).
        inputs: array/tensor (N, ...) (uint8 images (N, C, H, W) are scaled to [0, 1];
            token ids stay integers), a torch Dataset yielding ``x`` or ``(x, y)``, or a mapping
            with ``input_ids`` (N, T) and optionally ``attention_mask`` (N, T) and other per-row
            arrays the model takes as keywords (e.g. a tokenizer's ``BatchEncoding``).
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
        attention_mask: (N, T) with 1 for real tokens and 0 for padding (or pass it inside a
            mapping ``inputs``). It is passed to ``model.forward(ids, attention_mask=...)`` when
            forward accepts that keyword (else a warning says the model sees the padding, which is
            exact only for a causal model with right padding), and sequence outputs (N, T, D) are
            pooled over real tokens only ("avg"/"mean"; "last" = the last real token).
        progress: a progress bar over the batches (None: only on a terminal); ``desc`` labels it.

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

    main, extras = _split_inputs(inputs, attention_mask)
    results: dict[str, np.ndarray] = {}
    files: dict[str, Path] = {}
    if cache_dir is not None:
        if cache_key is None:
            if _is_dataset(main):
                raise ValueError("extract: pass cache_key (a name for the probe set) when inputs is a Dataset.")
            cache_key = "inputs:" + inputs_hash(main if not extras else {"input_ids": main, **extras})
        elif extras:
            cache_key = f"{cache_key}|extras:{inputs_hash(extras)}"
        n_rows = None if _is_dataset(main) else len(main)
        cdir = Path(cache_dir)
        cdir.mkdir(parents=True, exist_ok=True)
        weights = state_hash(model)
        for n in names:
            module, as_input = targets[n]
            path = {m: k for k, m in model.named_modules()}.get(module, "?")
            files[n] = _cache_file(
                cdir,
                {"state": weights, "probe": cache_key, "layer": n, "module": path, "input": as_input, "pool": pools[n]},
            )
            if files[n].is_file():
                cached = np.load(files[n])
                if n_rows is None or cached.shape[0] == n_rows:  # a stale key for other inputs is recomputed
                    results[n] = cached
    todo = [n for n in names if n not in results]
    if todo:
        results.update(_run(model, main, extras, todo, targets, pools, batch_size, device, progress, desc))
        for n in todo:
            if n in files:  # temp file + rename (storage): a link planted at a guessable name is never followed
                from reprsim.storage import atomic_write_bytes

                buf = io.BytesIO()
                np.save(buf, results[n], allow_pickle=False)
                atomic_write_bytes(files[n], buf.getbuffer())
    return {n: results[n] for n in names}


def _run(
    model: nn.Module,
    inputs: Any,
    extras: dict[str, Tensor],
    names: list[str],
    targets: dict[str, tuple[nn.Module, bool]],
    pools: dict[str, Pool],
    batch_size: int,
    device: str | torch.device | None,
    progress: bool | None = False,
    desc: str = "features",
) -> dict[str, np.ndarray]:
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    first = next(iter(model.parameters()), None)
    if first is None:
        first = next(iter(model.buffers()), None)
    home = first.device if first is not None else torch.device("cpu")
    n_total, batches = _as_batches(inputs, batch_size, extras)
    passed, dropped = _accepted_keywords(model, list(extras))
    if dropped:
        lost = [k for k in dropped if k != "attention_mask"]
        if lost:
            raise ValueError(f"extract: {type(model).__name__}.forward does not take {lost}; drop them from inputs.")
        warnings.warn(
            f"extract: {type(model).__name__}.forward takes no attention_mask, so the model sees the "
            "padding; pooling still uses real tokens only (exact for a causal model with right "
            "padding).",
            stacklevel=3,
        )
    out: dict[str, np.ndarray] = {}
    current: dict[str, Tensor] = {}
    batch_mask: dict[str, Tensor] = {}

    def make_hook(name: str, as_input: bool) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            current[name] = pool_features(_unwrap(args[0] if as_input else output), pools[name], batch_mask.get("mask"))

        return hook

    handles = [targets[n][0].register_forward_hook(make_hook(n, targets[n][1])) for n in names]
    was_training = model.training
    model.to(dev).eval()
    try:
        row = 0
        with torch.no_grad():
            for xb, eb in tqdm(
                batches,
                total=-(-n_total // batch_size),
                desc=desc,
                leave=False,
                disable=True if progress is False else None,
            ):
                current.clear()
                if "attention_mask" in eb:
                    batch_mask["mask"] = eb["attention_mask"].to(dev)
                model(_prepare(xb, dev), **{k: eb[k].to(dev) for k in passed})
                for n in names:
                    if n not in current:
                        raise RuntimeError(f"extract: layer {n!r} was not called during the forward pass.")
                    feats = current[n].detach().float().cpu().numpy()
                    if n not in out:
                        out[n] = np.empty((n_total, feats.shape[1]), dtype=np.float32)
                    out[n][row : row + feats.shape[0]] = feats
                row += xb.shape[0]
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        model.to(home)
    return out
