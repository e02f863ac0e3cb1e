"""Value oracles: every number of a tiny sweep's results table, recomputed by an independent path.

For each kind (image, text, chat) a tiny sweep runs through the real pipeline; then the test
reloads model A and model B from the model cache (the unit's status records their keys), takes
features with plain forward hooks written here, applies the documented preparation
(``metrics.prepare`` with the config's ``normalize`` / ``clip_quantile``) and calls
``metrics.compute`` — and requires the table's values to match. The consequence columns are
recomputed the same way: white-box success = the source's error on ``attack(source, x, y)``,
transfer success = the victim's error on the same adversarial inputs, for two different models.

Image probe inputs are rebuilt here from the data source and the documented seeded subsample;
text and chat probes come from the kind (their windows / prompts are tested on their own in
test_experiments_text.py and test_chat_*.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reprsim import metrics, models, storage
from reprsim.data import load
from reprsim.experiments import load_results, parse_config, run_experiment
from reprsim.experiments.composition import composition_of
from reprsim.experiments.grid import expand

RTOL, ATOL = 1e-5, 1e-6


# ---- the independent path ---------------------------------------------------------------------
def hooked_features(model: torch.nn.Module, inputs, layer: str, batch_size: int = 64) -> np.ndarray:
    """Features of ``layer`` by a plain forward hook: (N, C, H, W) averaged over space, (N, T, D) over T."""
    path = getattr(model, "reprsim_layers", {}).get(layer, layer)
    capture_input = path.endswith(":input")
    module = dict(model.named_modules())[path.removesuffix(":input")]
    out: list[np.ndarray] = []

    def hook(_module, args, output):
        t = args[0] if capture_input else output
        if t.dim() > 2:
            t = t.mean(dim=1) if t.dim() == 3 else t.flatten(2).mean(dim=2)
        out.append(t.detach().float().numpy())

    handle = module.register_forward_hook(hook)
    model.eval()
    try:
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(inputs))
            for s in range(0, len(x), batch_size):
                model(x[s : s + batch_size])
    finally:
        handle.remove()
    return np.concatenate(out)


def cached_weights(model: torch.nn.Module, cache: Path, key: str) -> torch.nn.Module:
    stored = storage.read_verified_state_dict(cache / "models" / f"{key}.rsv")
    assert stored is not None, f"model {key} is not in the cache"
    model.load_state_dict(stored[0])
    return model.eval()


def unit_models(run_dir: Path, unit_id: str) -> dict[str, str]:
    status = json.loads((run_dir / "units" / unit_id / "status.json").read_text())
    return {side: status["artifacts"][f"model_{side}"] for side in ("a", "b")}


def expected(config, xa: np.ndarray, xb: np.ndarray, measure: str) -> float:
    prep = config.measures.prepare
    pa = metrics.prepare(xa, normalize=prep.normalize, clip_quantile=prep.clip_quantile)
    pb = metrics.prepare(xb, normalize=prep.normalize, clip_quantile=prep.clip_quantile)
    params = {k: v for k, v in config.measures.params.items() if k in metrics.MEASURES[measure].params}
    return float(metrics.compute(measure, pa, pb, **params))


def check_rows(config, rows: pd.DataFrame, feats: dict[tuple[str, str], np.ndarray]) -> int:
    """Compare every row of one probe set with the oracle's value; returns how many were checked."""
    for row in rows.itertuples():
        want = expected(config, feats[row.layer_a, "a"], feats[row.layer_b, "b"], row.measure)
        assert row.value == pytest.approx(want, rel=RTOL, abs=ATOL), (row.unit_id, row.probe_set, row.measure)
    return len(rows)


def assert_models_differ(feats: dict[tuple[str, str], np.ndarray], layer: str) -> None:
    assert not np.allclose(feats[layer, "a"], feats[layer, "b"]), "A's and B's features are identical"


# ---- image -------------------------------------------------------------------------------------
#: task fractions of the image design: 1 shared class of 5 at 0.2, 3 at 0.6, 5 at 1 — so the fixed
#: attack classes are the 3 shared at 0.6 (no attack at 0.2), and at 1 the current fraction's
#: shared classes (5) differ from the fixed ones
TASK_FRACTIONS = [0.2, 0.6, 1.0]
IMAGE = {
    "name": "oracle-image",
    "sources": [{"name": "fashion_mnist", "options": {"per_class": 24, "seed": 0}}],
    "probes": [{"name": "mnist", "source": "mnist", "options": {"n": 50, "seed": 0}}],
    "probe_size": 50,
    "models": [{"name": "mlp", "options": {"hidden": [32, 16]}}],
    "train": {"epochs": 2, "batch_size": 32, "optimizer": "adamw", "lr": 0.003},
    "overlap": {
        "designs": [
            {"kind": "data", "fractions": [0.0, 1.0]},
            {"kind": "task", "fractions": TASK_FRACTIONS, "images": "shared"},
        ]
    },
    "seeds": [0],
    "layers": ["hidden.0", "penultimate"],
    "measures": {"names": ["cka", "mutual_knn", "cknna", "svcca", "procrustes_distance"], "params": {"k": 5}},
    "consequences": [{"attack_transfer": {"n": 40, "eps_data": 0.1, "eps_task": 0.1, "steps": 3}}],
}


def class_roles(n_classes: int, fraction: float, split_seed: int) -> tuple[list[int], list[int], list[int]]:
    """(common, A only, B only) classes of a constrained task split, from the documented rule: the
    classes in the order of ``default_rng(split_seed).permutation``, K = ⌊C/2⌋ per model, the first
    round(f·K) common, the next K − k A's, the next K − k B's (common classes get ids 0..k−1)."""
    order = [int(c) for c in np.random.default_rng(split_seed).permutation(np.arange(n_classes))]
    per_model = n_classes // 2
    k = round(fraction * per_model)
    return order[:k], order[k:per_model], order[per_model : 2 * per_model - k]


def fixed_classes_by_hand(n_classes: int, split_seed: int) -> dict[str, set[int]]:
    """Classes shared at every fraction > 0 (common_fixed), seen by one model at every fraction < 1
    (ood_one_fixed), for the design's TASK_FRACTIONS."""
    roles = {f: class_roles(n_classes, f, split_seed) for f in TASK_FRACTIONS}
    common = [set(c) for f, (c, _, _) in roles.items() if f > 0]
    one = [set(a) | set(b) for f, (_, a, b) in roles.items() if f < 1]
    return {"common_fixed": set.intersection(*common), "ood_one_fixed": set.intersection(*one)}


def attack_classes_by_hand(n_classes: int, split_seed: int) -> list[int]:
    """The fixed attack classes: the shared classes at the smallest fraction sharing two, in id order."""
    for f in sorted(f for f in TASK_FRACTIONS if f > 0):
        common, _, _ = class_roles(n_classes, f, split_seed)
        if len(common) >= 2:
            return common
    return []


def image_probe_inputs(config, unit) -> dict[str, np.ndarray]:
    """The unit's probe inputs rebuilt from the sources: the documented seeded subsample of each set;
    a task unit's class subsets from the seeded class order (never from the split functions)."""
    seeds = unit.seeds()
    opts = {k: v for k, v in unit.source.options.items() if k not in ("per_class", "n")}
    test = load(unit.source.name, split="test", **opts)

    def pick(n_total: int) -> np.ndarray:
        if config.probe_size >= n_total:
            return np.arange(n_total)
        return np.sort(np.random.default_rng(seeds["probe"]).choice(n_total, config.probe_size, replace=False))

    sets = {"test": test.inputs[pick(len(test.inputs))]}  # every unit: the whole test set
    if unit.overlap_kind == "task":
        assert unit.mode == "constrained"
        label = test.labels["label"]
        n_classes = len(np.unique(label))
        common, a_only, b_only = (set(c) for c in class_roles(n_classes, unit.task_fraction, seeds["split"]))
        seen = common | a_only | b_only
        groups = {"common": common, "ood_one": a_only | b_only, "ood_all": set(range(n_classes)) - seen}
        groups |= fixed_classes_by_hand(n_classes, seeds["split"])
        for name, classes in groups.items():
            idx = np.flatnonzero(np.isin(label, sorted(classes)))
            sets[name] = test.inputs[idx[pick(len(idx))]]
    mnist = load("mnist", split="test", n=50, seed=0).inputs
    sets["mnist"] = mnist[pick(len(mnist))]
    return sets


def image_model(config, unit, side: str, cache: Path, key: str, n_classes: int) -> torch.nn.Module:
    spec = config.models[0]
    model = models.build(spec.name, input_shape=(1, 28, 28), num_classes=n_classes, **spec.options)
    return cached_weights(model, cache, key)


def n_outputs(unit) -> int:
    """Classes each model trains on: all 10 (data overlap) or K = 5 (task overlap)."""
    return 10 if unit.overlap_kind == "data" else 5


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    pytest.importorskip("reprsim.data.images")
    from reprsim.data.images import fashion_mnist_available, mnist_available

    if not (fashion_mnist_available() and mnist_available()):
        pytest.skip("needs Fashion-MNIST and MNIST: run scripts/setup.sh")
    tmp = tmp_path_factory.mktemp("oracle-image")
    config = parse_config(IMAGE)
    run_experiment(config, tmp / "run", cache_dir=tmp / "cache", progress=False)
    return config, tmp / "run", tmp / "cache", load_results(tmp / "run")


def test_image_similarity_values_match_the_oracle(image_run):
    config, run_dir, cache, df = image_run
    checked = 0
    assert sorted(df[df.overlap_kind == "task"].task_fraction.unique()) == TASK_FRACTIONS
    for unit in expand(config):
        keys = unit_models(run_dir, unit.unit_id)
        trained = {side: image_model(config, unit, side, cache, keys[side], n_outputs(unit)) for side in "ab"}
        inputs_of = image_probe_inputs(config, unit)
        assert set(inputs_of) == set(df[df.unit_id == unit.unit_id].probe_set), unit.unit_id
        for probe, inputs in inputs_of.items():
            rows = df[(df.unit_id == unit.unit_id) & (df.probe_set == probe)]
            assert (rows["n_probe"] == len(inputs)).all(), (probe, rows["n_probe"].unique(), len(inputs))
            if len(inputs) == 0:
                assert rows["value"].isna().all()
                continue
            feats = {
                (layer, side): hooked_features(trained[side], inputs, layer) for layer in config.layers for side in "ab"
            }
            assert_models_differ(feats, "penultimate")
            checked += check_rows(config, rows, feats)
    assert checked == len(df.dropna(subset=["value"]))
    zero = df[(df.overlap_kind == "data") & (df.data_fraction == 0) & (df.measure == "cka")]
    assert (zero["value"] < 1 - 1e-3).all()
    # the fixed-composition sets keep their classes across the fractions (3 fractions, one seed)
    fixed = df[df.probe_set.isin(["common_fixed", "ood_one_fixed"])].groupby("probe_set").n_probe_classes.unique()
    assert {name: list(v) for name, v in fixed.items()} == {"common_fixed": [1], "ood_one_fixed": [4]}


class FirstK(torch.nn.Module):
    """The first k logits of a classifier (the shared label space of a task-overlap pair)."""

    def __init__(self, model: torch.nn.Module, k: int) -> None:
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, : self.k]


def attack_inputs_by_hand(unit, spec) -> tuple[np.ndarray, np.ndarray, int | None]:
    """The inputs, labels and label-space size the unit's attack must use (empty when none):
    data overlap, every test image; task overlap, the test images of the fixed attack classes with
    their shared ids, only where all of them are shared at the unit's fraction."""
    test = load("fashion_mnist", split="test", seed=0)
    label = test.labels["label"]
    if unit.overlap_kind == "data":
        x, y, k = test.inputs, label, None
    else:
        n_classes = len(np.unique(label))
        fixed = attack_classes_by_hand(n_classes, unit.seeds()["split"])
        common, _, _ = class_roles(n_classes, unit.task_fraction, unit.seeds()["split"])
        k = len(fixed)
        if not set(fixed) <= set(common):
            return test.inputs[:0], label[:0], k
        keep = np.isin(label, fixed)
        x, y = test.inputs[keep], np.array([fixed.index(c) for c in label[keep]])
    if len(x) > spec.n:
        idx = np.sort(np.random.default_rng(unit.seeds()["attack"]).choice(len(x), spec.n, replace=False))
        x, y = x[idx], y[idx]
    return x, y, k


def test_image_attack_columns_match_the_oracle(image_run):
    from reprsim.attacks.adversarial import make_attack

    config, run_dir, cache, df = image_run
    spec = config.consequences[0]
    directions_differ = []
    for unit in expand(config):
        keys = unit_models(run_dir, unit.unit_id)
        m = {side: image_model(config, unit, side, cache, keys[side], n_outputs(unit)) for side in "ab"}
        x, y, k = attack_inputs_by_hand(unit, spec)
        row = df[df.unit_id == unit.unit_id].iloc[0]
        if unit.overlap_kind == "task":
            assert row["attack_classes"] == k == 3, unit.unit_id
        if len(y) == 0:  # fraction 0.2: one shared class, the fixed attack classes are not all shared
            assert unit.task_fraction == 0.2
            assert np.isnan(row["whitebox_asr"]) and np.isnan(row["transfer_asr"])
            continue
        if k is not None:
            m = {side: FirstK(model, k) for side, model in m.items()}
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        eps = spec.eps_data if unit.overlap_kind == "data" else spec.eps_task
        attack = make_attack(spec.attack, eps=eps, steps=spec.steps, **spec.params)
        for source, victim, tag in (("a", "b", ""), ("b", "a", "_ba")):
            x_adv = attack(m[source], x, y)
            with torch.no_grad():
                source_wrong = (m[source](x_adv).argmax(1) != y).double().mean().item()
                victim_wrong = (m[victim](x_adv).argmax(1) != y).double().mean().item()
            assert row[f"whitebox_asr{tag}"] == pytest.approx(source_wrong, abs=1e-9), (unit.unit_id, tag)
            assert row[f"transfer_asr{tag}"] == pytest.approx(victim_wrong, abs=1e-9), (unit.unit_id, tag)
        assert row["attack_n"] == spec.n == len(y)
        # two different models: crafting on the victim would give other numbers in at least one direction
        swapped = (row["transfer_asr_ba"], row["whitebox_asr_ba"])
        directions_differ.append((row["whitebox_asr"], row["transfer_asr"]) != swapped)
    assert len(directions_differ) == 4 and all(directions_differ)  # data 0 and 1, task 0.6 and 1


# ---- text --------------------------------------------------------------------------------------
TEXT = {
    "name": "oracle-text",
    "sources": [
        {
            "name": "text",
            "options": {
                "domains": ["shakespeare", "bible", "python_code", "fortunes"],
                "max_bytes": 6000,
                "n_chunks": 8,
                "per_model": 2,
            },
        }
    ],
    "probe_size": 24,
    "models": [{"name": "gpt", "options": {"n_layer": 1, "n_head": 2, "n_embd": 16, "preset": None}}],
    "train": {
        "block_size": 16,
        "max_steps": 20,
        "eval_interval": 20,
        "eval_batches": 2,
        "batch_size": 8,
        "optimizer": "adamw",
        "lr": 0.003,
    },
    "overlap": {"designs": [{"kind": "data", "fractions": [0.0]}, {"kind": "task", "fractions": [0.5]}]},
    "seeds": [0],
    "layers": ["penultimate"],
    "measures": {"names": ["cka", "mutual_knn", "cknna"], "params": {"k": 5}},
}


def test_text_values_match_the_oracle(tmp_path):
    from reprsim.data.text import list_domains

    domains = TEXT["sources"][0]["options"]["domains"]
    if not set(domains) <= set(list_domains(available_only=True)):
        pytest.skip("needs the text domains: run scripts/setup.sh")
    config = parse_config(TEXT)
    run_experiment(config, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    df = load_results(tmp_path / "run")
    checked = 0
    for unit in expand(config):
        kind = composition_of(unit)
        keys = unit_models(tmp_path / "run", unit.unit_id)
        pair = kind.pair(config, unit, cache_dir=None)
        spec = config.models[0]
        trained = {
            side: cached_weights(
                models.build(spec.name, vocab_size=256, block_size=16, **spec.options), tmp_path / "cache", keys[side]
            )
            for side in "ab"
        }
        for probe in kind.probes(config, unit, pair):
            rows = df[(df.unit_id == unit.unit_id) & (df.probe_set == probe.name)]
            if len(probe) == 0:
                assert rows["value"].isna().all()
                continue
            feats = {
                ("penultimate", side): hooked_features(trained[side], probe.inputs, "penultimate") for side in "ab"
            }
            assert_models_differ(feats, "penultimate")
            checked += check_rows(config, rows, feats)
    assert checked == len(df.dropna(subset=["value"])) > 0
    assert (df.loc[df.measure == "cka", "value"].dropna() < 1 - 1e-3).all()


# ---- chat --------------------------------------------------------------------------------------
CHAT = {
    "name": "oracle-chat",
    "sources": [{"name": "chat", "options": {"seed": 0, "n_families": 6, "n_forbidden": 2, "n_entities": 4}}],
    "probe_size": 16,
    "models": [{"name": "gpt", "options": {"n_layer": 1, "n_head": 2, "n_embd": 16, "preset": None}}],
    "train": {
        "pretrain_steps": 30,
        "safety_steps": 20,
        "finetune_steps": 15,
        "batch_size": 16,
        "warmup_steps": 5,
        "n_train_per_family": 12,
        "n_heldout_per_family": 12,
        "base_n_per_family": 12,
        "noise_copies": 0,
    },
    "overlap": {"designs": [{"kind": "data", "fractions": [0.0]}, {"kind": "task", "fractions": [0.5]}]},
    "seeds": [0],
    "layers": ["penultimate"],
    "measures": {"names": ["cka", "mutual_knn"], "params": {"k": 3}},
    "consequences": [
        {
            "jailbreak_transfer": {
                "params": {
                    "n_requests": 2,
                    "n_eval": 6,
                    "suffix_len": 3,
                    "steps": 4,
                    "n_candidates": 4,
                    "target_len": 1,
                }
            }
        }
    ],
}


def test_chat_values_match_the_oracle(tmp_path):
    config = parse_config(CHAT)
    summary = run_experiment(config, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    assert set(summary.statuses.values()) == {"ok"}
    df = load_results(tmp_path / "run")
    checked = 0
    for unit in expand(config):
        kind = composition_of(unit)
        keys = unit_models(tmp_path / "run", unit.unit_id)
        pair = kind.pair(config, unit, cache_dir=None)
        spec = config.models[0]
        trained = {
            side: cached_weights(
                models.build(spec.name, vocab_size=pair.world.vocab_size, block_size=48, **spec.options),
                tmp_path / "cache",
                keys[side],
            )
            for side in "ab"
        }
        for probe in kind.probes(config, unit, pair):
            rows = df[(df.unit_id == unit.unit_id) & (df.probe_set == probe.name)]
            feats = {
                ("penultimate", side): hooked_features(trained[side], probe.inputs, "penultimate") for side in "ab"
            }
            assert_models_differ(feats, "penultimate")
            checked += check_rows(config, rows, feats)
        row = df[df.unit_id == unit.unit_id].iloc[0]
        assert 0.0 <= row["jailbreak_transfer_asr"] <= 1.0 and row["jailbreak_n_eval"] == 6
    assert checked == len(df.dropna(subset=["value"])) > 0
    # the shared base was trained once and is in the model cache; A and B are fine-tunes of it
    assert len(list((tmp_path / "cache" / "models").glob("chat-base-*.rsv"))) == 1
