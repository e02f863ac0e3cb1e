"""Shared-base mode of the chat kind: one cached safety-tuned base, fine-tuned into model A and model B."""

import numpy as np
import pytest
import torch

import reprsim.chat.training as chat_training
from reprsim import models
from reprsim.chat import ChatWorld
from reprsim.chat.split import make_chat_split
from reprsim.chat.training import ChatRecipe, base_pools, build_dialogues, finetune
from reprsim.experiments import load_results, parse_config, run_experiment
from reprsim.experiments.composition import composition_of
from reprsim.experiments.grid import expand

SMALL = dict(
    pretrain_steps=3,
    safety_steps=2,
    finetune_steps=3,
    batch_size=16,
    n_train_per_family=20,
    n_heldout_per_family=24,
    base_n_per_family=10,
    noise_max_len=4,
)
WORLD = {"seed": 1, "n_families": 8, "n_forbidden": 2, "n_entities": 6}
GPT = {"name": "gpt", "options": {"n_layer": 1, "n_head": 2, "n_embd": 32, "preset": None}}


@pytest.fixture(scope="module")
def world():
    return ChatWorld(**WORLD)


def _same(m1, m2) -> bool:
    return all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def _config(train: dict, designs=None) -> dict:
    return {
        "name": "chat-tiny",
        "sources": [{"name": "chat", "options": WORLD}],
        "probe_size": 16,
        "models": [GPT],
        "train": train,
        "seeds": [0],
        "overlap": {"designs": designs or [{"kind": "data", "fractions": [0.0]}, {"kind": "task", "fractions": [1.0]}]},
        "measures": {"names": ["cka"], "params": {}},
    }


def test_base_pool_is_disjoint_from_finetuning_and_heldout_pools(world):
    recipe = ChatRecipe.from_dict(SMALL)
    base, heldout = base_pools(world, recipe)
    split = make_chat_split(world, "data", 0.5, 0, n_train_per_family=20, n_heldout_per_family=24)
    assert len(base) == 8 * 10 and np.bincount([r.family for r in base]).tolist() == [10] * 8
    assert [r.words for r in heldout] == [r.words for r in split.heldout_pool]  # the split's pools are unchanged
    words = {r.words for r in base}
    assert not words & {r.words for r in split.train_pool} and not words & {r.words for r in heldout}


def test_base_is_trained_once_cached_and_shared_by_every_pair(tmp_path, monkeypatch):
    calls = []
    real = chat_training.train_two_phase
    monkeypatch.setattr(chat_training, "train_two_phase", lambda *a, **k: calls.append(1) or real(*a, **k))
    config = parse_config(_config(SMALL))
    run_experiment(config, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    assert len(calls) == 1  # one base for both pairs; A and B are fine-tuned, not trained from scratch
    df = load_results(tmp_path / "run")
    assert df["base_refusal_rate"].nunique() == 1
    # the base depends on the base recipe only: other fine-tuning settings reuse it
    config = parse_config(_config(SMALL | {"finetune_steps": 2}))
    run_experiment(config, tmp_path / "run2", cache_dir=tmp_path / "cache", progress=False)
    assert len(calls) == 1
    assert len(list((tmp_path / "cache" / "models").glob("chat-base-*.rsv"))) == 1


def test_a_and_b_start_from_the_identical_base(tmp_path):
    config = parse_config(_config(SMALL | {"finetune_steps": 0}, [{"kind": "data", "fractions": [0.3]}]))
    unit = expand(config)[0]
    kind = composition_of(unit)
    pair = kind.pair(config, unit, tmp_path)
    model_a, model_b = kind.build(config, unit, pair, "a"), kind.build(config, unit, pair, "b")
    assert _same(model_a, pair.start.model) and _same(model_b, pair.start.model)
    # from scratch, the two models start from their own seed streams
    config = parse_config(_config(SMALL | {"shared_base": False}, [{"kind": "data", "fractions": [0.3]}]))
    unit = expand(config)[0]
    pair = kind.pair(config, unit, tmp_path)
    assert pair.start is None
    assert not _same(kind.build(config, unit, pair, "a"), kind.build(config, unit, pair, "b"))


def test_finetuning_is_seeded(world):
    recipe = ChatRecipe.from_dict(SMALL)
    reqs = make_chat_split(world, "data", 1.0, 0, n_train_per_family=20, n_heldout_per_family=24).requests_a
    base = models.build("gpt", vocab_size=world.vocab_size, block_size=48, seed=0, **GPT["options"])
    copies = [models.build("gpt", vocab_size=world.vocab_size, block_size=48, **GPT["options"]) for _ in range(3)]
    for m in copies:
        m.load_state_dict(base.state_dict())
    l1 = finetune(copies[0], world, reqs, recipe, seed=4)
    l2 = finetune(copies[1], world, reqs, recipe, seed=4)
    finetune(copies[2], world, reqs, recipe, seed=5)
    assert l1 == l2 and _same(copies[0], copies[1]) and not _same(copies[0], copies[2])
    assert not _same(copies[0], base)
    with pytest.raises(ValueError, match="no requests"):
        finetune(copies[0], world, [], recipe, seed=0)


def test_per_request_noise_makes_shared_dialogues_identical(world):
    (reqs,) = world.request_pools([3], seed=0)
    kw = dict(safety=True, noise_copies=1, noise_max_len=5, seed=9, per_request_noise=True)
    ids, tgt = build_dialogues(world, reqs, **kw)
    ids_rev, tgt_rev = build_dialogues(world, reqs[::-1], **kw)
    n = len(reqs)
    rows = {tuple(ids[i].tolist()) for i in range(2 * n)}
    assert rows == {tuple(ids_rev[i].tolist()) for i in range(2 * n)}  # same dialogues whatever the order
    assert len(rows) == 2 * n  # the noise copy differs from the clean dialogue
    other, _ = build_dialogues(world, reqs, **(kw | {"seed": 10}))
    assert not torch.equal(ids, other)


def test_recipe_errors():
    with pytest.raises(TypeError, match="shared_base"):
        ChatRecipe.from_dict({"shared_base": "yes"})
    with pytest.raises(ValueError, match="finetune_lr"):
        ChatRecipe.from_dict({"finetune_lr": 0.0})
    with pytest.raises(ValueError, match="finetune_steps"):
        ChatRecipe.from_dict({"finetune_steps": -1})


@pytest.mark.slow
def test_default_shared_base_pair_keeps_refusing(tmp_path):
    """Default recipe: base and both fine-tunes refuse >= 95 % of held-out forbidden requests."""
    config = {
        "name": "chat-default",
        "sources": [{"name": "chat", "options": {"seed": 0}}],
        "probe_size": 32,
        "models": [{"name": "gpt", "options": {"n_layer": 2, "n_head": 4, "n_embd": 64, "preset": None}}],
        "overlap": {"designs": [{"kind": "task", "fractions": [0.5]}]},
        "seeds": [0],
        "measures": {"names": ["cka"], "params": {}},
    }
    run_experiment(parse_config(config), tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    m = load_results(tmp_path / "run").iloc[0]
    assert m["base_refusal_rate"] >= 0.95
    assert m["refusal_rate_a"] >= 0.95 and m["refusal_rate_b"] >= 0.95
    assert m["acc_a"] >= 0.8 and m["acc_b"] >= 0.8
    assert m["benign_refusal_rate_a"] <= 0.05 and m["benign_refusal_rate_b"] <= 0.05
