"""Turn ``compare_models``' ``inputs`` into a probe set: an array of inputs or a list of texts.

Accepted: a numpy array / torch tensor (N, ...); a list of strings (texts); a
:class:`reprsim.data.Dataset`; a data-source spec ``NAME[:key=value,...]`` such as
``"fashion_mnist"``, ``"cifar10:root=/data/cifar-10-batches-py"`` or ``"mnist:n=500,split=train"``
(options go to :func:`reprsim.data.load`; default ``split=test`` and a seeded subsample of
``n=1000`` inputs, ``n=all`` for every input); or a file: ``.npy``, ``.npz`` (one array, or ``inputs`` and ``labels``), ``.pt``
(a tensor, or a dict with ``inputs`` and ``labels``; read with ``weights_only=True``) or ``.txt``
(one text per line).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reprsim.errors import ReprsimError

__all__ = ["Probe", "resolve_inputs", "parse_source", "DEFAULT_SOURCE_N"]

#: Inputs drawn from a data source when its spec gives no ``n``.
DEFAULT_SOURCE_N = 1000


@dataclass
class Probe:
    """The inputs both models see, in one order.

    Attributes:
        data: (N, ...) tensor of inputs, or None for texts.
        texts: the N texts, or None for array inputs.
        labels: (N,) int64 class ids, or None.
        description: where the inputs came from (for reports).
    """

    data: torch.Tensor | None
    texts: list[str] | None
    labels: np.ndarray | None
    description: str

    @property
    def n(self) -> int:
        """Number of inputs N."""
        return len(self.texts) if self.texts is not None else int(self.data.shape[0])  # type: ignore[union-attr]

    @property
    def is_text(self) -> bool:
        """True when the inputs are texts (each model tokenizes them itself)."""
        return self.texts is not None


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_source(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"NAME:key=value,key=value"`` into ``(NAME, {key: value})``; numbers and booleans are parsed."""
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ReprsimError(
                f"data source {spec!r}: option {item!r} is not key=value; write e.g. '{name}:root=/data,n=500'."
            )
        options[key.strip()] = _value(value.strip())
    return name.strip(), options


def _labels(labels: Any, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.shape != (n,) or arr.dtype.kind not in "iu":
        raise ReprsimError(
            f"labels must be integer class ids of shape ({n},) (one per input); got {arr.dtype} {arr.shape}."
        )
    if n and arr.min() < 0:
        raise ReprsimError(f"labels must be class ids >= 0; got {int(arr.min())}.")
    return arr.astype(np.int64)


def _array(data: Any, what: str) -> torch.Tensor:
    t = data.detach() if isinstance(data, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(data))
    if t.dim() < 1 or t.shape[0] == 0:
        raise ReprsimError(f"{what}: inputs must be a non-empty batch (N, ...); got shape {tuple(t.shape)}.")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ReprsimError(f"{what}: inputs contain NaN or inf values; clean them first.")
    return t


def _from_dataset(ds: Any, what: str) -> tuple[torch.Tensor, np.ndarray | None]:
    labels = getattr(ds, "labels", None)
    main = labels.get("label") if isinstance(labels, dict) else None
    return _array(ds.inputs, what), main


def _load_file(path: Path) -> tuple[Any, Any]:
    """(inputs, labels or None) from a probe file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            texts = [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines()]
            return [t for t in texts if t.strip()], None
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                if "inputs" in keys:
                    return z["inputs"], (z["labels"] if "labels" in keys else None)
                if len(keys) == 1:
                    return z[keys[0]], None
            raise ReprsimError(f"{path} holds arrays {keys}; save one array, or 'inputs' (and 'labels').")
        if suffix == ".pt":
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, torch.Tensor):
                return obj, None
            if isinstance(obj, dict) and isinstance(obj.get("inputs"), torch.Tensor):
                return obj["inputs"], obj.get("labels")
            raise ReprsimError(
                f"{path} holds a {type(obj).__name__}; save a tensor of inputs, or a dict with "
                "'inputs' (and 'labels') tensors."
            )
    except ReprsimError:
        raise
    except Exception as exc:  # a corrupt file: one line
        raise ReprsimError(f"cannot read the probe file {path}: {str(exc).splitlines()[0]}") from exc
    raise ReprsimError(f"probe file {path}: unsupported type {suffix!r}; use .npy, .npz, .pt or .txt.")


def resolve_inputs(inputs: Any, labels: Any = None) -> Probe:
    """Build the :class:`Probe` for ``inputs`` (see the module docstring).

    ``labels`` (N,) override those a data source or file carries.

    Raises:
        ReprsimError: unknown source, unreadable file, empty or non-finite inputs, bad labels.
    """
    from reprsim.data.dataset import Dataset

    src_labels: Any = None
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, str) for t in inputs):
        texts = [str(t) for t in inputs]
        if not all(t.strip() for t in texts):
            raise ReprsimError("inputs: every text must be non-empty.")
        return Probe(None, texts, _labels(labels, len(texts)), f"{len(texts)} texts")
    if isinstance(inputs, (list, tuple)) and not inputs:
        raise ReprsimError("inputs is empty; pass at least a few inputs.")
    if isinstance(inputs, Dataset):
        data, src_labels = _from_dataset(inputs, "inputs")
        desc = (
            f"{inputs.meta.get('source', 'dataset')} ({data.shape[0]} inputs)"
            if isinstance(inputs.meta, dict)
            else f"dataset ({data.shape[0]} inputs)"
        )
    elif isinstance(inputs, (str, Path)):
        path = Path(str(inputs)).expanduser()
        if path.is_file():
            raw, src_labels = _load_file(path)
            if isinstance(raw, list):
                if not raw:
                    raise ReprsimError(f"{path} holds no text lines.")
                return Probe(None, raw, _labels(labels, len(raw)), f"{path.name} ({len(raw)} texts)")
            data = _array(raw, str(path))
            desc = f"{path.name} ({data.shape[0]} inputs)"
        else:
            data, src_labels, desc = _load_source(str(inputs))
    elif isinstance(inputs, (np.ndarray, torch.Tensor)):
        data = _array(inputs, "inputs")
        desc = f"{data.shape[0]} inputs of shape {tuple(data.shape[1:])}"
    else:
        raise ReprsimError(
            f"inputs: got a {type(inputs).__name__}; pass an array/tensor (N, ...), a list of texts, "
            "a reprsim data source name (e.g. 'fashion_mnist', 'cifar10:root=DIR') or a "
            ".npy/.npz/.pt/.txt file."
        )
    use = labels if labels is not None else src_labels
    return Probe(data, None, _labels(use, int(data.shape[0])), desc)


def _load_source(spec: str) -> tuple[torch.Tensor, Any, str]:
    import inspect

    from reprsim.data import SOURCES, load, subsample

    name, options = parse_source(spec)
    if name not in SOURCES:
        raise ReprsimError(
            f"inputs {spec!r}: no such file, and {name!r} is not a data source; sources: "
            f"{', '.join(sorted(SOURCES))} (options as NAME:key=value,...)."
        )
    split = options.pop("split", "test")
    n = options.pop("n", None)
    generates = "n" in inspect.signature(SOURCES[name].loader).parameters  # e.g. noise, colorshapes
    if generates:
        options["n"] = DEFAULT_SOURCE_N if n in (None, "all") else n
    elif n not in (None, "all"):
        options["n"] = n
    try:
        ds = load(name, split=split, **options)
        if n is None and not generates and len(ds) > DEFAULT_SOURCE_N:
            ds = subsample(ds, n=DEFAULT_SOURCE_N, seed=int(options.get("seed", 0) or 0))
    except ReprsimError:
        raise
    except (ValueError, FileNotFoundError, OSError, TypeError) as exc:
        raise ReprsimError(f"inputs {spec!r}: {str(exc).splitlines()[0]}") from exc
    data, labels = _from_dataset(ds, spec)
    return data, labels, f"{name} {split} ({data.shape[0]} inputs)"
