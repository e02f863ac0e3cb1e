"""The measure registry and the ``compute`` / ``compute_all`` entry points.

A registry entry (:class:`Measure`) is data: the function, its parameters with defaults and
checks, what kind of number it returns and its range, and a reference. The "unknown measure"
error, the CLI's ``--measure`` choices and parameter routing in ``compute_all`` all read it.

Numerics. Every measure is invariant to multiplying X or Y by a positive constant
(``Measure.scale_invariant``; ``rbf_cka`` with a numeric ``sigma`` only when σ is scaled too, which
is done internally), so a side whose largest |x| is outside [2**-20, 2**20] is rescaled by an exact
power of two before any product (:mod:`reprsim.metrics._numerics`): float32 features near 1e20 or
float64 features near 1e160 give the same values as at unit scale, and inputs inside that band are
not touched. Every parameter is range-checked by its ``Param.check``. A numerical failure
(``LinAlgError``, division by zero, overflow, a NaN result) raises ValueError naming the measure,
which ``compute_all(on_error="nan")`` records as NaN with a warning.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

import torch

from reprsim.metrics import cca, cka, knn, other
from reprsim.metrics._blocks import run_pass
from reprsim.metrics._pair import SidePair, make_pair
from reprsim.metrics._validate import (
    check_float,
    check_int,
    check_paired_features,
    clamp_rounding,
    degenerate_problem,
)


def _k(v: Any, n: int) -> int:
    return check_int(
        v,
        "k",
        1,
        n - 1,
        why=f"k must be smaller than the number of samples n={n} "
        "(each sample needs k other samples as neighbours); use a smaller k or more samples.",
    )


def _sigma(v: Any, n: int) -> float | str:
    """'median' or a finite σ > 0. Whether 2σ² is representable against the features' scale is
    checked by :func:`reprsim.metrics.cka.bandwidths` (an error naming sigma)."""
    if isinstance(v, str):
        if v == "median":
            return v
        raise ValueError(f"sigma must be a positive number or 'median'; got {v!r}.")
    return check_float(v, "sigma", low=0.0)


def _dim(v: Any, n: int) -> int | None:
    return None if v is None else check_int(v, "dim", 1)


def _keep(v: Any, n: int) -> float:
    return check_float(v, "keep", low=0.0, high=1.0)


def _max_rows(v: Any, n: int) -> int:
    return check_int(v, "max_rows", 4)


def _seed(v: Any, n: int) -> int:
    return check_int(v, "seed", 0)


def _alpha(v: Any, n: int) -> float:
    return check_float(v, "alpha", low=0.0)


def _folds(v: Any, n: int) -> int:
    return check_int(v, "n_folds", 2, max(2, n // 2), why=f"each fold needs ≥ 2 samples (n={n}).")


@dataclass(frozen=True)
class Param:
    default: Any
    check: Callable[[Any, int], Any]
    help: str


@dataclass(frozen=True)
class Measure:
    """One registered similarity measure."""

    name: str
    fn: Callable[..., float]
    params: Mapping[str, Param] = field(default_factory=dict)
    kind: str = "similarity"  # or "distance"
    value_range: tuple[float, float] = (0.0, 1.0)
    symmetric: bool = True
    min_n: int = 3
    uses_knn: bool = False
    reference: str = ""
    # True: the value is unchanged when X or Y is multiplied by a positive constant. Every measure
    # is; rbf_cka only with sigma="median" (a numeric sigma is in feature units). Inputs that would
    # overflow are rescaled by a power of two for *every* measure: rbf_cka's numeric sigma is
    # rescaled with them, so the value is exact there too.
    scale_invariant: bool = True
    # The measure card: the transforms (of either side; "sample_permutation" = the same reordering of
    # both sides' rows) that leave the value unchanged, with default parameters. Verified, and each
    # transform not listed shown to change the value, by tests/test_metrics_cards.py.
    invariances: tuple[str, ...] = ()

    @property
    def bounded(self) -> bool:
        """Whether both ends of ``value_range`` are finite."""
        return all(math.isfinite(v) for v in self.value_range)

    @property
    def summary(self) -> str:
        """First line of the implementing function's docstring."""
        return (self.fn.__doc__ or "").strip().splitlines()[0]


_K = {"k": Param(10, _k, "number of neighbours")}
_INF = float("inf")

_ENTRIES = [
    Measure("cka", cka.linear_cka, reference="Kornblith et al. 2019"),
    Measure("unbiased_cka", cka.unbiased_cka, value_range=(-1.0, 1.0), min_n=4, reference="Song et al. 2012"),
    Measure("mutual_knn", knn.mutual_knn, _K, uses_knn=True, reference="Huh et al. 2024"),
    Measure("cycle_knn", knn.cycle_knn, _K, symmetric=False, uses_knn=True, reference="Huh et al. 2024"),
    Measure("lcs_knn", knn.lcs_knn, _K, symmetric=True, uses_knn=True, reference="Huh et al. 2024 (code)"),
    Measure("edit_distance_knn", knn.edit_distance_knn, _K, uses_knn=True, reference="Huh et al. 2024 (code)"),
    Measure(
        "cknna",
        knn.cknna,
        _K,
        value_range=(-1.0, 1.0),
        min_n=4,
        symmetric=False,
        uses_knn=True,
        reference="Huh et al. 2024",
    ),
    Measure(
        "svcca",
        cca.svcca,
        {
            "dim": Param(None, _dim, "components kept (default: 99% variance)"),
            "keep": Param(0.99, _keep, "variance fraction kept when dim is None"),
        },
        reference="Raghu et al. 2017",
    ),
    Measure(
        "rbf_cka",
        cka.rbf_cka,
        {"sigma": Param("median", _sigma, "RBF bandwidth or 'median'")},
        scale_invariant=False,
        reference="Kornblith et al. 2019",
    ),
    Measure("pwcca", cca.pwcca, symmetric=False, reference="Morcos et al. 2018"),
    Measure("mean_cca", cca.mean_cca, reference="Hotelling 1936; Raghu et al. 2017"),
    Measure("procrustes", other.procrustes, reference="Williams et al. 2021"),
    Measure(
        "procrustes_distance",
        other.procrustes_distance,
        kind="distance",
        value_range=(0.0, 1.5707963267948966),
        reference="Williams et al. 2021",
    ),
    Measure(
        "rsa",
        other.rsa,
        {"max_rows": Param(3000, _max_rows, "row subsample above this n"), "seed": Param(0, _seed, "subsample seed")},
        value_range=(-1.0, 1.0),
        min_n=3,
        reference="Kriegeskorte et al. 2008",
    ),
    Measure("jaccard_knn", knn.jaccard_knn, _K, uses_knn=True, reference="Klabunde et al. 2023 (ReSi)"),
    Measure(
        "second_order_cosine",
        knn.second_order_cosine,
        _K,
        value_range=(-1.0, 1.0),
        uses_knn=True,
        reference="Hamilton et al. 2016",
    ),
    Measure(
        "linear_regression",
        other.linear_regression,
        {
            "alpha": Param(1e-3, _alpha, "relative ridge penalty"),
            "n_folds": Param(5, _folds, "CV folds"),
            "seed": Param(0, _seed, "fold seed"),
        },
        value_range=(-_INF, 1.0),
        symmetric=False,
        min_n=4,
        reference="Klabunde et al. 2023 (ReSi)",
    ),
]

INVARIANCES: tuple[str, ...] = (
    "orthogonal_transform",
    "isotropic_scaling",
    "translation",
    "invertible_linear_transform",
    "feature_permutation",
    "sample_permutation",
)
"""The transforms a measure card states invariance to (or not)."""

_ORTH = ("orthogonal_transform", "isotropic_scaling", "feature_permutation", "sample_permutation")
_CENTRED = ("orthogonal_transform", "isotropic_scaling", "translation", "feature_permutation", "sample_permutation")
# kNN measures rank raw inner products (no centring): a translation changes the neighbours.
# pwcca weights by features' absolute projections (basis dependent: no orthogonal invariance);
# rsa's correlation distance centres each row across features (no rotation or translation invariance);
# linear_regression's folds are by row position (no sample-permutation invariance).
_INVARIANT: dict[str, tuple[str, ...]] = {
    "cka": _CENTRED,
    "unbiased_cka": _CENTRED,
    "mutual_knn": _ORTH,
    "cycle_knn": _ORTH,
    "lcs_knn": _ORTH,
    "edit_distance_knn": _ORTH,
    "cknna": _ORTH,
    "svcca": _CENTRED,
    "rbf_cka": _CENTRED,
    "pwcca": ("isotropic_scaling", "translation", "feature_permutation", "sample_permutation"),
    "mean_cca": _CENTRED[:3] + ("invertible_linear_transform",) + _CENTRED[3:],
    "procrustes": _CENTRED,
    "procrustes_distance": _CENTRED,
    "rsa": ("isotropic_scaling", "feature_permutation", "sample_permutation"),
    "jaccard_knn": _ORTH,
    "second_order_cosine": _ORTH,
    "linear_regression": ("orthogonal_transform", "isotropic_scaling", "translation", "feature_permutation"),
}
_ENTRIES = [replace(m, invariances=_INVARIANT[m.name]) for m in _ENTRIES]

MEASURES: Mapping[str, Measure] = MappingProxyType({m.name: m for m in _ENTRIES})
"""Registry: measure name → :class:`Measure`. ``list(MEASURES)`` gives the valid names."""

PAPER_MEASURES: tuple[str, ...] = (
    "cka",
    "unbiased_cka",
    "mutual_knn",
    "cycle_knn",
    "lcs_knn",
    "edit_distance_knn",
    "cknna",
    "svcca",
)
"""The paper's 8 measures, in the paper's order."""


def get_measure(name: Any) -> Measure:
    """Registry lookup with an error that lists the valid names."""
    if not isinstance(name, str) or name not in MEASURES:
        raise ValueError(f"unknown measure {name!r}; valid measures are: {', '.join(MEASURES)}.")
    return MEASURES[name]


def resolve_params(m: Measure, n: int, params: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in and every value checked; rejects parameters the measure does not take."""
    unknown = sorted(set(params) - set(m.params))
    if unknown:
        takes = ", ".join(m.params) if m.params else "no parameters"
        raise ValueError(f"measure {m.name!r} does not take parameter(s) {', '.join(unknown)}; it takes {takes}.")
    if n < m.min_n:
        raise ValueError(f"measure {m.name!r} needs at least {m.min_n} samples; got n={n}. Use more samples.")
    return {p: spec.check(params.get(p, spec.default), n) for p, spec in m.params.items()}


# Numerical failures a measure can hit on ill-conditioned input; call_measure turns them into
# ValueError (with the measure named), which compute_all(on_error="nan") records as NaN.
NUMERIC_ERRORS = (torch.linalg.LinAlgError, ZeroDivisionError, OverflowError, FloatingPointError)


def call_measure(m: Measure, pair: SidePair, params: Mapping[str, Any]) -> float:
    """``m.fn(pair, **params)`` as a finite Python float (``params`` already resolved).

    Raises ValueError for an undefined value, including linear-algebra failures (``LinAlgError``),
    division by zero, overflow and a NaN/inf result, so no numerical error escapes as a traceback
    from inside torch.
    """
    problem = degenerate_problem(pair.x, pair.y)  # all rows identical: NaN with a warning, never 1.0
    if problem:
        raise ValueError(f"{m.name} is {problem}")
    try:
        v = float(m.fn(pair, **params))
    except NUMERIC_ERRORS as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        raise ValueError(
            f"{m.name} failed numerically ({type(exc).__name__.lstrip('_')}: {detail}); the features "
            "are ill-conditioned (extreme values or (near-)constant columns). Check the features "
            "or drop this pair."
        ) from exc
    if not math.isfinite(v):
        raise ValueError(
            f"{m.name} is undefined for these features (the computation gave {v}); "
            "check them for (near-)constant or extreme values."
        )
    return clamp_rounding(v, m.value_range)  # 1 + 1e-16 of a copy is 1: never outside the measure's range


def evaluate(pair: SidePair, name: str, params: Mapping[str, Any]) -> float:
    """Run one measure on an existing SidePair (checked parameters); returns a Python float."""
    m = get_measure(name)
    return call_measure(m, pair, resolve_params(m, pair.n, params))


def compute(name: str, X: Any, Y: Any, **params: Any) -> float:
    """Compute one similarity measure between two representations of the same n inputs.

    Parameters
    ----------
    name : str
        A key of :data:`MEASURES` (e.g. ``"cka"``, ``"mutual_knn"``).
    X : array-like of shape (n_samples, d1)
    Y : array-like of shape (n_samples, d2)
        numpy arrays or torch tensors; rows must correspond. float64 is computed in float64;
        float32 runs large products in float32 with float64 accumulation.
    **params
        The measure's parameters (see ``MEASURES[name].params``); others raise ValueError.

    Returns
    -------
    float

    Notes
    -----
    float32 error (measured, benchmarks/README.md): on n=5000, d=512 features, float32
    input gave every measure within 1.1e-8 of the float64 computation on the same values (prepared
    features, and features with mean offsets of 300–500); neighbour lists were identical. Features
    are centred in float64 before any product; sums and HSIC terms are accumulated in float64.
    Features too large or too small for the dtype are rescaled exactly first (module docstring).

    Raises
    ------
    ValueError
        For bad input or parameters, and when the measure is undefined or fails numerically.
    """
    m = get_measure(name)
    Xt, Yt = check_paired_features(X, Y)
    p = resolve_params(m, Xt.shape[0], params)
    return call_measure(m, make_pair(Xt, Yt), p)


def plan_pair(pair: SidePair, names: list[str], resolved: dict[str, dict[str, Any]]) -> None:
    """Run the shared blocked pass once for every neighbour list and RBF kernel the measures need."""
    ks = [resolved[n_]["k"] for n_ in names if MEASURES[n_].uses_knn]
    sigmas = []
    if "rbf_cka" in names:
        try:
            sigmas.append(cka.bandwidths(pair, resolved["rbf_cka"]["sigma"]))
        except (ValueError, *NUMERIC_ERRORS):
            pass  # rbf_cka reports it below
    try:
        run_pass(pair, knn_k=max(ks) if ks else None, rbf_sigmas=sigmas)
    except (ValueError, *NUMERIC_ERRORS):
        pass  # each measure reports its own error below


def compute_all(
    X: Any, Y: Any, names: list[str] | tuple[str, ...] | None = None, *, on_error: str = "raise", **params: Any
) -> dict[str, float]:
    """Compute several measures at once, sharing centred products, Gram blocks and neighbour lists.

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, d1), (n_samples, d2)
    names : list of measure names, default=None (every measure in :data:`MEASURES`)
    on_error : {"raise", "nan"}, default="raise"
        With "nan", a measure that is undefined for this input returns NaN and a warning says why.
    **params
        Passed to every selected measure that takes them (e.g. ``k=10`` to all kNN measures);
        a parameter that no selected measure takes raises ValueError.

    Returns
    -------
    dict mapping each name (in the order given) to a float.
    """
    if on_error not in ("raise", "nan"):
        raise ValueError(f"on_error must be 'raise' or 'nan'; got {on_error!r}.")
    if names is None:
        names = list(MEASURES)
    elif isinstance(names, str):
        names = [names]
    names = list(dict.fromkeys(names))
    if not names:
        raise ValueError("names is empty; pass None for every measure or a list of names from MEASURES.")
    ms = [get_measure(n_) for n_ in names]
    accepted = {p for m in ms for p in m.params}
    unused = sorted(set(params) - accepted)
    if unused:
        raise ValueError(
            f"parameter(s) {', '.join(unused)} are not taken by any selected measure "
            f"({', '.join(names)}); remove them or select a measure that takes them."
        )
    Xt, Yt = check_paired_features(X, Y)
    n = Xt.shape[0]
    resolved = {m.name: resolve_params(m, n, {p: v for p, v in params.items() if p in m.params}) for m in ms}
    pair = make_pair(Xt, Yt)
    return run_measures(pair, names, resolved, on_error)


def run_measures(
    pair: SidePair, names: list[str], resolved: dict[str, dict[str, Any]], on_error: str = "raise"
) -> dict[str, float]:
    """Evaluate already-resolved measures on one SidePair after one shared planning pass."""
    plan_pair(pair, names, resolved)
    out: dict[str, float] = {}
    for name in names:
        try:
            out[name] = call_measure(MEASURES[name], pair, resolved[name])
        except ValueError as exc:
            if on_error == "raise":
                raise
            msg = str(exc)
            warnings.warn(msg if msg.startswith(name) else f"{name}: {msg}", stacklevel=3)
            out[name] = float("nan")
    return out
