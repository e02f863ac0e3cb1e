"""Controlled-overlap splits: two training sets with an exact, documented overlap.

Pure functions of a label array (or a size, or a list of domains) and a seed; the rules follow the
paper (arXiv 2505.13899, code ``data_splitting/data_splitting.py``), see ``PAPER.md`` §1:

* data overlap ("horizontal"): per class, both sets get N_c examples, ``round(f·N_c)`` identical;
* task overlap ("vertical"): each set gets K classes, ``round(f·K)`` common, all examples of a class
  (``images="shared"``: task + data overlap, the paper's); or, with ``images="disjoint"`` (pure task
  overlap), each common class split into two disjoint halves, one per model;
* combined: a task split whose common classes carry a data overlap;
* attribute tasks: the same inputs, tasks sharing a subset of label attributes (task-only overlap);
* chunk split (text data overlap) and corpus split (text task overlap).

``round`` is Python's (round half to even), as in the paper's code. The realised overlap is
reported on the returned :class:`Split`; when it differs from the request by more than half a
percent an :class:`OverlapRoundingWarning` says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from itertools import combinations

import numpy as np

from reprsim.data.split_types import Split

__all__ = [
    "Split",
    "OverlapRoundingWarning",
    "data_overlap_split",
    "task_overlap_split",
    "combined_split",
    "factorial_split",
    "fixed_probe_classes",
    "classes_too_small_to_halve",
    "TASK_IMAGES",
    "attribute_task_split",
    "colorshapes_task_levels",
    "colorshapes_level_pairs",
    "chunk_split",
    "corpus_split",
    "probe_subsets",
]

MODES = ("constrained", "unconstrained")
#: How a task split treats the images of a shared class: both models train on all of them
#: (``shared``: task + data overlap) or on disjoint halves (``disjoint``: pure task overlap).
TASK_IMAGES = ("shared", "disjoint")
ROUNDING_TOLERANCE = 0.005


class OverlapRoundingWarning(UserWarning):
    """The realised overlap differs from the requested one because counts are integers."""


# ---------------------------------------------------------------------------- checks
def _check_fraction(fraction: float, name: str = "fraction") -> float:
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in [0, 1], got {fraction!r}") from None
    if not np.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1] (0 = disjoint, 1 = identical), got {fraction!r}")
    return value


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def _check_labels(labels: object) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(
            f"labels must be a 1-D array of integer class ids, got shape {arr.shape}; "
            "for several label columns use attribute_task_split"
        )
    if arr.size == 0:
        raise ValueError("labels is empty: a split needs at least one labelled example")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        raise ValueError(
            f"labels must be integer class ids, got dtype {arr.dtype}; "
            "map class names to ids first (e.g. np.unique(names, return_inverse=True)[1])"
        )
    return arr.astype(np.int64)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _warn_rounding(kind: str, requested: float, realised: float) -> None:
    if abs(requested - realised) > ROUNDING_TOLERANCE:
        warnings.warn(
            f"{kind} overlap: requested {requested:.4f}, realised {realised:.4f} because "
            "counts are integers; Split.realised_* holds the exact value",
            OverlapRoundingWarning,
            stacklevel=3,
        )


def _per_model_count(n: int, fraction: float, mode: str) -> int:
    """Constrained: ⌊n/2⌋. Unconstrained: the largest N with 2N − round(f·N) ≤ n."""
    if mode == "constrained":
        return n // 2
    best = 0
    for cand in range(n + 1):  # linear scan as in the paper (n is a class size or a class count)
        if 2 * cand - round(fraction * cand) <= n:
            best = cand
    return best


def _sorted(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(parts)).astype(np.int64)


# ---------------------------------------------------------------------------- class-based splits
def _data_overlap_indices(
    labels: np.ndarray, classes: np.ndarray, fraction: float, mode: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a_parts, b_parts, s_parts = [], [], []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_per = _per_model_count(len(idx), fraction, mode)
        if n_per == 0:
            need = (
                "at least 2 examples per class"
                if mode == "constrained"
                else "at least 2 examples per class (or 1 with fraction > 0.5)"
            )
            raise ValueError(
                f"class {int(c)} has {len(idx)} example(s); a data-overlap split needs "
                f"{need}: drop the class or add examples"
            )
        k = round(fraction * n_per)
        shared = idx[:k]
        a_parts += [shared, idx[k:n_per]]
        b_parts += [shared, idx[n_per : 2 * n_per - k]]
        s_parts.append(shared)
    return _sorted(a_parts), _sorted(b_parts), _sorted(s_parts)


def data_overlap_split(
    labels: Sequence[int] | np.ndarray, fraction: float, mode: str = "constrained", seed: int = 0
) -> Split:
    """Dataset overlap: both sets see every class; a fraction of the examples is identical.

    Per class c (n_c examples, shuffled with ``seed``): N_c examples per set — constrained:
    ``⌊n_c/2⌋`` (set size independent of the fraction), unconstrained: the largest N_c with
    ``2·N_c − round(f·N_c) ≤ n_c``. The first ``round(f·N_c)`` are shared, the next ones go to A
    only, the next to B only.

    Returns
    -------
    Split with ``kind="data"``; ``a_classes == b_classes`` = the sorted classes (training ids are
    the sorted order), ``realised_task_fraction = 1``.
    """
    labels = _check_labels(labels)
    fraction, mode, seed = _check_fraction(fraction), _check_mode(mode), _check_seed(seed)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    a, b, shared = _data_overlap_indices(labels, classes, fraction, mode, rng)
    realised = len(shared) / len(a)
    _warn_rounding("data", fraction, realised)
    cls = [int(c) for c in classes]
    return Split(
        "data",
        a,
        b,
        shared,
        list(cls),
        list(cls),
        realised,
        1.0,
        seed,
        requested_data_fraction=fraction,
        requested_task_fraction=None,
        mode=mode,
        n_total=len(labels),
    )


def _choose_classes(
    classes: np.ndarray, fraction: float, mode: str, rng: np.random.Generator, what: str = "classes"
) -> tuple[list[int], list[int], list[int], int]:
    n_classes = len(classes)
    per_model = _per_model_count(n_classes, fraction, mode)
    if per_model == 0:
        raise ValueError(
            f"only {n_classes} {what}: a task-overlap split needs at least 2 "
            f"(each model gets ⌊n/2⌋ in constrained mode); use a source with more {what}"
        )
    k = round(fraction * per_model)
    order = [int(c) for c in rng.permutation(classes)]
    common = order[:k]
    a_only = order[k:per_model]
    b_only = order[per_model : 2 * per_model - k]
    return common, a_only, b_only, per_model


def classes_too_small_to_halve(labels: Sequence[int] | np.ndarray) -> dict[int, int]:
    """``{class: number of examples}`` for the classes of ``labels`` with fewer than 2 examples:
    those that cannot be cut into two non-empty disjoint halves (``images="disjoint"``)."""
    classes, counts = np.unique(_check_labels(labels), return_counts=True)
    return {int(c): int(n) for c, n in zip(classes, counts) if n < 2}


def task_overlap_split(
    labels: Sequence[int] | np.ndarray,
    fraction: float,
    mode: str = "constrained",
    seed: int = 0,
    *,
    images: str = "shared",
) -> Split:
    """Task overlap: each set gets K classes; ``round(f·K)`` are common.

    Constrained: ``K = ⌊C/2⌋`` (C classes in ``labels``); unconstrained: the largest K with
    ``2K − round(f·K) ≤ C``. The class list is shuffled with ``seed``; the first k are common, the
    next K − k go to A only, the next K − k to B only. Training ids (paper convention): common
    classes 0..k−1 in the same order for both models, exclusive classes k..K−1.

    ``images="shared"`` (the paper's vertical split): a class brings all of its examples, so the
    common classes' examples are in both sets (task + data overlap; ``realised_data_fraction``
    grows with the fraction). ``images="disjoint"`` (pure task overlap): the split of
    :func:`combined_split` at ``data_fraction=0`` — the same seeded class order; each class
    shuffled by the same generator after it (common classes, then A's, then B's, each in class
    order); a common class gives A its first ``⌊n_c/2⌋`` examples and B the next ``⌊n_c/2⌋``, an
    exclusive class gives its model ``⌊n_c/2⌋`` (unconstrained: all n_c). No example is shared at
    any fraction; constrained, every set holds ``⌊n_c/2⌋`` per class (set sizes do not move with the
    fraction when classes are equal in size) and A's set is the same at every fraction of a seed.

    Returns
    -------
    Split with ``kind="task"``; ``a_classes``/``b_classes`` in training-id order,
    ``realised_task_fraction = k / K``, ``realised_data_fraction = |A ∩ B| / |A|`` (0 for disjoint
    images, recorded as ``info["images"] = "disjoint"``; see :attr:`Split.task_images`).
    Use :func:`probe_subsets` to get the ``common`` / ``ood_one`` / ``ood_all`` test subsets.
    """
    if images not in TASK_IMAGES:
        raise ValueError(f"images must be one of {TASK_IMAGES}, got {images!r}")
    labels = _check_labels(labels)
    fraction, mode, seed = _check_fraction(fraction), _check_mode(mode), _check_seed(seed)
    if images == "disjoint":
        return _disjoint_task_split(labels, fraction, mode, seed)
    rng = np.random.default_rng(seed)
    common, a_only, b_only, per_model = _choose_classes(np.unique(labels), fraction, mode, rng)
    a = np.flatnonzero(np.isin(labels, common + a_only)).astype(np.int64)
    b = np.flatnonzero(np.isin(labels, common + b_only)).astype(np.int64)
    shared = np.flatnonzero(np.isin(labels, common)).astype(np.int64)
    realised_task = len(common) / per_model
    _warn_rounding("task", fraction, realised_task)
    return Split(
        "task",
        a,
        b,
        shared,
        common + a_only,
        common + b_only,
        len(shared) / len(a),
        realised_task,
        seed,
        requested_data_fraction=None,
        requested_task_fraction=fraction,
        mode=mode,
        n_total=len(labels),
    )


def _disjoint_task_split(labels: np.ndarray, fraction: float, mode: str, seed: int) -> Split:
    """:func:`task_overlap_split` with ``images="disjoint"`` (arguments already checked): the
    indices of :func:`combined_split` at ``data_fraction=0``, recorded as a task split."""
    small = classes_too_small_to_halve(labels)
    if small:
        raise ValueError(
            f"images='disjoint' needs at least 2 examples in every class (one half per model); "
            f"class(es) {small} (class: examples) have fewer: use images='shared', add examples "
            "or drop those classes"
        )
    pure = combined_split(labels, 0.0, fraction, mode=mode, seed=seed)
    return replace(pure, kind="task", requested_data_fraction=0.0, info={"images": "disjoint"})


def combined_split(
    labels: Sequence[int] | np.ndarray,
    data_fraction: float,
    task_fraction: float,
    mode: str = "constrained",
    seed: int = 0,
) -> Split:
    """Task overlap whose common classes also carry a data overlap (the 2-D data × task grid).

    Classes are chosen as in :func:`task_overlap_split`. Each common class is split as in
    :func:`data_overlap_split` (N_c per model, ``round(data_fraction·N_c)`` shared). An exclusive
    class gives its model N_c examples too (constrained: ``⌊n_c/2⌋``, so the set size depends on
    neither fraction; unconstrained: all n_c). ``data_fraction=1, task_fraction=1`` makes the two
    sets identical; ``task_fraction=0`` makes them disjoint whatever ``data_fraction``.

    Returns
    -------
    Split with ``kind="combined"``, class lists in training-id order.
    """
    labels = _check_labels(labels)
    data_fraction = _check_fraction(data_fraction, "data_fraction")
    task_fraction = _check_fraction(task_fraction, "task_fraction")
    mode, seed = _check_mode(mode), _check_seed(seed)
    rng = np.random.default_rng(seed)
    common, a_only, b_only, per_model = _choose_classes(np.unique(labels), task_fraction, mode, rng)
    a_c, b_c, shared = _data_overlap_indices(labels, np.array(common, dtype=np.int64), data_fraction, mode, rng)
    a_parts, b_parts = [a_c], [b_c]
    for own, parts in ((a_only, a_parts), (b_only, b_parts)):
        for c in own:
            idx = np.flatnonzero(labels == c)
            rng.shuffle(idx)
            take = len(idx) // 2 if mode == "constrained" else len(idx)
            if take == 0:
                raise ValueError(
                    f"class {c} has {len(idx)} example(s); combined splits need at least 2 "
                    "per class in constrained mode: drop the class or add examples"
                )
            parts.append(idx[:take])
    a, b = _sorted(a_parts), _sorted(b_parts)
    realised_task = len(common) / per_model
    realised_data = len(shared) / len(a)
    _warn_rounding("task", task_fraction, realised_task)
    if common:
        n_common_a = len(a_c)
        _warn_rounding("data (within common classes)", data_fraction, len(shared) / n_common_a)
    return Split(
        "combined",
        a,
        b,
        shared,
        common + a_only,
        common + b_only,
        realised_data,
        realised_task,
        seed,
        requested_data_fraction=data_fraction,
        requested_task_fraction=task_fraction,
        mode=mode,
        n_total=len(labels),
    )


# ---------------------------------------------------------------------------- attribute tasks
def attribute_task_split(
    attributes: Mapping[str, Sequence[int] | np.ndarray],
    task_a: Sequence[str],
    task_b: Sequence[str],
    n: int | None = None,
    seed: int = 0,
) -> Split:
    """Task-only overlap on multi-attribute data: same inputs, tasks sharing a subset of attributes.

    Model A's label is the combination of the attribute columns ``task_a`` (e.g. ``("shape",
    "digit")``), model B's of ``task_b``. A combined label is collapsed to a contiguous id: the
    index of its attribute tuple among the sorted distinct tuples present (the paper sorts the
    joined class names the same way). Both models train on the same examples: all of them, or a
    seeded subsample of ``n``.

    Returns
    -------
    Split with ``kind="attribute"``, ``a_indices == b_indices == shared_indices``,
    ``a_classes``/``b_classes`` = attribute tuples in id order, ``realised_data_fraction = 1`` and
    ``realised_task_fraction = |attrs_a ∩ attrs_b| / max(|attrs_a|, |attrs_b|)``
    (0, 0.5, 1 for the paper's three ColorShapeDigit levels).
    """
    if not isinstance(attributes, Mapping) or not attributes:
        raise TypeError(
            "attributes must be a non-empty mapping column name -> integer array "
            "(e.g. dataset.labels of the colorshapes source)"
        )
    seed = _check_seed(seed)
    task_a, task_b = tuple(task_a), tuple(task_b)
    for name, task in (("task_a", task_a), ("task_b", task_b)):
        if not task:
            raise ValueError(f"{name} is empty: name at least one attribute column")
        unknown = [t for t in task if t not in attributes]
        if unknown:
            raise ValueError(f"{name} names unknown attribute(s) {unknown}; available: {sorted(attributes)}")
        if len(set(task)) != len(task):
            raise ValueError(f"{name} repeats an attribute: {task}")
    cols = {k: _check_labels(attributes[k]) for k in set(task_a) | set(task_b)}
    sizes = {len(v) for v in cols.values()}
    if len(sizes) != 1:
        raise ValueError(f"attribute columns have different lengths {sorted(sizes)}; they must label the same examples")
    n_total = sizes.pop()
    if n is None:
        idx = np.arange(n_total, dtype=np.int64)
    else:
        if not 1 <= int(n) <= n_total:
            raise ValueError(f"n must be in [1, {n_total}] (the number of examples), got {n}")
        idx = np.sort(np.random.default_rng(seed).choice(n_total, size=int(n), replace=False)).astype(np.int64)

    def classes_of(task: tuple[str, ...]) -> list[tuple[int, ...]]:
        rows = np.stack([cols[t][idx] for t in task], axis=1)
        return [tuple(int(v) for v in r) for r in np.unique(rows, axis=0)]

    shared_attrs = len(set(task_a) & set(task_b))
    realised_task = shared_attrs / max(len(task_a), len(task_b))
    return Split(
        "attribute",
        idx,
        idx.copy(),
        idx.copy(),
        classes_of(task_a),
        classes_of(task_b),
        1.0,
        realised_task,
        seed,
        requested_data_fraction=1.0,
        requested_task_fraction=realised_task,
        mode=None,
        a_attributes=task_a,
        b_attributes=task_b,
        n_total=n_total,
    )


def factorial_split(
    attributes: Mapping[str, Sequence[int] | np.ndarray],
    task: str,
    other_task: str,
    *,
    shared_images: bool,
    same_task: bool,
    n: int,
    seed: int = 0,
) -> Split:
    """One cell of the 2 × 2 factorial design on identical-input attribute tasks.

    Model A trains on ``n`` seeded images (set I1) to predict attribute ``task``. Model B trains on
    I1 (``shared_images``) or on ``n`` other images (I2, disjoint from I1) to predict ``task``
    (``same_task``) or ``other_task``. The permutation that draws I1 and I2 depends only on
    ``seed``, so at one seed model A's data is identical in all four cells, and both training sets
    have ``n`` images in every cell (asserted).

    Returns
    -------
    Split with ``kind="attribute"`` (labels are attribute columns), class lists = every value of
    the attribute in ``attributes`` (stable ids across cells), ``realised_data_fraction`` 1 or 0
    and ``realised_task_fraction`` 1 or 0.
    """
    if not isinstance(attributes, Mapping) or not attributes:
        raise TypeError("attributes must be a mapping column name -> integer array (dataset.labels of colorshapes)")
    for name, column in (("task", task), ("other_task", other_task)):
        if column not in attributes:
            raise ValueError(f"{name} {column!r} is not an attribute column; available: {sorted(attributes)}")
    if task == other_task:
        raise ValueError(f"task and other_task are both {task!r}; the factorial design needs two different tasks")
    seed = _check_seed(seed)
    cols = {k: _check_labels(attributes[k]) for k in (task, other_task)}
    n_total = len(cols[task])
    if not 1 <= int(n) <= n_total // 2:
        raise ValueError(
            f"n must be in [1, {n_total // 2}] so that two disjoint image sets of n exist "
            f"among {n_total} examples, got {n}"
        )
    perm = np.random.default_rng(seed).permutation(n_total)
    first, second = np.sort(perm[:n]).astype(np.int64), np.sort(perm[n : 2 * n]).astype(np.int64)
    b_idx = first.copy() if shared_images else second
    b_task = task if same_task else other_task
    assert len(first) == len(b_idx) == n  # equal training-set sizes in every cell
    classes = {k: [(int(v),) for v in np.unique(cols[k])] for k in (task, other_task)}
    shared = first.copy() if shared_images else np.zeros(0, dtype=np.int64)
    return Split(
        "attribute",
        first,
        b_idx,
        shared,
        classes[task],
        classes[b_task],
        float(shared_images),
        float(same_task),
        seed,
        requested_data_fraction=float(shared_images),
        requested_task_fraction=float(same_task),
        mode="constrained",
        a_attributes=(task,),
        b_attributes=(b_task,),
        n_total=n_total,
    )


def fixed_probe_classes(
    classes: Sequence[int] | np.ndarray, fractions: Sequence[float], mode: str = "constrained", seed: int = 0
) -> dict[str, list[int]]:
    """Classes whose role is the same at every fraction of a task-overlap sweep (one seed).

    :func:`task_overlap_split` draws its class order from ``seed`` alone, so the splits of one seed
    at several fractions are nested. Returns ``{"common_fixed": classes shared at every fraction
    > 0, "ood_one_fixed": classes seen by exactly one model at every fraction < 1}`` (sorted;
    empty when no fraction is > 0, resp. < 1): probe sets whose class composition does not move
    with the fraction, unlike ``common`` / ``ood_one``.
    """
    classes = np.unique(_check_labels(classes))
    common_sets, one_sets = [], []
    for fraction in fractions:
        common, a_only, b_only, _ = _choose_classes(
            classes, _check_fraction(fraction), _check_mode(mode), np.random.default_rng(_check_seed(seed))
        )
        if fraction > 0:
            common_sets.append(set(common))
        if fraction < 1:
            one_sets.append(set(a_only) | set(b_only))
    return {
        "common_fixed": sorted(set.intersection(*common_sets)) if common_sets else [],
        "ood_one_fixed": sorted(set.intersection(*one_sets)) if one_sets else [],
    }


def colorshapes_task_levels(
    attributes: Sequence[str] = ("shape", "digit", "color"),
) -> dict[float, list[tuple[tuple[str, ...], tuple[str, ...]]]]:
    """The paper's three ColorShapeDigit partitions as (task_a, task_b) attribute tuples.

    ``attributes`` names the three attribute columns (x, y, z); the default is the paper's.

    Returns
    -------
    dict overlap level -> list of pairs: 0.0: x vs y (shape vs digit); 0.5: the three pairs of
    two-attribute tasks sharing one attribute (``itertools.combinations`` of x+y, x+z, y+z);
    1.0: the full x×y×z task for both models.
    """
    if len(attributes) != 3 or len(set(attributes)) != 3:
        raise ValueError(f"give three distinct attribute names, got {tuple(attributes)}")
    x, y, z = attributes
    two = [(x, y), (x, z), (y, z)]
    full = (x, y, z)
    return {0.0: [((x,), (y,))], 0.5: list(combinations(two, 2)), 1.0: [(full, full)]}


def colorshapes_level_pairs() -> list[tuple[float, tuple[str, ...], tuple[str, ...]]]:
    """Flat list of ``(level, task_a, task_b)`` over :func:`colorshapes_task_levels`."""
    return [(lvl, a, b) for lvl, pairs in colorshapes_task_levels().items() for a, b in pairs]


# ---------------------------------------------------------------------------- text splits
def chunk_split(n_tokens: int, fraction: float, n_chunks: int = 80, seed: int = 0, block_size: int = 1) -> Split:
    """Text data overlap: the token stream cut into chunks, half of them per model.

    Chunk length ``L = max(block_size, n_tokens // n_chunks)``; each model gets ``n_chunks // 2``
    chunks, ``round(f · n_chunks/2)`` of them shared (the paper: 80 chunks, 40 per model; its code
    truncates with ``int`` where this uses ``round``). Candidate chunks are shuffled with ``seed``.

    Returns
    -------
    Split with ``kind="chunk"`` whose indices are chunk ids; ``info["chunk_len"]`` is L, and
    :func:`reprsim.data.splits.chunk_bounds` gives token ranges.
    """
    fraction, seed = _check_fraction(fraction), _check_seed(seed)
    if int(n_chunks) < 2:
        raise ValueError(f"n_chunks must be >= 2 (half go to each model), got {n_chunks}")
    if int(n_tokens) < int(n_chunks) or int(n_tokens) <= 0:
        raise ValueError(f"n_tokens={n_tokens} is smaller than n_chunks={n_chunks}: use fewer chunks or more text")
    chunk_len = max(int(block_size), int(n_tokens) // int(n_chunks))
    available = int(n_tokens) // chunk_len
    per_model = int(n_chunks) // 2
    k = round(fraction * per_model)
    if 2 * per_model - k > available:
        raise ValueError(
            f"only {available} chunks of {chunk_len} tokens fit in {n_tokens} tokens but "
            f"{2 * per_model - k} are needed; lower block_size or n_chunks"
        )
    order = np.random.default_rng(seed).permutation(available).astype(np.int64)
    shared = order[:k]
    a = np.sort(np.concatenate([shared, order[k:per_model]]))
    b = np.sort(np.concatenate([shared, order[per_model : 2 * per_model - k]]))
    realised = k / per_model
    _warn_rounding("chunk", fraction, realised)
    return Split(
        "chunk",
        a,
        b,
        np.sort(shared),
        [],
        [],
        realised,
        1.0,
        seed,
        requested_data_fraction=fraction,
        n_total=available,
        info={"chunk_len": chunk_len, "n_tokens": int(n_tokens), "n_chunks": int(n_chunks)},
    )


def chunk_bounds(split: Split, model: str) -> np.ndarray:
    """Token ranges of one model's chunks: int64 array of shape (n_chunks_model, 2) = [start, stop)."""
    if split.kind != "chunk":
        raise ValueError(f"chunk_bounds needs a chunk split, got kind {split.kind!r}")
    length = int(split.info["chunk_len"])
    start = split.indices(model) * length
    return np.stack([start, start + length], axis=1)


def corpus_split(domains: Sequence[str] | int, fraction: float, per_model: int = 3, seed: int = 0) -> Split:
    """Text task overlap: each model trains on ``per_model`` of the domains, ``round(per_model·f)`` shared.

    The domain list is shuffled with ``seed``; the first shared ones are common, then each model's
    exclusive ones (paper: 6 corpora, 3 per model, f ∈ {0, 1/3, 2/3, 1}).

    Returns
    -------
    Split with ``kind="corpus"``: indices and classes are domain ids (positions in ``domains``) in
    training order, common first; ``info["domains"]`` holds the names.
    """
    names = [f"domain{i}" for i in range(domains)] if isinstance(domains, (int, np.integer)) else list(domains)
    fraction, seed = _check_fraction(fraction), _check_seed(seed)
    if len(set(names)) != len(names):
        raise ValueError(f"domains must be distinct, got {names}")
    per_model = int(per_model)
    k = round(per_model * fraction)
    needed = 2 * per_model - k
    if per_model < 1 or needed > len(names):
        largest = max(0.0, (2 * per_model - len(names)) / per_model) if per_model else 0.0
        raise ValueError(
            f"{len(names)} domains are too few for {per_model} per model at fraction "
            f"{fraction} (needs {needed}); use more domains, fewer per model, or a "
            f"fraction of at least {largest:.3f}"
        )
    order = [int(i) for i in np.random.default_rng(seed).permutation(len(names))]
    common, a_only, b_only = order[:k], order[k:per_model], order[per_model:needed]
    a_cls, b_cls = common + a_only, common + b_only
    realised = k / per_model
    _warn_rounding("corpus", fraction, realised)
    return Split(
        "corpus",
        np.sort(np.array(a_cls, dtype=np.int64)),
        np.sort(np.array(b_cls, dtype=np.int64)),
        np.sort(np.array(common, dtype=np.int64)),
        a_cls,
        b_cls,
        realised,
        realised,
        seed,
        requested_task_fraction=fraction,
        n_total=len(names),
        info={"domains": names},
    )


# ---------------------------------------------------------------------------- probe subsets
def probe_subsets(split: Split, test_labels: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
    """Test-set subsets the paper measures task-overlap pairs on.

    Returns
    -------
    dict with int64 index arrays into ``test_labels``: ``common`` (classes both models train on),
    ``ood_one`` (classes seen by exactly one model), ``ood_all`` (classes seen by neither). Empty
    arrays where a subset is empty (e.g. ``common`` at task overlap 0).
    """
    if split.kind == "attribute":
        raise ValueError(
            "attribute splits use the same classes' inputs for both models; probe them on "
            "the whole test set (or on another source for out-of-distribution)"
        )
    if split.kind == "chunk":
        raise ValueError("chunk splits have no classes; probe on held-out text instead")
    labels = _check_labels(test_labels)
    a, b = set(split.a_classes), set(split.b_classes)
    common = sorted(a & b)
    one = sorted(a ^ b)
    return {
        "common": np.flatnonzero(np.isin(labels, common)).astype(np.int64),
        "ood_one": np.flatnonzero(np.isin(labels, one)).astype(np.int64),
        "ood_all": np.flatnonzero(~np.isin(labels, sorted(a | b))).astype(np.int64),
    }
