"""Display names and number formatting shared by the summary, the tables, the figures and the report.

Every formatter prints a missing number as words ("n/a", "no interval"), never as "nan".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "consequence_label",
    "fmt",
    "fmt_ci",
    "fmt_interval",
    "fmt_p",
    "design_label",
    "kind_label",
    "measure_label",
    "similarity_direction",
    "where_label",
]

_MEASURE_LABELS = {
    "cka": "CKA",
    "unbiased_cka": "unbiased CKA",
    "linear_cka": "linear CKA",
    "rbf_cka": "RBF CKA",
    "mutual_knn": "mutual kNN",
    "cknna": "CKNNA",
    "cycle_knn": "cycle kNN",
    "lcs_knn": "LCS kNN",
    "edit_distance_knn": "edit-distance kNN",
    "svcca": "SVCCA",
    "pwcca": "PWCCA",
    "mean_cca": "mean CCA",
    "procrustes": "Procrustes",
    "procrustes_distance": "Procrustes distance",
    "rsa": "RSA",
    "jaccard_knn": "Jaccard kNN",
    "second_order_cosine": "2nd-order cosine",
    "linear_regression": "linear regression",
    "agreement": "agreement",
    "cohen_kappa": "Cohen's κ",
    "error_consistency": "error consistency",
    "capa": "CAPA κp",
    "js_divergence": "JS divergence",
}
_KIND_LABELS = {
    "data": "data overlap",
    "task": "task overlap (class split)",
    "attribute": "task-only overlap (attribute tasks)",
    "combined": "combined overlap (data × task grid)",
    "factorial": "combined overlap (factorial design)",
}
_CONSEQUENCE_LABELS = {
    "transfer_asr": "transfer success",
    "transfer_asr_conditional": "transfer success on clean-correct inputs",
    "transfer_asr_given_source_fooled": "P(victim fooled | source fooled)",
    "whitebox_asr": "white-box success (control)",
    "victim_clean_error": "victim clean error (control)",
    "source_clean_error": "source clean error (control)",
    "jailbreak_transfer_asr": "jailbreak transfer success",
    "jailbreak_whitebox_asr": "jailbreak white-box success",
    "jailbreak_baseline_asr": "jailbreak baseline success",
    "jailbreak_random_suffix_asr": "jailbreak random-suffix success",
}


def measure_label(name: Any) -> str:
    """Display name of a measure (``"cka"`` → ``"CKA"``); unknown names are returned unchanged."""
    return _MEASURE_LABELS.get(str(name), str(name))


def kind_label(kind: Any) -> str:
    """Display phrase of an overlap kind (``"data"`` → ``"data overlap"``)."""
    return _KIND_LABELS.get(str(kind), f"{kind} overlap")


def design_label(keys: dict[str, Any]) -> str:
    """Display phrase of a design group: its overlap kind and the design options it records
    (``task_images``, ``align``, ``init``), e.g. ``"pure task overlap (disjoint images)"``,
    ``"data overlap, alignment λ = 2"``."""
    kind = str(keys.get("overlap_kind"))
    images = str(keys.get("task_images") or "")
    if kind == "task" and images == "disjoint":
        label = "pure task overlap (class split, disjoint images)"
    elif kind == "task" and images == "shared":
        label = "task + data overlap (class split, shared images)"
    else:
        label = kind_label(kind)
    extra = []
    try:
        align = float(keys.get("align") or 0.0)
    except (TypeError, ValueError):
        align = 0.0
    if align:
        extra.append(f"alignment λ = {align:g}")
    if str(keys.get("init") or "") == "shared":
        extra.append("shared initialisation")
    return ", ".join([label, *extra])


def consequence_label(name: Any) -> str:
    """Display name of a consequence column, with its direction (A→B, or B→A for ``_ba``)."""
    name = str(name)
    base = name.removesuffix("_ba")
    return f"{_CONSEQUENCE_LABELS.get(base, base)} ({'B→A' if name.endswith('_ba') else 'A→B'})"


def where_label(keys: dict[str, Any]) -> str:
    """``"fashion_mnist · mlp · penultimate"``-style label of a cell group (run first when present)."""
    parts = [str(keys[k]) for k in ("run", "source", "model") if keys.get(k) not in (None, "")]
    la, lb = keys.get("layer_a"), keys.get("layer_b")
    if la not in (None, ""):
        parts.append(str(la) if la == lb else f"{la} × {lb}")
    return " · ".join(parts)


def _finite(v: Any) -> bool:
    try:
        return v is not None and bool(np.isfinite(float(v)))
    except (TypeError, ValueError):
        return False


def _decimals(*values: Any) -> int:
    """Decimals that show an interval's width (last two values) to ~2 digits: 2 to 3 decimals,
    more only when every value is below 0.01 in magnitude."""
    finite = [float(v) for v in values if _finite(v)]
    if not finite:
        return 2
    width = abs(finite[-1] - finite[-2]) if len(finite) >= 2 else 0.0
    biggest = max(abs(v) for v in finite)
    ref = width if width > 0 else biggest
    if ref <= 0:
        return 2
    d = max(2, -math.floor(math.log10(ref)) + 1)
    cap = 3 if biggest >= 0.01 else 6
    return int(min(cap, d))


def fmt(v: Any, decimals: int = 2) -> str:
    """A number with ``decimals`` decimals, ``"n/a"`` when missing or not finite."""
    return f"{float(v):.{decimals}f}" if _finite(v) else "n/a"


def fmt_ci(est: Any, low: Any, high: Any, decimals: int | None = None) -> str:
    """``"0.08 [0.06, 0.10]"``; ``"0.08 (no interval)"`` when the interval is missing."""
    d = _decimals(est, low, high) if decimals is None else decimals
    if not _finite(est):
        return "n/a"
    if not (_finite(low) and _finite(high)):
        return f"{fmt(est, d)} (no interval)"
    return f"{fmt(est, d)} [{fmt(low, d)}, {fmt(high, d)}]"


def fmt_interval(low: Any, high: Any) -> str:
    """``"[0.06, 0.10]"`` with decimals that show the interval's width (as :func:`fmt_ci`)."""
    d = _decimals(low, high)
    return f"[{fmt(low, d)}, {fmt(high, d)}]"


def fmt_p(p: Any) -> str:
    """``"0.003"``, ``"< 0.001"`` or ``"n/a"``."""
    if not _finite(p):
        return "n/a"
    p = float(p)
    return "< 0.001" if p < 0.001 else (f"{p:.3f}" if p < 0.1 else f"{p:.2f}")


def similarity_direction(verdict: str, distance: bool) -> str:
    """What a verdict means for similarity: ``"more similar"``, ``"less similar"`` or ``"inconclusive"``
    (a falling distance means the representations became more similar)."""
    if verdict == "rises":
        return "less similar" if distance else "more similar"
    if verdict == "falls":
        return "more similar" if distance else "less similar"
    return "inconclusive"
