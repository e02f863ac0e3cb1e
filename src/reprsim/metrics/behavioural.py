"""Behavioural similarity: how alike two models' *outputs* are on the same inputs.

``behavioural(name, probs_a, probs_b, labels=None)`` on output distributions of shape
(n_inputs, n_classes) (rows sum to 1; for language models, next-token distributions on the probe
windows, one row per position):

* ``agreement``: fraction of inputs whose argmax predictions are equal;
* ``cohen_kappa``: Cohen's κ of the argmax predictions, (p_o − p_e)/(1 − p_e) with p_o the
  agreement and p_e = Σ_c f_a(c) f_b(c) from each model's prediction frequencies f;
* ``error_consistency`` (Geirhos et al. 2020, needs labels): c_obs = fraction of inputs both get
  right or both get wrong, c_exp = p_a p_b + (1 − p_a)(1 − p_b) from the accuracies,
  κ = (c_obs − c_exp)/(1 − c_exp);
* ``capa`` (CAPA κp, arXiv 2502.04313, needs labels): observed = mean over inputs of
  Σ_c p_a(c) p_b(c), expected = p̂_a p̂_b + (1/(C − 1)) (1 − p̂_a)(1 − p̂_b) with p̂ the mean
  probability given to the true class, κp = (observed − expected)/(1 − expected);
* ``js_divergence``: mean Jensen–Shannon divergence ½KL(p_a‖m) + ½KL(p_b‖m), m = ½(p_a + p_b), in
  nats (0 = identical outputs, at most ln 2).

Each is a function of means of per-input quantities, so the percentile bootstrap over inputs (one
seeded ``numpy.random.Generator``) resamples those per-input quantities only.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

__all__ = [
    "BEHAVIOURAL",
    "NEEDS_LABELS",
    "OUTPUT_LAYER",
    "behavioural",
    "check_bootstrap",
    "check_output_layer",
    "check_probs",
]

BEHAVIOURAL = ("agreement", "cohen_kappa", "error_consistency", "capa", "js_divergence")
"""The behavioural measures, in the order the tables show them."""

NEEDS_LABELS = ("error_consistency", "capa")

#: The layer name behavioural rows carry (``layer_a`` = ``layer_b``): the models' outputs.
OUTPUT_LAYER = "output"

#: A row of an output distribution may differ from 1 by this much (float32 softmax rounding).
SUM_TOL = 1e-3


def check_output_layer(layer: str, name: str = "behavioural measures") -> None:
    """Raise ValueError unless ``layer`` is ``"output"``: behavioural measures compare the models'
    output distributions, not an internal layer."""
    if layer != OUTPUT_LAYER:
        raise ValueError(
            f"{name} compare the models' output distributions and are computed on the layer "
            f"'{OUTPUT_LAYER}' only; got layer {layer!r}. Ask for them with layer '{OUTPUT_LAYER}'."
        )


def check_probs(P: Any, which: str) -> np.ndarray:
    """``P`` as a float64 (n, C) array of probability rows, or ValueError naming the problem:
    not 2-D, fewer than 2 classes, NaN/inf, a negative entry, or a row that does not sum to 1."""
    a = np.asarray(P.detach().cpu() if hasattr(P, "detach") else P, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] < 2:
        raise ValueError(
            f"{which} must be a (n_inputs, n_classes) array of output probabilities with n ≥ 1 and "
            f"≥ 2 classes; got shape {a.shape}."
        )
    if not np.isfinite(a).all():
        raise ValueError(f"{which} contains NaN or inf; pass finite output probabilities.")
    if (a < 0).any():
        r, c = np.argwhere(a < 0)[0]
        raise ValueError(
            f"{which} has a negative entry ({a[r, c]:.3g} at row {r}, class {c}); output "
            "distributions must be probabilities (apply a softmax to logits)."
        )
    sums = a.sum(1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOL)
    if bad.size:
        raise ValueError(
            f"{which} row {bad[0]} sums to {sums[bad[0]]:.6g}, not 1 ({bad.size} such rows); output "
            "distributions must sum to 1 (apply a softmax to logits)."
        )
    return a


def check_bootstrap(n_boot: Any, level: Any) -> None:
    """Raise ValueError unless ``n_boot`` is 0 (no interval) or an integer >= 2 and ``level`` is in (0, 1)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0 or n_boot == 1:
        raise ValueError(f"n_boot must be 0 (no interval) or an integer >= 2; got {n_boot!r}.")
    if not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level!r}.")


def _labels(labels: Any, n: int, C: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must have one class id per input: {n} inputs, got labels of shape {y.shape}.")
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise ValueError(f"labels must be integer class ids; got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= C:
        raise ValueError(f"labels must be class ids in [0, {C}); got values from {y.min()} to {y.max()}.")
    return y


def _kappa(po: float, pe: float, what: str) -> float:
    if not pe < 1:
        raise ValueError(
            f"{what} is undefined: the expected agreement is 1 (e.g. both models always right, or "
            "both predicting one class), so κ = 0/0. Use more varied inputs."
        )
    return (po - pe) / (1.0 - pe)


def _per_input(name: str, pa: np.ndarray, pb: np.ndarray, y: np.ndarray | None) -> Callable[[np.ndarray], float]:
    """The measure as a function of a row index array (all rows, or one bootstrap resample)."""
    C = pa.shape[1]
    if name == "agreement":
        same = (pa.argmax(1) == pb.argmax(1)).astype(np.float64)
        return lambda i: float(same[i].mean())
    if name == "cohen_kappa":
        aa, ab = pa.argmax(1), pb.argmax(1)

        def kappa(i: np.ndarray) -> float:
            fa = np.bincount(aa[i], minlength=C) / i.size
            fb = np.bincount(ab[i], minlength=C) / i.size
            return _kappa(float((aa[i] == ab[i]).mean()), float(fa @ fb), "cohen_kappa")

        return kappa
    if name == "error_consistency":
        ca, cb = pa.argmax(1) == y, pb.argmax(1) == y

        def ec(i: np.ndarray) -> float:
            a, b = float(ca[i].mean()), float(cb[i].mean())
            return _kappa(float((ca[i] == cb[i]).mean()), a * b + (1 - a) * (1 - b), "error_consistency")

        return ec
    if name == "capa":
        r = np.arange(pa.shape[0])
        obs, ta, tb = (pa * pb).sum(1), pa[r, y], pb[r, y]

        def capa(i: np.ndarray) -> float:
            a, b = float(ta[i].mean()), float(tb[i].mean())
            return _kappa(float(obs[i].mean()), a * b + (1 - a) * (1 - b) / (C - 1), "capa")

        return capa
    m = 0.5 * (pa + pb)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0·log 0 = 0
        kl_a = np.where(pa > 0, pa * np.log(pa / m), 0.0).sum(1)
        kl_b = np.where(pb > 0, pb * np.log(pb / m), 0.0).sum(1)
    js = 0.5 * (kl_a + kl_b)
    return lambda i: float(js[i].mean())


def behavioural(
    name: str,
    probs_a: Any,
    probs_b: Any,
    labels: Any = None,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> dict[str, Any]:
    """One behavioural similarity between two models' output distributions on the same inputs.

    Parameters
    ----------
    name : one of :data:`BEHAVIOURAL`.
    probs_a, probs_b : (n, C) output probabilities of models A and B (rows sum to 1, same inputs in
        the same order, the same label space).
    labels : (n,) true class ids; required by ``error_consistency`` and ``capa``.
    n_boot : bootstrap resamples over inputs for the interval (0: no interval).
    level : interval level in (0, 1).
    seed : an int or a ``numpy.random.Generator`` for the resamples.

    Returns
    -------
    dict with ``measure``, ``value``, ``ci_low``, ``ci_high`` (NaN when n_boot = 0; percentile
    interval; resamples on which κ is undefined are left out), ``n``.
    """
    if name not in BEHAVIOURAL:
        raise ValueError(f"unknown behavioural measure {name!r}; valid ones are: {', '.join(BEHAVIOURAL)}.")
    pa, pb = check_probs(probs_a, "probs_a"), check_probs(probs_b, "probs_b")
    if pa.shape != pb.shape:
        raise ValueError(
            f"probs_a and probs_b must have the same shape (the same inputs and label space); got "
            f"{pa.shape} and {pb.shape}."
        )
    n, C = pa.shape
    y = None
    if labels is not None:
        y = _labels(labels, n, C)
    elif name in NEEDS_LABELS:
        raise ValueError(f"{name} needs labels=(n,) true class ids: it compares which inputs each model gets right.")
    check_bootstrap(n_boot, level)
    stat = _per_input(name, pa, pb, y)
    value = stat(np.arange(n))
    lo = hi = math.nan
    if n_boot:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        reps = []
        for _ in range(int(n_boot)):
            try:
                reps.append(stat(rng.integers(0, n, n)))
            except ValueError:
                pass  # κ undefined on this resample
        if reps:
            lo, hi = (float(q) for q in np.quantile(reps, [(1 - level) / 2, (1 + level) / 2]))
    return {"measure": name, "value": value, "ci_low": lo, "ci_high": hi, "n": n}
