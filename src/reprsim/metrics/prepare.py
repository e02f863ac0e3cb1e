"""The paper's feature preparation: absolute-quantile clamp, then row L2 normalisation.

The clip threshold can never be 0 for features with a non-zero entry (sparse ReLU layers used to be
clipped to all zeros); :class:`PrepareInfo` says what was done, and a :class:`PrepareWarning` is
issued when the preparation departs from the paper's rule.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reprsim.metrics._numerics import row_exponents, scale_pow2
from reprsim.metrics._validate import as_features, check_float

#: The paper's clip quantile (PAPER.md): entries are clamped to ± the 0.95-quantile of |x|.
PAPER_CLIP_QUANTILE = 0.95

#: The named preparation rules every entry point accepts: name → (normalize, clip_quantile, description).
RULES: dict[str, tuple[str | None, float | None, str]] = {
    "paper": ("l2", PAPER_CLIP_QUANTILE, "paper (clip 0.95 quantile + L2 rows)"),
    "l2": ("l2", None, "l2 (L2 rows)"),
    "none": (None, None, "none (raw features)"),
}


class PrepareWarning(UserWarning):
    """``prepare`` departed from the paper's rule: a sparse matrix was clipped at the quantile of its
    non-zero magnitudes, or all-zero rows were kept as zero rows. Catch it with
    ``warnings.catch_warnings(record=True)`` (or pass ``return_info=True``) to record which layer."""


@dataclass(frozen=True)
class PrepareInfo:
    """What :func:`prepare` did to one matrix.

    Attributes
    ----------
    clip_quantile : the requested q, or None (no clipping).
    tau : the clip threshold used (None without clipping).
    tau_paper : the paper's threshold, the q-quantile of |x| over all entries (None without clipping).
    rule : "quantile" (the paper's τ), "nonzero_quantile" (the sparse fallback) or None.
    zero_fraction : fraction of entries that are exactly 0.
    clipped_fraction : fraction of the non-zero entries whose magnitude the clip reduced.
    zero_rows : rows that are all zero (kept as zero rows by the L2 normalisation).
    """

    clip_quantile: float | None
    tau: float | None
    tau_paper: float | None
    rule: str | None
    zero_fraction: float
    clipped_fraction: float
    zero_rows: int

    @property
    def sparse_fallback(self) -> bool:
        """True when the threshold differs from the paper's (the matrix was too sparse for it)."""
        return self.rule == "nonzero_quantile"

    @property
    def affected(self) -> bool:
        """True when the result differs from the paper's preparation (fallback τ or zero rows kept)."""
        return self.sparse_fallback or self.zero_rows > 0

    def describe(self) -> str:
        """One line for a log: what departed from the paper's rule (empty string if nothing did)."""
        parts = []
        if self.sparse_fallback:
            parts.append(
                f"{self.zero_fraction:.1%} of the entries are zero, so the paper's {self.clip_quantile:g}-quantile "
                f"clip threshold τ={self.tau_paper:.3g} would have reduced more than half of the non-zero "
                f"entries; clipped at the {self.clip_quantile:g}-quantile of the non-zero magnitudes instead "
                f"(τ={self.tau:.3g}, {self.clipped_fraction:.1%} of the non-zero entries clipped)"
            )
        if self.zero_rows:
            parts.append(f"{self.zero_rows} all-zero row(s) kept as zero rows")
        return "; ".join(parts)


def _kth_smallest(v: torch.Tensor, q: float) -> torch.Tensor:
    """Entry ⌊q·m⌋ (0-based, capped at m−1) of the sorted 1-D tensor ``v`` of m entries."""
    idx = min(int(np.floor(q * v.numel())), v.numel() - 1)
    return v.kthvalue(idx + 1).values  # kthvalue is 1-based


def prepare(
    X: Any, normalize: str | None = "l2", clip_quantile: float | None = PAPER_CLIP_QUANTILE, return_info: bool = False
) -> Any:
    """Prepare a feature matrix the way the paper does before measuring similarity.

    With no options this is the paper's rule (clip at the 0.95 quantile, then L2 rows), the same
    rule the sweep and ``compare_models`` / ``compare_features`` / ``reprsim compare`` default to
    (:func:`resolve_prepare`). Steps, in order (each optional; ``clip_quantile=None`` skips 1):

    1. ``clip_quantile=q``: clamp every entry to [−τ, τ]. The paper's τ is the q-quantile of |x|
       over *all* entries (sort |x|, τ = value at index ⌊q·numel⌋; q = 0.95), and it is used
       whenever it leaves at least half of the non-zero entries unchanged — always for a matrix
       without zeros, so such a matrix gets exactly the paper's values. In a sparse matrix (e.g.
       ReLU features; at q = 0.95 from about 90% zeros on) the paper's τ would flatten most non-zero
       entries, and at ≥ 95% zeros τ = 0 would zero the whole matrix; there τ is the q-quantile of
       the *non-zero* magnitudes instead (computed the same way on those entries only), which is
       never 0 while a non-zero entry exists. A :class:`PrepareWarning` says so.
    2. ``normalize="l2"``: divide each row by its Euclidean norm. An all-zero row has no direction;
       its normalisation is defined as the zero row (it is kept, with a :class:`PrepareWarning`),
       so one dead sample does not fail a whole comparison. Norms are computed on rows rescaled by
       an exact power of two when their magnitude would over- or underflow the squares.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        numpy array or torch tensor.
    normalize : {"l2", None}, default="l2"
    clip_quantile : float in (0, 1] or None, default=0.95 (the paper's)
    return_info : bool, default=False
        Also return a :class:`PrepareInfo` (and issue no warning: the caller records the info).

    Returns
    -------
    The prepared matrix, shape (n_samples, n_features), of the same type (numpy or torch) and
    dtype as the working copy of ``X`` (float32 stays float32, other inputs become float64);
    with ``return_info=True`` the tuple ``(prepared, info)``.
    """
    was_numpy = not isinstance(X, torch.Tensor)
    t = as_features(X, "X")
    if normalize not in ("l2", None):
        raise ValueError(f"normalize must be 'l2' or None; got {normalize!r}.")
    q = None if clip_quantile is None else check_float(clip_quantile, "clip_quantile", low=0.0, high=1.0)
    n_nz = int(torch.count_nonzero(t))
    zero_fraction = 1.0 - n_nz / t.numel()
    tau = tau_paper = rule = None
    clipped = 0.0
    if q is not None:
        absx = t.abs().reshape(-1)
        nonzero = absx > 0
        tau_paper = _kth_smallest(absx, q)
        tau, rule = tau_paper, "quantile"
        if n_nz:
            kept = int((nonzero & (absx <= tau_paper)).sum())  # non-zero entries the clip leaves alone
            if 2 * kept < n_nz:
                nz = absx[nonzero]
                tau_nz = _kth_smallest(nz, q)
                if tau_nz != tau_paper:  # without zeros both are the same entry
                    tau, rule = tau_nz, "nonzero_quantile"
            t = t.clamp(min=-tau, max=tau)
            clipped = int((absx > tau).sum()) / n_nz
        tau, tau_paper = float(tau), float(tau_paper)
    zero_rows = 0
    if normalize == "l2":
        e = row_exponents(t)
        scaled = scale_pow2(t, e) if bool((e != 0).any()) else t
        norms = torch.linalg.vector_norm(scaled, dim=1, keepdim=True)
        zero = norms[:, 0] == 0
        zero_rows = int(zero.sum())
        if zero_rows:
            norms = norms.masked_fill(zero[:, None], 1.0)  # 0 / 1: an all-zero row stays zero
        t = scaled / norms
    info = PrepareInfo(q, tau, tau_paper, rule, zero_fraction, clipped, zero_rows)
    if info.affected and not return_info:
        warnings.warn(f"prepare: {info.describe()}.", PrepareWarning, stacklevel=2)
    out = t.cpu().numpy() if was_numpy else t
    return (out, info) if return_info else out


def resolve_prepare(spec: Any = "paper") -> tuple[Callable[[Any], Any], str]:
    """The one preparation rule of every entry point, as ``(function (n, d) → (n, d), description)``.

    ``spec``: ``"paper"`` (default: clamp to ± the 0.95-quantile of |x|, then L2 rows — the sweep's
    and :func:`prepare`'s default), ``"l2"`` (rows only), ``"none"`` / ``None`` (raw features), a
    dict ``{"normalize": "l2" | None, "clip_quantile": q | None}`` (missing keys: ``"l2"``, no clip)
    or a callable (its ``__name__`` is the description). The description is what tables and reports
    record in their ``prepare`` column / field.

    Raises:
        ValueError: an unknown name, dict key or type (the valid choices are listed).
    """
    if spec is None:
        spec = "none"
    if isinstance(spec, str):
        if spec not in RULES:
            raise ValueError(
                f"prepare must be one of {', '.join(map(repr, RULES))}, a dict or a callable; got {spec!r}."
            )
        normalize, q, desc = RULES[spec]
        return (lambda X: prepare(X, normalize=normalize, clip_quantile=q)), desc
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"normalize", "clip_quantile"})
        if unknown:
            raise ValueError(f"a prepare dict takes 'normalize' and 'clip_quantile'; got unknown keys {unknown}.")
        opts = {"normalize": spec.get("normalize", "l2"), "clip_quantile": spec.get("clip_quantile")}
        prepare(np.ones((2, 2)), **opts)  # checks the values now, not on the first layer
        for name, (n, q, desc) in RULES.items():
            if (n, q) == (opts["normalize"], opts["clip_quantile"]):
                return (lambda X: prepare(X, **opts)), desc
        return (lambda X: prepare(X, **opts)), ", ".join(f"{k}={v}" for k, v in opts.items())
    if callable(spec):
        return spec, f"custom ({getattr(spec, '__name__', type(spec).__name__)})"
    raise ValueError(
        f"prepare must be one of {', '.join(map(repr, RULES))}, a dict or a callable; got {type(spec).__name__}."
    )
