"""The data sets a sweep config names: a source's train or test split and an extra probe set, loaded
once per process (cached by name and options), and seeded row subsamples of them."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_probe", "load_source", "subsample"]


@lru_cache(maxsize=16)
def _load_cached(name: str, split: str, options_json: str):
    from reprsim import data

    return data.load(name, split=split, **json.loads(options_json))


def load_source(source: Any, split: str, cache_dir: Path | None = None):  # a config SourceSpec
    """The train or test split of a configured source (the test split drops training subsampling).

    A source that caches what it generates (``colorshapes``) keeps it in the sweep's ``cache_dir``
    unless its options name another folder.
    """
    if split == "train":
        options = dict(source.options)
    else:  # the test split keeps the source's options but not its training-set subsampling
        options = {k: v for k, v in source.options.items() if k not in ("per_class", "n")} | source.test_options
    if cache_dir is not None and "cache_dir" not in options and _takes_cache_dir(source.name):
        options["cache_dir"] = str(cache_dir)
    return _load_cached(source.name, split, json.dumps(options, sort_keys=True))


def _takes_cache_dir(name: str) -> bool:
    import inspect

    from reprsim.data.registry import SOURCES

    loader = SOURCES[name].loader if name in SOURCES else None
    return loader is not None and "cache_dir" in inspect.signature(loader).parameters


def load_probe(spec: Any):  # a config ProbeSpec
    """The data set of an extra probe set of the config."""
    return _load_cached(spec.source, spec.split, json.dumps(spec.options, sort_keys=True))


def subsample(n_total: int, n: int, seed: int) -> np.ndarray:
    """A seeded subsample of ``n`` row indices (all rows, in order, when ``n >= n_total``)."""
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))
