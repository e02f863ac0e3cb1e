"""Short calls of the one jailbreak stage (:mod:`reprsim.attacks.jailbreak_transfer`) for the tests.

A world calls the stage with options it has resolved, behaviours it built and a prompt format of its
family; these helpers do the same in one line for a chat world's zoo models
(:func:`jailbreak_transfer_stage`) and for Hugging Face LMs with a tokenizer (:func:`hf_jailbreak_transfer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from reprsim.attacks import jailbreak_prompts as prompts
from reprsim.attacks.jailbreak_options import JailbreakOptions, parse_options
from reprsim.attacks.jailbreak_prompts import Behaviour, PromptFormat, WorldFormat
from reprsim.attacks.jailbreak_transfer import jailbreak_transfer
from reprsim.attacks.judges import Judge


#: the option values the chat tests run with unless they say otherwise
WORLD_STAGE_DEFAULTS: dict[str, Any] = {
    "method": "random_search",
    "mode": "universal",
    "n_train": 8,
    "n_eval": 64,
    "suffix_len": 10,
    "steps": 100,
    "target_len": 2,
    "progress": False,
}


def stage_options(params: dict[str, Any] | JailbreakOptions, *, chat_world: bool = False) -> JailbreakOptions:
    """``params`` resolved with the Hugging Face defaults (on the chat world, or on text)."""
    return parse_options(params, warn=False).resolve("hf_world" if chat_world else "hf_text")


def chat_world_behaviours(world: Any, split: Any, opts: JailbreakOptions) -> list[Behaviour]:
    """The chat world's held-out forbidden requests, targets of ``opts.target_len`` words."""
    return prompts.chat_world_behaviours(world, split, opts.target_len)


def hf_jailbreak_transfer(
    model_a: nn.Module,
    model_b: nn.Module,
    tokenizer: Any,
    behaviours: Sequence[Behaviour],
    opts: JailbreakOptions,
    *,
    seed: int = 0,
    world: Any = None,
    judge: Judge | Sequence[Judge] | None = None,
) -> dict[str, Any]:
    """The stage with ``tokenizer``'s prompt format (as the ``hf_lm`` family supplies it)."""
    fmt = PromptFormat.from_options(tokenizer, opts, world)
    return jailbreak_transfer(model_a, model_b, fmt, behaviours, opts, seed=seed, judge=judge)


def jailbreak_transfer_stage(
    model_a: nn.Module, model_b: nn.Module, world: Any, split: Any, *, seed: int = 0, **options: Any
) -> dict[str, Any]:
    """The stage on a chat world's zoo models, as the chat world runs it: ``options`` (over small test
    defaults, :data:`WORLD_STAGE_DEFAULTS`) resolved with the world's defaults (greedy, the exact judge;
    answers of the world's answer length + 1 tokens), its held-out forbidden requests, its own token
    format. ``n_requests`` is accepted for ``n_train``."""
    if "n_requests" in options:
        options.setdefault("n_train", options.pop("n_requests"))
    params = WORLD_STAGE_DEFAULTS | options
    opts = parse_options(params, warn=False).resolve("world", max_new_tokens=world.response_len + 1)
    behaviours = prompts.chat_world_behaviours(world, split, opts.target_len)
    return jailbreak_transfer(model_a, model_b, WorldFormat.from_options(world, opts), behaviours, opts, seed=seed)
