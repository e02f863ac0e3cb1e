"""Shared input checks: every public entry point of :mod:`reprsim.metrics` goes through here.

``as_features`` turns one numpy array / torch tensor / nested list into a 2-D torch tensor in the
working precision; ``check_paired_features`` owns the rule "same number of rows, any number of
columns" for a pair. Messages name the argument, what was received and how to fix it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_FLOAT_KINDS = {torch.float32, torch.float64}


def as_features(X: Any, name: str = "X") -> torch.Tensor:
    """Validate one feature matrix and return it as a torch tensor of shape (n_samples, n_features).

    float64 input stays float64 and float32 stays float32 (half precision is promoted to float32,
    integers and booleans to float64). The tensor keeps the input's device and is never copied
    when it already has a working dtype.

    Raises
    ------
    TypeError
        For objects that are not arrays/tensors or for complex dtypes.
    ValueError
        For input that is not 2-D, empty, or contains NaN/inf.
    """
    if isinstance(X, torch.Tensor):
        t = X.detach()
    elif isinstance(X, (np.ndarray, list, tuple)) or np.isscalar(X):
        arr = np.asarray(X)
        if arr.dtype == object:
            raise TypeError(
                f"{name} must be a numeric array of shape (n_samples, n_features); got an object array "
                "(ragged rows?). Pass a rectangular numpy array or torch tensor."
            )
        if arr.dtype.kind not in "biuf":
            raise TypeError(
                f"{name} has dtype {arr.dtype}; expected real numbers in a numpy array or torch tensor. Convert it with {name}.astype(np.float64)."
            )
        t = torch.from_numpy(np.ascontiguousarray(arr))
    else:
        raise TypeError(
            f"{name} must be a numpy array or torch tensor of shape (n_samples, n_features); got {type(X).__name__}."
        )
    if t.is_complex():
        raise TypeError(f"{name} has complex dtype {t.dtype}; similarity measures need real features.")
    if t.ndim != 2:
        hint = ""
        if t.ndim == 1:
            hint = (
                f" Reshape it with {name}.reshape(-1, 1) if it holds one feature per sample, "
                f"or {name}.reshape(1, -1) if it is a single sample."
            )
        elif t.ndim > 2:
            hint = f" Flatten the trailing dimensions with {name}.reshape({name}.shape[0], -1) or pool them first."
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features); got {t.ndim}-D input of shape {tuple(t.shape)}.{hint}"
        )
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); it needs at least one sample and one feature.")
    if t.dtype not in _FLOAT_KINDS:
        t = t.to(torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else torch.float64)
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[0].tolist()
        count = int((~finite).sum())
        raise ValueError(
            f"{name} contains {count} NaN or inf value(s) (first at row {bad[0]}, column {bad[1]}); "
            "remove or impute them before computing similarities."
        )
    return t


def check_paired_features(X: Any, Y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a pair of feature matrices with the same rows (inputs) in the same order.

    Returns ``(X, Y)`` as tensors of shapes (n, d1) and (n, d2) with a common working dtype
    (float64 if either input is float64, else float32) on a common device.
    """
    Xt = as_features(X, "X")
    Yt = as_features(Y, "Y")
    if Xt.shape[0] != Yt.shape[0]:
        raise ValueError(
            f"X and Y must have the same number of rows (the same inputs in the same order); got "
            f"X.shape={tuple(Xt.shape)} and Y.shape={tuple(Yt.shape)}. Extract both on the same probe set."
        )
    if Xt.device != Yt.device:
        raise ValueError(f"X is on {Xt.device} and Y on {Yt.device}; move both to the same device first.")
    if Xt.dtype != Yt.dtype:
        Xt, Yt = Xt.to(torch.float64), Yt.to(torch.float64)
    return Xt, Yt


def check_int(value: Any, name: str, low: int, high: int | None = None, why: str = "") -> int:
    """Return ``value`` as an int after checking ``low <= value <= high`` (``high`` None: no bound)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__}).")
    v = int(value)
    if v < low or (high is not None and v > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {bound}; got {v}.{(' ' + why) if why else ''}")
    return v


def check_float(
    value: Any, name: str, low: float | None = None, high: float | None = None, low_open: bool = True
) -> float:
    """Return ``value`` as a float after checking it is finite and inside (low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number; got {value!r} ({type(value).__name__}).")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite; got {v}.")
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}; got {v}.")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}; got {v}.")
    return v


def constant_side(F: torch.Tensor) -> bool:
    """True when every row of ``F`` (n, d) is the same point, up to the dtype's rounding:
    max_j (max_i F_ij − min_i F_ij) ≤ 16·eps·max|F| (an exactly zero matrix included).

    Such a representation (rank 0 after centring) has no geometry: every similarity measure is
    undefined on it (0/0 for CKA and CCA, all-tied neighbours for the kNN measures, a zero RDM for
    RSA), and what the formulas return there is rounding noise (1.0, 1.0000000000000016, −0.99997).
    """
    if F.shape[0] < 2:
        return False
    span = float((F.amax(0) - F.amin(0)).amax())
    scale = float(F.abs().amax())
    return span <= 16 * torch.finfo(F.dtype).eps * scale


def degenerate_problem(x: Any, y: Any) -> str | None:
    """Why no measure is defined on the pair of sides ``x``, ``y`` (objects with a feature matrix
    ``F``), or None. The answer is cached on each side (permuted and resampled sides are new objects)."""
    which = []
    for side, name in ((x, "X"), (y, "Y")):
        flag = getattr(side, "_rs_constant", None)
        if flag is None:
            flag = constant_side(side.F)
            try:
                side._rs_constant = flag
            except AttributeError:  # a side without a __dict__: recompute next time
                pass
        if flag:
            which.append(name)
    if not which:
        return None
    return (
        f"undefined: all {x.F.shape[0]} rows of {' and '.join(which)} are the same point (a constant "
        "representation has no geometry to compare; check the layer or the inputs)"
    )


#: The most bootstrap resamples / permutations any option accepts (``--bootstrap``, ``--permutations``,
#: ``--n-boot``, ``--n-perm``, ``measures.permutations``): each recomputes every measure (or every
#: cell statistic), and 10⁵ already resolves a p-value of 1e-5; 10⁹ ran out of memory.
MAX_RESAMPLES = 100_000


def check_bootstrap_options(n_boot: Any, level: Any, seed: Any) -> tuple[int, float, int]:
    """A bootstrap's options, checked: ``n_boot`` an integer ≥ 2, ``level`` in (0, 1), ``seed`` an
    integer ≥ 0 (ValueError naming the option and the value received). Returns them as int, float, int."""
    B = check_int(n_boot, "n_boot", 2)
    level = check_float(level, "level", low=0.0)
    if not level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}.")
    return B, level, check_int(seed, "seed", 0)


def check_resamples(value: Any, option: str) -> int:
    """``value`` when it is an integer in [0, :data:`MAX_RESAMPLES`], else ValueError naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{option} must be an integer; got {value!r}.")
    if not 0 <= int(value) <= MAX_RESAMPLES:
        raise ValueError(
            f"{option} must be between 0 and {MAX_RESAMPLES:,}; got {int(value):,} (each resample "
            "recomputes everything, and 10⁵ already resolves p = 1e-5)."
        )
    return int(value)


def clamp_rounding(value: float, value_range: tuple[float, float], tol: float = 1e-9) -> float:
    """``value`` limited to ``value_range`` when it lies outside by at most ``tol`` (rounding, e.g.
    CKA 1.0000000000000016 of a copy); farther outside it is returned unchanged (a real error)."""
    lo, hi = value_range
    if hi < value <= hi + tol:
        return hi
    if lo - tol <= value < lo:
        return lo
    return value
