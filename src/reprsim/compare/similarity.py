"""The measures of a comparison: the one layer-table engine of :mod:`reprsim.metrics.engine`.

``compare_models`` / ``compare_features`` fill their table with
:class:`~reprsim.metrics.engine.SimilarityEngine` (every measure on every layer pair, each layer's
work done once), as the sweep and :func:`reprsim.metrics.compare_layers` do; this module keeps the
names the comparison code imports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reprsim.metrics.engine import SHARED_BYTES, SimilarityEngine, prepare_layers, resolve_measures

__all__ = ["SHARED_BYTES", "SimilarityEngine", "prepare_layers", "resolve_measures", "resolve_prepare"]

Prepare = Callable[[Any], Any]


def resolve_prepare(prepare: Any) -> tuple[Prepare, str]:
    """The feature preparation as a function (n, d) → (n, d) and a description: the one rule of
    :func:`reprsim.metrics.prepare.resolve_prepare` (``"paper"`` = clip 0.95 + L2, ``"l2"``,
    ``"none"``/None, a dict or a callable)."""
    from reprsim.metrics.prepare import resolve_prepare as resolve

    return resolve(prepare)
