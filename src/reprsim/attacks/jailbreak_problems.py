"""Preflight problems of a ``jailbreak_transfer`` stage on Hugging Face LMs, found before any training."""

from __future__ import annotations

from typing import Any

from reprsim.attacks.jailbreak_options import JailbreakOptions, parse_options
from reprsim.attacks.jailbreak_prompts import behaviours_problem, load_behaviours
from reprsim.attacks.judges import judge_problems, judge_specs_of

__all__ = ["stage_problems"]


def _text_problems(opts: JailbreakOptions, specs: list[dict[str, Any]]) -> list[str]:
    if opts.behaviours is None:
        return [
            "consequences.jailbreak_transfer: give behaviours: a CSV in the AdvBench format (goal,target), e.g. "
            "harmful_behaviors.csv of llm-attacks"
        ]
    problem = behaviours_problem(opts.behaviours)
    problems = [problem] if problem else []
    if not problem:  # the stage refuses it too, but only after training
        n = len(load_behaviours(opts.behaviours))
        n_opt = opts.n_train if opts.mode == "universal" else 0
        if n < n_opt + (opts.n_eval or 1):
            problems.append(
                f"consequences.jailbreak_transfer: the stage needs n_train + n_eval = {n_opt} + "
                f"{opts.n_eval or 'at least 1'} behaviours (n_train counts in universal mode only), but "
                f"{opts.behaviours} gives {n}; lower them or give more behaviours"
            )
    if any(s["kind"] == "exact" for s in specs):
        problems.append(
            "consequences.jailbreak_transfer.judges: the exact judge knows only the chat world's "
            "answers; use refusal or an hf judge for real models"
        )
    return problems


def stage_problems(params: dict[str, Any], tokenizer: Any, *, chat_world: bool, model_name: str) -> list[str]:
    """Every problem of a ``jailbreak_transfer`` stage for one model, before training (one line each)."""
    try:
        opts = parse_options(params, warn=False).resolve("hf_world" if chat_world else "hf_text")
    except (TypeError, ValueError) as exc:
        return [str(exc)]
    specs = judge_specs_of(opts.judges)
    if chat_world:
        problems = (
            []
            if opts.behaviours is None
            else [
                "consequences.jailbreak_transfer.behaviours: the chat world brings its own behaviours (held-out "
                "forbidden requests); remove behaviours"
            ]
        )
    else:
        problems = _text_problems(opts, specs)
    if opts.chat_template and tokenizer is not None and not getattr(tokenizer, "chat_template", None):
        problems.append(
            f"models.{model_name}: its tokenizer has no chat template, but jailbreak_transfer uses one; "
            "use an instruct/chat model, or set consequences.jailbreak_transfer.chat_template: false "
            "(the raw prompt, as the paper's code did)"
        )
    for spec in specs:
        problems += judge_problems(spec)
    return problems
