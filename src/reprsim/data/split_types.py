"""The :class:`Split` record returned by every overlap split, with its JSON-in-NPZ file format.

A split is two index sets (model A's and model B's training examples, chunks or domains) plus the
classes each model trains on, in training-id order, and the realised overlap. Label maps are not
stored separately: ``a_classes[i]`` is the original class that model A trains as id ``i`` (the
paper's convention: the common classes come first, in the same order for both models).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

FORMAT_VERSION = 1

ClassKey = Any  # an int (class split / domain split) or a tuple of ints (attribute split)


class RealisedFractions:
    """``realised_data_fraction`` / ``realised_task_fraction`` of an object that holds a ``split``
    (a :class:`Split`, or anything with those two attributes): the exact overlap, after rounding."""

    split: Any

    @property
    def realised_data_fraction(self) -> float:
        return float(self.split.realised_data_fraction)

    @property
    def realised_task_fraction(self) -> float:
        return float(self.split.realised_task_fraction)


@dataclass
class Split:
    """Two overlapping training sets.

    Attributes
    ----------
    kind : {"data", "task", "combined", "attribute", "chunk", "corpus"}
    a_indices, b_indices : int64 arrays, sorted
        Indices into the source (examples; chunk ids for ``chunk``; domain ids for ``corpus``).
    shared_indices : int64 array, sorted
        Indices in both sets (``a_indices ∩ b_indices``).
    a_classes, b_classes : list
        Classes of each model in training-id order (class ``a_classes[i]`` trains as id ``i``).
        Ints for class splits, tuples of attribute values for attribute splits.
    realised_data_fraction : float
        ``|A ∩ B| / |A|`` (the paper's definition), after rounding.
    realised_task_fraction : float
        Class splits: shared classes / classes per model; attribute splits: shared attributes /
        ``max(|attrs_a|, |attrs_b|)``; 1.0 for data and chunk splits.
    seed : int
    requested_data_fraction, requested_task_fraction : float or None
        What was asked for; compare with the realised values (rounding can differ).
    mode : {"constrained", "unconstrained"} or None
    a_attributes, b_attributes : tuple of str
        Attribute columns of each task (attribute splits only).
    n_total : int
        Size of the source the indices point into.
    info : dict
        Kind-specific extras (``chunk_len`` for chunk splits, ``domains`` for corpus splits,
        ``images: "disjoint"`` for task splits with disjoint images, ...).
    """

    kind: str
    a_indices: np.ndarray
    b_indices: np.ndarray
    shared_indices: np.ndarray
    a_classes: list
    b_classes: list
    realised_data_fraction: float
    realised_task_fraction: float
    seed: int
    requested_data_fraction: float | None = None
    requested_task_fraction: float | None = None
    mode: str | None = None
    a_attributes: tuple[str, ...] = ()
    b_attributes: tuple[str, ...] = ()
    n_total: int = 0
    info: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ label maps
    @property
    def a_label_map(self) -> dict[ClassKey, int]:
        """Original class (or attribute tuple) -> model A's training id."""
        return {c: i for i, c in enumerate(self.a_classes)}

    @property
    def b_label_map(self) -> dict[ClassKey, int]:
        """Original class (or attribute tuple) -> model B's training id."""
        return {c: i for i, c in enumerate(self.b_classes)}

    @property
    def common_classes(self) -> list:
        """Classes both models train on, in their (shared) training-id order."""
        b = set(self.b_classes)
        return [c for c in self.a_classes if c in b]

    def indices(self, model: str) -> np.ndarray:
        """Training indices of model ``"a"`` or ``"b"``; int64 array."""
        return self._pick(model, self.a_indices, self.b_indices)

    def train_labels(self, labels: np.ndarray | Mapping[str, np.ndarray], model: str) -> np.ndarray:
        """Remapped training labels of one model, aligned with :meth:`indices`.

        Parameters
        ----------
        labels : int array of shape (n_total,), or mapping of attribute columns (attribute splits)
        model : "a" or "b"

        Returns
        -------
        int64 array of shape (len(indices(model)),) with ids in ``0 .. n_classes(model) - 1``.
        """
        out = self.map_labels(labels, model, self.indices(model))
        if (out < 0).any():
            raise ValueError(
                "labels do not match this split: some selected examples have a class the "
                "split does not know; pass the same label array the split was built from"
            )
        return out

    def map_labels(
        self, labels: np.ndarray | Mapping[str, np.ndarray], model: str, indices: np.ndarray | None = None
    ) -> np.ndarray:
        """Training ids of model ``"a"`` or ``"b"`` for arbitrary labels (e.g. a test set's).

        Returns an int64 array (one id per selected row; all rows when ``indices`` is None) holding
        −1 for examples whose class the model does not train on.
        """
        classes = self._pick(model, self.a_classes, self.b_classes)
        if self.kind == "attribute":
            if not isinstance(labels, Mapping):
                raise TypeError(
                    "attribute splits need the attribute columns: pass a dict like "
                    "dataset.labels, not a single label array"
                )
            attrs = self._pick(model, self.a_attributes, self.b_attributes)
            missing = [a for a in attrs if a not in labels]
            if missing:
                raise ValueError(f"labels lack attribute column(s) {missing}; got {sorted(labels)}")
            rows = np.stack(
                [np.asarray(labels[a]) if indices is None else np.asarray(labels[a])[indices] for a in attrs], axis=1
            )
            lookup = {tuple(c): i for i, c in enumerate(classes)}
            uniq, inv = np.unique(rows, axis=0, return_inverse=True)
            ids = np.array([lookup.get(tuple(int(v) for v in u), -1) for u in uniq], dtype=np.int64)
            return ids[inv.reshape(-1)]
        if isinstance(labels, Mapping):
            labels = labels["label"]
        lab = np.asarray(labels) if indices is None else np.asarray(labels)[indices]
        order = np.argsort(np.asarray(classes))
        sorted_classes = np.asarray(classes)[order]
        pos = np.clip(np.searchsorted(sorted_classes, lab), 0, len(classes) - 1)
        return np.where(sorted_classes[pos] == lab, order[pos], -1).astype(np.int64)

    @property
    def task_images(self) -> str | None:
        """Task splits: ``"disjoint"`` (A and B train on disjoint examples of each common class: pure
        task overlap) or ``"shared"`` (a common class brings all of its examples to both: task + data
        overlap, the paper's vertical split); None for every other kind."""
        if self.kind != "task":
            return None
        return self.info.get("images", "shared")

    def n_classes(self, model: str) -> int:
        """Number of output classes model ``"a"`` or ``"b"`` trains with."""
        return len(self._pick(model, self.a_classes, self.b_classes))

    def describe(self) -> str:
        """One line: kind, sizes, requested vs realised overlap (rounding is stated when it differs)."""
        images = {
            "disjoint": ", disjoint images (pure task overlap)",
            "shared": ", shared images (task + data overlap)",
        }.get(self.task_images or "", "")
        parts = [
            f"{self.kind} split{images} (seed {self.seed}): |A|={len(self.a_indices)}, "
            f"|B|={len(self.b_indices)}, shared={len(self.shared_indices)}"
        ]
        for name, req, real in (
            ("data", self.requested_data_fraction, self.realised_data_fraction),
            ("task", self.requested_task_fraction, self.realised_task_fraction),
        ):
            if req is None:
                parts.append(f"{name} overlap {real:.4f}")
            elif abs(req - real) > 1e-9:
                parts.append(f"{name} overlap requested {req:.4f}, realised {real:.4f} (rounded)")
            else:
                parts.append(f"{name} overlap {real:.4f}")
        return "; ".join(parts)

    @staticmethod
    def _pick(model: str, a: Any, b: Any) -> Any:
        if model in ("a", "A", 0):
            return a
        if model in ("b", "B", 1):
            return b
        raise ValueError(f"model must be 'a' or 'b', got {model!r}")

    # ------------------------------------------------------------------ file I/O
    def save(self, path: str | Path) -> Path:
        """Write the split to ``path`` (an ``.npz`` holding the index arrays and a JSON header).

        Returns the path written. No pickle is used, so loading is safe.
        """
        from reprsim.storage import atomic_write_bytes

        path = Path(path)
        atomic_write_bytes(path, self.to_bytes())  # temp file + rename, never through a symlink
        return path

    def to_bytes(self) -> bytes:
        """The split as the bytes of the ``.npz`` file :meth:`save` writes."""
        header = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "a_classes": [list(c) if isinstance(c, tuple) else c for c in self.a_classes],
            "b_classes": [list(c) if isinstance(c, tuple) else c for c in self.b_classes],
            "realised_data_fraction": self.realised_data_fraction,
            "realised_task_fraction": self.realised_task_fraction,
            "seed": self.seed,
            "requested_data_fraction": self.requested_data_fraction,
            "requested_task_fraction": self.requested_task_fraction,
            "mode": self.mode,
            "a_attributes": list(self.a_attributes),
            "b_attributes": list(self.b_attributes),
            "n_total": self.n_total,
            "info": self.info,
        }
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            a_indices=self.a_indices,
            b_indices=self.b_indices,
            shared_indices=self.shared_indices,
            header=np.array(json.dumps(header, default=_json_default)),
        )
        return buffer.getvalue()

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        """Read a split written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no split file at {path}; write one with Split.save(path)")
        return cls.from_bytes(path.read_bytes(), str(path))

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "split bytes") -> "Split":
        """Inverse of :meth:`to_bytes`; ``where`` names the source in errors."""
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            arrays = {k: z[k].astype(np.int64) for k in ("a_indices", "b_indices", "shared_indices")}
        if header.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{where}: split format version {header.get('format_version')} is not "
                f"supported (expected {FORMAT_VERSION}); re-create the split"
            )
        header.pop("format_version")
        for key in ("a_classes", "b_classes"):
            header[key] = [tuple(c) if isinstance(c, list) else c for c in header[key]]
        header["a_attributes"] = tuple(header["a_attributes"])
        header["b_attributes"] = tuple(header["b_attributes"])
        return cls(**arrays, **header)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        arrays_equal = all(
            np.array_equal(getattr(self, k), getattr(other, k)) for k in ("a_indices", "b_indices", "shared_indices")
        )
        return arrays_equal and all(
            getattr(self, k) == getattr(other, k)
            for k in (
                "kind",
                "a_classes",
                "b_classes",
                "realised_data_fraction",
                "realised_task_fraction",
                "seed",
                "requested_data_fraction",
                "requested_task_fraction",
                "mode",
                "a_attributes",
                "b_attributes",
                "n_total",
                "info",
            )
        )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in a split header")
