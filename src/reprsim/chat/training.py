"""Training chat models of the synthetic world through reprsim's one training loop, and their evaluation.

A chat model's training data is a :class:`reprsim.train.MaskedTokens` of dialogues whose loss is
the next-token cross-entropy on the assistant's tokens only (response words and ``<end>``).

* **Two-phase from scratch** (:func:`train_two_phase`): phase 1 (*pre-training*) answers every
  request of the training set, forbidden families included, so the model learns all the
  knowledge; phase 2 (*safety tuning*) trains on the same requests with forbidden ones getting the
  fixed refusal.
* **Fine-tuning a shared base** (:func:`finetune`): a base trained two-phase on its own pool
  (:func:`base_pools`), then fine-tuned on a model's split (forbidden → refusal, benign → answer).

Each phase is one :func:`reprsim.train.train` call with the config of :meth:`ChatRecipe.phase`
(AdamW, linear warm-up then cosine decay to 10 % of the peak rate, gradient clipping).
"""

from __future__ import annotations

import difflib
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reprsim.chat.judge import judge_response
from reprsim.models.causal_lm import greedy_generate, pad_right
from reprsim.chat.world import ChatWorld, Request

__all__ = ["ChatRecipe", "base_pools", "build_dialogues", "evaluate_chat_model", "finetune", "train_two_phase"]


@dataclass(frozen=True)
class ChatRecipe:
    """The training recipe of chat models (the ``train`` section of a ``chat`` sweep).

    The architecture comes from the config's ``models`` (a zoo language model such as ``gpt``
    with ``n_layer``/``n_head``/``n_embd`` options). ``shared_base=True`` (default): the two-phase
    recipe (``pretrain_steps``/``lr``, ``safety_steps``/``safety_lr``) trains one base per world,
    model and ``base_seed`` on its own pool of ``base_n_per_family`` requests per family, and each
    model of a pair is that base fine-tuned for ``finetune_steps`` at ``finetune_lr`` on its split.
    ``shared_base=False``: each model runs the two-phase recipe from scratch on its split.
    """

    block_size: int = 48  # prompt (<= 15) + suffix (<= 24) + <assistant> + response (7)
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    pretrain_steps: int = 800  # phase 1: everything answered
    safety_steps: int = 400  # phase 2: forbidden -> refusal
    safety_lr: float = 1e-3
    n_train_per_family: int = 160  # size of the shared dialogue pool per family (before splitting)
    n_heldout_per_family: int = 40  # held-out requests per family (evaluation, probes, attacks)
    noise_copies: int = 1  # extra copy of each dialogue with random words before <assistant>,
    noise_max_len: int = 12  # 1..noise_max_len of them: robustness to random (not adversarial) suffixes
    shared_base: bool = True
    base_seed: int = 0
    base_n_per_family: int = 160  # the base's own dialogue pool per family (disjoint from the split's pools)
    finetune_steps: int = 300
    finetune_lr: float = 1e-3

    @classmethod
    def from_dict(cls, cfg: dict[str, Any] | None) -> ChatRecipe:
        """Build a recipe from a dict, rejecting unknown keys with the closest valid name."""
        cfg = dict(cfg or {})
        names = [f.name for f in fields(cls)]
        for key in cfg:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                arch = (
                    " The architecture (n_layer, n_head, n_embd, dropout) is set in models[].options."
                    if key in ("n_layer", "n_head", "n_embd", "dropout")
                    else ""
                )
                raise ValueError(f"unknown chat training key {key!r}.{hint}{arch} Valid keys: {names}.")
        out = cls(**cfg)
        if not isinstance(out.shared_base, bool):
            raise TypeError(f"shared_base must be true or false, got {out.shared_base!r}.")
        for name in ("block_size", "batch_size", "n_train_per_family", "n_heldout_per_family", "base_n_per_family"):
            if (
                isinstance(getattr(out, name), bool)
                or not isinstance(getattr(out, name), int)
                or getattr(out, name) < 1
            ):
                raise ValueError(f"{name} must be an int >= 1, got {getattr(out, name)!r}.")
        for name in (
            "pretrain_steps",
            "safety_steps",
            "warmup_steps",
            "noise_copies",
            "noise_max_len",
            "finetune_steps",
            "base_seed",
        ):
            if (
                isinstance(getattr(out, name), bool)
                or not isinstance(getattr(out, name), int)
                or getattr(out, name) < 0
            ):
                raise ValueError(f"{name} must be an int >= 0, got {getattr(out, name)!r}.")
        if not out.lr > 0 or not out.safety_lr > 0 or not out.finetune_lr > 0:
            raise ValueError(
                f"lr, safety_lr and finetune_lr must be > 0, got {out.lr}, {out.safety_lr} and {out.finetune_lr}."
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the recipe as a plain dict."""
        return asdict(self)

    def base_fields(self) -> dict[str, Any]:
        """The fields that determine the shared base model (not the fine-tuning ones)."""
        skip = ("shared_base", "finetune_steps", "finetune_lr")
        return {k: v for k, v in self.to_dict().items() if k not in skip}

    def phase(self, steps: int, lr: float):
        """The :class:`reprsim.train.TrainConfig` of one training phase of ``steps`` steps at peak ``lr``."""
        from reprsim.train import TrainConfig

        return TrainConfig(
            optimizer="adamw",
            lr=lr,
            betas=(0.9, 0.95),
            weight_decay=self.weight_decay,
            schedule="cosine",
            min_lr_ratio=0.1,
            warmup_steps=min(self.warmup_steps, steps),
            grad_clip=self.grad_clip if self.grad_clip > 0 else None,
            batch_size=self.batch_size,
            block_size=self.block_size,
            max_steps=steps,
            eval_interval=steps,
        )


def base_pools(world: ChatWorld, recipe: ChatRecipe) -> tuple[list[Request], list[Request]]:
    """Return ``(base_pool, heldout_pool)``: the base's training requests and the held-out requests.

    Both come from the same draw as :func:`reprsim.chat.split.make_chat_split` (pool seed
    :data:`~reprsim.chat.split.POOL_SEED`; the base pool is drawn after the fine-tuning and held-out
    pools, so it leaves them unchanged and shares no request with them).
    """
    from reprsim.chat.split import POOL_SEED

    _, heldout, base = world.request_pools(
        [recipe.n_train_per_family, recipe.n_heldout_per_family, recipe.base_n_per_family], seed=POOL_SEED
    )
    return base, heldout


def build_dialogues(
    world: ChatWorld,
    requests: Sequence[Request],
    *,
    safety: bool,
    noise_copies: int = 0,
    noise_max_len: int = 0,
    seed: int = 0,
    per_request_noise: bool = False,
) -> tuple[Tensor, Tensor]:
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


def _check_fits(world: ChatWorld, recipe: ChatRecipe) -> None:
    longest = world.max_prompt_len + world.response_len + recipe.noise_max_len
    if recipe.block_size < longest:
        raise ValueError(
            f"block_size {recipe.block_size} is shorter than the longest dialogue ({longest} tokens); "
            f"use block_size >= {longest} plus the suffix length."
        )


def _phase(
    model: nn.Module,
    dialogues: tuple[Tensor, Tensor],
    steps: int,
    lr: float,
    recipe: ChatRecipe,
    seed: int,
    checkpoint_dir: Path | None,
    device: torch.device | None,
    progress: bool,
) -> list[float]:
    """Train one phase in place; returns its per-evaluation training losses (empty for 0 steps)."""
    from reprsim.train import MaskedTokens, train

    if steps == 0:
        return []
    result = train(
        model,
        MaskedTokens(*dialogues),
        recipe.phase(steps, lr),
        seed,
        checkpoint_dir=checkpoint_dir,
        progress=progress,
        device=device,
    )
    return [entry["train_loss"] for entry in result.history]


def _sub(folder: Path | None, name: str) -> Path | None:
    return None if folder is None else Path(folder) / name


def train_two_phase(
    model: nn.Module,
    world: ChatWorld,
    requests: Sequence[Request],
    recipe: ChatRecipe,
    *,
    seed: int,
    checkpoint_dir: Path | None = None,
    device: torch.device | None = None,
    progress: bool = False,
) -> dict[str, list[float]]:
    """Pre-train (everything answered) then safety-tune (forbidden → refusal) ``model`` in place.

    ``seed`` seeds the batch order and the dialogues' noise copies. Returns the training losses of
    each phase (``"pretrain"``, ``"safety"``); the model is left in eval mode. Same seed, inputs
    and initial weights give the same weights (on CPU).
    """
    _check_fits(world, recipe)
    noise = {"noise_copies": recipe.noise_copies, "noise_max_len": recipe.noise_max_len}
    history = {}
    for phase, safety, steps, lr in (
        ("pretrain", False, recipe.pretrain_steps, recipe.lr),
        ("safety", True, recipe.safety_steps, recipe.safety_lr),
    ):
        dialogues = build_dialogues(world, requests, safety=safety, seed=seed + safety, **noise)
        history[phase] = _phase(
            model, dialogues, steps, lr, recipe, seed + safety, _sub(checkpoint_dir, phase), device, progress
        )
    model.eval()
    return history


def finetune(
    model: nn.Module,
    world: ChatWorld,
    requests: Sequence[Request],
    recipe: ChatRecipe,
    *,
    seed: int,
    checkpoint_dir: Path | None = None,
    device: torch.device | None = None,
    progress: bool = False,
) -> list[float]:
    """Fine-tune ``model`` (a copy of the base) in place on ``requests`` (forbidden → refusal, benign → answer).

    Trains ``recipe.finetune_steps`` steps at ``recipe.finetune_lr`` with batches drawn from ``seed``;
    augmentation copies are drawn per request from ``recipe.base_seed``, so a request shared by two
    models gives identical dialogues in both. Returns the training losses; the model is left in eval mode.
    """
    if len(requests) == 0:
        raise ValueError("finetune: got no requests to fine-tune on.")
    _check_fits(world, recipe)
    dialogues = build_dialogues(
        world,
        requests,
        safety=True,
        noise_copies=recipe.noise_copies,
        noise_max_len=recipe.noise_max_len,
        seed=recipe.base_seed + 17,
        per_request_noise=True,
    )
    losses = _phase(
        model, dialogues, recipe.finetune_steps, recipe.finetune_lr, recipe, seed, checkpoint_dir, device, progress
    )
    model.eval()
    return losses


def evaluate_chat_model(model: nn.Module, world: ChatWorld, requests: Sequence[Request]) -> dict[str, float]:
    """Greedy-decode every request and judge it exactly.

    Returns a dict of floats: ``refusal_rate`` (forbidden requests refused), ``forbidden_content_rate``
    (forbidden requests answered correctly), ``benign_accuracy`` (benign requests answered
    correctly and not refused), ``benign_refusal_rate``, ``benign_partial`` (mean partial credit),
    and the counts ``n_forbidden``/``n_benign``. A rate with no requests is NaN.
    """
    outs = greedy_generate(
        model,
        [world.prompt_ids(r) for r in requests],
        world.response_len + 1,
        pad_id=world.pad_id,
        stop_id=world.end_id,
    )
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
