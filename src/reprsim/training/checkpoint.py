"""Checkpoints in safetensors: weights, optimizer state and RNG states, with JSON metadata.

``last.safetensors`` (resumable state, written atomically at the end of every epoch) and, when
training is complete, ``model.safetensors`` (weights only). Each has a ``.json`` twin holding
the config, seed, metrics and history; the same JSON is stored in the safetensors metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import Tensor, nn

__all__ = ["save_state", "load_state", "load_ema", "save_weights", "read_meta", "model_fingerprint"]

LAST = "last.safetensors"
FINAL = "model.safetensors"


def model_fingerprint(model: nn.Module) -> str:
    """A short description of the architecture: class name and parameter names/shapes."""
    shapes = ";".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    import hashlib

    return f"{type(model).__name__}:" + hashlib.sha256(shapes.encode()).hexdigest()[:16]


def _weights(prefix: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    # clone: tied weights share storage, which safetensors refuses
    return {f"{prefix}{k}": v.detach().cpu().clone().contiguous() for k, v in state.items()}


def _atomic_save(tensors: dict[str, Tensor], meta: dict[str, Any], path: Path) -> None:
    # storage.atomic_write_bytes: an unpredictable O_EXCL | O_NOFOLLOW temporary file, then a rename, so a
    # symlink planted at a guessable name (``model.safetensors.tmp<pid>``) in a shared cache is never followed
    from reprsim.storage import atomic_write_bytes

    text = json.dumps(meta, sort_keys=True)
    atomic_write_bytes(path, save(tensors, metadata={"reprsim": text}))
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True).encode())


def save_weights(model: nn.Module, meta: dict[str, Any], directory: Path) -> Path:
    """Write the final weights to ``directory/model.safetensors`` (+ ``model.json``); return the path."""
    path = directory / FINAL
    _atomic_save(_weights("", model.state_dict()), meta, path)
    return path


def save_state(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: dict[str, Tensor],
    best: dict[str, Tensor] | None,
    meta: dict[str, Any],
    ema: dict[str, Tensor] | None = None,
) -> Path:
    """Write the resumable state to ``directory/last.safetensors`` (with the EMA weights ``ema``,
    when training keeps an average); return the path."""
    tensors = _weights("model.", model.state_dict())
    opt = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for pid, entries in opt["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().clone().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    tensors.update({f"rng.{k}": v.cpu().clone() for k, v in rng.items()})
    if best is not None:
        tensors.update(_weights("best.", best))
    if ema is not None:
        tensors.update(_weights("ema.", ema))
    meta = dict(meta, optim_param_groups=opt["param_groups"], optim_scalars=scalars)
    path = directory / LAST
    _atomic_save(tensors, meta, path)
    return path


def read_meta(path: Path) -> dict[str, Any]:
    """Return the JSON metadata stored in a reprsim safetensors file."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "reprsim" not in meta:
        raise ValueError(f"{path} is not a reprsim checkpoint (no 'reprsim' metadata).")
    return json.loads(meta["reprsim"])


def load_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, Tensor] | None]:
    """Restore model and optimizer from ``last.safetensors``; return (meta, rng states, best weights or None)."""
    meta = read_meta(path)
    groups: dict[str, dict[str, Tensor]] = {"model": {}, "optim": {}, "rng": {}, "best": {}, "ema": {}}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            head, rest = key.split(".", 1)
            groups[head][rest] = f.get_tensor(key)
    device = next(iter(model.parameters())).device
    model.load_state_dict(groups["model"])
    state: dict[int, dict[str, Any]] = {}
    for key, value in groups["optim"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value if name == "step" else value.to(device)
    for key, value in meta["optim_scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    param_groups = meta["optim_param_groups"]
    for g in param_groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})
    return meta, groups["rng"], (groups["best"] or None)


def load_ema(path: Path) -> dict[str, Tensor] | None:
    """The EMA weights stored in ``last.safetensors`` by :func:`save_state`, or None when it has none."""
    with safe_open(str(path), framework="pt") as f:
        state = {key[len("ema.") :]: f.get_tensor(key) for key in f.keys() if key.startswith("ema.")}
    return state or None
