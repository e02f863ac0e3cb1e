"""Training configuration: one dataclass for classifiers and language models."""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainConfig"]

_OPTIMIZERS = ("sgd", "adamw")
_SCHEDULES = ("cosine", "step", "triangular", "constant")


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`reprsim.train.train`.

    Classifiers train for ``epochs`` passes over the data. Language models train for
    ``max_steps`` optimizer steps on random windows of ``block_size + 1`` tokens; for them an
    "epoch" (one history row, one checkpoint, one evaluation) is ``eval_interval`` steps.

    Learning rate: linear warm-up over ``warmup_epochs`` (LMs: ``warmup_steps`` steps, or
    ``warmup_epochs * eval_interval`` when None), then ``schedule``: "cosine" (to
    ``lr * min_lr_ratio``), "triangular" (linear to ``lr * min_lr_ratio``, the paper's ResNet
    recipe), "step" (times ``step_gamma`` every ``step_size`` epochs) or "constant". The rate is
    updated every step.

    Early stopping (``early_stopping_patience`` evaluations without improvement) monitors the
    held-out split carved with ``val_fraction`` when > 0, else ``eval_dataset``; the best
    weights are restored when ``restore_best``. Classifiers are scored by accuracy, LMs by loss.

    ``label_smoothing``, ``crop_padding`` and ``hflip`` apply to classifiers only (augmentation
    only to float image batches (N, C, H, W)); ``block_size``, ``max_steps``, ``eval_interval``,
    ``eval_batches`` and ``warmup_steps`` to language models only. ``mixed_precision`` acts
    on CUDA only (bf16 autocast when supported, else fp16 with loss scaling).

    With a ``checkpoint_dir``, the resumable state is written every ``checkpoint_every`` epochs
    (and at the last one): an interrupted run resumes from the last one written. Raise it when
    epochs are short (many epochs of a small data set) and the state is large.

    ``ema_decay`` (e.g. 0.999) keeps an exponential moving average of the trainable parameters,
    updated after every optimizer step with the warm-up of diffusers' ``EMAModel`` (decay
    ``min(ema_decay, (1 + s) / (10 + s))`` at update ``s + 1``, 0 at the first); evaluation,
    early stopping, the returned model and the saved weights then use the averaged parameters.

    A model with a ``training_loss(x, y, generator) -> scalar`` method (e.g. a diffusion model)
    is trained on that loss instead of cross-entropy, like a classifier otherwise (epochs over
    ``(inputs, labels)``, the same augmentation); it draws its randomness from ``generator``, the
    loop's seeded data generator, so training stays reproducible and resumable.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0
    step_size: int | None = None
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    crop_padding: int = 0
    hflip: bool = False
    grad_clip: float | None = None
    early_stopping_patience: int | None = None
    restore_best: bool = True
    val_fraction: float = 0.0
    eval_every: int = 1
    checkpoint_every: int = 1
    eval_batch_size: int = 512
    drop_last: bool = False
    mixed_precision: bool = True
    num_threads: int | None = None
    ema_decay: float | None = None
    # language models
    block_size: int = 128
    max_steps: int = 1000
    eval_interval: int = 100
    eval_batches: int = 20
    warmup_steps: int | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        positive_ints = (
            "epochs",
            "batch_size",
            "eval_every",
            "checkpoint_every",
            "eval_batch_size",
            "block_size",
            "max_steps",
            "eval_interval",
            "eval_batches",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}.")
        for name in ("step_size", "early_stopping_patience", "num_threads", "warmup_steps"):
            value = getattr(self, name)
            lower = 0 if name == "warmup_steps" else 1
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < lower):
                raise ValueError(f"TrainConfig.{name} must be None or an int >= {lower}, got {value!r}.")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}.")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {_SCHEDULES}, got {self.schedule!r}.")
        checks = [
            ("lr", self.lr > 0 and math.isfinite(self.lr), "> 0"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("warmup_epochs", self.warmup_epochs >= 0, ">= 0"),
            ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("step_gamma", 0 < self.step_gamma <= 1, "in (0, 1]"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("crop_padding", isinstance(self.crop_padding, int) and self.crop_padding >= 0, "an int >= 0"),
            ("val_fraction", 0 <= self.val_fraction < 1, "in [0, 1)"),
            ("grad_clip", self.grad_clip is None or self.grad_clip > 0, "None or > 0"),
            (
                "ema_decay",
                self.ema_decay is None or (not isinstance(self.ema_decay, bool) and 0 < self.ema_decay < 1),
                "None or in (0, 1)",
            ),
            ("betas", len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "two values in [0, 1)"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {want}, got {getattr(self, name)!r}.")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainConfig:
        """Build a config from a plain dict (e.g. a YAML section).

        Accepts the field names, ``iterations`` as an alias of ``max_steps`` and a nested
        ``augment: {crop_padding, hflip}``. Unknown keys raise ``ValueError`` naming the key and
        the closest valid one.
        """
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise TypeError(f"TrainConfig.from_dict expects a dict, got {type(data).__name__}.")
        values = dict(data)
        if "augment" in values:
            augment = values.pop("augment") or {}
            if not isinstance(augment, dict) or set(augment) - {"crop_padding", "hflip"}:
                raise ValueError(f"train.augment must be a dict with keys crop_padding and hflip, got {augment!r}.")
            values.update(augment)
        if "iterations" in values:
            if "max_steps" in values:
                raise ValueError("Give either train.iterations or train.max_steps, not both.")
            values["max_steps"] = values.pop("iterations")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, names, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"Unknown training option(s) {', '.join(hints)}; valid options: {', '.join(names)}.")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-friendly dict (``from_dict(to_dict())`` round-trips)."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out
