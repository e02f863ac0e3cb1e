"""Linear CKA accumulated over batches of rows in O(d1² + d2² + d1·d2) memory."""

from __future__ import annotations

import math
from typing import Any

import torch

from reprsim.metrics._numerics import pow2_exponent, scale_pow2
from reprsim.metrics._validate import check_paired_features


class StreamingCKA:
    """Linear (biased-HSIC) CKA over a stream of row batches, equal to ``compute("cka", X, Y)`` on
    the concatenated rows.

    Keeps n, the column sums and X̂ᵀX̂, ŶᵀŶ, X̂ᵀŶ in float64, where X̂ = X − x₀ is shifted by the
    first batch's column mean (this keeps the final centring X̃ᵀX̃ = X̂ᵀX̂ − n·m̂m̂ᵀ free of
    cancellation when features carry a large offset). When the first batch's largest magnitude on a
    side is outside [2**-20, 2**20], that side is multiplied by the power of two that brings it to
    [0.5, 1) for the whole stream (exact; CKA is scale invariant); sums that still overflow (a later
    batch far larger than the first) raise ValueError.

    Examples
    --------
    >>> s = StreamingCKA()
    >>> for xb, yb in batches:   # doctest: +SKIP
    ...     s.update(xb, yb)
    >>> s.value()                # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.n = 0
        self._shift: tuple[torch.Tensor, torch.Tensor] | None = None
        self._exp = (0, 0)
        self._sx = self._sy = self._xx = self._yy = self._xy = None

    def update(self, X_b: Any, Y_b: Any) -> "StreamingCKA":
        """Add a batch: X_b of shape (b, d1), Y_b of shape (b, d2) (same rows). Returns self."""
        Xt, Yt = check_paired_features(X_b, Y_b)
        Xt, Yt = Xt.to(torch.float64), Yt.to(torch.float64)
        if self._shift is None:
            self._exp = (pow2_exponent(Xt), pow2_exponent(Yt))
        Xt, Yt = scale_pow2(Xt, self._exp[0]), scale_pow2(Yt, self._exp[1])
        if self._shift is None:
            self._shift = (Xt.mean(0), Yt.mean(0))
            d1, d2 = Xt.shape[1], Yt.shape[1]
            z = dict(dtype=torch.float64, device=Xt.device)
            self._sx, self._sy = torch.zeros(d1, **z), torch.zeros(d2, **z)
            self._xx, self._yy, self._xy = torch.zeros(d1, d1, **z), torch.zeros(d2, d2, **z), torch.zeros(d1, d2, **z)
        elif Xt.shape[1] != self._sx.shape[0] or Yt.shape[1] != self._sy.shape[0]:
            raise ValueError(
                f"batch has {Xt.shape[1]} X-features and {Yt.shape[1]} Y-features, but earlier "
                f"batches had {self._sx.shape[0]} and {self._sy.shape[0]}; every batch must come "
                "from the same two layers."
            )
        Xs, Ys = Xt - self._shift[0], Yt - self._shift[1]
        self.n += Xt.shape[0]
        self._sx += Xs.sum(0)
        self._sy += Ys.sum(0)
        self._xx += Xs.T @ Xs
        self._yy += Ys.T @ Ys
        self._xy += Xs.T @ Ys
        if not all(bool(torch.isfinite(a).all()) for a in (self._xx, self._yy, self._xy)):
            raise ValueError(
                "StreamingCKA: the running sums overflowed float64 (this batch is far larger "
                "than the first one); rescale the features consistently across batches."
            )
        return self

    def value(self) -> float:
        """Linear CKA of all rows seen so far (a float in [0, 1]); needs ≥ 2 rows and non-constant X, Y."""
        if self.n < 2:
            raise ValueError(f"StreamingCKA has seen {self.n} row(s); call update() with at least 2 rows first.")
        mx, my = self._sx / self.n, self._sy / self.n
        cxx = self._xx - self.n * torch.outer(mx, mx)
        cyy = self._yy - self.n * torch.outer(my, my)
        cxy = self._xy - self.n * torch.outer(mx, my)
        hxx, hyy, hxy = float((cxx**2).sum()), float((cyy**2).sum()), float((cxy**2).sum())
        if not all(math.isfinite(v) for v in (hxx, hyy, hxy)):
            raise ValueError(
                "StreamingCKA: the HSIC sums overflowed float64; the batches differ in scale "
                "by many orders of magnitude. Rescale the features consistently."
            )
        if not (hxx > 0 and hyy > 0):
            raise ValueError("StreamingCKA: X or Y is constant over the rows seen, so CKA is undefined.")
        return hxy / math.sqrt(hxx * hyy)
