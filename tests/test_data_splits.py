"""Overlap splits: exact counts, disjointness, balance, realised fractions, determinism, errors, I/O."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reprsim.data.splits import (
    OverlapRoundingWarning,
    Split,
    attribute_task_split,
    chunk_bounds,
    chunk_split,
    colorshapes_level_pairs,
    colorshapes_task_levels,
    combined_split,
    corpus_split,
    data_overlap_split,
    probe_subsets,
    task_overlap_split,
)

pytestmark = pytest.mark.filterwarnings("ignore::reprsim.data.splits.OverlapRoundingWarning")

labels_st = st.lists(st.integers(0, 6), min_size=2, max_size=120).map(np.array)
fraction_st = st.floats(0, 1, allow_nan=False)
mode_st = st.sampled_from(["constrained", "unconstrained"])


def _counts(labels, idx):
    return {int(c): int((labels[idx] == c).sum()) for c in np.unique(labels)}


@settings(max_examples=120, deadline=None)
@given(labels=labels_st, f=fraction_st, mode=mode_st, seed=st.integers(0, 2**31))
def test_data_overlap_properties(labels, f, mode, seed):
    classes, n_c = np.unique(labels, return_counts=True)
    if mode == "constrained" and n_c.min() < 2 or n_c.min() < 1:
        with pytest.raises(ValueError, match="example"):
            data_overlap_split(labels, f, mode, seed)
        return
    try:
        s = data_overlap_split(labels, f, mode, seed)
    except ValueError:
        assert mode == "unconstrained" and n_c.min() < 2
        return
    a, b, sh = s.a_indices, s.b_indices, s.shared_indices
    assert len(np.unique(a)) == len(a) and len(np.unique(b)) == len(b)
    assert np.array_equal(np.intersect1d(a, b), sh)
    ca, cb, cs = _counts(labels, a), _counts(labels, b), _counts(labels, sh)
    for c, n in zip(classes, n_c):
        per = ca[int(c)]
        assert per == cb[int(c)]  # class balance: both sets the same per class
        if mode == "constrained":
            assert per == n // 2
        else:  # the largest N with 2N - round(fN) <= n
            assert 2 * per - round(f * per) <= n
            assert 2 * (per + 1) - round(f * (per + 1)) > n
        assert cs[int(c)] == round(f * per)  # exact shared count
        assert 2 * per - cs[int(c)] <= n
    assert s.realised_data_fraction == pytest.approx(len(sh) / len(a))
    assert s.a_classes == s.b_classes == [int(c) for c in classes]
    assert s == data_overlap_split(labels, f, mode, seed)


@settings(max_examples=120, deadline=None)
@given(
    labels=st.lists(st.integers(0, 11), min_size=4, max_size=150).map(np.array),
    f=fraction_st,
    mode=mode_st,
    seed=st.integers(0, 10**6),
)
def test_task_overlap_properties(labels, f, mode, seed):
    classes = np.unique(labels)
    if len(classes) < 2 and (mode == "constrained" or round(f) == 0):
        with pytest.raises(ValueError, match="at least 2"):
            task_overlap_split(labels, f, mode, seed)
        return
    s = task_overlap_split(labels, f, mode, seed)
    K = len(s.a_classes)
    assert K == len(s.b_classes)
    if mode == "constrained":
        assert K == len(classes) // 2
    k = round(f * K)
    assert s.a_classes[:k] == s.b_classes[:k]  # common first, same order
    assert not set(s.a_classes[k:]) & set(s.b_classes)  # exclusive parts disjoint
    assert s.realised_task_fraction == pytest.approx(k / K)
    assert np.array_equal(s.a_indices, np.flatnonzero(np.isin(labels, s.a_classes)))  # all examples
    assert np.array_equal(np.intersect1d(s.a_indices, s.b_indices), s.shared_indices)
    ya = s.train_labels(labels, "a")
    assert np.array_equal(ya, [s.a_classes.index(c) for c in labels[s.a_indices]])
    yb = s.train_labels(labels, "b")
    common = np.isin(labels[s.a_indices], s.a_classes[:k])
    assert (ya[common] < k).all() and (ya[~common] >= k).all() and yb.max(initial=0) < K
    subs = probe_subsets(s, labels)
    n_sets = sum(len(v) for v in subs.values())
    assert n_sets == len(labels)
    assert np.array_equal(subs["common"], s.shared_indices)


@settings(max_examples=80, deadline=None)
@given(
    labels=st.lists(st.integers(0, 7), min_size=20, max_size=150).map(np.array),
    fd=fraction_st,
    ft=fraction_st,
    seed=st.integers(0, 1000),
)
def test_combined_properties(labels, fd, ft, seed):
    classes, n_c = np.unique(labels, return_counts=True)
    try:
        s = combined_split(labels, fd, ft, seed=seed)
    except ValueError as exc:  # only when a class in use is too small, or too few classes
        assert len(classes) < 2 or (n_c.min() < 2 and "example" in str(exc))
        return
    k = round(ft * len(s.a_classes))
    ca, cb, cs = _counts(labels, s.a_indices), _counts(labels, s.b_indices), _counts(labels, s.shared_indices)
    for c, n in zip(classes, n_c):
        c = int(c)
        if c in s.a_classes[:k]:
            assert ca[c] == cb[c] == n // 2 and cs[c] == round(fd * (n // 2))
        elif c in s.a_classes:
            assert ca[c] == n // 2 and cb[c] == 0
        elif c in s.b_classes:
            assert cb[c] == n // 2 and ca[c] == 0
        else:
            assert ca[c] == cb[c] == 0
    assert np.array_equal(np.intersect1d(s.a_indices, s.b_indices), s.shared_indices)


def test_data_overlap_known_sizes_paper_cifar100():
    labels = np.repeat(np.arange(100), 500)  # CIFAR-100: 500 per class -> N = 250, 25k per model
    for f in (0.0, 0.1, 0.5, 1.0):
        s = data_overlap_split(labels, f, seed=3)
        assert len(s.a_indices) == len(s.b_indices) == 25_000
        assert len(s.shared_indices) == 100 * round(f * 250)
        assert s.realised_data_fraction == pytest.approx(f)
    s0 = data_overlap_split(labels, 0.0, seed=3)
    s1 = data_overlap_split(labels, 1.0, seed=3)
    assert not np.intersect1d(s0.a_indices, s0.b_indices).size
    assert np.array_equal(s1.a_indices, s1.b_indices)


def test_unconstrained_uses_more_data_at_high_overlap():
    labels = np.repeat(np.arange(3), 10)
    s = data_overlap_split(labels, 1.0, mode="unconstrained")
    assert len(s.a_indices) == 30 and np.array_equal(s.a_indices, s.b_indices)
    s = data_overlap_split(labels, 0.5, mode="unconstrained")  # 2N - round(N/2) <= 10 -> N = 7 (14-4)
    assert len(s.a_indices) == 21 and len(s.shared_indices) == 12


def test_task_paper_known_values_and_remap():
    labels = np.repeat(np.arange(100), 5)
    s = task_overlap_split(labels, 0.4, seed=1)  # K = 50, k = 20
    assert len(s.a_classes) == 50 and len(s.common_classes) == 20
    assert s.a_label_map[s.common_classes[3]] == s.b_label_map[s.common_classes[3]] == 3
    assert len(s.a_indices) == 250 and len(s.shared_indices) == 100
    assert s.realised_data_fraction == pytest.approx(0.4)
    subs = probe_subsets(s, labels)
    assert len(subs["common"]) == 100 and len(subs["ood_one"]) == 300 and len(subs["ood_all"]) == 100
    s0 = task_overlap_split(labels, 0.0, seed=1)
    assert probe_subsets(s0, labels)["common"].size == 0


def test_rounding_is_reported():
    labels = np.repeat(np.arange(10), 4)  # K = 5: 0.3 * 5 = 1.5 -> round half to even = 2 -> 0.4
    with pytest.warns(OverlapRoundingWarning, match="realised 0.4"):
        s = task_overlap_split(labels, 0.3, seed=0)
    assert s.realised_task_fraction == pytest.approx(0.4) and s.requested_task_fraction == 0.3
    assert "rounded" in s.describe()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task_overlap_split(labels, 0.4, seed=0)  # exact: no warning


def test_seeds():
    labels = np.repeat(np.arange(20), 30)
    a = data_overlap_split(labels, 0.3, seed=1)
    assert a == data_overlap_split(labels, 0.3, seed=1)
    assert not np.array_equal(a.a_indices, data_overlap_split(labels, 0.3, seed=2).a_indices)
    t = task_overlap_split(labels, 0.5, seed=1)
    assert t.a_classes != task_overlap_split(labels, 0.5, seed=2).a_classes


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(labels=np.zeros((3, 2), int)), "1-D"),
        (dict(labels=np.array([], int)), "empty"),
        (dict(labels=np.array([0.5, 1.0, 0.0, 1.0])), "integer"),
        (dict(labels=np.array(["a", "b", "a", "b"])), "integer"),
        (dict(fraction=1.5), r"\[0, 1\]"),
        (dict(fraction=-0.1), r"\[0, 1\]"),
        (dict(fraction=float("nan")), r"\[0, 1\]"),
        (dict(mode="loose"), "constrained"),
        (dict(labels=np.array([0, 0, 1])), "class 1 has 1 example"),
    ],
)
def test_errors(bad, match):
    kwargs = dict(labels=np.array([0, 0, 1, 1]), fraction=0.5, mode="constrained", seed=0) | bad
    with pytest.raises(ValueError, match=match):
        data_overlap_split(**kwargs)


def test_too_few_classes_message():
    with pytest.raises(ValueError, match="only 1 classes"):
        task_overlap_split(np.zeros(10, int), 0.5)
    with pytest.raises(ValueError, match="at least 0.333"):
        corpus_split(["a", "b", "c", "d", "e"], 0.0, per_model=3)


def test_attribute_levels_and_labels():
    rng = np.random.default_rng(0)
    attrs = {"shape": rng.integers(0, 8, 2000), "digit": rng.integers(0, 10, 2000), "color": rng.integers(0, 10, 2000)}
    levels = colorshapes_task_levels()
    assert levels[0.0] == [(("shape",), ("digit",))] and len(levels[0.5]) == 3 and len(colorshapes_level_pairs()) == 5
    for level, ta, tb in colorshapes_level_pairs():
        s = attribute_task_split(attrs, ta, tb, seed=1)
        assert s.realised_task_fraction == level
        assert np.array_equal(s.a_indices, s.b_indices) and len(s.a_indices) == 2000
    s = attribute_task_split(attrs, ("shape", "digit"), ("shape", "color"), n=500, seed=2)
    y = s.train_labels(attrs, "a")
    assert len(s.a_classes) == 80 and y.min() == 0 and y.max() == 79
    # collapsed id = rank of the attribute tuple in sorted order = 10*shape + digit when all 80 exist
    assert np.array_equal(y, attrs["shape"][s.a_indices] * 10 + attrs["digit"][s.a_indices])
    with pytest.raises(ValueError, match="unknown attribute"):
        attribute_task_split(attrs, ("size",), ("shape",))


def test_chunk_and_corpus():
    s = chunk_split(80_000, 0.6, seed=4)
    assert len(s.a_indices) == len(s.b_indices) == 40 and len(s.shared_indices) == 24
    assert s.info["chunk_len"] == 1000 and s.realised_data_fraction == pytest.approx(0.6)
    bounds = chunk_bounds(s, "a")
    assert bounds.shape == (40, 2) and (bounds[:, 1] - bounds[:, 0] == 1000).all() and bounds.max() <= 80_000
    domains = ["a", "b", "c", "d", "e", "f"]
    for f, k in ((0.0, 0), (0.33333, 1), (0.66666, 2), (1.0, 3)):
        c = corpus_split(domains, f, seed=5)
        assert len(c.common_classes) == k and len(c.a_classes) == len(c.b_classes) == 3
        sub = probe_subsets(c, np.arange(6))
        assert len(sub["common"]) == k and len(sub["ood_one"]) == 2 * (3 - k) and len(sub["ood_all"]) == k


@pytest.mark.parametrize(
    "make",
    [
        lambda: data_overlap_split(np.repeat(np.arange(5), 7), 0.3, seed=9),
        lambda: task_overlap_split(np.repeat(np.arange(10), 3), 0.4, mode="unconstrained", seed=9),
        lambda: combined_split(np.repeat(np.arange(10), 6), 0.5, 0.6, seed=9),
        lambda: attribute_task_split({"x": np.arange(30) % 3, "y": np.arange(30) % 5}, ("x",), ("x", "y"), seed=9),
        lambda: chunk_split(1000, 0.25, n_chunks=8, seed=9),
        lambda: corpus_split(["p", "q", "r", "s"], 0.5, per_model=2, seed=9),
    ],
)
def test_save_load_roundtrip(tmp_path, make):
    s = make()
    path = s.save(tmp_path / "split.npz")
    loaded = Split.load(path)
    assert loaded == s and loaded.a_label_map == s.a_label_map


def test_train_labels_rejects_foreign_labels():
    labels = np.repeat(np.arange(4), 5)
    s = task_overlap_split(labels, 0.5, seed=0)
    with pytest.raises(ValueError, match="do not match"):
        s.train_labels(labels + 10, "a")
