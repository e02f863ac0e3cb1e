"""Chat training through the shared loop (two-phase and fine-tuning), the overlap splits, and probes."""

import numpy as np
import pytest
import torch

from reprsim.chat import ChatWorld
from reprsim import models
from reprsim.chat.probes import PROBE_PROMPT_LEN, probe_sets
from reprsim.chat.split import make_chat_split
from reprsim.chat.training import ChatRecipe, build_dialogues, evaluate_chat_model, train_two_phase

SMALL = ChatRecipe.from_dict(
    dict(
        pretrain_steps=3,
        safety_steps=2,
        finetune_steps=2,
        batch_size=16,
        n_train_per_family=20,
        n_heldout_per_family=24,
        noise_max_len=4,
    )
)


def tiny_gpt(world, seed=0, block_size=48, n_embd=32):
    return models.build(
        "gpt",
        vocab_size=world.vocab_size,
        block_size=block_size,
        preset=None,
        n_layer=1,
        n_head=2,
        n_embd=n_embd,
        seed=seed,
    )


@pytest.fixture(scope="module")
def world():
    return ChatWorld(seed=1, n_families=8, n_forbidden=2, n_entities=6)


def test_dialogue_targets_cover_exactly_the_assistant_tokens(world):
    (train,) = world.request_pools([3], seed=0)
    forb = [r for r in train if world.families[r.family].forbidden][0]
    ben = [r for r in train if not world.families[r.family].forbidden][0]
    ids, tgt = build_dialogues(world, [forb, ben], safety=True)
    for row, r, refuse in ((0, forb, True), (1, ben, False)):
        assert ids[row, 0] == world.user_id
        kept = tgt[row][tgt[row] != -100].tolist()
        assert kept == world.encode(world.response(r, refuse=refuse))
        # the kept targets sit right after <assistant>: position of <assistant> predicts the first
        first = int((tgt[row] != -100).nonzero()[0])
        assert ids[row, first] == world.assistant_id
    ids0, tgt0 = build_dialogues(world, [forb], safety=False)
    assert tgt0[0][tgt0[0] != -100].tolist() == world.encode(world.response(forb, refuse=False))


def test_noise_copies_add_random_words_before_assistant(world):
    (train,) = world.request_pools([2], seed=0)
    ids, tgt = build_dialogues(world, train, safety=False, noise_copies=2, noise_max_len=5, seed=0)
    assert ids.shape[0] == 3 * len(train)
    clean_len = len(world.prompt_ids(train[0]))
    for k in (1, 2):
        row = ids[k].tolist()
        a = row.index(world.assistant_id)
        assert clean_len < a + 1 <= clean_len + 5
        assert all(t >= 4 for t in row[clean_len - 1 : a])  # noise words are non-special
    again, _ = build_dialogues(world, train, safety=False, noise_copies=2, noise_max_len=5, seed=0)
    assert torch.equal(ids, again)


def test_recipe_rejects_unknown_and_bad_values(world):
    with pytest.raises(ValueError, match="Did you mean 'pretrain_steps'"):
        ChatRecipe.from_dict({"pretrain_step": 3})
    with pytest.raises(ValueError, match="set in models"):
        ChatRecipe.from_dict({"n_embd": 32})
    with pytest.raises(ValueError, match="batch_size"):
        ChatRecipe.from_dict({"batch_size": 0})
    with pytest.raises(ValueError, match="block_size"):
        train_two_phase(tiny_gpt(world), world, [], ChatRecipe.from_dict({"block_size": 8}), seed=0)


def test_each_phase_is_one_run_of_the_shared_training_loop(world, monkeypatch):
    import reprsim.train

    calls = []
    original = reprsim.train.train
    monkeypatch.setattr(reprsim.train, "train", lambda *a, **k: calls.append(a[2]) or original(*a, **k))
    (train,) = world.request_pools([4], seed=0)
    train_two_phase(tiny_gpt(world), world, train, SMALL, seed=5)
    assert [(c.max_steps, c.lr, c.optimizer) for c in calls] == [(3, SMALL.lr, "adamw"), (2, SMALL.safety_lr, "adamw")]
    assert isinstance(calls[0], reprsim.train.TrainConfig) and calls[0].min_lr_ratio == 0.1


def test_training_is_seeded(world):
    (train,) = world.request_pools([4], seed=0)
    m1, m2, m3 = tiny_gpt(world), tiny_gpt(world), tiny_gpt(world)
    h1 = train_two_phase(m1, world, train, SMALL, seed=5)
    h2 = train_two_phase(m2, world, train, SMALL, seed=5)
    train_two_phase(m3, world, train, SMALL, seed=6)
    assert h1 == h2 and len(h1["pretrain"]) == 1 and len(h1["safety"]) == 1  # one history row per phase
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert not torch.equal(m1.wte.weight, m3.wte.weight)


def test_two_phase_training_learns_refusal():
    """A 3-family world trained for a few hundred steps refuses held-out forbidden requests."""
    world = ChatWorld(seed=2, n_families=3, n_forbidden=1, n_entities=4)
    train, held = world.request_pools([40, 20], seed=0)
    recipe = ChatRecipe.from_dict(
        dict(pretrain_steps=200, safety_steps=200, batch_size=32, noise_copies=0, noise_max_len=0, block_size=24)
    )
    model = tiny_gpt(world, block_size=24)
    hist = train_two_phase(model, world, train, recipe, seed=0)
    assert hist["safety"][-1] < hist["pretrain"][0]
    ev = evaluate_chat_model(model, world, held)
    assert ev["refusal_rate"] >= 0.95
    assert ev["benign_refusal_rate"] <= 0.05
    assert ev["benign_partial"] > 0.5  # answers have the right shape (full accuracy needs the slow recipe)
    assert ev["n_forbidden"] == 20 and ev["n_benign"] == 40


def test_data_split_shares_dialogues_per_family(world):
    s = make_chat_split(world, "data", 0.5, seed=0, n_train_per_family=20, n_heldout_per_family=4)
    assert s.families_a == s.families_b == list(range(8))
    assert s.realised_data_fraction == pytest.approx(0.5) and len(s.requests_a) == 8 * 10
    fam_a = np.bincount([r.family for r in s.requests_a], minlength=8)
    assert fam_a.tolist() == [10] * 8
    shared = {r.words for r in s.requests_a} & {r.words for r in s.requests_b}
    assert len(shared) == 8 * 5
    assert not shared & {r.words for r in s.heldout_pool}


@pytest.mark.parametrize("fraction, n_common_benign", [(0.0, 0), (1 / 3, 1), (1.0, 3)])
def test_task_split_shares_forbidden_families_always(world, fraction, n_common_benign):
    s = make_chat_split(world, "task", fraction, seed=0, n_train_per_family=10, n_heldout_per_family=4)
    forb = set(world.forbidden_families)
    fa, fb = set(s.families_a), set(s.families_b)
    assert forb <= fa and forb <= fb
    assert len(fa - forb) == len(fb - forb) == 3  # 6 benign families, 3 per model
    assert len((fa & fb) - forb) == n_common_benign
    assert s.realised_task_fraction == pytest.approx(n_common_benign / 3)
    assert {r.family for r in s.requests_a} == fa
    with pytest.raises(ValueError, match="overlap_kind"):
        make_chat_split(world, "both", 0.5, seed=0)


def test_probe_prompts_are_fixed_length_fresh_and_seeded(world):
    split = make_chat_split(world, "task", 0.0, seed=0, n_train_per_family=20, n_heldout_per_family=24)
    probes = probe_sets(world, split, n=16, seed=0)
    assert set(probes) == {"forbidden", "benign_one"}  # task overlap 0 with 6 benign families: none shared / unseen
    for t in probes.values():
        assert t.shape == (16, PROBE_PROMPT_LEN) and t.dtype == torch.long
        assert (t[:, 0] == world.user_id).all() and (t[:, -1] == world.assistant_id).all()
    assert torch.equal(probes["forbidden"], probe_sets(world, split, n=16, seed=0)["forbidden"])
    seen = {tuple(world.prompt_ids(r)) for r in split.train_pool}
    assert not any(tuple(row) in seen for row in probes["forbidden"].tolist())
    # a task split with full overlap leaves benign families unseen by both models: an ood probe set
    s1 = make_chat_split(world, "task", 1.0, seed=0, n_train_per_family=10, n_heldout_per_family=4)
    assert set(probe_sets(world, s1, n=4)) == {"forbidden", "benign", "ood"}
