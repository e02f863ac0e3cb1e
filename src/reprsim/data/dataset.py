"""The :class:`Dataset` container every source returns, and the shared input/subsampling helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Dataset:
    """Inputs with one or more label columns.

    Attributes
    ----------
    inputs : np.ndarray
        Images: float32 array of shape (n, C, H, W) with values in [0, 1]. Feature sources
        (``numpy`` with 2-D arrays) may hold (n, d).
    labels : dict[str, np.ndarray]
        Label columns, each an int64 array of shape (n,); the main column is ``"label"``.
    meta : dict
        ``name``, ``split``, ``num_classes`` (column -> count), ``class_names`` (column -> list),
        ``source`` and ``licence`` strings, plus source-specific keys.
    """

    inputs: np.ndarray
    labels: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.inputs)
        for key, col in self.labels.items():
            if len(col) != n:
                raise ValueError(f"label column {key!r} has {len(col)} entries but there are {n} inputs")

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def label(self) -> np.ndarray:
        """The main label column, int64 array of shape (n,)."""
        return self.labels["label"]

    def subset(self, indices: np.ndarray) -> "Dataset":
        """A new Dataset holding rows ``indices`` (inputs and every label column)."""
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(self.inputs[idx], {k: v[idx] for k, v in self.labels.items()}, {**self.meta, "n": len(idx)})


def to_nchw_float(images: np.ndarray, *, channels_last: bool | None = None) -> np.ndarray:
    """Convert images to float32 (n, C, H, W) in [0, 1].

    Accepts (n, H, W) (grey), (n, H, W, C) or (n, C, H, W); 4-D input counts as channels-last when
    its last axis is 1 or 3 and its second is not (pass ``channels_last`` when ambiguous). uint8 is divided by
    255; floats must already lie in [0, 1]. ``channels_last`` forces the layout of 4-D input.

    Returns
    -------
    float32 array of shape (n, C, H, W).
    """
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if channels_last is None:
            channels_last = arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3)
        if channels_last:
            arr = np.transpose(arr, (0, 3, 1, 2))
    else:
        raise ValueError(f"images must have shape (n, H, W), (n, H, W, C) or (n, C, H, W); got {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr, dtype=np.float32) / np.float32(255.0)
    if np.issubdtype(arr.dtype, np.integer):
        top = 255.0 if arr.max(initial=0) <= 255 else float(arr.max())
        return np.ascontiguousarray(arr, dtype=np.float32) / np.float32(top)
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if out.size and (not np.isfinite(out).all() or out.min() < 0 or out.max() > 1):
        raise ValueError("float images must be finite and lie in [0, 1]; scale them (e.g. x / 255) first")
    return out


def subsample(
    ds: Dataset, *, n: int | None = None, per_class: int | None = None, seed: int = 0, column: str = "label"
) -> Dataset:
    """Seeded subsample: ``per_class`` examples of each class of ``column``, then ``n`` overall.

    Returns the Dataset restricted to the chosen rows, in their original order.
    """
    if n is None and per_class is None:
        return ds
    rng = np.random.default_rng(seed)
    idx = np.arange(len(ds))
    if per_class is not None:
        if int(per_class) < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        labels = ds.labels[column]
        parts = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            if len(members) < per_class:
                raise ValueError(
                    f"class {int(c)} of {ds.meta.get('name', 'dataset')} has only "
                    f"{len(members)} examples, fewer than per_class={per_class}"
                )
            parts.append(rng.choice(members, size=int(per_class), replace=False))
        idx = np.sort(np.concatenate(parts))
    if n is not None:
        if not 1 <= int(n) <= len(idx):
            raise ValueError(f"n must be in [1, {len(idx)}] for {ds.meta.get('name', 'dataset')}, got {n}")
        idx = np.sort(rng.choice(idx, size=int(n), replace=False))
    out = ds.subset(idx)
    out.meta.update(subsample={"n": n, "per_class": per_class, "seed": seed})
    return out


def class_meta(
    labels: dict[str, np.ndarray], names: dict[str, list[str]] | None = None, num_classes: dict[str, int] | None = None
) -> dict:
    """``num_classes`` and ``class_names`` meta entries for label columns (names default to ids)."""
    names = dict(names or {})
    counts = dict(num_classes or {})
    for key, col in labels.items():
        counts.setdefault(key, int(col.max()) + 1 if len(col) else 0)
        names.setdefault(key, [str(i) for i in range(counts[key])])
    return {"num_classes": counts, "class_names": names}
