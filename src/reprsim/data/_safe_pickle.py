"""Unpickling restricted to numpy arrays, for data files shipped as pickles (MNIST, CIFAR)."""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np


def _core_attr(name: str) -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return getattr(multiarray, name)


# (module, name) pairs a data pickle may reference; anything else is refused before it runs.
_ALLOWED_CORE = {"numpy.core.multiarray", "numpy._core.multiarray"}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module in _ALLOWED_CORE and name in ("_reconstruct", "scalar"):
            return _core_attr(name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # how Python 3 pickles bytes at protocol < 3
            import _codecs

            return _codecs.encode
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name} from a data pickle (only numpy arrays are allowed)"
        )


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_numpy_pickle(data: bytes, *, encoding: str = "latin1") -> Any:
    """Unpickle ``data`` allowing only numpy array reconstruction (plain containers are fine)."""
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding=encoding).load()
