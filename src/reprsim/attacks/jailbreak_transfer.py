"""The jailbreak transfer stage: a suffix optimised on one LM, answers of both judged, both directions.

One stage for every family: the chat world's zoo LMs and Hugging Face LMs differ only in their
prompt format (:mod:`reprsim.attacks.jailbreak_prompts`: :class:`WorldFormat` or
:class:`PromptFormat`), which builds the token ids, lists the suffix tokens and decodes answers.
The options are :class:`~reprsim.attacks.jailbreak_options.JailbreakOptions` (suffix search, mode,
decoding, judges, seed streams), resolved against the format's defaults.

Protocol (PAPER.md §7b, after Andriushchenko et al. 2024 and Zou et al. 2023): behaviours are
shuffled with the seed; in ``universal`` mode the first ``n_train`` train one suffix and the next
``n_eval`` evaluate it; in ``individual`` mode each of the first ``n_eval`` gets its own suffix.
The search (:func:`~reprsim.attacks.jailbreak.random_search` or :func:`~reprsim.attacks.jailbreak.gcg`)
maximises the log-probability of the target's first ``target_len`` tokens on the source model.
Conditions, for the direction A → B (suffix optimised on A): ``whitebox`` (A with its suffix),
``transfer`` (B with A's suffix), ``baseline`` (B, no suffix) and ``random_suffix`` (B, a random
suffix of the same length); B → A gets the suffix ``_ba``. Each answer is decoded greedily or
sampled (``n_samples`` per behaviour) and judged; each rate is the mean over behaviours of the
fraction of successful answers, with a 95 % Wilson interval that takes the *behaviour* as the unit.

Columns: ``jailbreak_<cond>_<stat>[_ba]`` with ``stat`` in ``asr``, ``content_asr`` (each with
``_low`` / ``_high``) and ``partial`` (mean partial credit, no interval) from the first judge, NaN
where it does not give them (only the exact judge gives ``content_asr`` and ``partial``);
``jailbreak_source_loss[_ba]``, ``jailbreak_n_eval``, ``jailbreak_n_samples``, ``jailbreak_judges``
(``name#template_hash,...``), ``jailbreak_transfer_asr_mean`` and ``jailbreak_transfer_content_asr_mean``
(means over both directions). With several judges also ``jailbreak_judge_<name>_<cond>_<stat>[_ba]``
and ``jailbreak_judge_<name>_transfer_asr_mean`` per judge, and per pair ``jailbreak_kappa_<a>_<b>``
(Cohen's κ on ``asr``, ``_low`` / ``_high`` a bootstrap over behaviours) and ``jailbreak_agreement_<a>_<b>``.

Exactness against the two older stages: with the format defaults (``world``: greedy, exact judge,
``streams: offset``; ``hf_world`` / ``hf_text``: sampled, ``streams: hashed``) every number is the
older stage's, with one exception in the last bit: the older llm stage passed ``rate * n`` to the
Wilson interval and this stage passes the sum of the per-behaviour rates; the two are equal when
``n_eval`` is a power of two (as in ``configs/llm_jailbreak.yaml``) and otherwise may differ by one
unit in the last place of ``_low`` / ``_high``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from reprsim.attacks.jailbreak import AttackPrompt, AttackResult, gcg, random_search
from reprsim.attacks.jailbreak_decoding import decode_batch
from reprsim.attacks.jailbreak_options import JailbreakOptions
from reprsim.attacks.jailbreak_prompts import Behaviour
from reprsim.attacks.judges import Judge, judge_agreement, judge_specs_of, make_judge
from reprsim.attacks.stats import wilson_interval

__all__ = ["jailbreak_transfer"]

_CONDITIONS = ("whitebox", "transfer", "baseline", "random_suffix")
#: stats of the unprefixed columns: every row has them (NaN where the first judge gives none)
_RATE_STATS = ("asr", "content_asr")
_MEAN_STATS = ("partial",)  # means of a score in [0, 1], not rates: no interval


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class _Streams:
    """The seeds of the search and the controls (see ``streams`` in :mod:`reprsim.attacks.jailbreak_options`)."""

    def __init__(self, kind: str, seed: int) -> None:
        self.offset, self.seed = kind == "offset", int(seed)

    def search(self, direction: int, behaviour: int | None) -> int:
        if self.offset:
            return self.seed + (behaviour or 0)
        return _seed(self.seed, direction, 1) if behaviour is None else _seed(self.seed, direction, 1, behaviour)

    def random_suffixes(self) -> int:
        return self.seed + 77 if self.offset else _seed(self.seed, 77)

    def decoding(self, direction: int, condition: int) -> int:
        return _seed(self.seed, direction, 2, condition)


def _rates(verdicts: list[list[dict[str, Any]]]) -> dict[str, float]:
    """Mean over behaviours of the per-behaviour success fraction, with the behaviour-level Wilson interval
    (``partial``: the mean only)."""
    out: dict[str, float] = {}
    n = len(verdicts)
    for key in verdicts[0][0]:
        per_behaviour = [float(np.mean([v[key] for v in samples])) for samples in verdicts]
        out[key] = float(np.mean(per_behaviour))
        if key not in _MEAN_STATS:
            out[f"{key}_low"], out[f"{key}_high"] = wilson_interval(sum(per_behaviour), n)
    return out


def _search(
    src: nn.Module, prompts: list[AttackPrompt], opts: JailbreakOptions, allowed: list[int], pad_id: int, seed: int
) -> AttackResult:
    common = {
        "suffix_len": opts.suffix_len,
        "steps": opts.steps,
        "allowed_tokens": allowed,
        "seed": seed,
        "early_stop": opts.early_stop,
        "pad_id": pad_id,
        "max_rows": opts.max_rows,
    }
    if opts.method == "gcg":
        return gcg(src, prompts, topk=opts.topk, batch_size=opts.batch_size, progressive=opts.progressive, **common)
    return random_search(
        src,
        prompts,
        n_candidates=opts.n_candidates,
        n_tokens_change=opts.n_tokens_change,
        n_restarts=opts.n_restarts,
        **common,
    )


def _split(behaviours: Sequence[Behaviour], opts: JailbreakOptions, seed: int) -> tuple[list, list]:
    """The seeded shuffle of ``behaviours`` cut into the training and the evaluation behaviours."""
    n_opt = opts.n_train if opts.mode == "universal" else 0
    order = np.random.default_rng([int(seed), 5_151]).permutation(len(behaviours))
    n_eval = len(behaviours) - n_opt if opts.n_eval is None else opts.n_eval
    if n_eval < 1 or len(behaviours) < n_opt + n_eval:
        raise ValueError(
            f"jailbreak_transfer: {len(behaviours)} behaviours, but the stage needs n_train + n_eval = "
            f"{n_opt} + {opts.n_eval if opts.n_eval is not None else 'at least 1'} (n_train counts in "
            "universal mode only); lower them or give more behaviours (the chat world: more "
            "held-out forbidden requests, n_heldout_per_family)"
        )
    chosen = [behaviours[i] for i in order[: n_opt + n_eval]]
    return chosen[:n_opt], chosen[n_opt:]


def _judges(opts: JailbreakOptions, world: Any, judge: Judge | Sequence[Any] | None) -> list[Judge]:
    """The stage's judges: ``judge`` (a :class:`Judge`, a plain callable or a list of them) or those of ``opts``."""
    if judge is None:
        return [make_judge(spec, world) for spec in judge_specs_of(opts.judges)]
    judges = list(judge) if isinstance(judge, (list, tuple)) else [judge]
    return [
        j
        if isinstance(j, Judge)
        else Judge(
            f"custom{i}", f"custom judge {i}", lambda bs, ts, ids, j=j: [j(b, t, o) for b, t, o in zip(bs, ts, ids)]
        )
        for i, j in enumerate(judges)
    ]


def _record(out: dict[str, Any], judges: list[Judge], verdicts: list, cond: str, tag: str) -> None:
    """Write one condition's columns: the first judge unprefixed (NaN for the stats it lacks) and, with
    several judges, every judge under ``jailbreak_judge_<name>_``."""
    for j, judge_verdicts in enumerate(verdicts):
        rates = _rates(judge_verdicts)
        if j == 0:
            full = {s: np.nan for stat in _RATE_STATS for s in (stat, f"{stat}_low", f"{stat}_high")}
            for stat, value in (full | {s: np.nan for s in _MEAN_STATS} | rates).items():
                out[f"jailbreak_{cond}_{stat}{tag}"] = float(value)
        if len(judges) > 1:
            for stat, value in rates.items():
                out[f"jailbreak_judge_{judges[j].name}_{cond}_{stat}{tag}"] = float(value)


def jailbreak_transfer(
    model_a: nn.Module,
    model_b: nn.Module,
    fmt: Any,
    behaviours: Sequence[Behaviour],
    opts: JailbreakOptions,
    *,
    seed: int = 0,
    judge: Judge | Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Optimise suffixes on one model, decode answers of both, judge them; both directions (module docstring).

    ``fmt``: the prompt format (:class:`~reprsim.attacks.jailbreak_prompts.WorldFormat` or
    :class:`~reprsim.attacks.jailbreak_prompts.PromptFormat`); ``opts``: resolved options
    (``opts.resolve(fmt.defaults)``); ``judge``: judges to use instead of ``opts.judges``.
    Returns the flat dict of columns described in the module docstring.
    """
    if len(behaviours) == 0:
        raise ValueError("jailbreak_transfer: no behaviours")
    if opts.max_new_tokens is None or opts.n_samples is None:
        raise ValueError("jailbreak_transfer: resolve the options first (opts.resolve(fmt.defaults, ...))")
    judges = _judges(opts, getattr(fmt, "world", None), judge)
    streams = _Streams(opts.streams, seed)
    opt_beh, eval_beh = _split(behaviours, opts, seed)
    allowed, pad = fmt.allowed, fmt.pad_id
    stops = fmt.stop_ids(model_a)
    gen = torch.Generator().manual_seed(streams.random_suffixes())
    random_suffixes = [
        torch.as_tensor(allowed)[torch.randint(0, len(allowed), (opts.suffix_len,), generator=gen)].tolist()
        for _ in eval_beh
    ]
    prompts = {id(b): fmt.attack_prompt(b) for b in opt_beh + eval_beh}
    greedy = opts.decoding == "greedy"

    def verdicts_of(model: nn.Module, suffixes: Sequence[Sequence[int]], stream: int) -> list[list[list[dict]]]:
        """Per judge, per behaviour, per answer: the verdict on one answer."""
        ids = [fmt.ids(prompts[id(b)], s) for b, s in zip(eval_beh, suffixes)]
        outs = decode_batch(
            model,
            ids,
            opts.n_samples,
            max_new_tokens=opts.max_new_tokens,
            greedy=greedy,
            temperature=opts.temperature or 1.0,
            top_p=opts.top_p or 1.0,
            seed=stream,
            stop_ids=stops,
            pad_id=pad,
            batch_rows=opts.batch_rows,
        )
        flat_b = [b for b, answers in zip(eval_beh, outs) for _ in answers]
        flat_ids = [o for answers in outs for o in answers]
        flat_text = [fmt.decode(o) for o in flat_ids]
        n = opts.n_samples
        return [
            [v[i * n : (i + 1) * n] for i in range(len(eval_beh))]
            for v in (j.batch(flat_b, flat_text, flat_ids) for j in judges)
        ]

    out: dict[str, Any] = {
        "jailbreak_n_eval": float(len(eval_beh)),
        "jailbreak_n_samples": float(opts.n_samples),
        "jailbreak_judges": ",".join(f"{j.name}#{j.template_hash}" for j in judges),
    }
    asr: list[list[np.ndarray]] = [[] for _ in judges]  # per judge: (behaviour × answer) asr blocks
    directions: Any = [("", model_a, model_b), ("_ba", model_b, model_a)]
    if opts.progress:
        from tqdm.auto import tqdm

        directions = tqdm(directions, desc=f"jailbreak {opts.method} (A->B, B->A)", leave=False)
    for d, (tag, src, vic) in enumerate(directions):
        src.eval()
        vic.eval()
        if opts.mode == "universal":
            res = _search(src, [prompts[id(b)] for b in opt_beh], opts, allowed, pad, streams.search(d, None))
            suffixes, losses = [res.suffix] * len(eval_beh), [res.loss]
        else:
            results = [
                _search(src, [prompts[id(b)]], opts, allowed, pad, streams.search(d, i)) for i, b in enumerate(eval_beh)
            ]
            suffixes, losses = [r.suffix for r in results], [r.loss for r in results]
        conds = {
            "whitebox": (src, suffixes),
            "transfer": (vic, suffixes),
            "baseline": (vic, [[] for _ in eval_beh]),
            "random_suffix": (vic, random_suffixes),
        }
        for c, (cond, (model, sfx)) in enumerate(conds.items()):
            per_judge = verdicts_of(model, sfx, streams.decoding(d, c))
            for j, verdicts in enumerate(per_judge):
                asr[j].append(np.array([[v["asr"] for v in answers] for answers in verdicts], bool))
            _record(out, judges, per_judge, cond, tag)
        out[f"jailbreak_source_loss{tag}"] = float(np.mean(losses))
    _means_and_agreement(out, judges, asr, seed)
    return out


def _means_and_agreement(out: dict[str, Any], judges: list[Judge], asr: list[list[np.ndarray]], seed: int) -> None:
    """The means over both directions, and per pair of judges their agreement on ``asr``."""
    prefixes = ["jailbreak_"] + ([f"jailbreak_judge_{j.name}_" for j in judges] if len(judges) > 1 else [])
    for prefix in prefixes:
        out[f"{prefix}transfer_asr_mean"] = 0.5 * (out[f"{prefix}transfer_asr"] + out[f"{prefix}transfer_asr_ba"])
    out["jailbreak_transfer_content_asr_mean"] = 0.5 * (
        out["jailbreak_transfer_content_asr"] + out["jailbreak_transfer_content_asr_ba"]
    )
    for i in range(len(judges)):
        for k in range(i + 1, len(judges)):
            agree = judge_agreement(np.hstack(asr[i]), np.hstack(asr[k]), seed=_seed(seed, 2_604))
            pair = f"{judges[i].name}_{judges[k].name}"
            out |= {
                f"jailbreak_kappa_{pair}": agree["kappa"],
                f"jailbreak_kappa_{pair}_low": agree["kappa_low"],
                f"jailbreak_kappa_{pair}_high": agree["kappa_high"],
                f"jailbreak_agreement_{pair}": agree["agreement"],
            }
