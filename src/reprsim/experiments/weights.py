"""The content-keyed caches shared by every kind: trained weights, probe features and splits.

Every entry is one checksummed file written atomically under a unique temporary name
(:mod:`reprsim.storage`): a truncated or corrupt entry is logged with its path, moved aside and
recomputed, never fatal; concurrent units or sweeps that need the same entry wait for the one
computing it (a per-key lock) instead of computing it twice. Keys are content hashes of what
determines the entry, so equal work is never done twice, in one sweep or across sweeps.

Layout under the cache folder: ``models/<key>.rsv`` (weights and their metrics in one file),
``checkpoints/<key>/`` (resumable training state), ``features/<key>.rsv``, ``splits/<key>.rsv``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from reprsim import storage

log = logging.getLogger("reprsim.cache")
Fit = Callable[[nn.Module, Path], tuple[nn.Module, dict]]
StateOf = Callable[[nn.Module], dict[str, Any]]
LoadState = Callable[[nn.Module, dict[str, Any]], None]


def _full_state(model: nn.Module) -> dict[str, Any]:
    # clone: tied weights (e.g. a GPT's lm_head and embedding) share storage, which safetensors refuses
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}


def _load_full_state(model: nn.Module, state: dict[str, Any]) -> None:
    model.load_state_dict(state)


def cached_model(
    model: nn.Module,
    key: str,
    cache_dir: Path,
    fit: Fit,
    *,
    state_of: StateOf = _full_state,
    load_state: LoadState = _load_full_state,
) -> tuple[nn.Module, dict]:
    """``model`` with the weights cached under ``key``, or trained by ``fit`` and then cached.

    ``fit(model, checkpoint_dir)`` trains the freshly built model (resuming from its checkpoints
    after an interruption) and returns ``(trained model, info)``; ``info`` (JSON-serialisable
    metrics) is stored with the weights and returned on every later call. ``state_of`` /
    ``load_state`` choose what is stored (default: the whole state dict; a LoRA kind stores only
    its adapter). The model comes back in eval mode.
    """
    path = Path(cache_dir) / "models" / f"{key}.rsv"
    with storage.key_lock(path):
        stored = storage.read_verified_state_dict(path)
        if stored is not None:
            tensors, info = stored
            load_state(model, tensors)
            log.info("model %s loaded from the cache", key)
            return model.eval(), info
        log.info("model %s: training", key)
        model, info = fit(model, Path(cache_dir) / "checkpoints" / key)
        storage.write_verified_state_dict(path, state_of(model), info)
    return model.eval(), info


def cached_features(
    key: str, layers: list[str], cache_dir: Path, compute: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """``{layer: (n, d)}`` cached as ``features/<key>.rsv``, or computed by ``compute()`` and cached."""
    path = Path(cache_dir) / "features" / f"{key}.rsv"

    def read(p: Path) -> dict[str, np.ndarray] | None:
        stored = storage.read_verified_arrays(p)
        return stored if stored is not None and all(layer in stored for layer in layers) else None

    def fresh() -> dict[str, np.ndarray]:
        feats = compute()
        return {layer: feats[layer] for layer in layers}

    feats = storage.cached(path, fresh, read=read, write=storage.write_verified_arrays)
    return {layer: feats[layer] for layer in layers}


def cached_split(key: str, cache_dir: Path, compute: Callable[[], Any]) -> Any:
    """A :class:`reprsim.data.splits.Split` cached as ``splits/<key>.rsv``, or computed and cached."""
    from reprsim.data.splits import Split

    def read(p: Path) -> Split | None:
        data = storage.read_verified(p)
        return None if data is None else Split.from_bytes(data, str(p))

    return storage.cached(
        Path(cache_dir) / "splits" / f"{key}.rsv",
        compute,
        read=read,
        write=lambda p, split: storage.write_verified(p, split.to_bytes()),
    )
