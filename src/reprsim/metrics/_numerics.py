"""Exact power-of-two rescaling that keeps every product of a measure inside the float range.

Every registered measure is invariant to multiplying either representation by a positive constant
(``rbf_cka`` with a numeric ``sigma`` once σ is multiplied by the same constant), so a side whose
largest magnitude lies outside ``[2**-SAFE_LOG2, 2**SAFE_LOG2]`` (≈ [1e-6, 1e6]) is multiplied by
the power of two that brings its largest magnitude into [0.5, 1). Multiplying by a power of two is
exact in binary floating point, so the measures' values do not change (up to entries pushed into
the subnormal range, which contribute nothing); inside the band nothing is touched at all, so
well-conditioned inputs give bit-identical results.

Why the band: a measure forms squared norms, Gram entries (∝ |x|²) and sums of squared Gram entries
(∝ |x|⁴, and their product ∝ |x|⁸ in a CKA denominator). float32 features near 1e20 overflow the
first, float64 features near 1e160 the second; tiny features underflow the same way.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SAFE_LOG2 = 20
_LOW, _HIGH = 2.0**-SAFE_LOG2, 2.0**SAFE_LOG2


def max_abs(t: torch.Tensor) -> float:
    """Largest |entry| of ``t`` (without an |t| temporary)."""
    lo, hi = torch.aminmax(t)
    return max(-float(lo), float(hi))


def pow2_exponent(t: torch.Tensor) -> int:
    """The exponent e such that ``t · 2**e`` has its largest magnitude in [0.5, 1) when ``t``'s largest
    magnitude lies outside the safe band, else 0 (also 0 for an all-zero tensor)."""
    m = max_abs(t)
    if m == 0.0 or _LOW <= m <= _HIGH:
        return 0
    return -math.frexp(m)[1]


def scale_pow2(t: torch.Tensor, e: int | torch.Tensor) -> torch.Tensor:
    """``t · 2**e`` exactly. ``e`` is an int or an int tensor broadcastable to ``t`` (e.g. (n, 1) for
    per-row exponents). Applied in two halves so that no factor over- or underflows the dtype."""
    if isinstance(e, int):
        if e == 0:
            return t
        h = e // 2
        return t * (2.0**h) * (2.0 ** (e - h))
    e_np = e.detach().cpu().numpy().astype(np.int64)
    h = e_np // 2
    f1 = torch.from_numpy(np.ldexp(1.0, h)).to(dtype=t.dtype, device=t.device)
    f2 = torch.from_numpy(np.ldexp(1.0, e_np - h)).to(dtype=t.dtype, device=t.device)
    return t * f1 * f2


def row_exponents(t: torch.Tensor) -> torch.Tensor:
    """Per-row version of :func:`pow2_exponent`: int64 tensor (n, 1), 0 for rows inside the band."""
    m = torch.maximum(t.amax(1, keepdim=True), -t.amin(1, keepdim=True)).to(torch.float64)
    _, e = torch.frexp(m)
    out = -e.to(torch.int64)
    inside = (m == 0) | ((m >= _LOW) & (m <= _HIGH))
    return out.masked_fill(inside, 0)
