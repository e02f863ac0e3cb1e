"""An alignment term for training: ``weight · (1 − linear CKA)`` between a model's and a frozen reference's features.

A data-overlap design's ``align`` dose (``overlap.designs[i].align``) trains model B with its usual
loss plus ``λ · (1 − CKA(B's penultimate features, A's penultimate features))`` on every training
batch, with the trained model A frozen (eval mode, no gradient) and fed the same batch inputs: a
dose of representational similarity given directly, at a fixed data overlap.

:class:`AlignmentLoss` is an ``extra_loss`` for :func:`reprsim.train.train`; :func:`linear_cka_torch`
is the differentiable CKA it uses (the same number as ``reprsim.metrics.compute("cka", X, Y)``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from reprsim.features import _unwrap, pool_features
from reprsim.models.layers import PENULTIMATE, resolve_layer

__all__ = ["AlignmentLoss", "layer_problem", "linear_cka_torch"]


def linear_cka_torch(x: Tensor, y: Tensor) -> Tensor:
    """Linear CKA of ``x`` (n, d1) and ``y`` (n, d2), differentiable, in the inputs' dtype.

    CKA = ‖ỸᵀX̃‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F) on column-centred X̃, Ỹ (the biased-HSIC linear CKA of
    Kornblith et al. 2019), computed from d×d products or, when cheaper, from the n×n Grams
    (‖ỸᵀX̃‖²_F = tr(K̃L̃), ‖X̃ᵀX̃‖_F = ‖K̃‖_F). Returns a 0-d tensor in [0, 1]. A side that is constant
    over the rows has no defined CKA; it gives 0 (with zero gradient) rather than NaN, so that one
    degenerate training batch does not poison the weights.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"linear_cka_torch: x and y must be (n, d1) and (n, d2) with the same n, "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.shape[0] < 2:
        raise ValueError(f"linear_cka_torch: CKA needs at least 2 rows, got {x.shape[0]}")
    xc, yc = x - x.mean(0, keepdim=True), y - y.mean(0, keepdim=True)
    n, d1, d2 = x.shape[0], x.shape[1], y.shape[1]
    if d1 * d2 + d1 * d1 + d2 * d2 <= n * (
        d1 + d2
    ):  # feature-space products cost n(d1·d2 + d1² + d2²), Grams n²(d1 + d2)
        hxy, hxx, hyy = ((yc.T @ xc) ** 2).sum(), ((xc.T @ xc) ** 2).sum(), ((yc.T @ yc) ** 2).sum()
    else:
        k, l = xc @ xc.T, yc @ yc.T
        hxy, hxx, hyy = (k * l).sum(), (k * k).sum(), (l * l).sum()
    den = hxx * hyy
    if not bool(den > 0):
        return hxy * 0.0
    return hxy / torch.sqrt(den)


def layer_problem(model: nn.Module, layer: str = PENULTIMATE) -> str | None:
    """Why ``layer`` of ``model`` cannot be aligned (no such layer), or None when it can."""
    try:
        resolve_layer(model, layer)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


class _Capture:
    """A forward hook keeping the latest (pooled) output — or input — of one layer."""

    def __init__(self, model: nn.Module, layer: str, pool: str) -> None:
        self.module, self.capture_input = resolve_layer(model, layer)
        self.pool = pool
        self.value: Tensor | None = None
        self.handle: Any = None

    def _hook(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        self.value = pool_features(_unwrap(inputs[0] if self.capture_input else output), self.pool)

    def attach(self) -> None:
        self.handle = self.module.register_forward_hook(self._hook)

    def detach(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        self.value = None


class AlignmentLoss:
    """``weight · (1 − linear CKA(model's layer, reference's layer))`` on each batch: an ``extra_loss``.

    Use it as a context manager around :func:`reprsim.train.train` (``extra_loss=`` argument)::

        with AlignmentLoss(model_b, model_a, weight=2.0) as extra:
            train(model_b, data, cfg, seed, extra_loss=extra)

    While open it hooks ``layer`` of ``model``, so the features of the training forward pass are
    reused (no second forward of the trained model); the reference runs once per batch in eval mode
    without gradients, on the same (augmented) batch inputs, so it never changes. Features are pooled
    like the sweep's read-out (``pool``, :func:`reprsim.features.pool_features`) and compared in float32.
    """

    def __init__(
        self, model: nn.Module, reference: nn.Module, weight: float, *, layer: str = PENULTIMATE, pool: str = "avg"
    ) -> None:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"AlignmentLoss: weight must be a finite number >= 0, got {weight!r}")
        if model is reference:
            raise ValueError("AlignmentLoss: model and reference are the same module; align to another model")
        self.weight = float(weight)
        self.reference = reference
        self._own = _Capture(model, layer, pool)
        self._ref = _Capture(reference, layer, pool)
        self._reference_was_training = reference.training

    def __enter__(self) -> AlignmentLoss:
        self._own.attach()
        self._ref.attach()
        self.reference.eval()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._own.detach()
        self._ref.detach()
        self.reference.train(self._reference_was_training)

    def __call__(self, model: nn.Module, xb: Tensor) -> Tensor:
        """The term for the batch ``xb`` whose forward pass through ``model`` just ran; a 0-d float32 tensor."""
        own = self._own.value
        if own is None or own.shape[0] != xb.shape[0]:
            raise RuntimeError(
                "AlignmentLoss: no features of this batch were captured; use it inside its `with` "
                "block as train(..., extra_loss=...), called after the model's forward pass"
            )
        self._own.value = None
        with torch.no_grad():
            self.reference(xb)
        ref, self._ref.value = self._ref.value, None
        return self.weight * (1.0 - linear_cka_torch(own.float(), ref.float()))
