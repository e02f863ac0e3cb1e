"""The training loop: :func:`train` for classifiers and language models (resume, early stopping, checkpoints)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from reprsim.errors import ReprsimError
from reprsim.training import checkpoint as ckpt
from reprsim.training.config import TrainConfig
from reprsim.training.data import IGNORE_INDEX
from reprsim.threads import limited_threads
from reprsim.training.parts import (
    EMA,
    TrainResult,
    augment,
    check_resumable,
    eval_classifier,
    evaluate_all,
    has_training_loss,
    make_optimizer,
    pick_device,
    prepare_data,
    rng_state,
    schedule_lr,
)

__all__ = ["ExtraLoss", "train", "run_training"]


def _final_metrics(
    model: nn.Module, is_lm: bool, data: Any, val: Any, ev: Any, cfg: TrainConfig, dev: torch.device
) -> dict[str, float | None]:
    scores = evaluate_all(model, is_lm, val, ev, cfg, dev)
    if has_training_loss(model):  # trained on its own loss: no accuracy
        loss = scores.get("eval_loss", scores.get("val_loss"))
        return {"train_accuracy": None, "eval_accuracy": None, "eval_loss": loss, "perplexity": None}
    if is_lm:
        prefix = "eval" if ev is not None else "val" if val is not None else None
        loss = scores.get(f"{prefix}_loss") if prefix else None
        return {
            "eval_loss": loss,
            "perplexity": math.exp(min(loss, 50.0)) if loss is not None else None,
            "train_accuracy": None,
            "eval_accuracy": None,
        }
    train_acc = eval_classifier(model, data, cfg.eval_batch_size, dev)[0]
    return {
        "train_accuracy": train_acc,
        "eval_accuracy": scores.get("eval_accuracy"),
        "eval_loss": scores.get("eval_loss"),
        "perplexity": None,
        **({"val_accuracy": scores["val_accuracy"]} if "val_accuracy" in scores else {}),
    }


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _result_from_final(model: nn.Module, path: Path, started: float) -> TrainResult:
    meta = ckpt.read_meta(path)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))
    m = meta["metrics"]
    return TrainResult(
        model=model,
        history=meta["history"],
        seconds=time.perf_counter() - started,
        train_accuracy=m.get("train_accuracy"),
        eval_accuracy=m.get("eval_accuracy"),
        eval_loss=m.get("eval_loss"),
        perplexity=m.get("perplexity"),
        checkpoint_path=path,
        best_epoch=meta.get("best_epoch"),
        stopped_early=meta.get("stopped", False),
        resumed_from_epoch=meta["epoch"],
        steps=meta["global_step"],
        metrics=m,
    )


#: ``extra_loss(model, batch_inputs) -> 0-d tensor``, added to each batch's loss
#: (e.g. :class:`~reprsim.training.alignment.AlignmentLoss`)
ExtraLoss = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@dataclass
class _Step:
    """One optimisation step — forward, loss (+ ``extra_loss``), backward, clipping, update — with
    what stays fixed for the whole run. ``max_label``: the largest training label, checked against
    the model's outputs on the first batch (None: nothing to check)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    is_lm: bool
    own_loss: bool
    gen: torch.Generator
    scaler: Any
    autocast: Callable[[], Any]
    max_label: int | None
    extra_loss: ExtraLoss | None = None

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Train on one batch; return its loss (0-d float32) and the flat logits (N, K) (None for own-loss models)."""
        flat = None
        if self.own_loss:  # e.g. a diffusion model's denoising loss, randomness from the loop's generator
            with self.autocast():
                loss = self.model.training_loss(xb, yb, self.gen).float()
        else:
            with self.autocast():
                logits = self.model(xb)
            if self.max_label is not None:
                if logits.dim() != 2 or self.max_label >= logits.shape[-1]:
                    raise ValueError(
                        f"train: the model outputs {tuple(logits.shape)} logits but labels go up to "
                        f"{self.max_label}; build it with num_classes >= {self.max_label + 1}."
                    )
                self.max_label = None
            flat = logits.float().reshape(-1, logits.shape[-1])
            loss = F.cross_entropy(
                flat, yb.reshape(-1), label_smoothing=0.0 if self.is_lm else self.cfg.label_smoothing
            )
        if self.extra_loss is not None:  # outside autocast: the term is computed in float32
            loss = loss + self.extra_loss(self.model, xb).float()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss, flat


def _schedule_shape(model: nn.Module, data: Any, cfg: TrainConfig, is_lm: bool) -> tuple[int, int, int, int]:
    """(steps per epoch, epochs, total steps, warm-up steps) of a run."""
    if is_lm:
        spe = cfg.eval_interval
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_epochs * spe)
        return spe, math.ceil(cfg.max_steps / spe), cfg.max_steps, warmup
    n = len(data)
    # a last batch of one example cannot be batch-normalised in training mode: such a model skips
    # it (a different example each epoch, as the order is reshuffled) instead of failing
    lone = n > 1 and n % cfg.batch_size == 1 and _has_batch_norm(model)
    spe = n // cfg.batch_size if cfg.drop_last or lone else math.ceil(n / cfg.batch_size)
    if spe < 1:
        raise ValueError(f"drop_last with batch_size {cfg.batch_size} > {n} training examples leaves no batch.")
    return spe, cfg.epochs, cfg.epochs * spe, round(cfg.warmup_epochs * spe)


def _resume(
    last: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    seed: int,
    fingerprint: str,
    gen: torch.Generator,
    dev: torch.device,
    ema: EMA | None,
) -> tuple[list, int, int, bool, dict]:
    """Load the last checkpoint into ``model``, ``optimizer``, the RNGs and ``ema``; return
    (history, start epoch, global step, stopped, best-so-far record)."""
    meta, rng, best_state = ckpt.load_state(last, model, optimizer)
    check_resumable(meta, cfg, seed, fingerprint, last.parent)  # type: ignore[arg-type]
    torch.set_rng_state(rng["torch"])
    gen.set_state(rng["data"])
    if "cuda" in rng and dev.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], dev)
    if ema is not None:
        stored = ckpt.load_ema(last)
        if stored is None:
            raise ReprsimError(
                f"Checkpoint in {last.parent} has no EMA weights; use a fresh checkpoint_dir or delete the old one."
            )
        ema.load(stored)
    best = {"score": meta["best_score"], "epoch": meta["best_epoch"], "bad": meta["bad"], "state": best_state}
    return meta["history"], meta["epoch"], meta["global_step"], meta["stopped"], best


def _make_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    is_lm: bool,
    own_loss: bool,
    gen: torch.Generator,
    dev: torch.device,
    data: Any,
    extra_loss: ExtraLoss | None,
) -> _Step:
    """The optimisation step, with mixed precision on CUDA when the recipe asks for it."""
    use_amp = dev.type == "cuda" and cfg.mixed_precision
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if use_amp else contextlib.nullcontext
    return _Step(
        model,
        optimizer,
        cfg,
        is_lm,
        own_loss,
        gen,
        scaler,
        autocast,
        None if is_lm or own_loss else int(data.y.max()),
        extra_loss,
    )


def _epoch_batches(data: Any, cfg: TrainConfig, is_lm: bool, spe: int, epoch: int, gen: torch.Generator) -> Iterator:
    """The (inputs, targets) batches of one epoch: random windows (LMs) or a reshuffled order."""
    if is_lm:
        n_steps = min(spe, cfg.max_steps - epoch * spe)
        return (data.windows(cfg.batch_size, cfg.block_size, gen) for _ in range(n_steps))
    perm = torch.randperm(len(data), generator=gen)
    return (data.batch(perm[s * cfg.batch_size : (s + 1) * cfg.batch_size], torch.device("cpu")) for s in range(spe))


def _train_epoch(
    batches: Iterator,
    update: _Step,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    schedule: tuple[int, int, int, int],
    step: int,
    gen: torch.Generator,
    dev: torch.device,
    ema: EMA | None,
    bar: Any,
    own_loss: bool,
) -> tuple[dict[str, Any], int]:
    """Run one epoch's steps; return its history entry's training part and the global step after it."""
    spe, n_epochs, total, warmup = schedule
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct, seen, count = 0, 0, 0
    lr = cfg.lr
    for xb, yb in batches:
        xb = augment(xb, cfg, gen).to(dev, non_blocking=True)
        yb = yb.to(dev, non_blocking=True)
        lr = schedule_lr(cfg, step, total, warmup, spe, n_epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, flat = update(xb, yb)
        step += 1
        if ema is not None:
            ema.update(update.model, step)
        with torch.no_grad():
            scored = yb.reshape(-1) != IGNORE_INDEX  # all positions, but for masked tokens
            n_scored = int(scored.sum())
            loss_sum += loss.detach().double().cpu() * n_scored
            if flat is not None:
                correct += int(((flat.argmax(-1) == yb.reshape(-1)) & scored).sum())
        count += n_scored
        seen += 1
        bar.update(1)
        if (seen % 10 == 0 or seen == 1) and own_loss:
            bar.set_postfix(loss=f"{float(loss_sum) / count:.4f}")
        elif seen % 10 == 0 or seen == 1:
            bar.set_postfix(loss=f"{float(loss_sum) / count:.3f}", acc=f"{correct / count:.3f}")
    return {
        "step": step,
        "lr": lr,
        "train_loss": float(loss_sum) / max(count, 1),
        "train_accuracy": None if own_loss else correct / max(count, 1),
    }, step


def _score_epoch(
    entry: dict[str, Any],
    epoch: int,
    model: nn.Module,
    is_lm: bool,
    own_loss: bool,
    val: Any,
    ev: Any,
    cfg: TrainConfig,
    dev: torch.device,
    monitor: str | None,
    best: dict[str, Any],
) -> bool:
    """Add the held-out scores to ``entry``, update ``best`` (early stopping); return whether to stop."""
    entry.update(evaluate_all(model, is_lm, val, ev, cfg, dev))
    if monitor is None:
        return False
    score = -entry[f"{monitor}_loss"] if is_lm or own_loss else entry[f"{monitor}_accuracy"]
    if best["score"] is None or score > best["score"]:
        best.update(score=score, epoch=epoch + 1, bad=0)
        if cfg.early_stopping_patience is not None:
            best["state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return False
    best["bad"] += 1
    return cfg.early_stopping_patience is not None and best["bad"] >= cfg.early_stopping_patience


def _show_loss(bar: Any, entry: dict[str, Any], own_loss: bool) -> None:
    if own_loss:
        bar.set_postfix(loss=f"{entry['train_loss']:.4f}")
    else:
        bar.set_postfix(loss=f"{entry['train_loss']:.3f}", acc=f"{entry['train_accuracy']:.3f}")


def _save_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: Any,
    gen: torch.Generator,
    dev: torch.device,
    best: dict[str, Any],
    ema: EMA | None,
    meta: dict[str, Any],
) -> None:
    """The resumable state after an epoch: ``meta`` (config, seed, fingerprint, epoch, step, history,
    stopped) with the early-stopping record of ``best``, the weights, optimiser, RNG and EMA."""
    meta = {**meta, "best_score": best["score"], "best_epoch": best["epoch"], "bad": best["bad"]}
    ckpt.save_state(
        directory,
        model,
        optimizer,
        rng_state(gen, dev),
        best["state"],
        meta,
        ema=ema.shadow if ema is not None else None,
    )


def run_training(
    model: nn.Module,
    dataset: Any,
    cfg: TrainConfig,
    seed: int,
    eval_dataset: Any,
    checkpoint_dir: str | Path | None,
    progress: bool,
    dev: torch.device,
    callback: Callable[[dict[str, Any]], None] | None,
    extra_loss: ExtraLoss | None = None,
) -> TrainResult:
    """Run (or resume) training; the caller has already seeded the global RNG and set threads."""
    started = time.perf_counter()
    model.to(dev)
    fingerprint = ckpt.model_fingerprint(model)
    # a zoo model's build recipe, so that the checkpoint loads without its factory
    build_meta = {"model": model.reprsim_build} if isinstance(getattr(model, "reprsim_build", None), dict) else {}
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / ckpt.FINAL
        if final.is_file():
            check_resumable(ckpt.read_meta(final), cfg, seed, fingerprint, directory)
            return _result_from_final(model, final, started)

    is_lm, data, val, ev = prepare_data(model, dataset, eval_dataset, cfg, seed)
    monitor = "val" if val is not None else "eval" if ev is not None else None
    if cfg.early_stopping_patience is not None and monitor is None:
        raise ValueError("early_stopping_patience needs held-out data: set val_fraction > 0 or pass eval_dataset.")
    schedule = _schedule_shape(model, data, cfg, is_lm)
    spe, n_epochs, total, _ = schedule

    optimizer = make_optimizer(model, cfg)
    own_loss = has_training_loss(model)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"score": None, "epoch": None, "bad": 0, "state": None}
    start_epoch, step, stopped = 0, 0, False
    last = directory / ckpt.LAST if directory is not None else None
    if last is not None and last.is_file():
        history, start_epoch, step, stopped, best = _resume(
            last, model, optimizer, cfg, seed, fingerprint, gen, dev, ema
        )

    update = _make_step(model, optimizer, cfg, is_lm, own_loss, gen, dev, data, extra_loss)
    bar = tqdm(total=total, initial=step, disable=not progress, unit="step", dynamic_ncols=True)
    model.train()
    try:
        for epoch in range(start_epoch, n_epochs):
            if stopped:
                break
            t0 = time.perf_counter()
            bar.set_description(f"epoch {epoch + 1}/{n_epochs}")
            batches = _epoch_batches(data, cfg, is_lm, spe, epoch, gen)
            trained, step = _train_epoch(batches, update, optimizer, cfg, schedule, step, gen, dev, ema, bar, own_loss)
            entry: dict[str, Any] = {"epoch": epoch + 1, **trained, "seconds": time.perf_counter() - t0}
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == n_epochs:
                with ema.applied(model) if ema is not None else contextlib.nullcontext():  # score what is kept
                    stopped = _score_epoch(entry, epoch, model, is_lm, own_loss, val, ev, cfg, dev, monitor, best)
            history.append(entry)
            _show_loss(bar, entry, own_loss)
            if directory is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == n_epochs or stopped):
                identity = {"config": cfg.to_dict(), "seed": seed, "fingerprint": fingerprint, **build_meta}
                progress_meta = {"epoch": epoch + 1, "global_step": step, "history": history, "stopped": stopped}
                _save_checkpoint(directory, model, optimizer, gen, dev, best, ema, identity | progress_meta)
            if callback is not None:
                callback(entry)
    finally:
        bar.close()
    return _finish(
        model,
        cfg,
        seed,
        fingerprint,
        build_meta,
        directory,
        history,
        step,
        best,
        stopped,
        ema,
        is_lm,
        (data, val, ev),
        dev,
        started,
        start_epoch,
    )


def _finish(
    model: nn.Module,
    cfg: TrainConfig,
    seed: int,
    fingerprint: str,
    build_meta: dict,
    directory: Path | None,
    history: list,
    step: int,
    best: dict[str, Any],
    stopped: bool,
    ema: EMA | None,
    is_lm: bool,
    datasets: tuple[Any, Any, Any],
    dev: torch.device,
    started: float,
    start_epoch: int,
) -> TrainResult:
    """Keep the best (or EMA) weights, score the model, save the final weights; the run's result."""
    if best["state"] is not None and cfg.restore_best:
        model.load_state_dict(best["state"])  # taken with the EMA weights applied, when there are any
    elif ema is not None:
        ema.copy_to(model)
    metrics = _final_metrics(model, is_lm, *datasets, cfg, dev)
    path = None
    if directory is not None:
        meta = {
            "config": cfg.to_dict(),
            "seed": seed,
            "fingerprint": fingerprint,
            **build_meta,
            "epoch": len(history),
            "global_step": step,
            "history": history,
            "best_epoch": best["epoch"],
            "stopped": stopped,
            "metrics": metrics,
        }
        path = ckpt.save_weights(model, meta, directory)
    return TrainResult(
        model=model,
        history=history,
        seconds=time.perf_counter() - started,
        train_accuracy=metrics["train_accuracy"],
        eval_accuracy=metrics["eval_accuracy"],
        eval_loss=metrics["eval_loss"],
        perplexity=metrics["perplexity"],
        checkpoint_path=path,
        best_epoch=best["epoch"],
        stopped_early=stopped,
        resumed_from_epoch=start_epoch,
        steps=step,
        metrics=metrics,
    )


def train(
    model: nn.Module,
    dataset: Any,
    config: TrainConfig | dict[str, Any] | None,
    seed: int,
    *,
    eval_dataset: Any = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    extra_loss: ExtraLoss | None = None,
) -> TrainResult:
    """Train ``model`` in place and return a :class:`TrainResult`.

    Args:
        model: a classifier (inputs (N, ...) -> logits (N, K)) or a language model (token ids
            (B, T) -> logits (B, T, V)).
        dataset: classification: a tuple ``(inputs, labels)`` of arrays/tensors (images as
            float in [0, 1] or uint8 (N, C, H, W)) or a torch Dataset of ``(x, y)``;
            language modelling: a 1-D token array or a list of them (random windows of
            ``block_size + 1`` tokens are drawn inside each document); answer-only language
            modelling (chat models): a :class:`~reprsim.training.data.MaskedTokens` of fixed rows
            whose loss is taken on the answer tokens only (rows drawn with replacement; trained
            for ``max_steps`` steps like a language model).
        config: a :class:`TrainConfig` or a plain dict for :meth:`TrainConfig.from_dict`.
        seed: seeds data order, augmentation, windows, dropout and the held-out split.
        eval_dataset: optional test data of the same kind, scored after every evaluation.
        checkpoint_dir: where to write ``last.safetensors`` each epoch and ``model.safetensors``
            at the end; an unfinished run there is resumed, a finished one is loaded and returned.
        progress: show a tqdm bar (epoch, loss, accuracy).
        device: None = CUDA when available (with mixed precision), else CPU.
        callback: called with each epoch's history dict after its checkpoint is written.
        extra_loss: ``extra_loss(model, xb) -> 0-d tensor``, called on each training batch ``xb``
            (after augmentation, on the device) right after the model's forward pass on it, and
            added to the batch's loss (and to the logged ``train_loss``); e.g. an
            :class:`~reprsim.training.alignment.AlignmentLoss`. It is not part of the checkpoint's
            resume check: give a resumed run the same term (the sweep keys its checkpoints by it).

    On CPU the same seed, config and initial weights give bit-identical final weights, also
    across an interruption and resume.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"train: seed must be an int, got {seed!r}.")
    if not isinstance(model, nn.Module):
        raise TypeError(f"train: model must be a torch.nn.Module, got {type(model).__name__}.")
    dev = pick_device(device)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with limited_threads(cfg.num_threads), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return run_training(
            model, dataset, cfg, seed, eval_dataset, checkpoint_dir, progress, dev, callback, extra_loss
        )
