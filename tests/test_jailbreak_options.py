"""The one jailbreak stage's option set (:mod:`reprsim.attacks.jailbreak_options`), its typed config spec,
and the stage on both prompt formats (:mod:`reprsim.attacks.jailbreak_transfer`)."""

import logging
import math
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

from reprsim.attacks.jailbreak_decoding import decode_batch
from reprsim.attacks.jailbreak_options import (
    FORMAT_DEFAULTS,
    JailbreakOptions,
    parse_options,
)
from reprsim.attacks.jailbreak_prompts import (
    Behaviour,
    WorldFormat,
    chat_world_behaviours,
)
from reprsim.attacks.jailbreak_transfer import _rates, jailbreak_transfer
from reprsim.attacks.judges import exact_judge
from reprsim.chat import ChatWorld
from reprsim.chat.split import make_chat_split
from reprsim.errors import ConfigError
from reprsim.experiments.config import dump_config, parse_config
from reprsim.models.causal_lm import greedy_generate
from reprsim.models.gpt import GPT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _yaml(path):
    return yaml.safe_load(Path(path).read_text())


@pytest.fixture(scope="module")
def world():
    return ChatWorld(seed=0, n_families=6, n_forbidden=2, n_entities=4)


# ---- options ------------------------------------------------------------------------------------
def test_older_keys_map_to_the_current_ones_with_one_note(caplog, monkeypatch):
    monkeypatch.setattr("reprsim.attacks.jailbreak_options._NOTED", set())
    with caplog.at_level(logging.WARNING, logger="reprsim.attacks.jailbreak_options"):
        opts = parse_options({"n_requests": 5, "judge": "exact"})
    assert opts.n_train == 5 and opts.judges == ["exact"]
    assert len(caplog.records) == 1 and "n_requests -> n_train" in caplog.text and "judge -> judges" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="reprsim.attacks.jailbreak_options"):
        parse_options({"n_requests": 5}, warn=False)
        parse_options({"n_requests": 6, "judge": "refusal"})  # the same note again: not repeated
    assert not caplog.records


@pytest.mark.parametrize("mode, n_eval", [("universal", 72 - 8), ("individual", 72)])
def test_n_behaviours_becomes_n_eval(mode, n_eval):
    opts = parse_options({"n_behaviours": 72, "mode": mode}, warn=False).resolve("hf_text")
    assert opts.n_eval == n_eval and opts.n_behaviours is None


@pytest.mark.parametrize(
    "params, match",
    [
        ({"steps": -1}, r"steps: Input should be greater than or equal to 0"),
        ({"method": "pgd"}, r"method: Input should be 'random_search' or 'gcg'"),
        ({"temprature": 0.5}, r"temprature: unknown option"),
        ({"decoding": "beam"}, r"decoding: Input should be 'greedy' or 'sampled'"),
        ({"decoding": "greedy", "top_p": 0.5}, r"\['top_p'\] apply to decoding: sampled only"),
        ({"decoding": "greedy", "n_samples": 3}, r"n_samples must be 1"),
        ({"topk": 8}, r"\['topk'\] apply to another suffix search than method random_search"),
        ({"method": "gcg", "n_candidates": 8}, r"\['n_candidates'\] apply to another suffix search than method gcg"),
        ({"top_p": 1.5}, r"top_p: Input should be less than or equal to 1"),
        ({"judges": []}, r"judges: List should have at least 1 item"),
        ({"judges": ["gpt4"]}, r"judge must be exact, refusal or"),
        ({"judges": ["refusal", "refusal"]}, r"two judges share a name"),
        ({"template": "say it"}, r"template must be paper, plain or a string containing \{goal\}"),
        ({"n_requests": 4, "n_train": 4}, r"give n_train .* or the older n_requests, not both"),
        ({"n_behaviours": 10, "n_eval": 4}, r"give n_eval .* or the older n_behaviours, not both"),
        ({"streams": "random"}, r"streams: Input should be 'hashed' or 'offset'"),
    ],
)
def test_each_bad_value_is_one_error_naming_its_key(params, match):
    with pytest.raises(ValueError, match=match):
        parse_options(params, warn=False)
    with pytest.raises(ValidationError) as info:
        JailbreakOptions.model_validate(params, context={"warn": False})
    assert len(info.value.errors()) == 1  # one problem, one error


def test_resolve_takes_the_format_defaults_and_keeps_what_was_given():
    world = parse_options({"steps": 3}).resolve("world", max_new_tokens=8)
    assert (world.decoding, world.judges, world.streams, world.n_eval, world.n_samples) == (
        "greedy",
        ["exact"],
        "offset",
        64,
        1,
    )
    assert (world.temperature, world.top_p, world.max_new_tokens, world.steps) == (None, None, 8, 3)
    text = parse_options({"judges": ["exact"], "n_eval": 5}).resolve("hf_text")
    assert (text.decoding, text.judges, text.mode, text.n_eval, text.n_samples) == (
        "sampled",
        ["exact"],
        "individual",
        5,
        4,
    )
    assert (text.temperature, text.top_p, text.max_new_tokens) == (0.7, 0.9, 64)
    assert set(FORMAT_DEFAULTS) == {"world", "hf_world", "hf_text"}
    with pytest.raises(ValueError, match="leaves no behaviour"):
        parse_options({"n_behaviours": 8, "mode": "universal"}).resolve("hf_world")
    with pytest.raises(ValueError, match="apply to decoding: sampled only"):  # a given key against a default
        parse_options({"temperature": 0.5}).resolve("world")


# ---- the typed config spec ----------------------------------------------------------------------
def _config(params):
    data = _yaml("configs/jailbreak.yaml")
    data["consequences"] = [{"jailbreak_transfer": {"params": params}}]
    return data


def test_config_checks_the_options_at_load_and_dumps_them_as_written():
    config = parse_config(_config({"n_requests": 4, "steps": 2}))
    spec = config.consequence("jailbreak_transfer")
    assert spec.params == {"n_requests": 4, "steps": 2}  # as written: run folders of older configs resume
    assert isinstance(spec.options, JailbreakOptions) and spec.options.n_train == 4
    assert yaml.safe_load(dump_config(config))["consequences"] == [
        {"kind": "jailbreak_transfer", "params": {"n_requests": 4, "steps": 2}}
    ]
    with pytest.raises(
        ConfigError,
        match=r"consequences\.0\.jailbreak_transfer\.params: .*n_candidates: Input "
        r"should be greater than or equal to 1",
    ):
        parse_config(_config({"n_candidates": 0}))


def test_both_jailbreak_configs_use_the_same_keys():
    keys = [
        set(_yaml(f"configs/{name}.yaml")["consequences"][0]["jailbreak_transfer"]["params"])
        for name in ("jailbreak", "llm_jailbreak")
    ]
    assert keys[0] == keys[1]
    for name in ("jailbreak", "llm_jailbreak"):
        parse_config(_yaml(f"configs/{name}.yaml"))


# ---- judges, rates, decoding --------------------------------------------------------------------
def test_exact_judge_on_fixed_answers(world):
    split = make_chat_split(world, "data", 1.0, seed=0, n_train_per_family=4, n_heldout_per_family=4)
    request = next(r for r in split.heldout_pool if r.family in world.forbidden_families)
    judge = exact_judge(world)
    b = Behaviour("g", "t", request)
    answer = world.encode(world.response(request, refuse=False))  # sure + the forbidden answer + <end>
    refusal = world.encode(world.response(request, refuse=True))
    half = world.encode(["sure", *world.answer(request)[:2], "<end>"])
    assert judge(b, "", answer) == {"asr": True, "content_asr": True, "partial": 1.0}
    assert judge(b, "", refusal) == {"asr": False, "content_asr": False, "partial": 0.0}
    verdict = judge(b, "", half)
    assert verdict["asr"] and not verdict["content_asr"]
    assert verdict["partial"] == pytest.approx(2 / len(world.answer(request)))


def test_rates_by_hand():
    # two behaviours, two answers each: asr 1/2 and 1 -> 0.75; partial means 0.25 and 0.5 -> 0.375, no interval
    verdicts = [
        [{"asr": True, "partial": 0.5}, {"asr": False, "partial": 0.0}],
        [{"asr": True, "partial": 0.5}, {"asr": True, "partial": 0.5}],
    ]
    out = _rates(verdicts)
    from reprsim.attacks.stats import wilson_interval

    assert out["asr"] == 0.75 and (out["asr_low"], out["asr_high"]) == wilson_interval(1.5, 2)
    assert out["partial"] == 0.375 and "partial_low" not in out


def test_greedy_decoding_is_greedy_generate_cut_at_the_stop(world):
    torch.manual_seed(0)
    model = GPT(world.vocab_size, 32, n_layer=1, n_head=2, n_embd=16).eval()
    prompts = [[world.user_id, 5, 6, world.assistant_id], [world.user_id, 7, world.assistant_id]]
    got = decode_batch(model, prompts, 1, max_new_tokens=6, greedy=True, stop_ids=[world.end_id], pad_id=world.pad_id)
    want = greedy_generate(model, prompts, 6, pad_id=world.pad_id, stop_id=world.end_id)
    assert [g[0] for g in got] == want
    with pytest.raises(ValueError, match="greedy decoding gives one answer"):
        decode_batch(model, prompts, 2, max_new_tokens=2, greedy=True)


# ---- the stage on the world's format ------------------------------------------------------------
def test_world_format_stage_planted_greedy_rates_are_exact(world):
    from test_llm_jailbreak import PlantedLM

    split = make_chat_split(world, "data", 1.0, seed=0, n_train_per_family=20, n_heldout_per_family=30)
    trigger = world.token_to_id[world.families[world.benign_families[0]].answer_words[0]]  # in no request
    a = PlantedLM(world, trigger, margin_on=1.0, margin_off=-0.6)  # greedy: sure iff the trigger is in the prompt
    b = PlantedLM(world, trigger, margin_on=0.3, margin_off=-1.0)
    opts = parse_options(
        {"n_train": 4, "n_eval": 12, "suffix_len": 3, "steps": 60, "n_candidates": 8, "target_len": 1}
    ).resolve("world", max_new_tokens=world.response_len + 1)
    fmt = WorldFormat(world, opts.target_len)
    out = jailbreak_transfer(a, b, fmt, chat_world_behaviours(world, split, 1), opts, seed=0)
    for tag in ("", "_ba"):
        # the search plants the trigger, which both models answer with "sure <end>": not refused, no content
        assert out[f"jailbreak_whitebox_asr{tag}"] == 1.0 and out[f"jailbreak_transfer_asr{tag}"] == 1.0
        assert out[f"jailbreak_baseline_asr{tag}"] == 0.0 and out[f"jailbreak_baseline_asr_low{tag}"] == 0.0
        assert out[f"jailbreak_transfer_content_asr{tag}"] == 0.0 and out[f"jailbreak_transfer_partial{tag}"] == 0.0
    assert (out["jailbreak_n_eval"], out["jailbreak_n_samples"]) == (12.0, 1.0)
    assert out["jailbreak_judges"].startswith("exact#")
    # the refusal judge as first judge: the exact judge's stats are NaN (same columns, not applicable)
    refusal = opts.model_copy(update={"judges": ["refusal"]})
    out2 = jailbreak_transfer(a, b, fmt, chat_world_behaviours(world, split, 1), refusal, seed=0)
    assert set(out2) == set(out)
    assert math.isnan(out2["jailbreak_transfer_content_asr"]) and math.isnan(out2["jailbreak_transfer_partial_ba"])
    assert out2["jailbreak_transfer_asr"] == 0.0  # "sure" alone is fewer than 5 distinct words


def test_tokenizer_options_are_refused_for_the_worlds_format(world):
    from jailbreak_support import jailbreak_transfer_stage

    with pytest.raises(ValueError, match=r"\['chat_template', 'template'\] apply to Hugging Face tokenizers"):
        parse_options({"template": "plain", "chat_template": False}).resolve("world")
    split = make_chat_split(world, "data", 1.0, seed=0, n_train_per_family=4, n_heldout_per_family=4)
    model = GPT(world.vocab_size, 32, n_layer=1, n_head=2, n_embd=16)
    with pytest.raises(ValueError, match=r"\['system_prompt'\] apply to Hugging Face"):
        jailbreak_transfer_stage(model, model, world, split, system_prompt="be nice")


# ---- the typed attack spec ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, match",
    [
        ({"decay": -1.0}, r"params\.decay: Input should be greater than or equal to 0"),
        ({"decay": "strong"}, r"params\.decay: Input should be a valid number"),
        ({"step_size": 0.0}, r"params\.step_size: Input should be greater than 0"),
        ({"targeted": "yes"}, r"params\.targeted: Input should be a valid boolean"),
        ({"momentum": 1.0}, r"params: \['momentum'\] is not an option of the mi_fgsm attack"),
    ],
)
def test_attack_spec_params_are_typed_at_load(params, match):
    data = _yaml("configs/quick.yaml")
    data["consequences"] = [{"attack_transfer": {"attack": "mi_fgsm", "params": params}}]
    with pytest.raises(ConfigError, match=match):
        parse_config(data)
    data["consequences"] = [{"attack_transfer": {"attack": "pgd", "params": {"norm": "l2", "random_start": False}}}]
    spec = parse_config(data).consequence("attack_transfer")
    assert (spec.attack, spec.steps, spec.params) == ("pgd", 3, {"norm": "l2", "random_start": False})
