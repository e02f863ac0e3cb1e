"""``reprsim compare A B``: every (or the selected) similarity measure between two feature files or sets.

Two plain matrices print one row per measure (as always); feature sets (one matrix per layer) go
through :func:`reprsim.compare.compare_features` and print the layer × layer table of
``reprsim compare-models`` (same ``--format`` / ``--out``)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from typing import Any

from reprsim.errors import ReprsimError
from reprsim.metrics.prepare import RULES, resolve_prepare
from reprsim.metrics.registry import MEASURES, compute_all

FORMATS = (".npy", ".npz", ".pt", ".safetensors")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``reprsim compare``."""
    parser = subparsers.add_parser(
        "compare",
        help="similarity measures between two feature matrices or feature sets (one matrix per layer)",
        description="Compute similarity measures between the features of two models (rows = the same inputs). "
        f"A is one matrix ({', '.join(FORMATS)}) or a feature set: a .npz / .safetensors / .pt file "
        "with one matrix per layer, or a folder of LAYER.npy files; sets give a layer x layer table. "
        f"Measures: {', '.join(MEASURES)}.",
    )
    parser.add_argument("a", metavar="A", help="features of A: a matrix (n, d1), a feature file or a folder")
    parser.add_argument("b", metavar="B", help="features of B: a matrix (n, d2), a feature file or a folder")
    parser.add_argument(
        "--measure",
        "-m",
        action="append",
        metavar="NAME",
        help="a measure to compute (repeatable; 'paper' = the paper's 8; default: all)",
    )
    parser.add_argument("--k", type=int, default=None, help="neighbours for kNN measures (default 10)")
    parser.add_argument(
        "--prepare",
        choices=list(RULES),
        default="paper",
        help="feature preparation: paper = clip at the 0.95 quantile + L2 rows (default, as the "
        "sweep and compare-models), l2 = rows only, none = raw",
    )
    parser.add_argument(
        "--clip-quantile",
        type=float,
        default=None,
        metavar="Q",
        help="clip at ± the Q-quantile of |x| instead of the rule's (for a matrix too sparse "
        "for it, the Q-quantile of the non-zero |x|)",
    )
    parser.add_argument(
        "--layers", nargs="+", metavar="LAYER", default=None, help="layers of both sets (default: every layer of each)"
    )
    parser.add_argument("--layers-a", nargs="+", metavar="LAYER", help="layers of A (overrides --layers)")
    parser.add_argument("--layers-b", nargs="+", metavar="LAYER", help="layers of B (overrides --layers)")
    parser.add_argument("--permutations", type=int, default=0, metavar="N", help="permutation test size (p-values)")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N", help="bootstrap resamples (intervals)")
    parser.add_argument(
        "--calibrate",
        type=int,
        default=0,
        metavar="K",
        help="K row permutations for calibrated scores (null_mean, tau, calibrated)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device",
        default=None,
        help="where the measures of a layer table run: cpu (default), "
        "cuda, cuda:N (a measure that fails there runs on the CPU)",
    )
    parser.add_argument("--out", metavar="DIR", help="write comparison.html and the table (.parquet, .csv) here")
    parser.add_argument("--format", choices=["table", "json", "csv"], default="table")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
    return parser


def _prepare_spec(args: argparse.Namespace) -> Any:
    """--prepare with an optional --clip-quantile override, as a compare_features ``prepare``."""
    if args.clip_quantile is None:
        return args.prepare
    normalize = RULES[args.prepare][0]
    return {"normalize": normalize, "clip_quantile": args.clip_quantile}


def _single_pair(args: argparse.Namespace, fa: dict, fb: dict) -> bool:
    """One matrix on each side and no layer-table option: today's one-row-per-measure output."""
    return len(fa) == len(fb) == 1 and not (
        args.layers
        or args.layers_a
        or args.layers_b
        or args.permutations
        or args.bootstrap
        or args.calibrate
        or args.out
        or args.device
    )


def run(args: argparse.Namespace) -> int:
    """Load, prepare, compute, print (and write with --out). Returns the exit code (0)."""
    from reprsim.compare.cli import _layers, _measures, print_comparison
    from reprsim.compare.features_in import compare_features, load_feature_set
    from reprsim.metrics.engine import resolve_measures
    from reprsim.metrics._validate import check_resamples

    check_resamples(args.permutations, "--permutations")
    check_resamples(args.bootstrap, "--bootstrap")
    fa, _ = load_feature_set(args.a, "A")
    fb, _ = load_feature_set(args.b, "B")
    names = resolve_measures(_measures(args.measure))
    params: dict[str, Any] = {}
    if args.k is not None:
        if not any("k" in MEASURES[n].params for n in names):
            raise ReprsimError("--k was given but none of the selected measures uses neighbours.")
        params["k"] = args.k
    prep_fn, prep_desc = resolve_prepare(_prepare_spec(args))
    if not _single_pair(args, fa, fb):
        layers: Any = _layers(args.layers) or "all"
        if args.layers_a or args.layers_b:
            layers = {"a": _layers(args.layers_a) or layers, "b": _layers(args.layers_b) or layers}
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")  # the notes are printed from comp.warnings below
            comp = compare_features(
                fa,
                fb,
                layers=layers,
                measures=names,
                prepare=prep_fn,
                params=params or None,
                n_permutations=args.permutations,
                n_boot=args.bootstrap,
                seed=args.seed,
                calibrate=args.calibrate,
                progress=False if args.quiet else None,
                device=args.device,
            )
        comp.prepare, comp.model_a, comp.model_b = prep_desc, args.a, args.b
        print_comparison(comp, args)
        return 0
    (X,), (Y,) = fa.values(), fb.values()
    if X.shape[0] != Y.shape[0]:
        raise ReprsimError(
            f"A has {X.shape[0]} rows but B has {Y.shape[0]}; both need the same number of rows "
            "(the same inputs in the same order)."
        )
    notes: list[str] = []
    prepared = []
    for label, F in (("A", X), ("B", Y)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prepared.append(prep_fn(F))
        notes += [f"{label}: {w.message}" for w in caught]
    X, Y = prepared
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = compute_all(X, Y, names=names, on_error="nan", **params)
    print(f"note: features prepared: {prep_desc}", file=sys.stderr)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps({k: (None if math.isnan(v) else v) for k, v in results.items()}, indent=2))
    elif args.format == "csv":
        print("measure,value")
        for k, v in results.items():
            print(f"{k},{v:.10g}")
    else:
        width = max(len(k) for k in results)
        for k, v in results.items():
            print(f"{k:<{width}}  {v: .6f}")
    return 0
