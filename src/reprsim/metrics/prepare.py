"""The paper's feature preparation: global absolute-quantile clamp, then row L2 normalisation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reprsim.metrics._validate import as_features, check_float


def prepare(X: Any, normalize: str | None = "l2", clip_quantile: float | None = None) -> Any:
    """Prepare a feature matrix the way the paper does before measuring similarity.

    Steps, in order (each optional):

    1. ``clip_quantile=q``: τ = the q-quantile of |x| over *all* entries of the matrix
       (the paper: sort |x|, τ = value at index ⌊q·numel⌋, q = 0.95); clamp every entry to [−τ, τ].
    2. ``normalize="l2"``: divide each row by its Euclidean norm. A row of zeros is an error
       (its direction is undefined) rather than being silently left at zero.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        numpy array or torch tensor.
    normalize : {"l2", None}, default="l2"
    clip_quantile : float in (0, 1] or None, default=None

    Returns
    -------
    The prepared matrix, shape (n_samples, n_features), of the same type (numpy or torch) and
    dtype as the working copy of ``X`` (float32 stays float32, other inputs become float64).
    """
    was_numpy = not isinstance(X, torch.Tensor)
    t = as_features(X, "X")
    if normalize not in ("l2", None):
        raise ValueError(f"normalize must be 'l2' or None; got {normalize!r}.")
    if clip_quantile is not None:
        q = check_float(clip_quantile, "clip_quantile", low=0.0, high=1.0)
        flat = t.abs().reshape(-1)
        idx = min(int(np.floor(q * flat.numel())), flat.numel() - 1)
        # kthvalue is 1-based: the (idx+1)-th smallest equals sorted[idx], as in the paper.
        tau = flat.kthvalue(idx + 1).values
        t = t.clamp(min=-tau, max=tau)
    if normalize == "l2":
        norms = torch.linalg.vector_norm(t, dim=1, keepdim=True)
        zero = (norms[:, 0] == 0).nonzero()
        if zero.numel():
            raise ValueError(
                f"X has {zero.numel()} all-zero row(s) (first: row {int(zero[0])}) after clipping; "
                "L2 normalisation is undefined for them. Drop those samples or use normalize=None."
            )
        t = t / norms
    if was_numpy:
        return t.cpu().numpy()
    return t
