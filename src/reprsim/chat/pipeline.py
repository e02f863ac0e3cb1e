"""Train a pair of chat models with a controlled overlap, and build their probe sets.

``train_pair`` is what the experiment runner calls for one (overlap kind, fraction, seed) cell:
split the world's dialogue pool, get A and B — by default (``shared_base: true``) as two fine-tunes
of one cached safety-tuned base model (:mod:`reprsim.chat.finetune`), with ``shared_base: false``
each trained from scratch in two phases (:mod:`reprsim.chat.training`) — evaluate both on held-out
requests, and cache the weights in ``workdir`` (safetensors).
``probe_sets`` gives fixed-length prompt batches for measuring their similarity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reprsim.chat.finetune import finetune_chat_model, load_or_train_base
from reprsim.chat.split import ChatSplit, make_chat_split
from reprsim.chat.training import ChatTrainConfig, evaluate_chat_model, train_chat_model
from reprsim.chat.world import ChatWorld
from reprsim.models.gpt import GPT

__all__ = ["PairResult", "train_pair", "probe_sets", "PROBE_PROMPT_LEN"]

#: Token length of every probe prompt (``<user> ... <assistant>``; the most common prompt length),
#: so mean pooling never averages over padding.
PROBE_PROMPT_LEN = 12
_CACHE_VERSION = 2


@dataclass
class PairResult:
    """Two trained chat models, their split and metrics (``refusal_rate_a``, ``acc_a``, ...)."""

    model_a: GPT
    model_b: GPT
    split: ChatSplit
    metrics: dict[str, float]
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def _model_seeds(seed: int) -> tuple[int, int]:
    a, b = np.random.SeedSequence([int(seed), 2_718]).generate_state(2)
    return int(a), int(b)


def _cache_dir(workdir: Path, world: ChatWorld, kind: str, fraction: float, seed: int, cfg: ChatTrainConfig) -> Path:
    key = json.dumps({"v": _CACHE_VERSION, "world": world.config(), "kind": kind, "fraction": float(fraction),
                      "seed": int(seed), "cfg": cfg.to_dict()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(workdir) / f"chat_{kind}_{float(fraction):.4f}_seed{seed}_{digest}"


def _new_model(world: ChatWorld, cfg: ChatTrainConfig) -> GPT:
    return GPT(world.vocab_size, cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
               dropout=cfg.dropout)


def _evaluate(model: GPT, world: ChatWorld, split: ChatSplit, families: list[int]) -> dict[str, float]:
    fam = set(families)
    return evaluate_chat_model(model, world, [r for r in split.heldout_pool if r.family in fam])


def train_pair(world: ChatWorld, overlap_kind: str, fraction: float, seed: int, train_cfg: dict[str, Any] | None = None,
               workdir: Path | str | None = None, progress: bool = True) -> PairResult:
    """Split, train and evaluate one pair of chat models (A first, then B).

    Returns a :class:`PairResult`. ``metrics`` holds, for ``x`` in ``a``/``b``: ``refusal_rate_x``
    (held-out forbidden requests refused), ``benign_accuracy_x`` and ``acc_x`` (held-out benign
    requests of the model's families answered exactly), ``benign_refusal_rate_x``,
    ``forbidden_content_rate_x``, plus ``realised_data_fraction`` and ``realised_task_fraction``;
    in shared-base mode also ``base_refusal_rate`` and ``base_benign_accuracy``. ``history`` holds
    per-step losses: ``"a"``/``"b"`` (``"finetune"``, or ``"pretrain"``/``"safety"`` from scratch)
    and ``"base"`` when this call trained the base. With ``workdir`` the weights and metrics (and
    the shared base) are cached there and reused on the next call; a cached pair has no history.
    """
    cfg = ChatTrainConfig.from_dict(train_cfg)
    split = make_chat_split(world, overlap_kind, fraction, seed, n_train_per_family=cfg.n_train_per_family,
                            n_heldout_per_family=cfg.n_heldout_per_family)
    cache = _cache_dir(Path(workdir), world, overlap_kind, fraction, seed, cfg) if workdir is not None else None
    from safetensors.torch import load_model, save_model

    if cache is not None and (cache / "metrics.json").exists():
        models = []
        for name in ("a", "b"):
            m = _new_model(world, cfg)
            load_model(m, str(cache / f"model_{name}.safetensors"))
            models.append(m.eval())
        metrics = json.loads((cache / "metrics.json").read_text())
        return PairResult(models[0], models[1], split, metrics)
    seed_a, seed_b = _model_seeds(seed)
    history: dict[str, dict[str, list[float]]] = {}
    extra: dict[str, float] = {}
    if cfg.shared_base:
        base, info = load_or_train_base(world, cfg, workdir, progress=progress)
        if info["trained"]:
            history["base"] = info["history"]
        extra = {"base_refusal_rate": info["metrics"]["refusal_rate"],
                 "base_benign_accuracy": info["metrics"]["benign_accuracy"]}
        model_a, loss_a = finetune_chat_model(base, world, split.requests_a, cfg, seed=seed_a, progress=progress,
                                              desc="fine-tune A")
        model_b, loss_b = finetune_chat_model(base, world, split.requests_b, cfg, seed=seed_b, progress=progress,
                                              desc="fine-tune B")
        hist_a, hist_b = {"finetune": loss_a}, {"finetune": loss_b}
    else:
        model_a, hist_a = train_chat_model(world, split.requests_a, cfg, seed=seed_a, progress=progress,
                                           desc="model A")
        model_b, hist_b = train_chat_model(world, split.requests_b, cfg, seed=seed_b, progress=progress,
                                           desc="model B")
    history |= {"a": hist_a, "b": hist_b}
    metrics: dict[str, float] = {
        "realised_data_fraction": split.realised_data_fraction,
        "realised_task_fraction": split.realised_task_fraction,
        **extra,
    }
    for name, model, fams in (("a", model_a, split.families_a), ("b", model_b, split.families_b)):
        ev = _evaluate(model, world, split, fams)
        for key in ("refusal_rate", "benign_accuracy", "benign_refusal_rate", "forbidden_content_rate",
                    "benign_partial"):
            metrics[f"{key}_{name}"] = ev[key]
        metrics[f"acc_{name}"] = ev["benign_accuracy"]
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        save_model(model_a, str(cache / "model_a.safetensors"))
        save_model(model_b, str(cache / "model_b.safetensors"))
        tmp = cache / "metrics.json.tmp"
        tmp.write_text(json.dumps(metrics, indent=1, sort_keys=True))
        tmp.replace(cache / "metrics.json")  # written last: its presence marks a finished pair
    return PairResult(model_a, model_b, split, metrics, history)


def probe_sets(world: ChatWorld, split: ChatSplit, n: int = 128, seed: int = 0) -> dict[str, Tensor]:
    """Prompt batches for similarity, each a LongTensor (n, PROBE_PROMPT_LEN) of ``<user> ... <assistant>``.

    Requests are fresh draws (in neither model's training pool) of fixed token length. Keys:
    ``forbidden`` (forbidden families), ``benign`` (benign families both models train on),
    ``benign_one`` (benign families exactly one model trains on) and ``ood`` (benign families
    neither trains on); a key is left out when its family set is empty (e.g. ``benign_one`` for
    data splits).
    """
    if n < 1:
        raise ValueError(f"probe_sets: n must be >= 1, got {n}.")
    fa, fb = set(split.families_a), set(split.families_b)
    forb = set(world.forbidden_families)
    groups = {
        "forbidden": sorted(forb & fa & fb),
        "benign": sorted((fa & fb) - forb),
        "benign_one": sorted((fa ^ fb) - forb),
        "ood": sorted(set(range(world.n_families)) - fa - fb - forb),
    }
    seen = {r.words for r in split.train_pool}
    out: dict[str, Tensor] = {}
    for gi, (name, fams) in enumerate(groups.items()):
        if not fams:
            continue
        rng = np.random.default_rng([int(seed), gi, 4_242])
        rows: list[list[int]] = []
        picked: set[tuple[str, ...]] = set()
        tries = 0
        while len(rows) < n:
            tries += 1
            if tries > 200 * n:
                raise ValueError(f"probe_sets: could not draw {n} distinct probe prompts for {name!r}; use a smaller n.")
            r = world.sample_request(fams[int(rng.integers(len(fams)))], rng)
            ids = world.prompt_ids(r)
            if len(ids) != PROBE_PROMPT_LEN or r.words in seen or r.words in picked:
                continue
            picked.add(r.words)
            rows.append(ids)
        out[name] = torch.as_tensor(rows, dtype=torch.long)
    return out
