"""Jailbreak transfer in the chat world (older entry point): the stage is :mod:`reprsim.attacks.jailbreak_transfer`.

:func:`jailbreak_transfer_stage` keeps the chat kind's call working: it parses its keyword
options as :class:`~reprsim.attacks.jailbreak_options.JailbreakOptions`, resolves them with the
chat world's zoo defaults (greedy, the exact judge, ``streams: offset``) and runs the one stage
on the world's held-out forbidden requests in :class:`~reprsim.attacks.jailbreak_prompts.WorldFormat`.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from reprsim.attacks.jailbreak_options import JailbreakOptions, parse_options
from reprsim.attacks.jailbreak_prompts import WorldFormat, chat_world_behaviours
from reprsim.attacks.jailbreak_transfer import jailbreak_transfer

__all__ = ["jailbreak_transfer_stage", "world_options"]


def world_options(world: Any, params: dict[str, Any] | JailbreakOptions, *, warn: bool = False) -> JailbreakOptions:
    """``params`` resolved for the chat world's zoo LMs (answers: the world's answer length + 1 tokens)."""
    return parse_options(params, warn=warn).resolve("world", max_new_tokens=world.response_len + 1)


def jailbreak_transfer_stage(
    model_a: nn.Module,
    model_b: nn.Module,
    world,
    split,
    *,
    method: str = "random_search",
    mode: str = "universal",
    n_requests: int = 8,
    n_eval: int = 64,
    suffix_len: int = 10,
    steps: int = 100,
    target_len: int = 2,
    seed: int = 0,
    progress: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Optimise jailbreak suffixes on one chat model and measure their success on the other, both ways.

    The older chat stage's signature; ``n_requests`` is the older name of ``n_train``, and
    ``options`` takes any other :class:`~reprsim.attacks.jailbreak_options.JailbreakOptions` key
    (``n_candidates``, ``topk``, ``decoding``, ``judges``, ...). Columns: see
    :mod:`reprsim.attacks.jailbreak_transfer`.
    """
    named = {
        "method": method,
        "mode": mode,
        "n_eval": n_eval,
        "suffix_len": suffix_len,
        "steps": steps,
        "target_len": target_len,
        "progress": progress,
    }
    if "n_train" not in options:
        named["n_train"] = n_requests
    opts = world_options(world, named | options)
    behaviours = chat_world_behaviours(world, split, opts.target_len)
    return jailbreak_transfer(model_a, model_b, WorldFormat.from_options(world, opts), behaviours, opts, seed=seed)


# The chat kind checks a config's options against this signature: list every option key in it.
_sig = inspect.signature(jailbreak_transfer_stage)
_extra = [
    inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None)  # None: the format default
    for k in JailbreakOptions.model_fields
    if k not in _sig.parameters
]
jailbreak_transfer_stage.__signature__ = _sig.replace(
    parameters=[*list(_sig.parameters.values())[:-1], *_extra, _sig.parameters["options"]]
)
del _sig, _extra
