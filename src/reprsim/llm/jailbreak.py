"""Jailbreak transfer between Hugging Face chat LMs (older entry points over :mod:`reprsim.attacks.jailbreak_transfer`).

The stage, its options, behaviours, prompt formats, decoding and judges moved to ``reprsim.attacks``
(:mod:`~reprsim.attacks.jailbreak_transfer`, :mod:`~reprsim.attacks.jailbreak_options`,
:mod:`~reprsim.attacks.jailbreak_prompts`, :mod:`~reprsim.attacks.jailbreak_decoding`,
:mod:`~reprsim.attacks.judges`). This module keeps the llm kind's calls working:
:func:`stage_options` resolves a config's options with the Hugging Face defaults (``hf_world`` on the
chat world, ``hf_text`` on text sources), :func:`jailbreak_transfer` runs the one stage with a
:class:`PromptFormat` of the tokenizer, and :func:`stage_problems` lists what would stop it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from reprsim.attacks import jailbreak_prompts as _prompts
from reprsim.attacks import jailbreak_transfer as _stage
from reprsim.attacks.jailbreak_decoding import sample_answers, sample_batch
from reprsim.attacks.jailbreak_options import JailbreakOptions, parse_options
from reprsim.attacks.jailbreak_prompts import (
    PAPER_TEMPLATE,
    Behaviour,
    PromptFormat,
    behaviours_problem,
    load_behaviours,
)
from reprsim.attacks.judges import (  # noqa: F401 (re-exported: the judges' public names lived here first)
    JUDGE_PROMPT,
    REFUSAL_PHRASES,
    Judge,
    exact_judge,
    hf_judge,
    judge_agreement,
    judge_problems,
    judge_spec,
    judge_specs_of,
    make_judge,
    refusal_judge,
)

__all__ = [
    "JUDGE_PROMPT",
    "PAPER_TEMPLATE",
    "REFUSAL_PHRASES",
    "Behaviour",
    "PromptFormat",
    "StageOptions",
    "chat_world_behaviours",
    "exact_judge",
    "hf_judge",
    "jailbreak_transfer",
    "judge_specs",
    "load_behaviours",
    "make_judge",
    "refusal_judge",
    "sample_answers",
    "sample_batch",
    "stage_options",
    "stage_problems",
]

#: the options of the stage (the older name)
StageOptions = JailbreakOptions


def stage_options(params: dict[str, Any] | JailbreakOptions, *, chat_world: bool = False) -> JailbreakOptions:
    """``consequences[].params`` resolved for a Hugging Face LM on the chat world or on text; ValueError
    naming the bad key."""
    return parse_options(params, warn=False).resolve("hf_world" if chat_world else "hf_text")


def judge_specs(opts: JailbreakOptions) -> list[dict[str, Any]]:
    """The stage's judges as parsed specs (:func:`reprsim.attacks.judges.judge_spec`)."""
    return judge_specs_of(opts.judges)


def chat_world_behaviours(world: Any, split: Any, opts: JailbreakOptions) -> list[Behaviour]:
    """The chat world's held-out forbidden requests both models were safety-tuned on, target ``opts.target_len`` words."""
    return _prompts.chat_world_behaviours(world, split, opts.target_len)


def allowed_suffix_tokens(tokenizer: Any, world: Any = None) -> list[int]:
    """Token ids a suffix may use: the world's non-special words, or every non-special id of the tokenizer."""
    return PromptFormat(tokenizer, world=world).allowed


def jailbreak_transfer(
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
    """The stage (:func:`reprsim.attacks.jailbreak_transfer.jailbreak_transfer`) with ``tokenizer``'s prompt format."""
    fmt = PromptFormat.from_options(tokenizer, opts, world)
    return _stage.jailbreak_transfer(model_a, model_b, fmt, behaviours, opts, seed=seed, judge=judge)


from reprsim.attacks.jailbreak_problems import stage_problems  # noqa: E402,F401 (moved)
