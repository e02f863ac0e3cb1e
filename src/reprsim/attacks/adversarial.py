"""Gradient attacks in plain torch: FGSM, PGD (L∞ / L2) and MI-FGSM, untargeted and targeted.

Conventions shared by every attack here
---------------------------------------
* ``x`` holds **pixel** inputs of any shape ``(N, ...)``: MLP vectors ``(N, D)``, images
  ``(N, C, H, W)``, sequence embeddings ``(N, T, D)``. Norms and signs are taken over all
  non-batch dimensions, so one code path serves every shape.
* The model maps ``(N, ...)`` to logits ``(N, n_classes)``. If it expects normalised inputs,
  pass ``normalization=(mean, std)``: the model then receives ``(x - mean) / std``. A 1-D
  ``mean``/``std`` of length L is aligned with dimension 1 (the channel axis of an image);
  give a tensor that already broadcasts against ``x`` for any other layout.
* ``eps`` is always in **pixel** scale; the returned perturbation ``x_adv - x`` satisfies
  ``‖x_adv - x‖ ≤ eps`` (L∞ or L2, in pixels) and ``x_adv`` stays in ``clip`` (default
  ``(0, 1)``; ``None`` for inputs without a valid range, such as embeddings).
* Untargeted attacks ascend the loss on the true label ``y``; targeted attacks
  (``targeted=True``, ``y`` = target labels) descend the loss on the target.
* The model is switched to eval mode (and left there); gradients are taken with
  :func:`torch.autograd.grad` with respect to the input only, so parameters' ``requires_grad``
  flags and ``.grad`` fields are left untouched.

References: Goodfellow et al. 2015 (FGSM), Madry et al. 2018 (PGD), Dong et al. 2018 (MI-FGSM).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]
Normalization = tuple[Any, Any] | None
Clip = tuple[float, float] | None

__all__ = ["Attack", "ATTACKS", "fgsm", "pgd", "mi_fgsm", "make_attack"]


def _sum_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy summed over the batch (a sum keeps per-example gradients unscaled by N)."""
    return F.cross_entropy(logits, y, reduction="sum")


# --------------------------------------------------------------------------- input checks


def _as_stat(value: Any, x: Tensor, name: str) -> Tensor:
    """Turn a mean/std given as scalar, sequence or tensor into a tensor broadcastable to x."""
    t = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if t.ndim == 1 and t.numel() > 1:
        if x.ndim < 2 or x.shape[1] != t.numel():
            raise ValueError(
                f"normalization {name} has {t.numel()} entries but x has shape {tuple(x.shape)}; a "
                "1-D mean/std is aligned with dimension 1 (channels). Pass a tensor that broadcasts "
                "against x for other layouts."
            )
        t = t.reshape((1, t.numel()) + (1,) * (x.ndim - 2))
    try:
        shape = torch.broadcast_shapes(t.shape, x.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            f"normalization {name} of shape {tuple(t.shape)} does not broadcast against x of shape "
            f"{tuple(x.shape)}; give a scalar, a per-channel sequence, or a broadcastable tensor."
        )
    if not torch.isfinite(t).all():
        raise ValueError(f"normalization {name} contains NaN or inf; give finite values.")
    return t


def _prepare(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, normalization: Normalization, clip: Clip
) -> tuple[Callable[[Tensor], Tensor], Tensor, Tensor | None, Tensor]:
    """Validate the common arguments; return (forward on pixels, x, std or None, y)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of pixel inputs (N, ...), got {type(x).__name__}.")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}; convert with x.float().")
    if x.ndim < 2:
        raise ValueError(f"x must have a batch dimension and at least one more, got shape {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf; attacks need finite inputs.")
    y = torch.as_tensor(y, device=x.device)
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}.")
    y = y.long()
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},) to match x {tuple(x.shape)}, got {tuple(y.shape)}.")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0 (pixel scale), got {eps!r}.")
    if clip is not None:
        lo, hi = clip
        if not lo < hi:
            raise ValueError(f"clip must be (low, high) with low < high, got {clip!r}.")
        tol = 1e-6 * max(1.0, abs(lo), abs(hi))
        if x.numel() and (x.min().item() < lo - tol or x.max().item() > hi + tol):
            raise ValueError(
                f"x has values in [{x.min().item():.4g}, {x.max().item():.4g}], outside clip={clip!r}. "
                "Attacks take pixel inputs: pass un-normalised x with normalization=(mean, std), or "
                "clip=None for inputs without a valid range."
            )
    std = None
    if normalization is None:

        def forward(z: Tensor) -> Tensor:
            return model(z)
    else:
        if len(normalization) != 2:
            raise ValueError(f"normalization must be a (mean, std) pair or None, got {normalization!r}.")
        mean = _as_stat(normalization[0], x, "mean")
        std = _as_stat(normalization[1], x, "std")
        if not (std > 0).all():
            raise ValueError("normalization std must be > 0 everywhere.")

        def forward(z: Tensor) -> Tensor:
            return model((z - mean) / std)

    model.eval()
    return forward, x.detach(), std, y


def _check_logits(logits: Any, y: Tensor) -> Tensor:
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != y.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(
            f"model must return logits of shape (N, n_classes) = ({y.shape[0]}, n_classes), got {shape}; "
            "wrap the model so that forward returns the logits tensor."
        )
    if y.numel() and (y.min().item() < 0 or y.max().item() >= logits.shape[1]):
        raise ValueError(
            f"labels must lie in [0, {logits.shape[1] - 1}] for a model with {logits.shape[1]} outputs, got "
            f"range [{y.min().item()}, {y.max().item()}]."
        )
    return logits


def _input_grad(
    forward: Callable[[Tensor], Tensor], x_adv: Tensor, y: Tensor, loss_fn: LossFn, targeted: bool
) -> Tensor:
    """Gradient (in pixel space) of the attack objective: +loss untargeted, -loss targeted."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(_check_logits(forward(x_adv), y), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
    return -grad if targeted else grad


def _per_sample_norm(t: Tensor, p: int) -> Tensor:
    """p-norm over all non-batch dimensions, shaped (N, 1, ..., 1) to broadcast against t."""
    return t.flatten(1).norm(p=p, dim=1).reshape((-1,) + (1,) * (t.ndim - 1))


def _safe_normalize(t: Tensor, p: int) -> Tensor:
    """t / ‖t‖_p per example; an all-zero example stays zero (no step, no hidden epsilon)."""
    n = _per_sample_norm(t, p)
    return torch.where(n > 0, t / torch.where(n > 0, n, torch.ones_like(n)), torch.zeros_like(t))


def _project(x_adv: Tensor, x: Tensor, eps: float, norm: str, clip: Clip) -> Tensor:
    """Project onto the eps-ball around x (pixels), then into the clip range.

    For L∞ both sets are boxes, so the two clamps give the exact projection onto their
    intersection. For L2, clipping only moves coordinates towards x (x lies in the range),
    so the perturbation's L2 norm cannot grow again.
    """
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = _per_sample_norm(delta, 2)
        scale = torch.where(n > eps, eps / torch.where(n > 0, n, torch.ones_like(n)), torch.ones_like(n))
        delta = delta * scale
    x_adv = x + delta
    if clip is not None:
        x_adv = x_adv.clamp(clip[0], clip[1])
    return x_adv.detach()


def _check_steps(steps: int, step_size: float | None) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}.")
    if step_size is not None and not (math.isfinite(step_size) and step_size >= 0):
        raise ValueError(f"step_size must be a finite number >= 0 or None, got {step_size!r}.")


# --------------------------------------------------------------------------- attacks


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    targeted: bool = False,
    normalization: Normalization = None,
    clip: Clip = (0.0, 1.0),
    loss_fn: LossFn | None = None,
) -> Tensor:
    """Fast gradient sign method: ``clip(x ± eps · sign(∇_x loss(model(x), y)))``.

    Parameters
    ----------
    model : nn.Module mapping inputs ``(N, ...)`` to logits ``(N, n_classes)``.
    x : Tensor of shape (N, ...), pixel inputs (inside ``clip``).
    y : Tensor of shape (N,), true labels (untargeted) or target labels (``targeted=True``).
    eps : float, L∞ radius in pixel scale.
    targeted : bool, default=False. If True, step *down* the loss of the target ``y``.
    normalization : (mean, std) or None, default=None. Model input = (x - mean) / std.
    clip : (low, high) or None, default=(0.0, 1.0). Valid pixel range.
    loss_fn : callable (logits, y) -> scalar, default=summed cross-entropy.

    Returns
    -------
    Tensor of shape (N, ...) like ``x``: the adversarial pixel inputs (detached).
    """
    forward, x, _, y = _prepare(model, x, y, eps, normalization, clip)
    grad = _input_grad(forward, x, y, loss_fn or _sum_cross_entropy, targeted)
    return _project(x + eps * grad.sign(), x, eps, "linf", clip)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = True,
    targeted: bool = False,
    seed: int = 0,
    normalization: Normalization = None,
    clip: Clip = (0.0, 1.0),
    loss_fn: LossFn | None = None,
) -> Tensor:
    """Projected gradient descent (Madry et al. 2018) in an L∞ or L2 ball of pixel radius ``eps``.

    Each step: L∞ ``x ← x ± α·sign(∇)``; L2 ``x ← x ± α·∇/‖∇‖₂`` (per example); then project
    onto the eps-ball around the clean x and clip. Returns the last iterate.

    Parameters
    ----------
    model, x, y, eps, targeted, normalization, clip, loss_fn : as in :func:`fgsm`.
    steps : int, default=10. Number of gradient steps.
    step_size : float or None, default=None, meaning ``2.5 · eps / steps``.
    norm : {"linf", "l2"}, default="linf".
    random_start : bool, default=True. Start from a uniform point of the eps-ball (L∞: uniform
        in the box; L2: uniform in the ball), clipped to the valid range.
    seed : int, default=0. Seed of the random start (a generator on x's device).

    Returns
    -------
    Tensor of shape (N, ...) like ``x``: the adversarial pixel inputs (detached).
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}.")
    _check_steps(steps, step_size)
    forward, x, _, y = _prepare(model, x, y, eps, normalization, clip)
    loss_fn = loss_fn or _sum_cross_entropy
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    x_adv = x
    if random_start and eps > 0:
        gen = torch.Generator(device=x.device).manual_seed(int(seed))
        if norm == "linf":
            noise = (torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1) * eps
        else:
            direction = _safe_normalize(torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype), 2)
            d = x[0].numel()
            radius = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), generator=gen, device=x.device, dtype=x.dtype) ** (
                1.0 / d
            )
            noise = direction * radius * eps
        x_adv = _project(x + noise, x, eps, norm, clip)
    for _ in range(steps):
        grad = _input_grad(forward, x_adv, y, loss_fn, targeted)
        step = grad.sign() if norm == "linf" else _safe_normalize(grad, 2)
        x_adv = _project(x_adv + alpha * step, x, eps, norm, clip)
    return x_adv


def mi_fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    steps: int = 3,
    decay: float = 1.0,
    step_size: float | None = None,
    targeted: bool = False,
    normalization: Normalization = None,
    clip: Clip = (0.0, 1.0),
    loss_fn: LossFn | None = None,
) -> Tensor:
    """Momentum iterative FGSM (Dong et al. 2018), L∞, no random start — the paper's attack (§7a).

    Each step: ``g ← μ·g + ∇/‖∇‖₁`` (per example), ``x ← x + α·sign(g)``, then project onto the
    eps-ball around the clean x and clip. ``∇`` is the gradient with respect to the *model's
    input* (after normalisation), as in the reference implementation; it equals the pixel
    gradient times ``std``. With a per-channel std this changes the momentum's L1 weighting,
    not the sign of a single step.

    Parameters
    ----------
    model, x, y, eps, targeted, normalization, clip, loss_fn : as in :func:`fgsm`.
    steps : int, default=3. Number of iterations T.
    decay : float, default=1.0. Momentum μ ≥ 0 (μ = 0 with one step and α = eps is FGSM).
    step_size : float or None, default=None, meaning ``eps / steps``.

    Returns
    -------
    Tensor of shape (N, ...) like ``x``: the adversarial pixel inputs (detached).
    """
    _check_steps(steps, step_size)
    if not (isinstance(decay, (int, float)) and math.isfinite(decay) and decay >= 0):
        raise ValueError(f"decay (momentum μ) must be a finite number >= 0, got {decay!r}.")
    forward, x, std, y = _prepare(model, x, y, eps, normalization, clip)
    loss_fn = loss_fn or _sum_cross_entropy
    alpha = eps / steps if step_size is None else float(step_size)
    g = torch.zeros_like(x)
    x_adv = x
    for _ in range(steps):
        grad = _input_grad(forward, x_adv, y, loss_fn, targeted)
        if std is not None:
            grad = grad * std  # chain rule: gradient with respect to the normalised input
        g = decay * g + _safe_normalize(grad, 1)
        x_adv = _project(x_adv + alpha * g.sign(), x, eps, "linf", clip)
    return x_adv


# --------------------------------------------------------------------------- registry

ATTACKS: dict[str, Callable[..., Tensor]] = {"fgsm": fgsm, "pgd": pgd, "mi_fgsm": mi_fgsm}


@dataclass(frozen=True)
class Attack:
    """An attack with its settings bound: ``attack(model, x, y) -> x_adv`` of x's shape.

    ``seed_offset`` (used by :func:`reprsim.attacks.transfer.transfer`, one per batch) is added to
    the ``seed`` of attacks with a random start, so that batches get different random starts.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def targeted(self) -> bool:
        """Whether the attack aims at target labels (then ``y`` holds the targets)."""
        return bool(self.params.get("targeted", False))

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, seed_offset: int = 0) -> Tensor:
        params = dict(self.params)
        if "seed" in inspect.signature(ATTACKS[self.name]).parameters:
            params["seed"] = int(params.get("seed", 0)) + int(seed_offset)
        return ATTACKS[self.name](model, x, y, **params)


def make_attack(name: str, **params: Any) -> Attack:
    """Bind an attack's settings once: ``make_attack("mi_fgsm", eps=1/255, steps=3)``.

    Parameters
    ----------
    name : {"fgsm", "pgd", "mi_fgsm"}.
    **params : keyword arguments of that attack (``eps`` is required).

    Returns
    -------
    Attack, a callable ``(model, x, y) -> x_adv`` (Tensor of x's shape).
    """
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid names: {', '.join(sorted(ATTACKS))}.")
    sig = inspect.signature(ATTACKS[name])
    allowed = [p for p in sig.parameters if p not in ("model", "x", "y")]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"attack {name!r} got unknown parameter(s) {unknown}; valid: {', '.join(allowed)}.")
    if "eps" not in params:
        raise ValueError(f"attack {name!r} needs eps (pixel scale), e.g. make_attack({name!r}, eps=1/255).")
    eps = params["eps"]
    if isinstance(eps, bool) or not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0 (pixel scale), got {eps!r}.")
    return Attack(name, dict(params))
