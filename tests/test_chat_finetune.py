"""Shared-base mode: one cached safety-tuned base, fine-tuned into model A and model B."""

import numpy as np
import pytest
import torch

import reprsim.chat.finetune as finetune
from reprsim.chat import ChatWorld
from reprsim.chat.finetune import base_pools, finetune_chat_model, load_or_train_base
from reprsim.chat.pipeline import train_pair
from reprsim.chat.split import make_chat_split
from reprsim.chat.training import ChatTrainConfig, build_dialogues

SMALL = dict(n_layer=1, n_head=2, n_embd=32, pretrain_steps=3, safety_steps=2, finetune_steps=3, batch_size=16,
             n_train_per_family=20, n_heldout_per_family=24, base_n_per_family=10, noise_max_len=4)


@pytest.fixture(scope="module")
def world():
    return ChatWorld(seed=1, n_families=8, n_forbidden=2, n_entities=6)


def _same(m1, m2) -> bool:
    return all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_base_pool_is_disjoint_from_finetuning_and_heldout_pools(world):
    cfg = ChatTrainConfig.from_dict(SMALL)
    base, heldout = base_pools(world, cfg)
    split = make_chat_split(world, "data", 0.5, 0, n_train_per_family=20, n_heldout_per_family=24)
    assert len(base) == 8 * 10 and np.bincount([r.family for r in base]).tolist() == [10] * 8
    assert [r.words for r in heldout] == [r.words for r in split.heldout_pool]  # the split's pools are unchanged
    words = {r.words for r in base}
    assert not words & {r.words for r in split.train_pool} and not words & {r.words for r in heldout}


def test_base_is_cached_and_reused_by_every_pair(world, tmp_path, monkeypatch):
    m1, info1 = load_or_train_base(world, SMALL, tmp_path)
    m2, info2 = load_or_train_base(world, SMALL, tmp_path)
    assert info1["trained"] and not info2["trained"] and info1["metrics"] == info2["metrics"]
    assert _same(m1, m2)
    # fine-tuning settings do not change the base; the base seed does
    assert not load_or_train_base(world, SMALL | {"finetune_steps": 7, "finetune_lr": 0.01}, tmp_path)[1]["trained"]
    assert not _same(m1, load_or_train_base(world, SMALL | {"base_seed": 1}, tmp_path)[0])

    calls = []
    real = finetune.train_base_model
    monkeypatch.setattr(finetune, "train_base_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = train_pair(world, "data", 0.0, 0, SMALL | {"pretrain_steps": 4}, workdir=tmp_path, progress=False)
    second = train_pair(world, "task", 1.0, 3, SMALL | {"pretrain_steps": 4}, workdir=tmp_path, progress=False)
    assert len(calls) == 1  # trained for the first pair, loaded for the second
    assert "base" in first.history and "base" not in second.history
    assert second.history["a"].keys() == {"finetune"} and len(second.history["a"]["finetune"]) == 3
    assert first.metrics["base_refusal_rate"] == second.metrics["base_refusal_rate"]


def test_a_and_b_start_from_the_identical_base(world, tmp_path):
    base, _ = load_or_train_base(world, SMALL, tmp_path)
    res = train_pair(world, "data", 0.3, 0, SMALL | {"finetune_steps": 0}, workdir=tmp_path, progress=False)
    assert _same(res.model_a, base) and _same(res.model_b, base)
    res = train_pair(world, "data", 0.3, 0, SMALL, workdir=tmp_path, progress=False)
    assert not _same(res.model_a, res.model_b) and not _same(res.model_a, base)


def test_finetuning_is_seeded_and_leaves_the_base_untouched(world):
    base, _ = load_or_train_base(world, SMALL)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    reqs = make_chat_split(world, "data", 1.0, 0, n_train_per_family=20, n_heldout_per_family=24).requests_a
    m1, l1 = finetune_chat_model(base, world, reqs, SMALL, seed=4)
    m2, l2 = finetune_chat_model(base, world, reqs, SMALL, seed=4)
    m3, _ = finetune_chat_model(base, world, reqs, SMALL, seed=5)
    assert l1 == l2 and len(l1) == 3 and _same(m1, m2) and not _same(m1, m3)
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())
    with pytest.raises(ValueError, match="no requests"):
        finetune_chat_model(base, world, [], SMALL)


def test_per_request_noise_makes_shared_dialogues_identical(world):
    reqs, = world.request_pools([3], seed=0)
    kw = dict(safety=True, noise_copies=1, noise_max_len=5, seed=9, per_request_noise=True)
    ids, tgt = build_dialogues(world, reqs, **kw)
    ids_rev, tgt_rev = build_dialogues(world, reqs[::-1], **kw)
    n = len(reqs)
    rows = {tuple(ids[i].tolist()) for i in range(2 * n)}
    assert rows == {tuple(ids_rev[i].tolist()) for i in range(2 * n)}  # same dialogues whatever the order
    assert len(rows) == 2 * n  # the noise copy differs from the clean dialogue
    other, _ = build_dialogues(world, reqs, **(kw | {"seed": 10}))
    assert not torch.equal(ids, other)


def test_from_scratch_mode_and_config_errors(world):
    res = train_pair(world, "task", 0.0, 0, SMALL | {"shared_base": False}, progress=False)
    assert res.history["a"].keys() == {"pretrain", "safety"} and "base_refusal_rate" not in res.metrics
    with pytest.raises(TypeError, match="shared_base"):
        ChatTrainConfig.from_dict({"shared_base": "yes"})
    with pytest.raises(ValueError, match="finetune_lr"):
        ChatTrainConfig.from_dict({"finetune_lr": 0.0})
    with pytest.raises(ValueError, match="finetune_steps"):
        ChatTrainConfig.from_dict({"finetune_steps": -1})


@pytest.mark.slow
def test_default_shared_base_pair_keeps_refusing(tmp_path):
    """Default recipe: base and both fine-tunes refuse >= 95 % of held-out forbidden requests."""
    world = ChatWorld(seed=0)
    res = train_pair(world, "task", 0.5, 0, {}, workdir=tmp_path, progress=False)
    m = res.metrics
    assert m["base_refusal_rate"] >= 0.95
    assert m["refusal_rate_a"] >= 0.95 and m["refusal_rate_b"] >= 0.95
    assert m["acc_a"] >= 0.8 and m["acc_b"] >= 0.8
    assert m["benign_refusal_rate_a"] <= 0.05 and m["benign_refusal_rate_b"] <= 0.05
