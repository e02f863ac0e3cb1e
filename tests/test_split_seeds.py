"""Every split function honours its seed, and its documented invariants hold at every seed.

One parametrised property test over all the seeded split functions of ``reprsim.data.splits``
(plus the chat world's ``make_chat_split``, which builds on them):

* the same seed gives the identical split (its *content*: index sets, class lists, fractions);
* different seeds give different splits, on inputs where a different result is possible;
* the documented sizes and realised fractions hold, recomputed here from the index sets.

Splits are compared by content, never with ``Split.__eq__``: that also compares the stored
``seed`` field, so two splits made with different seeds would differ even if the function
ignored its seed entirely.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from reprsim.chat import ChatWorld
from reprsim.chat.split import make_chat_split
from reprsim.data.splits import (
    Split,
    attribute_task_split,
    chunk_split,
    combined_split,
    corpus_split,
    data_overlap_split,
    factorial_split,
    fixed_probe_classes,
    task_overlap_split,
)

pytestmark = pytest.mark.filterwarnings("ignore::reprsim.data.splits.OverlapRoundingWarning")

SEEDS = (0, 1, 2, 3, 17)

# 12 classes of unequal size (9 .. 31 examples), in shuffled order
_rng = np.random.default_rng(123)
LABELS = _rng.permutation(np.repeat(np.arange(12), [9, 14, 20, 31, 12, 17, 25, 10, 22, 16, 28, 19]))
# 10 classes of 16 examples each (set sizes then depend on neither fraction in constrained mode)
EQUAL = _rng.permutation(np.repeat(np.arange(10), 16))
ATTRS = {"shape": _rng.integers(0, 3, 400), "digit": _rng.integers(0, 4, 400), "color": _rng.integers(0, 2, 400)}
WORLD = ChatWorld(seed=0, n_families=12, n_forbidden=2, n_entities=6)


def content(s: Any) -> Any:
    """What a split *is*, without its ``seed`` field."""
    if isinstance(s, Split):
        return (
            s.kind,
            tuple(s.a_indices.tolist()),
            tuple(s.b_indices.tolist()),
            tuple(s.shared_indices.tolist()),
            tuple(s.a_classes),
            tuple(s.b_classes),
            s.realised_data_fraction,
            s.realised_task_fraction,
        )
    if hasattr(s, "split"):  # ChatSplit
        return content(s.split), tuple(s.families_a), tuple(s.families_b)
    return tuple((k, tuple(v)) for k, v in sorted(s.items()))  # fixed_probe_classes


def per_model(n: int, fraction: float, mode: str) -> int:
    """Constrained: ⌊n/2⌋; unconstrained: the largest N with 2N − round(f·N) ≤ n (written here by scanning)."""
    if mode == "constrained":
        return n // 2
    return max(m for m in range(n + 1) if 2 * m - round(fraction * m) <= n)


def by_class(labels: np.ndarray, idx: np.ndarray) -> dict[int, set[int]]:
    return {int(c): set(idx[labels[idx] == c].tolist()) for c in np.unique(labels[idx])}


def check_index_sets(s: Split) -> tuple[set[int], set[int], set[int]]:
    a, b, sh = s.a_indices, s.b_indices, s.shared_indices
    for arr in (a, b, sh):
        assert arr.dtype == np.int64 and np.all(np.diff(arr) > 0), "indices must be sorted and unique"
    A, B, S = set(a.tolist()), set(b.tolist()), set(sh.tolist())
    assert S == A & B, "shared_indices must be exactly A ∩ B"
    if len(a):
        assert s.realised_data_fraction == pytest.approx(len(S) / len(A), abs=1e-12)
    return A, B, S


# ------------------------------------------------------------------ documented invariants, per function
def inv_data(s: Split, labels: np.ndarray, f: float, mode: str) -> None:
    check_index_sets(s)
    classes = sorted(int(c) for c in np.unique(labels))
    assert s.a_classes == s.b_classes == classes and s.realised_task_fraction == 1.0
    a_c, b_c, s_c = by_class(labels, s.a_indices), by_class(labels, s.b_indices), by_class(labels, s.shared_indices)
    for c in classes:
        n_c = int((labels == c).sum())
        want = per_model(n_c, f, mode)
        assert len(a_c.get(c, ())) == len(b_c.get(c, ())) == want, (c, n_c)
        assert len(s_c.get(c, ())) == round(f * want), c


def inv_task(s: Split, labels: np.ndarray, f: float, mode: str) -> None:
    A, B, _ = check_index_sets(s)
    K = per_model(len(np.unique(labels)), f, mode)
    k = round(f * K)
    assert len(s.a_classes) == len(s.b_classes) == K
    assert s.a_classes[:k] == s.b_classes[:k], "common classes first, in the same order for both models"
    assert set(s.a_classes) & set(s.b_classes) == set(s.a_classes[:k])
    assert A == set(np.flatnonzero(np.isin(labels, s.a_classes)).tolist()), "A holds every example of its classes"
    assert B == set(np.flatnonzero(np.isin(labels, s.b_classes)).tolist())
    assert s.realised_task_fraction == pytest.approx(k / K, abs=1e-12)


def inv_combined(s: Split, labels: np.ndarray, d: float, t: float, mode: str) -> None:
    check_index_sets(s)
    K = per_model(len(np.unique(labels)), t, mode)
    k = round(t * K)
    assert len(s.a_classes) == len(s.b_classes) == K and s.a_classes[:k] == s.b_classes[:k]
    common = set(s.a_classes[:k])
    assert set(s.a_classes) & set(s.b_classes) == common
    a_c, b_c, s_c = by_class(labels, s.a_indices), by_class(labels, s.b_indices), by_class(labels, s.shared_indices)
    assert set(a_c) == set(s.a_classes) and set(b_c) == set(s.b_classes)
    for c in s.a_classes + s.b_classes:
        n_c = int((labels == c).sum())
        if c in common:
            want = per_model(n_c, d, mode)
            assert len(a_c[c]) == len(b_c[c]) == want and len(s_c.get(c, ())) == round(d * want), c
        else:
            own = a_c.get(c) or b_c.get(c)
            assert len(own) == (n_c // 2 if mode == "constrained" else n_c), c
            assert c not in s_c
    assert s.realised_task_fraction == pytest.approx(k / K, abs=1e-12)


def inv_attribute(s: Split, n: int, task_a: tuple[str, ...], task_b: tuple[str, ...]) -> None:
    A, B, S = check_index_sets(s)
    assert len(A) == n and A == B == S and s.realised_data_fraction == 1.0
    assert s.realised_task_fraction == len(set(task_a) & set(task_b)) / max(len(task_a), len(task_b))
    for task, classes in ((task_a, s.a_classes), (task_b, s.b_classes)):
        tuples = sorted({tuple(int(ATTRS[t][i]) for t in task) for i in s.a_indices})
        assert classes == tuples, "class ids = sorted distinct attribute tuples of the selected rows"


def inv_factorial(cells: dict[tuple[bool, bool], Split], n: int) -> None:
    first = cells[True, True].a_indices
    for (shared, same), s in cells.items():
        A, B, _ = check_index_sets(s)
        assert len(A) == len(B) == n
        assert np.array_equal(s.a_indices, first), "model A's images are the same in all four cells"
        assert (A == B) if shared else not (A & B)
        assert s.realised_data_fraction == float(shared) and s.realised_task_fraction == float(same)
        assert s.b_attributes == (("shape",) if same else ("digit",))


def inv_chunk(s: Split, n_tokens: int, f: float, n_chunks: int, block: int) -> None:
    A, B, S = check_index_sets(s)
    per = n_chunks // 2
    length = max(block, n_tokens // n_chunks)
    assert s.info["chunk_len"] == length
    assert len(A) == len(B) == per and len(S) == round(f * per)
    assert max(A | B) < n_tokens // length and min(A | B) >= 0
    assert s.realised_data_fraction == pytest.approx(round(f * per) / per, abs=1e-12)


def inv_corpus(s: Split, n_domains: int, f: float, per: int) -> None:
    A, B, S = check_index_sets(s)
    k = round(per * f)
    assert len(s.a_classes) == len(s.b_classes) == per and s.a_classes[:k] == s.b_classes[:k]
    assert A == set(s.a_classes) and B == set(s.b_classes) and S == set(s.a_classes[:k])
    assert max(A | B) < n_domains
    assert s.realised_data_fraction == s.realised_task_fraction == pytest.approx(k / per, abs=1e-12)


def inv_fixed(
    out: dict[str, list[int]], labels: np.ndarray, fractions: tuple[float, ...], mode: str, seed: int
) -> None:
    commons, ones = [], []
    for f in fractions:
        s = task_overlap_split(labels, f, mode, seed)
        common = set(s.a_classes) & set(s.b_classes)
        if f > 0:
            commons.append(common)
        if f < 1:
            ones.append(set(s.a_classes) ^ set(s.b_classes))
    assert out["common_fixed"] == sorted(set.intersection(*commons))
    assert out["ood_one_fixed"] == sorted(set.intersection(*ones))


def inv_chat(cs: Any, kind: str) -> None:
    A, B, S = check_index_sets(cs.split)
    forbidden = set(WORLD.forbidden_families)
    fam = np.array([r.family for r in cs.train_pool])
    if kind == "task":  # the forbidden families, with all their dialogues, go to both models
        forb = set(np.flatnonzero(np.isin(fam, sorted(forbidden))).tolist())
        assert forb <= S
        assert forbidden <= set(cs.families_a) & set(cs.families_b)
    else:
        assert cs.families_a == cs.families_b == list(range(WORLD.n_families))
    held = {r.words for r in cs.heldout_pool}
    assert not held & {cs.train_pool[i].words for i in A | B}, "held-out requests are in no training set"


# ------------------------------------------------------------------ the cases
@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[int], Any]
    check: Callable[[Any, int], None]
    varies: bool = True  # False: the input admits one split only (then every seed must give it)


def _factorial_cells(seed: int) -> dict[tuple[bool, bool], Split]:
    return {
        (sh, same): factorial_split(ATTRS, "shape", "digit", shared_images=sh, same_task=same, n=120, seed=seed)
        for sh in (True, False)
        for same in (True, False)
    }


CASES: list[Case] = []
for _mode in ("constrained", "unconstrained"):
    for _f in (0.0, 0.3, 0.5, 1.0):
        CASES.append(
            Case(
                f"data-{_mode}-{_f}",
                lambda s, f=_f, m=_mode: data_overlap_split(LABELS, f, m, s),
                lambda out, s, f=_f, m=_mode: inv_data(out, LABELS, f, m),
                varies=not (_mode == "unconstrained" and _f == 1.0),
            )
        )  # both get every example
    for _f in (0.0, 0.4, 1.0):
        CASES.append(
            Case(
                f"task-{_mode}-{_f}",
                lambda s, f=_f, m=_mode: task_overlap_split(LABELS, f, m, s),
                lambda out, s, f=_f, m=_mode: inv_task(out, LABELS, f, m),
            )
        )
    # (d, t) = (0.5, 1.0) unconstrained: every class is common, so only the seeded within-class split
    # and the class order can move with the seed
    for _d, _t in ((0.0, 0.4), (0.5, 0.5), (1.0, 0.2), (0.5, 1.0)):
        CASES.append(
            Case(
                f"combined-{_mode}-{_d}-{_t}",
                lambda s, d=_d, t=_t, m=_mode: combined_split(LABELS, d, t, m, s),
                lambda out, s, d=_d, t=_t, m=_mode: inv_combined(out, LABELS, d, t, m),
            )
        )
    CASES.append(
        Case(
            f"fixed_probe_classes-{_mode}",
            lambda s, m=_mode: fixed_probe_classes(LABELS, (0.2, 0.4, 0.8), m, s),
            lambda out, s, m=_mode: inv_fixed(out, LABELS, (0.2, 0.4, 0.8), m, s),
        )
    )
for _ta, _tb in (
    (("shape",), ("digit",)),
    (("shape", "digit"), ("shape", "color")),
    (("shape", "digit", "color"), ("shape", "digit", "color")),
):
    CASES.append(
        Case(
            f"attribute-{'+'.join(_ta)}-{'+'.join(_tb)}",
            lambda s, a=_ta, b=_tb: attribute_task_split(ATTRS, a, b, n=150, seed=s),
            lambda out, s, a=_ta, b=_tb: inv_attribute(out, 150, a, b),
        )
    )
CASES.append(Case("factorial", _factorial_cells, lambda out, s: inv_factorial(out, 120)))
for _f in (0.0, 0.6, 1.0):
    CASES.append(
        Case(
            f"chunk-{_f}",
            lambda s, f=_f: chunk_split(10_000, f, n_chunks=40, seed=s, block_size=32),
            lambda out, s, f=_f: inv_chunk(out, 10_000, f, 40, 32),
        )
    )
for _f in (0.0, 1 / 3, 2 / 3, 1.0):
    CASES.append(
        Case(
            f"corpus-{_f:.2f}",
            lambda s, f=_f: corpus_split(12, f, per_model=5, seed=s),
            lambda out, s, f=_f: inv_corpus(out, 12, f, 5),
        )
    )
for _kind, _f in (("data", 0.5), ("task", 0.4)):
    CASES.append(
        Case(
            f"chat-{_kind}-{_f}",
            lambda s, k=_kind, f=_f: make_chat_split(WORLD, k, f, s, n_train_per_family=12, n_heldout_per_family=4),
            lambda out, s, k=_kind: inv_chat(out, k),
        )
    )


def _content(out: Any) -> Any:
    if isinstance(out, dict) and out and isinstance(next(iter(out.values())), Split):  # factorial cells
        return tuple((key, content(v)) for key, v in sorted(out.items()))
    return content(out)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_seed_is_honoured_and_invariants_hold(case: Case) -> None:
    outs = {s: case.make(s) for s in SEEDS}
    for s, out in outs.items():
        assert _content(case.make(s)) == _content(out), f"seed {s} does not reproduce its split"
        case.check(out, s)
    distinct = {_content(o) for o in outs.values()}
    want = len(SEEDS) if case.varies else 1
    assert len(distinct) == want, f"{len(SEEDS)} seeds gave {len(distinct)} different splits, expected {want}"


def test_constrained_set_sizes_do_not_move_with_the_fractions() -> None:
    """Documented for combined_split (and data/task splits): constrained sizes depend on no fraction."""
    for seed in (0, 5):
        comb = {
            len(combined_split(EQUAL, d, t, "constrained", seed).a_indices)
            for d in (0.0, 0.3, 1.0)
            for t in (0.0, 0.4, 1.0)
        }
        data = {len(data_overlap_split(EQUAL, f, "constrained", seed).a_indices) for f in (0.0, 0.5, 1.0)}
        task = {len(task_overlap_split(EQUAL, f, "constrained", seed).a_indices) for f in (0.0, 0.6, 1.0)}
        assert comb == {5 * 8} and data == {10 * 8} and task == {5 * 16}, (comb, data, task)
    # extremes: (1, 1) identical sets, t = 0 disjoint whatever d
    s = combined_split(EQUAL, 1.0, 1.0, "constrained", 3)
    assert np.array_equal(s.a_indices, s.b_indices)
    assert not set(combined_split(EQUAL, 1.0, 0.0, "constrained", 3).shared_indices.tolist())


def test_fixed_probe_classes_are_the_roles_common_to_every_fraction() -> None:
    """The fixed sets are non-trivial on these inputs, so the property test above is not vacuous."""
    out = fixed_probe_classes(LABELS, (0.2, 0.4, 0.8), seed=1)
    assert out["common_fixed"] and out["ood_one_fixed"]
    assert fixed_probe_classes(LABELS, (0.0,), seed=1)["common_fixed"] == []
    assert fixed_probe_classes(LABELS, (1.0,), seed=1)["ood_one_fixed"] == []


@pytest.mark.parametrize("mode", ["constrained", "unconstrained"])
def test_combined_within_class_choice_moves_with_the_seed(mode: str) -> None:
    """A class that has the same role (common, or exclusive to A) under two seeds must still get a
    different seeded choice of its examples: the seed reaches the within-class split, not only the
    class choice."""
    splits = {s: combined_split(LABELS, 0.5, 0.5, mode, s) for s in range(8)}

    def roles(sp: Split) -> dict[str, set[int]]:
        common = set(sp.a_classes) & set(sp.b_classes)
        return {"common": common, "a_only": set(sp.a_classes) - common}

    compared = 0
    for (s1, sp1), (s2, sp2) in itertools.combinations(splits.items(), 2):
        r1, r2 = roles(sp1), roles(sp2)
        for role in ("common", "a_only"):
            if role == "a_only" and mode == "unconstrained":
                continue  # an exclusive class gives all its examples: nothing to choose
            for c in r1[role] & r2[role]:
                e1, e2 = by_class(LABELS, sp1.a_indices)[c], by_class(LABELS, sp2.a_indices)[c]
                assert e1 != e2, f"class {c} ({role}) gets the same examples under seeds {s1} and {s2}"
                compared += 1
    assert compared >= 20
