"""Measure cards: what each registered measure is invariant to, its kind, range and symmetry.

The declarations live in the registry (:attr:`reprsim.metrics.Measure.invariances`,
``kind``, ``value_range``, ``symmetric``); ``tests/test_metrics_cards.py`` checks every declared
property on random inputs and that every transform *not* declared changes the value on at least
one input. ``describe()`` returns the cards, ``reprsim measures`` prints them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from reprsim.metrics.registry import INVARIANCES, MEASURES

__all__ = ["add_parser", "describe", "format_cards", "run"]

# Conditions under which a declared invariance holds (default parameters are what the card states).
CAVEATS: dict[str, str] = {
    "rbf_cka": "isotropic scaling only with sigma='median' (a numeric sigma is in feature units)",
    "rsa": "sample permutation only for n <= max_rows (above, the row subsample is drawn by position)",
    "svcca": "not invariant to invertible linear maps: the kept (99% variance) subspace changes",
    "cycle_knn": "cycle_knn(X, X) < 1 in general: its value for identical inputs is not the range's top",
    "linear_regression": "folds are drawn by row position, so reordering the samples changes the folds",
}


def describe(names: list[str] | None = None) -> list[dict[str, Any]]:
    """The measure cards, one dict per measure (registry order, or the order of ``names``):
    ``name``, ``kind`` ("similarity"/"distance"), ``value_range``, ``bounded``, ``symmetric``,
    ``invariant_to`` and ``not_invariant_to`` (names from :data:`reprsim.metrics.registry.INVARIANCES`),
    ``params`` ({name: default}), ``reference``, ``summary`` and ``caveat`` (or None)."""
    out = []
    for name in names or list(MEASURES):
        if name not in MEASURES:
            raise ValueError(f"unknown measure {name!r}; valid measures are: {', '.join(MEASURES)}.")
        m = MEASURES[name]
        out.append(
            {
                "name": name,
                "kind": m.kind,
                "value_range": list(m.value_range),
                "bounded": m.bounded,
                "symmetric": m.symmetric,
                "invariant_to": list(m.invariances),
                "not_invariant_to": [t for t in INVARIANCES if t not in m.invariances],
                "params": {p: spec.default for p, spec in m.params.items()},
                "reference": m.reference,
                "summary": m.summary,
                "caveat": CAVEATS.get(name),
            }
        )
    return out


def format_cards(cards: list[dict[str, Any]]) -> str:
    """The cards as readable text, one block per measure."""
    lines = []
    for c in cards:
        lo, hi = c["value_range"]
        params = ", ".join(f"{k}={v!r}" for k, v in c["params"].items()) or "none"
        lines += [
            f"{c['name']}  ({c['kind']}, range [{lo:g}, {hi:g}], "
            f"{'bounded' if c['bounded'] else 'unbounded'}, {'symmetric' if c['symmetric'] else 'not symmetric'})",
            f"  {c['summary']}",
            f"  invariant to:     {', '.join(c['invariant_to']) or 'none of the listed transforms'}",
            f"  not invariant to: {', '.join(c['not_invariant_to']) or '-'}",
            f"  parameters: {params}; reference: {c['reference']}",
        ]
        if c["caveat"]:
            lines.append(f"  note: {c['caveat']}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``reprsim measures``."""
    parser = subparsers.add_parser(
        "measures",
        help="print the measure cards (invariances, kind, range, symmetry)",
        description="Print each similarity measure's card: what it is invariant to "
        "(verified by the test suite), similarity or distance, range, symmetry.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="measures to show (default: all)")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the cards; returns 0."""
    cards = describe(list(args.names) or None)
    print(
        json.dumps(cards, indent=2) if args.format == "json" else format_cards(cards),
        end="" if args.format == "text" else "\n",
    )
    return 0
