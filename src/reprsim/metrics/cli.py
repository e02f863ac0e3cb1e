"""``reprsim compare A B``: every (or the selected) similarity measure between two feature files."""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from reprsim.errors import ReprsimError
from reprsim.metrics.prepare import prepare
from reprsim.metrics.registry import MEASURES, compute_all

FORMATS = (".npy", ".npz", ".pt", ".safetensors")


def load_features(path: str) -> np.ndarray | Any:
    """Load one feature matrix from .npy, .npz (exactly one array), .pt (a tensor) or .safetensors
    (exactly one tensor). Returns a numpy array or torch tensor (validated later)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"feature file not found: {path}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                if len(keys) != 1:
                    raise ReprsimError(f"{path} holds {len(keys)} arrays ({', '.join(keys) or 'none'}); "
                                       "save exactly one feature matrix per .npz file.")
                return z[keys[0]]
        if suffix == ".pt":
            import torch

            obj = torch.load(p, map_location="cpu", weights_only=True)
            if not isinstance(obj, torch.Tensor):
                raise ReprsimError(f"{path} holds a {type(obj).__name__}, not a tensor; save the feature "
                                   "matrix itself with torch.save(tensor, path).")
            return obj
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(p))
            if len(tensors) != 1:
                raise ReprsimError(f"{path} holds {len(tensors)} tensors ({', '.join(tensors) or 'none'}); "
                                   "save exactly one feature matrix per file.")
            return next(iter(tensors.values()))
    except ReprsimError:
        raise
    except Exception as exc:  # a corrupt file: report it in one line
        raise ReprsimError(f"could not read {path}: {exc}") from exc
    raise ReprsimError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(FORMATS)}.")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``reprsim compare``."""
    parser = subparsers.add_parser(
        "compare",
        help="similarity measures between two feature matrices",
        description="Compute similarity measures between two feature matrices (rows = the same inputs). "
                    f"Files: {', '.join(FORMATS)}. Measures: {', '.join(MEASURES)}.",
    )
    parser.add_argument("a", metavar="A", help="features of representation A, shape (n, d1)")
    parser.add_argument("b", metavar="B", help="features of representation B, shape (n, d2)")
    parser.add_argument("--measure", "-m", action="append", metavar="NAME", choices=list(MEASURES),
                        help="a measure to compute (repeatable; default: all)")
    parser.add_argument("--k", type=int, default=None, help="neighbours for kNN measures (default 10)")
    parser.add_argument("--prepare", choices=["l2", "none"], default="none",
                        help="row normalisation applied to both inputs first (default: none)")
    parser.add_argument("--clip-quantile", type=float, default=None, metavar="Q",
                        help="clamp entries to ± the Q-quantile of |x| first (the paper: 0.95; for a matrix too sparse "
                             "for it, the Q-quantile of the non-zero |x|)")
    parser.add_argument("--format", choices=["table", "json", "csv"], default="table")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load, prepare, compute, print. Returns the exit code (0)."""
    X = load_features(args.a)
    Y = load_features(args.b)
    norm = None if args.prepare == "none" else args.prepare
    names = args.measure or list(MEASURES)
    params: dict[str, Any] = {}
    if args.k is not None:
        if not any("k" in MEASURES[n].params for n in names):
            raise ReprsimError("--k was given but none of the selected measures uses neighbours.")
        params["k"] = args.k
    notes: list[str] = []
    if norm is not None or args.clip_quantile is not None:
        prepared = []
        for label, F in (("A", X), ("B", Y)):
            F, info = prepare(F, normalize=norm, clip_quantile=args.clip_quantile, return_info=True)
            if info.affected:
                notes.append(f"{label}: {info.describe()}")
            prepared.append(F)
        X, Y = prepared
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = compute_all(X, Y, names=names, on_error="nan", **params)
    for note in notes:
        print(f"warning: prepare {note}", file=sys.stderr)
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
