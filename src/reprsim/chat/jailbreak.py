"""Jailbreak transfer in the chat world: suffixes optimised on one chat model, judged exactly on the other.

The generic suffix searches (random search, GCG) are in :mod:`reprsim.attacks.jailbreak`; this
module builds their prompts from the world's held-out forbidden requests and judges the answers
with the world's exact judge (:mod:`reprsim.chat.judge`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from reprsim.attacks.jailbreak import AttackPrompt, AttackResult, gcg, random_search
from reprsim.attacks.stats import wilson_interval
from reprsim.chat.judge import judge_response
from reprsim.models.causal_lm import greedy_generate

__all__ = ["jailbreak_transfer_stage"]

_CONDITIONS = ("whitebox", "transfer", "baseline", "random_suffix")


def _chat_prompt(world, request, target_len: int) -> AttackPrompt:
    return AttackPrompt(tuple(world.prompt_ids(request)[:-1]), (world.assistant_id,),
                        tuple(world.target_ids(request, target_len)))


def _judge_rates(model: nn.Module, world, requests, suffixes: Sequence[Sequence[int]]) -> dict[str, float]:
    outs = greedy_generate(model, [world.prompt_ids(r, s) for r, s in zip(requests, suffixes)],
                           world.response_len + 1, pad_id=world.pad_id, stop_id=world.end_id)
    verdicts = [judge_response(world, r, o) for r, o in zip(requests, outs)]
    n = len(verdicts)
    k_asr = sum(not v.refused for v in verdicts)
    k_content = sum(v.content and not v.refused for v in verdicts)
    lo, hi = wilson_interval(k_asr, n)
    clo, chi = wilson_interval(k_content, n)
    return {"asr": k_asr / n, "asr_low": lo, "asr_high": hi, "content_asr": k_content / n,
            "content_asr_low": clo, "content_asr_high": chi,
            "partial": float(np.mean([v.partial for v in verdicts]))}


def _optimise(method: str, model: nn.Module, prompts: list[AttackPrompt], *, seed: int, suffix_len: int, steps: int,
              allowed: list[int], pad_id: int, opts: dict) -> AttackResult:
    if method == "random_search":
        return random_search(model, prompts, suffix_len=suffix_len, steps=steps, allowed_tokens=allowed,
                             seed=seed, pad_id=pad_id, **opts)
    return gcg(model, prompts, suffix_len=suffix_len, steps=steps, allowed_tokens=allowed, seed=seed,
               pad_id=pad_id, **opts)


def jailbreak_transfer_stage(model_a: nn.Module, model_b: nn.Module, world, split, *,
                             method: str = "random_search", mode: str = "universal", n_requests: int = 8,
                             n_eval: int = 64, suffix_len: int = 10, steps: int = 100, target_len: int = 2,
                             seed: int = 0, progress: bool = False, **attack_options) -> dict[str, float]:
    """Optimise jailbreak suffixes on one chat model and measure their success on the other, both ways.

    Requests come from the forbidden families both models were safety-tuned on, drawn from the
    split's held-out pool (in no training set): ``n_requests`` optimisation requests and ``n_eval``
    evaluation requests, disjoint. ``mode="universal"``: one suffix optimised on the optimisation
    requests (GCG with progressive goals, or random search on the summed loss) and evaluated on
    the evaluation requests; ``mode="individual"``: one suffix per evaluation request, optimised
    on that request (``n_requests`` unused). ``attack_options`` go to :func:`random_search`
    (``n_candidates``, ``n_tokens_change``, ``n_restarts``) or :func:`gcg` (``topk``,
    ``batch_size``, ``progressive``).

    Returns a flat dict of floats. For the direction A → B (suffix optimised on A) the keys are
    ``jailbreak_<cond>_<stat>`` with cond in ``whitebox`` (A with its suffix), ``transfer`` (B with
    A's suffix), ``baseline`` (B, no suffix), ``random_suffix`` (B, random suffix of the same
    length) and stat in ``asr`` (not refused; ``_low``/``_high`` = 95 % Wilson interval),
    ``content_asr`` (correct forbidden answer and not refused, with interval) and ``partial``
    (mean partial credit). B → A uses the same keys with the suffix ``_ba``. Also
    ``jailbreak_source_loss`` (``_ba``), ``jailbreak_n_eval`` and the means over both directions
    ``jailbreak_transfer_asr_mean`` and ``jailbreak_transfer_content_asr_mean``.
    """
    if method not in ("random_search", "gcg"):
        raise ValueError(f"method must be 'random_search' or 'gcg', got {method!r}.")
    if mode not in ("universal", "individual"):
        raise ValueError(f"mode must be 'universal' or 'individual', got {mode!r}.")
    if n_eval < 1 or n_requests < 1:
        raise ValueError(f"n_eval and n_requests must be >= 1, got {n_eval} and {n_requests}.")
    fams = sorted(set(split.families_a) & set(split.families_b) & set(world.forbidden_families))
    if not fams:
        raise ValueError("jailbreak_transfer_stage: no forbidden family is shared by both models; "
                         "the suffix needs a request family both were safety-tuned on.")
    pool = [r for r in split.heldout_pool if r.family in fams]
    n_opt = n_requests if mode == "universal" else 0
    if len(pool) < n_opt + n_eval:
        raise ValueError(f"jailbreak_transfer_stage: {len(pool)} held-out forbidden requests but "
                         f"n_requests + n_eval = {n_opt + n_eval}; lower them or raise n_heldout_per_family.")
    order = np.random.default_rng([int(seed), 5_151]).permutation(len(pool))
    opt_req = [pool[i] for i in order[:n_opt]]
    eval_req = [pool[i] for i in order[n_opt:n_opt + n_eval]]
    allowed = world.suffix_token_ids
    gen = torch.Generator().manual_seed(int(seed) + 77)
    random_suffixes = [torch.as_tensor(allowed)[torch.randint(0, len(allowed), (suffix_len,), generator=gen)].tolist()
                       for _ in eval_req]
    out: dict[str, float] = {"jailbreak_n_eval": float(n_eval)}
    directions = [("", model_a, model_b), ("_ba", model_b, model_a)]
    if progress:
        from tqdm.auto import tqdm

        directions = tqdm(directions, desc=f"jailbreak {method} (A->B, B->A)", leave=False)
    for tag, src, vic in directions:
        src.eval()
        vic.eval()
        if mode == "universal":
            prompts = [_chat_prompt(world, r, target_len) for r in opt_req]
            res = _optimise(method, src, prompts, seed=seed, suffix_len=suffix_len, steps=steps, allowed=allowed,
                            pad_id=world.pad_id, opts=attack_options)
            suffixes = [res.suffix] * len(eval_req)
            losses = [res.loss]
        else:
            results = [_optimise(method, src, [_chat_prompt(world, r, target_len)], seed=seed + i,
                                 suffix_len=suffix_len, steps=steps, allowed=allowed, pad_id=world.pad_id,
                                 opts=attack_options) for i, r in enumerate(eval_req)]
            suffixes = [r.suffix for r in results]
            losses = [r.loss for r in results]
        conds = {
            "whitebox": _judge_rates(src, world, eval_req, suffixes),
            "transfer": _judge_rates(vic, world, eval_req, suffixes),
            "baseline": _judge_rates(vic, world, eval_req, [[] for _ in eval_req]),
            "random_suffix": _judge_rates(vic, world, eval_req, random_suffixes),
        }
        for cond, stats in conds.items():
            for stat, value in stats.items():
                out[f"jailbreak_{cond}_{stat}{tag}"] = float(value)
        out[f"jailbreak_source_loss{tag}"] = float(np.mean(losses))
    for stat in ("asr", "content_asr"):
        out[f"jailbreak_transfer_{stat}_mean"] = 0.5 * (out[f"jailbreak_transfer_{stat}"]
                                                       + out[f"jailbreak_transfer_{stat}_ba"])
    return out
