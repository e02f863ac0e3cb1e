"""Per-step learning-rate schedules with linear warm-up."""

from __future__ import annotations

import math

__all__ = ["lr_at"]


def lr_at(
    step: int,
    *,
    base_lr: float,
    total_steps: int,
    warmup_steps: int,
    schedule: str,
    steps_per_epoch: int,
    min_lr_ratio: float = 0.0,
    step_size: int | None = None,
    step_gamma: float = 0.1,
    epochs: int = 1,
) -> float:
    """Return the learning rate for optimizer step ``step`` (0-based).

    Warm-up: ``base_lr * (step + 1) / warmup_steps`` for ``step < warmup_steps``. After it,
    with progress ``p`` in [0, 1] over the remaining steps: cosine
    ``lo + (base - lo) * (1 + cos(pi p)) / 2``; triangular ``base - (base - lo) * p``; step
    ``base * gamma ** floor(epoch / step_size)``; constant ``base``; where ``lo = base * min_lr_ratio``.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        size = step_size if step_size is not None else max(1, epochs // 3)
        return base_lr * step_gamma ** ((step // steps_per_epoch) // size)
    span = max(1, total_steps - warmup_steps)
    p = min(1.0, (step - warmup_steps) / span)
    lo = base_lr * min_lr_ratio
    if schedule == "cosine":
        return lo + (base_lr - lo) * 0.5 * (1.0 + math.cos(math.pi * p))
    if schedule == "triangular":
        return base_lr - (base_lr - lo) * p
    raise ValueError(f"Unknown schedule {schedule!r}; use cosine, step, triangular or constant.")
