"""Overlap splits of the chat world's dialogue pool (data overlap or task overlap between A and B).

The world's training pool holds ``n_train_per_family`` distinct requests per family; a split
picks model A's and model B's dialogues from it with :mod:`reprsim.data.splits`:

* ``"data"``: :func:`~reprsim.data.splits.data_overlap_split` with the family id as the label, so
  both models see every family and a fraction of the identical dialogues is shared per family;
* ``"task"``: :func:`~reprsim.data.splits.task_overlap_split` over the *benign* families (a
  fraction of the benign families is common). The forbidden families, with all their dialogues,
  always go to both models: like two fine-tunes of one safety-tuned base model, both learn the
  same forbidden knowledge and refusal, so a suffix has a common target to transfer on.

A separate held-out pool (requests in no training set) is used for evaluation, probes and attacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reprsim.chat.world import ChatWorld, Request
from reprsim.data.split_types import RealisedFractions
from reprsim.data.splits import Split, data_overlap_split, task_overlap_split

__all__ = ["ChatSplit", "make_chat_split", "POOL_SEED"]

#: Seed of the world's request pools (the "data set"); the overlap split itself varies with the seed.
POOL_SEED = 0


@dataclass
class ChatSplit(RealisedFractions):
    """A split of the chat world: pools, the index split into the training pool, and family sets.

    Attributes:
        kind: ``"data"`` or ``"task"``; fraction: the requested overlap.
        split: :class:`reprsim.data.splits.Split` with indices into ``train_pool``.
        train_pool, heldout_pool: the world's training and held-out requests (family by family).
        families_a, families_b: sorted family ids each model trains on.
    """

    kind: str
    fraction: float
    split: Split
    train_pool: list[Request]
    heldout_pool: list[Request]
    families_a: list[int]
    families_b: list[int]

    @property
    def requests_a(self) -> list[Request]:
        """Model A's training requests."""
        return [self.train_pool[i] for i in self.split.a_indices]

    @property
    def requests_b(self) -> list[Request]:
        """Model B's training requests."""
        return [self.train_pool[i] for i in self.split.b_indices]


def make_chat_split(
    world: ChatWorld,
    overlap_kind: str,
    fraction: float,
    seed: int,
    *,
    n_train_per_family: int = 160,
    n_heldout_per_family: int = 40,
    mode: str = "constrained",
) -> ChatSplit:
    """Draw the world's pools (seed :data:`POOL_SEED`) and split the training pool.

    Returns a :class:`ChatSplit`. Raises ValueError for an unknown ``overlap_kind`` or a fraction
    outside [0, 1].
    """
    if overlap_kind not in ("data", "task"):
        raise ValueError(f"overlap_kind must be 'data' or 'task', got {overlap_kind!r}.")
    train_pool, heldout_pool = world.request_pools([n_train_per_family, n_heldout_per_family], seed=POOL_SEED)
    labels = np.array([r.family for r in train_pool], dtype=np.int64)
    if overlap_kind == "data":
        split = data_overlap_split(labels, fraction, mode, seed)
        fam = list(range(world.n_families))
        return ChatSplit("data", float(fraction), split, train_pool, heldout_pool, fam, list(fam))
    forbidden = world.forbidden_families
    is_forb = np.isin(labels, forbidden)
    forb_idx = np.flatnonzero(is_forb)
    ben_idx = np.flatnonzero(~is_forb)
    sub = task_overlap_split(labels[ben_idx], fraction, mode, seed)
    a = np.sort(np.concatenate([forb_idx, ben_idx[sub.a_indices]])).astype(np.int64)
    b = np.sort(np.concatenate([forb_idx, ben_idx[sub.b_indices]])).astype(np.int64)
    shared = np.sort(np.concatenate([forb_idx, ben_idx[sub.shared_indices]])).astype(np.int64)
    split = Split(
        "task",
        a,
        b,
        shared,
        list(forbidden) + list(sub.a_classes),
        list(forbidden) + list(sub.b_classes),
        len(shared) / len(a),
        sub.realised_task_fraction,
        seed,
        requested_data_fraction=None,
        requested_task_fraction=float(fraction),
        mode=mode,
        n_total=len(train_pool),
        info={"always_shared_families": list(forbidden), "task_fraction_over": "benign families"},
    )
    return ChatSplit(
        "task", float(fraction), split, train_pool, heldout_pool, sorted(split.a_classes), sorted(split.b_classes)
    )
