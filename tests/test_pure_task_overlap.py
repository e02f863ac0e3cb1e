"""Pure task overlap (``images: disjoint``), the paper's task + data overlap (``images: shared``), the
whole-test-set probe of task designs, and their unit ids. Every expected value is recomputed here
from the documented rule (the seeded class order ``np.random.default_rng(seed).permutation``, the
halves of each class's seeded shuffle), never taken from the code under test."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from reprsim.data.splits import task_overlap_split
from reprsim.errors import ConfigError
from reprsim.experiments.config import ModelSpec, SourceSpec, parse_config
from reprsim.experiments.grid import Unit, expand
from reprsim.experiments.pairs import make_pair_data

FRACTIONS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
N_CLASSES, PER_CLASS = 10, 7  # K = 5 classes per model; ⌊7/2⌋ = 3 images of each class per model


def equal_labels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(100 + seed).permutation(np.repeat(np.arange(N_CLASSES), PER_CLASS))


def by_hand_classes(seed: int, fraction: float, k_per_model: int = 5) -> tuple[list[int], list[int]]:
    """Model A's and B's classes in training-id order: the seeded class order, first k common."""
    order = [int(c) for c in np.random.default_rng(seed).permutation(N_CLASSES)]
    k = round(fraction * k_per_model)
    return order[:k_per_model], order[:k] + order[k_per_model : 2 * k_per_model - k]


# ---- the split ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 3])
def test_disjoint_images_share_no_image_at_any_fraction_and_keep_set_sizes(seed):
    labels = equal_labels(seed)
    a_sets = []
    for f in FRACTIONS:
        s = task_overlap_split(labels, f, seed=seed, images="disjoint")
        a_cls, b_cls = by_hand_classes(seed, f)
        assert (s.kind, s.task_images) == ("task", "disjoint")
        assert s.a_classes == a_cls and s.b_classes == b_cls
        assert len(np.intersect1d(s.a_indices, s.b_indices)) == 0 and len(s.shared_indices) == 0
        assert s.realised_data_fraction == 0.0
        assert s.realised_task_fraction == pytest.approx(round(5 * f) / 5)
        assert len(s.a_indices) == len(s.b_indices) == 5 * 3  # 5 classes × ⌊7/2⌋, at every fraction
        for side, classes in (("a", a_cls), ("b", b_cls)):
            counts = np.bincount(labels[s.indices(side)], minlength=N_CLASSES)
            assert counts[classes].tolist() == [3] * 5 and counts.sum() == 15
            # training ids: class classes[i] trains as id i
            assert (s.train_labels(labels, side) == [classes.index(c) for c in labels[s.indices(side)]]).all()
        assert "disjoint images" in s.describe()
        a_sets.append(s.a_indices)
    # model A's classes and images do not move with the fraction (it is trained once per seed)
    assert all(np.array_equal(a, a_sets[0]) for a in a_sets)


@pytest.mark.parametrize("mode", ["constrained", "unconstrained"])
def test_disjoint_halves_follow_the_documented_rule(mode):
    """Unequal classes (2..11 images). After the class order, the same generator shuffles each common
    class (A: first ⌊n_c/2⌋, B: the next ⌊n_c/2⌋), then each of A's and of B's exclusive classes
    (⌊n_c/2⌋ for their model; all n_c unconstrained), each list in training-id order."""
    labels = np.random.default_rng(7).permutation(np.repeat(np.arange(N_CLASSES), np.arange(2, 12)))
    for f in (0.0, 0.5, 1.0):
        s = task_overlap_split(labels, f, mode=mode, seed=5, images="disjoint")
        rng = np.random.default_rng(5)
        order = [int(c) for c in rng.permutation(N_CLASSES)]
        per_model = 5 if mode == "constrained" else max(n for n in range(11) if 2 * n - round(f * n) <= N_CLASSES)
        k = round(f * per_model)
        common, a_only, b_only = order[:k], order[k:per_model], order[per_model : 2 * per_model - k]
        want = {"a": set(), "b": set()}
        for c in common:
            idx = np.flatnonzero(labels == c)
            rng.shuffle(idx)
            half = len(idx) // 2
            want["a"] |= set(idx[:half].tolist())
            want["b"] |= set(idx[half : 2 * half].tolist())
        for side, own in (("a", a_only), ("b", b_only)):
            for c in own:
                idx = np.flatnonzero(labels == c)
                rng.shuffle(idx)
                want[side] |= set(idx[: len(idx) // 2 if mode == "constrained" else len(idx)].tolist())
        assert s.a_classes == common + a_only and s.b_classes == common + b_only
        assert set(s.a_indices.tolist()) == want["a"] and set(s.b_indices.tolist()) == want["b"]
        assert len(np.intersect1d(s.a_indices, s.b_indices)) == 0 and s.realised_data_fraction == 0.0


def test_shared_images_are_the_papers_vertical_split():
    """images='shared' (and the function's default) gives every image of a class to each model that
    trains on it: common classes' images are in both sets, realised data fraction k/K."""
    labels = equal_labels()
    for f in FRACTIONS:
        a_cls, b_cls = by_hand_classes(2, f)
        for s in (task_overlap_split(labels, f, seed=2, images="shared"), task_overlap_split(labels, f, seed=2)):
            assert s.task_images == "shared" and s.info == {} and s.a_classes == a_cls and s.b_classes == b_cls
            assert s.a_indices.tolist() == np.flatnonzero(np.isin(labels, a_cls)).tolist()
            assert s.b_indices.tolist() == np.flatnonzero(np.isin(labels, b_cls)).tolist()
            common = sorted(set(a_cls) & set(b_cls))
            assert s.shared_indices.tolist() == np.flatnonzero(np.isin(labels, common)).tolist()
            assert s.realised_data_fraction == pytest.approx(len(common) / 5)
            assert "task + data overlap" in s.describe()


def test_disjoint_split_refuses_a_class_that_cannot_be_halved():
    labels = np.concatenate([np.repeat(np.arange(6), 4), [6]])  # class 6 has a single image
    with pytest.raises(ValueError, match=r"class\(es\) \{6: 1\}.*images='shared'"):
        task_overlap_split(labels, 0.5, images="disjoint")
    task_overlap_split(labels, 0.5, images="shared")  # the paper's split takes it
    with pytest.raises(ValueError, match="images must be one of .*'sometimes'"):
        task_overlap_split(labels, 0.5, images="sometimes")


# ---- the pair: probes, fixed classes and attack label space -------------------------------------
def planted(labels: np.ndarray) -> SimpleNamespace:
    """A data set whose input i is the number i (so rows can be traced)."""
    return SimpleNamespace(inputs=np.arange(len(labels), dtype=np.float32)[:, None], labels={"label": labels})


def task_unit(fraction: float, images: str | None, seed: int = 0) -> Unit:
    return Unit(
        source=SourceSpec(name="colorshapes"),
        model=ModelSpec(name="mlp"),
        overlap_kind="task",
        data_fraction=None,
        task_fraction=fraction,
        seed=seed,
        mode="constrained",
        images=images,
    )


@pytest.mark.parametrize("images", ["disjoint", "shared"])
def test_probe_sets_fixed_classes_and_attack_space_follow_the_class_order(images):
    design = (0.0, 0.4, 0.8, 1.0)  # k = 0, 2, 4, 5 of K = 5
    train, test = planted(equal_labels()), planted(np.repeat(np.arange(N_CLASSES), 3))
    test_labels = test.labels["label"]
    order = [int(c) for c in np.random.default_rng(11).permutation(N_CLASSES)]
    # shared at every fraction > 0: the first round(0.4·5) = 2; seen by one model at every fraction < 1:
    # A's order[4] (exclusive up to k = 4) and B's order[5]
    fixed = {"common_fixed": sorted(order[:2]), "ood_one_fixed": sorted([order[4], order[5]])}
    for f in design:
        pair = make_pair_data(task_unit(f, images), train, test, seed=11, cache_dir=None, design_fractions=design)
        a_cls, b_cls = by_hand_classes(11, f)
        assert pair.split.task_images == images and pair.split.a_classes == a_cls
        assert pair.fixed_classes() == fixed
        groups = {
            "common": set(a_cls) & set(b_cls),
            "ood_one": set(a_cls) ^ set(b_cls),
            "ood_all": set(range(N_CLASSES)) - set(a_cls) - set(b_cls),
        } | fixed
        probes = {name: (role, idx) for name, role, idx in pair.probe_indices()}
        assert list(probes) == ["common", "ood_one", "ood_all", "common_fixed", "ood_one_fixed", "test"]
        for name, classes in groups.items():
            assert probes[name][0] == name
            assert probes[name][1].tolist() == np.flatnonzero(np.isin(test_labels, sorted(classes))).tolist()
        assert probes["test"][0] == "id" and probes["test"][1].tolist() == list(range(len(test_labels)))
        # the fixed attack label space: the 2 classes shared from fraction 0.4 on, ids 0 and 1 in both models
        assert pair.attack_classes() == 2
        x, y, k = pair.attack_set()
        if f == 0.0:
            assert len(y) == 0
        else:
            rows = np.flatnonzero(np.isin(test_labels, order[:2]))
            assert x[:, 0].tolist() == rows.tolist() and y.tolist() == [order.index(c) for c in test_labels[rows]]


def test_probe_sets_of_other_designs_are_unchanged():
    train, test = planted(equal_labels()), planted(np.repeat(np.arange(N_CLASSES), 3))
    data = Unit(
        source=SourceSpec(name="colorshapes"),
        model=ModelSpec(name="mlp"),
        overlap_kind="data",
        data_fraction=0.5,
        task_fraction=1.0,
        seed=0,
        mode="constrained",
    )
    assert [(n, r) for n, r, _ in make_pair_data(data, train, test, 0, None).probe_indices()] == [("test", "id")]
    combined = Unit(
        source=SourceSpec(name="colorshapes"),
        model=ModelSpec(name="mlp"),
        overlap_kind="combined",
        data_fraction=0.5,
        task_fraction=0.6,
        seed=0,
        mode="constrained",
    )
    names = [n for n, _, _ in make_pair_data(combined, train, test, 0, None, (0.6,)).probe_indices()]
    assert names == ["common", "ood_one", "ood_all", "common_fixed", "ood_one_fixed"]


# ---- unit ids and cache keys --------------------------------------------------------------------
def id_config(**task) -> dict:
    return {
        "name": "ids",
        "sources": [{"name": "colorshapes", "label": "digit_color", "options": {"n": 400, "seed": 0, "cache": False}}],
        "models": [{"name": "mlp", "options": {"hidden": [32]}}],
        "train": {"epochs": 1},
        "overlap": {
            "designs": [
                {"kind": "data", "fractions": [0.5]},
                {"kind": "task", "fractions": [0.5], **task},
                {"kind": "combined", "data_fractions": [0.5], "task_fractions": [0.5]},
            ]
        },
        "seeds": [3],
    }


# unit ids computed with the code before `images` existed (task units then always shared images)
OLD_IDS = {
    "data": "colorshapes-mlp-data-d0.5-t1-s3-cf5bee60",
    "task": "colorshapes-mlp-task-dna-t0.5-s3-19604c80",
    "combined": "colorshapes-mlp-combined-d0.5-t0.5-s3-259c4262",
}


def test_shared_image_and_other_units_keep_their_ids_disjoint_ones_get_new_ones():
    shared = {u.overlap_kind: u for u in expand(parse_config(id_config(images="shared")))}
    assert {kind: u.unit_id for kind, u in shared.items()} == OLD_IDS
    disjoint = {u.overlap_kind: u for u in expand(parse_config(id_config()))}  # the default
    assert disjoint["task"].images == "disjoint" and disjoint["task"].key()["images"] == "disjoint"
    assert disjoint["task"].unit_id.startswith("colorshapes-mlp-task-dna-t0.5-s3-")
    assert disjoint["task"].unit_id != OLD_IDS["task"]
    assert disjoint["data"].unit_id == OLD_IDS["data"] and disjoint["combined"].unit_id == OLD_IDS["combined"]
    assert "images" not in shared["task"].key() and "images" not in shared["data"].key()
    assert [u.describe()["task_images"] for u in shared.values()] == [None, "shared", None]
    assert disjoint["task"].describe()["task_images"] == "disjoint"
    # both designs in one config: two different units, each with its own id
    both = id_config(images="shared")
    both["overlap"]["designs"].append({"kind": "task", "fractions": [0.5]})
    ids = [u.unit_id for u in expand(parse_config(both)) if u.overlap_kind == "task"]
    assert ids == [OLD_IDS["task"], disjoint["task"].unit_id]


def test_text_task_units_take_no_images_and_keep_their_ids():
    config = parse_config(
        {
            "name": "ids",
            "sources": [
                {
                    "name": "text",
                    "options": {"domains": ["shakespeare", "bible", "python_code", "fortunes"], "per_model": 2},
                }
            ],
            "models": [{"name": "gpt", "options": {"n_layer": 1}}],
            "train": {"max_steps": 2},
            "overlap": {"designs": [{"kind": "task", "fractions": [0.5]}]},
            "seeds": [3],
        }
    )
    (unit,) = expand(config)
    assert unit.images is None and unit.describe()["task_images"] is None
    assert unit.unit_id == "text-gpt-task-dna-t0.5-s3-ef42e185"  # computed before `images` existed


def test_config_rejects_an_unknown_images_value():
    with pytest.raises(ConfigError, match=r"overlap\.designs\.1\.task\.images"):
        parse_config(id_config(images="half"))


# ---- preflight ----------------------------------------------------------------------------------
def small_config(n: int, label: str = "digit_color", **task) -> dict:
    return {
        "name": "pf",
        "sources": [
            {
                "name": "colorshapes",
                "label": label,
                "options": {"n": n, "seed": 0, "image_size": 12, "cache": False},
                "test_options": {"n": 300},
            }
        ],
        "models": [{"name": "mlp", "options": {"hidden": [16]}}],
        "train": {"epochs": 1},
        "probe_size": 50,
        "measures": {"names": ["cka"], "params": {}},
        "overlap": {
            "designs": [{"kind": "data", "fractions": [0.0]}, {"kind": "task", "fractions": [0.0, 1.0], **task}]
        },
        "seeds": [0],
    }


def test_preflight_names_the_design_and_class_that_cannot_be_halved():
    from reprsim.data import load
    from reprsim.experiments.preflight import preflight, preflight_problems

    labels = load("colorshapes", split="train", n=150, seed=0, image_size=12, cache=False).labels["digit_color"]
    counts = np.bincount(labels, minlength=100)
    first_small = int(np.flatnonzero(counts == 1)[0])  # the first class with a single image (some have none)
    config = parse_config(small_config(150))
    with pytest.raises(ConfigError) as err:
        preflight(config, expand(config))
    lines = [line for line in str(err.value).splitlines() if "images" in line]
    assert len(lines) == 1, str(err.value)
    assert "overlap.designs.1.images" in lines[0] and f"class {first_small} has 1" in lines[0]
    assert "images: shared" in lines[0] and "'colorshapes'" in lines[0]
    # the paper's split has no such requirement
    shared = parse_config(small_config(150, images="shared"))
    assert not [p for p in preflight_problems(shared, expand(shared)) if "images" in p]


def test_preflight_k_check_covers_the_test_probe():
    from reprsim.experiments.preflight import preflight_problems

    data = small_config(400, label="color")
    data["sources"][0]["test_options"] = {"n": 40}  # the whole test set (40) is below k, though k < probe_size
    data["measures"] = {"names": ["cka", "mutual_knn"], "params": {"k": 45}}
    config = parse_config(data)
    task_units = [u for u in expand(config) if u.overlap_kind == "task"]
    problems = [p for p in preflight_problems(config, task_units) if "measures.params.k=45" in p]
    assert len(problems) == 2 and all("'test': 40" in p for p in problems)  # both task units
