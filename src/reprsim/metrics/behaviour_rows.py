"""Behavioural similarity as result rows: how alike two models' *outputs* are on one probe set.

:func:`behaviour_rows` turns the two models' output distributions on the same inputs into result
rows on the layer ``output`` (one per behavioural measure of :mod:`reprsim.metrics.behavioural`),
in the results-table contract: ``value``, ``p_value`` (NaN: these measures have no permutation
test here) and, for ``error_consistency`` and ``capa``, the percentile bootstrap interval over
probe inputs in :data:`reprsim.results.BEHAVIOUR_INTERVAL_COLUMNS`.

:func:`shared_space_probs` puts two models with different label spaces (task overlap trains A and
B on different class subsets) into one: the union of their class ids, a class a model does not
know getting probability 0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from reprsim.metrics.behavioural import (
    BEHAVIOURAL,
    NEEDS_LABELS,
    OUTPUT_LAYER,
    behavioural,
    check_bootstrap,
    check_probs,
)

__all__ = ["BOOTSTRAPPED", "behaviour_rows", "shared_space_probs", "softmax"]

#: The behavioural measures whose rows carry a bootstrap interval over inputs.
BOOTSTRAPPED: tuple[str, ...] = ("error_consistency", "capa")


def softmax(logits: Any, which: str) -> np.ndarray:
    """Row-wise softmax of (n, C) finite logits, float64 (ValueError naming ``which`` otherwise)."""
    z = np.asarray(logits.detach().cpu() if hasattr(logits, "detach") else logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"{which} must be a (n_inputs, n_classes) array of logits; got shape {z.shape}.")
    if not np.isfinite(z).all():
        raise ValueError(f"{which} contains NaN or inf; pass finite logits.")
    z = z - z.max(axis=1, keepdims=True)  # stable: exp never overflows
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _class_ids(classes: Sequence[int], width: int, which: str) -> np.ndarray:
    ids = np.asarray(classes)
    if ids.ndim != 1 or ids.size != width:
        raise ValueError(f"{which} must list one class id per logit column: {width} columns, got {ids.size} ids.")
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{which} must be integer class ids; got dtype {ids.dtype}.")
    if np.unique(ids).size != ids.size:
        dup = ids[np.flatnonzero(np.bincount(np.searchsorted(np.unique(ids), ids)) > 1)[0]]
        raise ValueError(f"{which} lists class id {dup} more than once; each logit column is one class.")
    return ids.astype(np.int64)


def shared_space_probs(
    logits_a: Any, classes_a: Sequence[int], logits_b: Any, classes_b: Sequence[int], labels: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Each model's softmax over its own classes, placed in the union of the two class spaces.

    Parameters
    ----------
    logits_a, logits_b : (n, C_a) and (n, C_b) logits of models A and B on the same n inputs.
    classes_a, classes_b : the class id of each logit column (C_a and C_b distinct integer ids).
    labels : optional (n,) true class ids (in the same ids); each must be a class of A or of B.

    Returns
    -------
    ``(probs_a, probs_b, labels_shared, classes)``: (n, C) probabilities in the shared space (C =
    size of the union, columns in ascending class id ``classes``; a class the model does not know
    has probability 0), and ``labels`` as column indices of that space (None without labels).
    """
    pa, pb = softmax(logits_a, "logits_a"), softmax(logits_b, "logits_b")
    if pa.shape[0] != pb.shape[0]:
        raise ValueError(f"logits_a and logits_b must hold the same inputs: {pa.shape[0]} vs {pb.shape[0]} rows.")
    ids_a = _class_ids(classes_a, pa.shape[1], "classes_a")
    ids_b = _class_ids(classes_b, pb.shape[1], "classes_b")
    classes = np.union1d(ids_a, ids_b)
    shared_a = np.zeros((pa.shape[0], classes.size))
    shared_b = np.zeros((pb.shape[0], classes.size))
    shared_a[:, np.searchsorted(classes, ids_a)] = pa
    shared_b[:, np.searchsorted(classes, ids_b)] = pb
    y = None
    if labels is not None:
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.shape[0] != pa.shape[0]:
            raise ValueError(f"labels must have one class id per input: {pa.shape[0]} inputs, got shape {lab.shape}.")
        unknown = np.setdiff1d(lab, classes)
        if unknown.size:
            raise ValueError(
                f"label(s) {unknown[:5].tolist()} are classes of neither model (known: the union of "
                "classes_a and classes_b); drop those inputs or list the classes."
            )
        y = np.searchsorted(classes, lab).astype(np.int64)
    return shared_a, shared_b, y, classes


def behaviour_rows(
    probs_a: Any,
    probs_b: Any,
    labels: Any = None,
    *,
    seed: int,
    n_boot: int = 1000,
    level: float = 0.95,
    measures: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Result rows of the behavioural measures between two models' outputs on one probe set.

    Parameters
    ----------
    probs_a, probs_b : (n, C) output probabilities of A and B in one shared class space (rows sum
        to 1; :func:`shared_space_probs` makes them from logits over different class subsets).
    labels : optional (n,) true class ids (column indices of that space). Without them the rows
        of :data:`reprsim.metrics.behavioural.NEEDS_LABELS` (error consistency, CAPA) are left out.
    seed : the unit's seed; seeds the bootstrap over inputs (every bootstrapped measure sees the
        same resampled inputs).
    n_boot, level : bootstrap resamples and interval level (``n_boot=0``: no interval).
    measures : the behavioural measures to compute (default: all that the labels allow).

    Returns
    -------
    list of dicts, one per measure: ``layer_a`` = ``layer_b`` = ``"output"``, ``measure``,
    ``value`` (NaN when κ is undefined, e.g. both models always right; a warning says so),
    ``p_value`` (NaN), ``value_ci_low``, ``value_ci_high`` (NaN but for :data:`BOOTSTRAPPED`) and
    ``ci_n_boot`` (resamples behind the interval; 0 without one).
    """
    names = list(BEHAVIOURAL if measures is None else measures)
    unknown = [m for m in names if m not in BEHAVIOURAL]
    if unknown:
        raise ValueError(
            f"unknown behavioural measure(s) {', '.join(map(repr, unknown))}; valid ones are: {', '.join(BEHAVIOURAL)}."
        )
    if labels is None:
        if measures is not None and set(names) & set(NEEDS_LABELS):
            raise ValueError(f"{', '.join(m for m in names if m in NEEDS_LABELS)} need labels=(n,) true class ids.")
        names = [m for m in names if m not in NEEDS_LABELS]
    # bad input fails here, once; a ValueError from behavioural() below can then only be an undefined κ
    pa, pb = check_probs(probs_a, "probs_a"), check_probs(probs_b, "probs_b")
    check_bootstrap(n_boot, level)
    behavioural("agreement", pa, pb, labels, n_boot=0)
    rows = []
    for name in names:
        boot = int(n_boot) if name in BOOTSTRAPPED else 0
        try:
            rec = behavioural(name, pa, pb, labels, n_boot=boot, level=level, seed=seed)
        except ValueError as exc:
            warnings.warn(f"{name} on the layer 'output': {exc}", stacklevel=2)
            rec = {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan}
        rows.append(
            {
                "layer_a": OUTPUT_LAYER,
                "layer_b": OUTPUT_LAYER,
                "measure": name,
                "value": float(rec["value"]),
                "p_value": math.nan,
                "value_ci_low": rec["ci_low"],
                "value_ci_high": rec["ci_high"],
                "ci_n_boot": boot,
            }
        )
    return rows
