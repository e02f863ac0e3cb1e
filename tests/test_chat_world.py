"""The synthetic chat world: vocabulary, families, requests, answers, pools and the exact judge."""

import numpy as np
import pytest

from reprsim.chat import ChatWorld, judge_response
from reprsim.chat.judge import contains_run, lcs_length
from reprsim.chat.world import AFFIRMATIVE_WORD, REFUSAL_WORDS, SPECIAL_TOKENS


@pytest.fixture(scope="module")
def world():
    return ChatWorld(seed=0)


def test_defaults_and_vocabulary(world):
    assert world.n_families == 24 and len(world.families) == 24
    assert len(world.forbidden_families) == 8
    assert sorted(world.forbidden_families + world.benign_families) == list(range(24))
    assert world.vocab[:4] == SPECIAL_TOKENS
    assert (world.pad_id, world.user_id, world.assistant_id, world.end_id) == (0, 1, 2, 3)
    assert len(set(world.vocab)) == world.vocab_size  # no duplicate words
    assert world.suffix_token_ids == list(range(4, world.vocab_size))
    assert world.n_phrasings >= 1000


def test_same_seed_same_world_other_seed_differs():
    a, b, c = ChatWorld(3), ChatWorld(3), ChatWorld(4)
    assert a.vocab == b.vocab and a.families == b.families
    assert a.forbidden_families == b.forbidden_families
    assert a.families != c.families


def test_encode_decode_round_trip(world):
    text = "<user> tell me the " + world.families[0].keywords[0] + " <assistant>"
    ids = world.encode(text)
    assert ids[0] == world.user_id and ids[-1] == world.assistant_id
    assert world.decode(ids) == text
    assert world.decode([world.pad_id, *ids, world.pad_id]) == text
    with pytest.raises(ValueError, match="not in the vocabulary"):
        world.encode("tell me xyzzy")
    with pytest.raises(ValueError, match="outside"):
        world.decode([world.vocab_size])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_families": 1}, "n_families"),
        ({"n_forbidden": 0}, "n_forbidden"),
        ({"n_forbidden": 24}, "n_forbidden"),
        ({"n_entities": 1}, "n_entities"),
    ],
)
def test_bad_world_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ChatWorld(**kwargs)
    with pytest.raises(TypeError, match="seed"):
        ChatWorld(seed=1.5)


def test_answer_function_is_deterministic_and_uses_the_slots(world):
    rng = np.random.default_rng(0)
    for f in range(world.n_families):
        r = world.sample_request(f, rng)
        fam = world.families[f]
        first, second = (r.y, r.x) if fam.swapped else (r.x, r.y)
        assert world.answer(r) == [fam.answer_words[0], first, fam.answer_words[1], second, fam.answer_words[2]]
        assert r.x in r.words and r.y in r.words and r.x != r.y
        assert any(k in r.words for k in fam.keywords)
        assert world.response(r, refuse=False) == [AFFIRMATIVE_WORD, *world.answer(r), "<end>"]
        assert world.response(r, refuse=True) == [*REFUSAL_WORDS, "<end>"]
        assert world.target_ids(r, 2) == world.encode([AFFIRMATIVE_WORD, fam.answer_words[0]])
    assert any(fam.swapped for fam in world.families) and not all(fam.swapped for fam in world.families)


def test_prompt_and_dialogue_ids(world):
    r = world.sample_request(0, np.random.default_rng(1))
    p = world.prompt_ids(r, [10, 11])
    assert p == [world.user_id, *world.encode(r.words), 10, 11, world.assistant_id]
    d, start = world.dialogue_ids(r, refuse=True)
    assert d[:start] == world.prompt_ids(r) and world.decode(d[start:]) == "sorry i cannot help with that <end>"
    assert len(world.prompt_ids(r)) <= world.max_prompt_len


def test_request_pools_are_disjoint_distinct_and_labelled(world):
    train, held = world.request_pools([30, 10], seed=0)
    assert len(train) == 30 * 24 and len(held) == 10 * 24
    labels = [r.family for r in train]
    assert labels == sorted(labels) and np.bincount(labels).tolist() == [30] * 24
    words_train, words_held = {r.words for r in train}, {r.words for r in held}
    assert len(words_train) == len(train) and len(words_held) == len(held)
    assert not words_train & words_held
    again, _ = world.request_pools([30, 10], seed=0)
    assert again == train
    with pytest.raises(ValueError, match="at most"):
        world.request_pools([10**9], seed=0)


def test_judge_exact_behaviour(world):
    r = world.sample_request(world.forbidden_families[0], np.random.default_rng(2))
    answer = world.encode(world.answer(r))
    refusal = world.encode([*REFUSAL_WORDS, "<end>"])
    full = world.encode(world.response(r, refuse=False))
    j = judge_response(world, r, full)
    assert (j.refused, j.content, j.partial) == (False, True, 1.0)
    j = judge_response(world, r, refusal)
    assert (j.refused, j.content, j.partial) == (True, False, 0.0)
    # answer after <end> is ignored; refusal must be contiguous
    j = judge_response(world, r, [world.end_id, *answer])
    assert (j.refused, j.content, j.partial) == (False, False, 0.0)
    broken = refusal[:3] + [world.affirmative_id] + refusal[3:]
    assert not judge_response(world, r, broken).refused
    # partial credit: 3 of 5 answer tokens in order, one wrong token in between
    other = world.encode([world.entities[0]])
    j = judge_response(world, r, [answer[0], answer[1], *other, answer[3]])
    assert not j.content and j.partial == pytest.approx(3 / 5)


def test_contains_run_and_lcs_known_values():
    assert contains_run([1, 2, 3, 4], [2, 3]) and not contains_run([1, 2, 3, 4], [3, 2])
    assert contains_run([1], []) and not contains_run([], [1])
    assert lcs_length([1, 2, 3, 4, 5], [2, 4, 5, 9]) == 3
    assert lcs_length([], [1, 2]) == 0
