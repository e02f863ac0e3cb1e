"""Building blocks of the training loop: results, evaluation, optimizer, data preparation, resume checks."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reprsim.errors import ReprsimError
from reprsim.training.config import TrainConfig
from reprsim.training.data import (
    ClassificationData,
    MaskedTokens,
    TokenData,
    as_classification,
    as_tokens,
    is_lm_dataset,
    random_crop,
    random_hflip,
)
from reprsim.training.schedule import lr_at

__all__ = ["EMA", "TrainResult", "evaluate", "evaluate_lm", "has_training_loss"]

#: Seed of the evaluation windows of language models: the same for every model and run, so
#: the two models of a pair are scored on the same text.
LM_EVAL_SEED = 1234
#: Config fields that do not change the trained weights (ignored when matching checkpoints).
_RUNTIME_FIELDS = ("num_threads", "eval_batch_size", "checkpoint_every")


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``history`` holds one dict per epoch (LMs: per ``eval_interval`` steps) with ``epoch``,
    ``step``, ``lr``, ``train_loss``, ``train_accuracy`` (running, on augmented batches) and,
    when evaluated, ``val_*`` / ``eval_*`` loss and accuracy. ``train_accuracy`` and
    ``eval_accuracy`` are clean accuracies of the final model (classifiers); ``eval_loss`` and
    ``perplexity`` are for LMs (on ``eval_dataset``, else the held-out split).
    """

    model: nn.Module
    history: list[dict[str, Any]]
    seconds: float
    train_accuracy: float | None = None
    eval_accuracy: float | None = None
    eval_loss: float | None = None
    perplexity: float | None = None
    checkpoint_path: Path | None = None
    best_epoch: int | None = None
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    steps: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)


def pick_device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _vocab_size(model: nn.Module) -> int | None:
    size = getattr(model, "vocab_size", None)
    if isinstance(size, int):
        return size
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    return getattr(emb, "num_embeddings", None)


@torch.no_grad()
def eval_classifier(
    model: nn.Module, data: ClassificationData, batch_size: int, dev: torch.device
) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    try:
        for start in range(0, len(data), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(data)))
            xb, yb = data.batch(idx, dev)
            logits = model(xb).float()
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(-1) == yb).sum())
    finally:
        model.train(was_training)
    return correct / len(data), loss_sum / len(data)


@torch.no_grad()
def _eval_lm(model: nn.Module, data: TokenData, cfg: TrainConfig, dev: torch.device) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(LM_EVAL_SEED)
    loss_sum, correct, count = 0.0, 0, 0
    try:
        for _ in range(cfg.eval_batches):
            xb, yb = data.windows(cfg.batch_size, cfg.block_size, gen)
            xb, yb = xb.to(dev), yb.to(dev)
            logits = model(xb).float()
            loss_sum += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="sum"))
            correct += int((logits.argmax(-1) == yb).sum())
            count += yb.numel()
    finally:
        model.train(was_training)
    return loss_sum / count, correct / count


def has_training_loss(model: nn.Module) -> bool:
    """True when ``model`` defines its own ``training_loss(x, y, generator)`` (trained on it, not on cross-entropy)."""
    return callable(getattr(model, "training_loss", None))


@torch.no_grad()
def eval_loss_model(model: nn.Module, data: ClassificationData, batch_size: int, dev: torch.device) -> float:
    """Mean ``model.training_loss`` over ``data`` (per example), in eval mode, with the randomness
    (e.g. a diffusion model's noise and timesteps) drawn from a generator seeded with ``LM_EVAL_SEED``,
    so every model and every call is scored on the same draws."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(LM_EVAL_SEED)
    loss_sum = 0.0
    try:
        for start in range(0, len(data), batch_size):
            xb, yb = data.batch(torch.arange(start, min(start + batch_size, len(data))), dev)
            loss_sum += float(model.training_loss(xb, yb, gen)) * len(yb)
    finally:
        model.train(was_training)
    return loss_sum / len(data)


class EMA:
    """Exponential moving average of a model's trainable parameters (``TrainConfig.ema_decay``).

    Update ``u`` (1-based, after optimizer step ``u``) uses decay ``0`` for ``u = 1`` and
    ``min(decay, u / (u + 9))`` after it — the default warm-up of diffusers' ``EMAModel``, so the
    average does not keep the random initialisation for thousands of steps. Buffers (e.g.
    batch-norm statistics) are not averaged: the live model's are used.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    def decay_at(self, update: int) -> float:
        """The decay of update ``update`` (1-based)."""
        s = update - 1
        return 0.0 if s <= 0 else min(self.decay, (1 + s) / (10 + s))

    @torch.no_grad()
    def update(self, model: nn.Module, update: int) -> None:
        """Move the average towards the model's current parameters: ``avg ← d·avg + (1 − d)·param``."""
        d = self.decay_at(update)
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach(), 1.0 - d)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged parameters into ``model``."""
        for name, p in model.named_parameters():
            if name in self.shadow:
                p.copy_(self.shadow[name])

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Run the body with the averaged parameters in ``model``, then restore the live ones."""
        live = {name: p.detach().clone() for name, p in model.named_parameters() if name in self.shadow}
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in live:
                        p.copy_(live[name])

    def load(self, state: dict[str, Tensor]) -> None:
        """Restore the average saved in a checkpoint (names must match the model's parameters)."""
        if set(state) != set(self.shadow):
            raise ReprsimError(
                "the checkpoint's EMA weights do not match the model's parameters; use a fresh "
                "checkpoint_dir or delete the old one."
            )
        for name, value in state.items():
            self.shadow[name].copy_(value)


def evaluate(model: nn.Module, dataset: Any, batch_size: int = 512, device: str | torch.device | None = None) -> float:
    """Return the top-1 accuracy in [0, 1] of a classifier on ``(inputs, labels)`` (or a Dataset of (x, y)).

    Runs in eval mode without gradients; the model's train/eval mode is restored afterwards.
    """
    data = as_classification(dataset, "evaluate dataset")
    return eval_classifier(model, data, batch_size, pick_device(device))[0]


def evaluate_lm(
    model: nn.Module,
    tokens: Any,
    block_size: int,
    batch_size: int = 64,
    batches: int = 20,
    device: str | torch.device | None = None,
) -> float:
    """Return the mean next-token cross-entropy (nats) of an LM on fixed random windows of ``tokens``."""
    cfg = TrainConfig(block_size=block_size, batch_size=batch_size, eval_batches=batches)
    data = as_tokens(tokens, block_size, _vocab_size(model), "evaluate_lm tokens")
    return _eval_lm(model, data, cfg, pick_device(device))[0]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("train: the model has no trainable parameters.")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def check_resumable(meta: dict[str, Any], cfg: TrainConfig, seed: int, fingerprint: str, where: Path) -> None:
    want = {k: v for k, v in cfg.to_dict().items() if k not in _RUNTIME_FIELDS}
    # a field missing from an older checkpoint did not exist yet: that run used its default
    stored = TrainConfig().to_dict() | meta.get("config", {})
    have = {k: v for k, v in stored.items() if k not in _RUNTIME_FIELDS}
    problems = []
    if have != want:
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        problems.append(f"config differs in {diff}")
    if meta.get("seed") != seed:
        problems.append(f"seed {meta.get('seed')} != {seed}")
    if meta.get("fingerprint") != fingerprint:
        problems.append("model architecture differs")
    if problems:
        raise ReprsimError(
            f"Checkpoint in {where} belongs to another run ({'; '.join(problems)}); use a fresh checkpoint_dir "
            "or delete the old one."
        )


def rng_state(gen: torch.Generator, dev: torch.device) -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state(), "data": gen.get_state()}
    if dev.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(dev)
    return state


def prepare_data(
    model: nn.Module, dataset: Any, eval_dataset: Any, cfg: TrainConfig, seed: int
) -> tuple[bool, Any, Any, Any]:
    """Return (is_lm, train data, held-out data or None, eval data or None)."""
    split_gen = torch.Generator().manual_seed(seed + 7919)
    if isinstance(dataset, MaskedTokens):
        if cfg.val_fraction > 0 or eval_dataset is not None:
            raise ValueError(
                "train: MaskedTokens data takes no val_fraction or eval_dataset; score the model "
                "on held-out prompts after training instead."
            )
        dataset.check(cfg.block_size, _vocab_size(model))
        return True, dataset, None, None
    if is_lm_dataset(dataset):
        vocab = _vocab_size(model)
        data: Any = as_tokens(dataset, cfg.block_size, vocab, "dataset")
        val = None
        if cfg.val_fraction > 0:
            data, val = data.split_tail(cfg.val_fraction)
            as_tokens(list(torch.split(data.tokens, data.lengths.tolist())), cfg.block_size, vocab, "training part")
            as_tokens(list(torch.split(val.tokens, val.lengths.tolist())), cfg.block_size, vocab, "held-out part")
        ev = as_tokens(eval_dataset, cfg.block_size, vocab, "eval_dataset") if eval_dataset is not None else None
        return True, data, val, ev
    data = as_classification(dataset, "dataset")
    val = None
    if cfg.val_fraction > 0:
        data, val = data.split(cfg.val_fraction, split_gen)
    ev = as_classification(eval_dataset, "eval_dataset") if eval_dataset is not None else None
    return False, data, val, ev


def augment(xb: Tensor, cfg: TrainConfig, gen: torch.Generator) -> Tensor:
    """Apply the configured random crop and horizontal flip to float images (N, C, H, W)."""
    if xb.dim() != 4 or not xb.dtype.is_floating_point:
        return xb
    if cfg.crop_padding:
        xb = random_crop(xb, cfg.crop_padding, gen)
    if cfg.hflip:
        xb = random_hflip(xb, gen)
    return xb


def schedule_lr(cfg: TrainConfig, step: int, total: int, warmup: int, spe: int, epochs: int) -> float:
    """Learning rate of step ``step`` for this config (see :func:`reprsim.training.schedule.lr_at`)."""
    return lr_at(
        step,
        base_lr=cfg.lr,
        total_steps=total,
        warmup_steps=warmup,
        schedule=cfg.schedule,
        steps_per_epoch=spe,
        min_lr_ratio=cfg.min_lr_ratio,
        step_size=cfg.step_size,
        step_gamma=cfg.step_gamma,
        epochs=epochs,
    )


def evaluate_all(
    model: nn.Module, is_lm: bool, val: Any, ev: Any, cfg: TrainConfig, dev: torch.device
) -> dict[str, float]:
    """Score the held-out split and the eval set; returns e.g. {'val_loss', 'val_accuracy', 'eval_loss', ...}."""
    out: dict[str, float] = {}
    for prefix, data in (("val", val), ("eval", ev)):
        if data is None:
            continue
        if is_lm:
            loss, acc = _eval_lm(model, data, cfg, dev)
            out.update(
                {f"{prefix}_loss": loss, f"{prefix}_accuracy": acc, f"{prefix}_perplexity": math.exp(min(loss, 50.0))}
            )
        elif has_training_loss(model):
            out[f"{prefix}_loss"] = eval_loss_model(model, data, cfg.eval_batch_size, dev)
        else:
            acc, loss = eval_classifier(model, data, cfg.eval_batch_size, dev)
            out.update({f"{prefix}_loss": loss, f"{prefix}_accuracy": acc})
    return out
