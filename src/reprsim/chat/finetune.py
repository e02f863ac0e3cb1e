"""Shared-base mode: one safety-tuned base chat model, fine-tuned into model A and model B.

This mirrors the paper's LLM setting (two LoRA fine-tunes of one Llama-3.2-Instruct base on
overlapping fine-tuning data) at toy scale:

1. **Base** (:func:`load_or_train_base`): a GPT is pre-trained on the base's own dialogue pool with
   every family answered (``pretrain_steps`` at ``lr``), then safety-tuned on the same pool with
   forbidden families refused (``safety_steps`` at ``safety_lr``). The base pool
   (``base_n_per_family`` requests per family) is a third pool of the world's request draw, disjoint
   from the split's fine-tuning pool and from the held-out pool used for evaluation, probes and
   attacks. The base depends only on the world, the recipe and ``base_seed`` — not on the overlap
   kind, fraction or unit seed — so it is trained once and cached in ``workdir`` (a file lock
   makes parallel workers wait for one another instead of training it twice).
2. **Fine-tunes** (:func:`finetune_chat_model`): A and B each start from an exact copy of the base
   and are trained for ``finetune_steps`` at ``finetune_lr`` on their own split of the fine-tuning
   pool (:mod:`reprsim.chat.split`: data overlap = shared identical dialogues, task overlap =
   shared benign families; forbidden families keep the refusal rule). Each uses its own seed
   (batch order). Random-word augmentation copies are drawn per request, so a shared dialogue is
   token-for-token identical in A's and B's data.

Design choices and their honest limits:

* Full fine-tuning, not LoRA (the models have ~0.1M parameters; a low-rank adapter would be a
  different experiment and is not implemented).
* The fine-tuning dialogues are *new* relative to the base (a disjoint pool), and a task split
  re-weights the benign families (each model fine-tunes on its half only), so A and B move away
  from the base in directions set by their own data. The families themselves are not new: the base
  knows every family, as an instruct model knows most tasks it is later fine-tuned on. Unlike the
  paper (benign fine-tuning corpora only), the fine-tuning data contain forbidden requests with the
  refusal, the same rule as in safety tuning; the paper's models kept their safety without that,
  ours forget the refusal quickly without it.
* How strongly the overlap can matter depends on how far fine-tuning moves the models
  (``finetune_steps`` × ``finetune_lr`` relative to the base recipe): with no fine-tuning A = B =
  base at every overlap; with very long fine-tuning the shared base is forgotten.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from reprsim.chat.training import (ChatTrainConfig, _run_phase, build_dialogues, evaluate_chat_model,
                                   train_chat_model)
from reprsim.chat.world import ChatWorld, Request
from reprsim.models.gpt import GPT

__all__ = ["base_pools", "train_base_model", "load_or_train_base", "finetune_chat_model", "BASE_FIELDS"]

#: ChatTrainConfig fields that change the base model (its cache key); fine-tuning fields are not among them.
BASE_FIELDS: tuple[str, ...] = (
    "n_layer", "n_head", "n_embd", "block_size", "dropout", "batch_size", "lr", "weight_decay", "warmup_steps",
    "grad_clip", "pretrain_steps", "safety_steps", "safety_lr", "n_train_per_family", "n_heldout_per_family",
    "noise_copies", "noise_max_len", "base_seed", "base_n_per_family",
)
_BASE_CACHE_VERSION = 1


def base_pools(world: ChatWorld, cfg: ChatTrainConfig) -> tuple[list[Request], list[Request]]:
    """Return ``(base_pool, heldout_pool)``: the base's training requests and the held-out requests.

    Both come from the same draw as :func:`reprsim.chat.split.make_chat_split` (pool seed
    :data:`~reprsim.chat.split.POOL_SEED`; the base pool is drawn after the fine-tuning and held-out
    pools, so it leaves them unchanged and shares no request with them).
    """
    from reprsim.chat.split import POOL_SEED

    _, heldout, base = world.request_pools([cfg.n_train_per_family, cfg.n_heldout_per_family,
                                            cfg.base_n_per_family], seed=POOL_SEED)
    return base, heldout


def train_base_model(world: ChatWorld, cfg: ChatTrainConfig | dict[str, Any] | None = None, *,
                     progress: bool = False) -> tuple[GPT, dict[str, Any]]:
    """Pre-train and safety-tune the shared base model on :func:`base_pools` (seed ``cfg.base_seed``).

    Returns ``(model, info)``: the base in eval mode and a dict with ``history`` (per-step losses of
    ``"pretrain"`` and ``"safety"``) and ``metrics`` (:func:`evaluate_chat_model` on the held-out pool).
    """
    cfg = cfg if isinstance(cfg, ChatTrainConfig) else ChatTrainConfig.from_dict(cfg)
    pool, heldout = base_pools(world, cfg)
    model, history = train_chat_model(world, pool, cfg, seed=cfg.base_seed, progress=progress, desc="base")
    return model, {"history": history, "metrics": evaluate_chat_model(model, world, heldout)}


def _base_dir(workdir: Path, world: ChatWorld, cfg: ChatTrainConfig) -> Path:
    recipe = {k: v for k, v in cfg.to_dict().items() if k in BASE_FIELDS}
    key = json.dumps({"v": _BASE_CACHE_VERSION, "world": world.config(), "cfg": recipe}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(workdir) / f"chat_base_seed{cfg.base_seed}_{digest}"


def _new_model(world: ChatWorld, cfg: ChatTrainConfig) -> GPT:
    return GPT(world.vocab_size, cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
               dropout=cfg.dropout)


def load_or_train_base(world: ChatWorld, cfg: ChatTrainConfig | dict[str, Any] | None = None,
                       workdir: Path | str | None = None, *, progress: bool = False) -> tuple[GPT, dict[str, Any]]:
    """Return the shared base model, from ``workdir``'s cache when it is there, else trained (and cached).

    Returns ``(model, info)`` where ``info`` has ``metrics`` (the base's held-out evaluation),
    ``trained`` (True when this call trained it) and, when trained, ``history``. The cache key is
    the world plus the :data:`BASE_FIELDS` of ``cfg``, so every pair with the same world, base
    recipe and ``base_seed`` reuses one base. Concurrent callers on one ``workdir`` serialise on a
    lock file; the second one loads what the first saved.
    """
    cfg = cfg if isinstance(cfg, ChatTrainConfig) else ChatTrainConfig.from_dict(cfg)
    if workdir is None:
        model, info = train_base_model(world, cfg, progress=progress)
        return model, info | {"trained": True}
    from safetensors.torch import load_model, save_model

    folder = _base_dir(Path(workdir), world, cfg)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (folder / "metrics.json").exists():
                model = _new_model(world, cfg)
                load_model(model, str(folder / "model.safetensors"))
                metrics = json.loads((folder / "metrics.json").read_text())
                return model.eval(), {"metrics": metrics, "trained": False}
            model, info = train_base_model(world, cfg, progress=progress)
            save_model(model, str(folder / "model.safetensors"))
            tmp = folder / "metrics.json.tmp"
            tmp.write_text(json.dumps(info["metrics"], indent=1, sort_keys=True))
            tmp.replace(folder / "metrics.json")  # written last: its presence marks a finished base
            return model, info | {"trained": True}
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def finetune_chat_model(base: GPT, world: ChatWorld, requests: Sequence[Request],
                        cfg: ChatTrainConfig | dict[str, Any] | None = None, *, seed: int = 0,
                        progress: bool = False, desc: str = "fine-tune",
                        num_threads: int | None = 1) -> tuple[GPT, list[float]]:
    """Fine-tune a copy of ``base`` on ``requests`` (forbidden → refusal, benign → answer); ``base`` is untouched.

    Trains ``cfg.finetune_steps`` steps at ``cfg.finetune_lr`` (warm-up then cosine decay) with
    batches drawn from ``seed``; augmentation copies are drawn per request from ``cfg.base_seed``,
    so shared requests give identical dialogues for every model. ``num_threads`` as in
    :func:`~reprsim.chat.training.train_chat_model`. Returns ``(model, losses)``: the fine-tuned
    model in eval mode and its per-step losses. Same base, requests and seed give the same weights.
    """
    cfg = cfg if isinstance(cfg, ChatTrainConfig) else ChatTrainConfig.from_dict(cfg)
    if len(requests) == 0:
        raise ValueError("finetune_chat_model: got no requests to fine-tune on.")
    model = copy.deepcopy(base)
    ids, tgt = build_dialogues(world, requests, safety=True, noise_copies=cfg.noise_copies,
                               noise_max_len=cfg.noise_max_len, seed=cfg.base_seed + 17, per_request_noise=True)
    gen = torch.Generator().manual_seed(int(seed) + 2_000_029)
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        losses = _run_phase(model, ids, tgt, steps=cfg.finetune_steps, lr=cfg.finetune_lr, cfg=cfg, gen=gen,
                            desc=desc, progress=progress)
    finally:
        torch.set_num_threads(before)
    return model.eval(), losses
