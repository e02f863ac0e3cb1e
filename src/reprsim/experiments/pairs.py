"""From a unit's overlap point to the concrete data of its model pair.

:class:`PairData` turns a :class:`reprsim.data.splits.Split` into what the rest of a unit needs:
each model's training and evaluation sets (labels remapped to its training ids), the probe
subsets of the test set, and the inputs on which adversarial transfer is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reprsim.data import splits
from reprsim.data.split_types import RealisedFractions
from reprsim.experiments.grid import Unit
from reprsim.hashing import content_hash

# Probe subsets of a class split, in the order the paper reports them.
CLASS_PROBES = ("common", "ood_one", "ood_all")


@dataclass
class PairData(RealisedFractions):
    unit: Unit
    split: splits.Split
    train: object  # reprsim.data Dataset (inputs, labels, meta)
    test: object
    label: str
    #: every task fraction of the unit's design (class splits): fixes the probe sets and the
    #: attack's label space across the sweep
    design_fractions: tuple[float, ...] = ()

    # ---- training -------------------------------------------------------------------------
    def _labels(self, dataset):
        return dataset.labels if self.split.kind == "attribute" else dataset.labels[self.label]

    def train_set(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """Model ``side``'s training inputs (n, ...) and remapped int64 labels (n,)."""
        idx = self.split.indices(side)
        return self.train.inputs[idx], self.split.train_labels(self._labels(self.train), side)

    def num_classes(self, side: str) -> int:
        return self.split.n_classes(side)

    def test_ids(self, side: str) -> np.ndarray:
        """Model ``side``'s training id of every test example (−1 for classes it never saw)."""
        return self.split.map_labels(self._labels(self.test), side)

    def eval_set(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """Test inputs of the classes model ``side`` trains on, with its label ids (for accuracy)."""
        ids = self.test_ids(side)
        keep = ids >= 0
        return self.test.inputs[keep], ids[keep]

    # ---- probes and attacks ---------------------------------------------------------------
    @property
    def class_split(self) -> bool:
        return self.split.kind in ("task", "combined")

    def probe_indices(self) -> list[tuple[str, str, np.ndarray]]:
        """``(probe_set, probe_role, test indices)``: the whole test set for data / attribute
        overlap; for class splits ``common`` / ``ood_one`` / ``ood_all`` (their class composition
        changes with the fraction) and ``common_fixed`` / ``ood_one_fixed`` (classes that are
        shared, resp. seen by one model only, at every fraction of the design); task splits also
        get the whole test set (``test``, role ``id``: every class of the source, a composition
        that no fraction changes)."""
        whole = ("test", "id", np.arange(len(self.test.inputs), dtype=np.int64))
        if not self.class_split:
            return [whole]
        test_labels = self.test.labels[self.label]
        subsets = splits.probe_subsets(self.split, test_labels)
        out = [(name, name, np.asarray(subsets[name], dtype=np.int64)) for name in CLASS_PROBES]
        for name, classes in self.fixed_classes().items():
            out.append((name, name, np.flatnonzero(np.isin(test_labels, classes)).astype(np.int64)))
        return out + [whole] if self.split.kind == "task" else out

    def fixed_classes(self) -> dict[str, list[int]]:
        """:func:`reprsim.data.splits.fixed_probe_classes` of this unit's design and split seed."""
        fractions = self.design_fractions or (self.split.requested_task_fraction,)
        return splits.fixed_probe_classes(
            self.train.labels[self.label], fractions, mode=self.split.mode or "constrained", seed=self.split.seed
        )

    def attack_classes(self) -> int:
        """Size k of the fixed attack label space of a class split: the classes shared at the smallest
        fraction of the design with at least two shared classes (ids 0..k−1 in both models wherever
        all of them are shared); 0 when no fraction shares two classes."""
        for fraction in sorted(f for f in (self.design_fractions or (self.split.requested_task_fraction,)) if f > 0):
            shared = splits.fixed_probe_classes(
                self.train.labels[self.label], [fraction], mode=self.split.mode or "constrained", seed=self.split.seed
            )
            if len(shared["common_fixed"]) >= 2:
                return len(shared["common_fixed"])
        return 0

    def attack_set(self) -> tuple[np.ndarray, np.ndarray, int | None]:
        """Inputs, labels and number of shared classes for transfer attacks.

        Transfer needs one label space, the same at every fraction of the sweep: for class splits
        the fixed attack classes (:meth:`attack_classes`; empty where they are not all shared, so
        white-box and transfer success never move with the label space), every class for data
        overlap, identical tasks for attribute overlap. Returns empty arrays when the two models
        share no such label space.
        """
        ids_a, ids_b = self.test_ids("a"), self.test_ids("b")
        if self.class_split:
            k = self.attack_classes()
            if k < 2 or len(self.split.common_classes) < k:
                return self.test.inputs[:0], ids_a[:0], k
            keep = (ids_a >= 0) & (ids_a < k)
            return self.test.inputs[keep], ids_a[keep], k
        if self.split.kind == "attribute" and tuple(self.split.a_attributes) != tuple(self.split.b_attributes):
            return self.test.inputs[:0], ids_a[:0], None
        keep = (ids_a >= 0) & (ids_a == ids_b)
        return self.test.inputs[keep], ids_a[keep], None

    @property
    def attribute_pair(self) -> str | None:
        if self.split.kind != "attribute":
            return None
        return "+".join(self.split.a_attributes) + " vs " + "+".join(self.split.b_attributes)


def _split_for(unit: Unit, train, seed: int) -> splits.Split:
    labels = train.labels[unit.source.label]
    kind, mode = unit.overlap_kind, unit.mode
    if kind == "data":
        return splits.data_overlap_split(labels, unit.data_fraction, mode=mode, seed=seed)
    if kind == "task":
        return splits.task_overlap_split(
            labels, unit.task_fraction, mode=mode, seed=seed, images=unit.images or "shared"
        )
    if kind == "combined":
        return splits.combined_split(labels, unit.data_fraction, unit.task_fraction, mode=mode, seed=seed)
    if kind == "factorial":
        (task,), (other,) = unit.attributes
        return splits.factorial_split(
            train.labels,
            task,
            other,
            shared_images=unit.data_fraction == 1.0,
            same_task=unit.task_fraction == 1.0,
            n=len(labels) // 2,
            seed=seed,
        )
    if kind == "attribute":
        task_a, task_b = unit.attributes
        # Constrained mode: like the other kinds, each model trains on half the examples, so set
        # size does not differ between overlap kinds.
        n = len(labels) // 2 if mode == "constrained" else None
        return splits.attribute_task_split(train.labels, list(task_a), list(task_b), n=n, seed=seed)
    raise ValueError(f"unknown overlap kind {kind!r}")


def make_pair_data(
    unit: Unit, train, test, seed: int, cache_dir: Path | None, design_fractions: tuple[float, ...] = ()
) -> PairData:
    """The unit's split (cached as ``cache_dir/splits/<hash>.rsv``) wrapped in a :class:`PairData`."""
    if cache_dir is None:
        split = _split_for(unit, train, seed)
    else:
        from reprsim.experiments.weights import cached_split

        key = content_hash({"unit": unit.key(), "n": len(train.inputs)})
        split = cached_split(key, cache_dir, lambda: _split_for(unit, train, seed))
    return PairData(unit, split, train, test, unit.source.label, tuple(design_fractions))
