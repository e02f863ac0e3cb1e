"""Two-phase training of small chat models in the synthetic world, and their evaluation.

Phase 1 (*pre-training*): every request of the model's training set is answered, forbidden
families included, so the model learns all the knowledge. Phase 2 (*safety tuning*): the same
requests, but forbidden ones get the fixed refusal and benign ones their answer. The loss is the
next-token cross-entropy on the assistant's tokens only (response words and ``<end>``).
"""

from __future__ import annotations

import difflib
import math
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from reprsim.chat.judge import judge_response
from reprsim.chat.lm import greedy_generate, pad_right
from reprsim.chat.world import ChatWorld, Request
from reprsim.models.gpt import GPT

__all__ = ["ChatTrainConfig", "build_dialogues", "train_chat_model", "evaluate_chat_model"]


@dataclass(frozen=True)
class ChatTrainConfig:
    """Model size and training recipe (defaults: ~0.11M-parameter GPT).

    ``shared_base=True`` (default): the two-phase recipe (``pretrain_steps``/``lr``,
    ``safety_steps``/``safety_lr``) trains one base per world and ``base_seed`` on its own pool of
    ``base_n_per_family`` requests per family, and each model of a pair is that base fine-tuned for
    ``finetune_steps`` at ``finetune_lr`` on its split (:mod:`reprsim.chat.finetune`).
    ``shared_base=False``: each model runs the two-phase recipe from scratch on its split (the
    fine-tuning and base fields are unused).
    """

    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 48          # prompt (<= 15) + suffix (<= 24) + <assistant> + response (7)
    dropout: float = 0.0
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    pretrain_steps: int = 800     # phase 1: everything answered
    safety_steps: int = 400       # phase 2: forbidden -> refusal
    safety_lr: float = 1e-3
    n_train_per_family: int = 160  # size of the shared dialogue pool per family (before splitting)
    n_heldout_per_family: int = 40  # held-out requests per family (evaluation, probes, attacks)
    noise_copies: int = 1         # extra copy of each dialogue with random words before <assistant>,
    noise_max_len: int = 12       # 1..noise_max_len of them: robustness to random (not adversarial) suffixes
    # shared-base mode (reprsim.chat.finetune): one base model per (world, base_seed), pre-trained for
    # pretrain_steps (lr) and safety-tuned for safety_steps (safety_lr) on its own dialogue pool, then
    # A and B each fine-tuned from a copy of it on their split for finetune_steps (finetune_lr).
    shared_base: bool = True
    base_seed: int = 0
    base_n_per_family: int = 160  # the base's own dialogue pool per family (disjoint from the split's pools)
    finetune_steps: int = 300
    finetune_lr: float = 1e-3

    @classmethod
    def from_dict(cls, cfg: dict[str, Any] | None) -> ChatTrainConfig:
        """Build a config from a dict, rejecting unknown keys with the closest valid name."""
        cfg = dict(cfg or {})
        names = [f.name for f in fields(cls)]
        for key in cfg:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"train_cfg: unknown key {key!r}.{hint} Valid keys: {names}.")
        out = cls(**cfg)
        if not isinstance(out.shared_base, bool):
            raise TypeError(f"train_cfg: shared_base must be true or false, got {out.shared_base!r}.")
        for name in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "n_train_per_family",
                     "n_heldout_per_family", "base_n_per_family"):
            if getattr(out, name) < 1:
                raise ValueError(f"train_cfg: {name} must be >= 1, got {getattr(out, name)}.")
        for name in ("pretrain_steps", "safety_steps", "warmup_steps", "noise_copies", "noise_max_len",
                     "finetune_steps"):
            if getattr(out, name) < 0:
                raise ValueError(f"train_cfg: {name} must be >= 0, got {getattr(out, name)}.")
        if out.lr <= 0 or out.safety_lr <= 0 or out.finetune_lr <= 0:
            raise ValueError(f"train_cfg: lr, safety_lr and finetune_lr must be > 0, got {out.lr}, "
                             f"{out.safety_lr} and {out.finetune_lr}.")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a plain dict."""
        return asdict(self)


def build_dialogues(world: ChatWorld, requests: Sequence[Request], *, safety: bool, noise_copies: int = 0,
                    noise_max_len: int = 0, seed: int = 0, per_request_noise: bool = False) -> tuple[Tensor, Tensor]:
    """Tokenise dialogues for training.

    Every request gives one clean dialogue plus ``noise_copies`` copies whose prompt ends with
    1..``noise_max_len`` random non-special words (drawn with ``seed``) before ``<assistant>``.
    With ``per_request_noise=True`` each request's noise is drawn from ``seed`` and the request's
    words alone, so a request shared by two training sets gives identical dialogues in both.
    Returns ``ids`` (N, T) right-padded with ``<pad>`` and ``targets`` (N, T) where
    ``targets[i, t]`` is the token at ``t + 1`` if it belongs to the assistant's response and
    -100 (ignored) otherwise. With ``safety=True`` forbidden requests get the refusal.
    """
    if len(requests) == 0:
        raise ValueError("build_dialogues: got no requests.")
    rng = np.random.default_rng([int(seed), 313])
    words = np.asarray(world.suffix_token_ids)
    seqs, starts = [], []
    for r in requests:
        if per_request_noise:
            rng = np.random.default_rng([int(seed), 313, zlib.crc32(" ".join(r.words).encode())])
        refuse = safety and world.families[r.family].forbidden
        response = world.encode(world.response(r, refuse=refuse))
        for copy in range(1 + (noise_copies if noise_max_len > 0 else 0)):
            noise = rng.choice(words, size=int(rng.integers(1, noise_max_len + 1))).tolist() if copy else []
            prompt = world.prompt_ids(r, noise)
            seqs.append(prompt + response)
            starts.append(len(prompt))
    ids, lens = pad_right(seqs, world.pad_id)
    t = ids.shape[1]
    pos = torch.arange(t).unsqueeze(0)  # position of the *predicted* token is pos + 1
    nxt = torch.cat([ids[:, 1:], torch.full((len(seqs), 1), world.pad_id)], dim=1)
    start_t = torch.as_tensor(starts).unsqueeze(1)
    keep = (pos + 1 >= start_t) & (pos + 1 < lens.unsqueeze(1))
    return ids, torch.where(keep, nxt, torch.full_like(nxt, -100))


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac))))


def _run_phase(model: GPT, ids: Tensor, targets: Tensor, *, steps: int, lr: float, cfg: ChatTrainConfig,
               gen: torch.Generator, desc: str, progress: bool) -> list[float]:
    if steps == 0:
        return []
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    losses: list[float] = []
    model.train()
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=desc, leave=False)
    for step in it:
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, min(cfg.warmup_steps, steps))
        idx = torch.randint(0, ids.shape[0], (cfg.batch_size,), generator=gen)
        logits = model(ids[idx])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[idx].reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def train_chat_model(world: ChatWorld, requests: Sequence[Request], cfg: ChatTrainConfig | dict[str, Any] | None = None,
                     *, seed: int = 0, progress: bool = False, desc: str = "chat",
                     num_threads: int | None = 1) -> tuple[GPT, dict[str, list[float]]]:
    """Train a GPT chat model on ``requests`` in two phases (pre-training, then safety tuning).

    ``num_threads`` caps torch's intra-op threads during training (restored afterwards); the
    default 1 is fastest for these ~0.1M-parameter models and avoids heavy slow-downs when the
    CPU is shared (measured ~10x on a loaded 2-core machine); None leaves the setting alone.
    Returns ``(model, history)`` with the model in eval mode and ``history`` holding the per-step
    losses of each phase (``"pretrain"``, ``"safety"``). Same seed and inputs give the same weights.
    """
    if num_threads is None:
        return _train(world, requests, cfg, seed=seed, progress=progress, desc=desc)
    before = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        return _train(world, requests, cfg, seed=seed, progress=progress, desc=desc)
    finally:
        torch.set_num_threads(before)


def _train(world: ChatWorld, requests: Sequence[Request], cfg: ChatTrainConfig | dict[str, Any] | None, *,
           seed: int, progress: bool, desc: str) -> tuple[GPT, dict[str, list[float]]]:
    cfg = cfg if isinstance(cfg, ChatTrainConfig) else ChatTrainConfig.from_dict(cfg)
    longest = world.max_prompt_len + world.response_len + cfg.noise_max_len
    if cfg.block_size < longest:
        raise ValueError(f"train_chat_model: block_size {cfg.block_size} is shorter than the longest dialogue "
                         f"({longest} tokens); use block_size >= {longest} plus the suffix length.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(world.vocab_size, cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                    n_embd=cfg.n_embd, dropout=cfg.dropout)
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    history: dict[str, list[float]] = {}
    noise = {"noise_copies": cfg.noise_copies, "noise_max_len": cfg.noise_max_len}
    ids, tgt = build_dialogues(world, requests, safety=False, seed=seed, **noise)
    history["pretrain"] = _run_phase(model, ids, tgt, steps=cfg.pretrain_steps, lr=cfg.lr, cfg=cfg, gen=gen,
                                     desc=f"{desc} pre-train", progress=progress)
    ids, tgt = build_dialogues(world, requests, safety=True, seed=seed + 1, **noise)
    history["safety"] = _run_phase(model, ids, tgt, steps=cfg.safety_steps, lr=cfg.safety_lr, cfg=cfg, gen=gen,
                                   desc=f"{desc} safety", progress=progress)
    model.eval()
    return model, history


def evaluate_chat_model(model: GPT, world: ChatWorld, requests: Sequence[Request]) -> dict[str, float]:
    """Greedy-decode every request and judge it exactly.

    Returns a dict of floats: ``refusal_rate`` (forbidden requests refused), ``forbidden_content_rate``
    (forbidden requests answered correctly), ``benign_accuracy`` (benign requests answered
    correctly and not refused), ``benign_refusal_rate``, ``benign_partial`` (mean partial credit),
    and the counts ``n_forbidden``/``n_benign``. A rate with no requests is NaN.
    """
    outs = greedy_generate(model, [world.prompt_ids(r) for r in requests], world.response_len + 1,
                           pad_id=world.pad_id, stop_id=world.end_id)
    verdicts = [(world.families[r.family].forbidden, judge_response(world, r, o)) for r, o in zip(requests, outs)]
    forb = [j for f, j in verdicts if f]
    ben = [j for f, j in verdicts if not f]

    def rate(xs: list[float]) -> float:
        return float(sum(xs) / len(xs)) if xs else float("nan")

    return {
        "refusal_rate": rate([j.refused for j in forb]),
        "forbidden_content_rate": rate([j.content for j in forb]),
        "benign_accuracy": rate([j.content and not j.refused for j in ben]),
        "benign_refusal_rate": rate([j.refused for j in ben]),
        "benign_partial": rate([j.partial for j in ben]),
        "n_forbidden": float(len(forb)),
        "n_benign": float(len(ben)),
    }
