"""``reprsim compare-models A B --probe ...``: compare two models from the command line.

Prints the table (``--format table``: one row per layer pair, one column per measure; ``json``:
a list of records with the table's columns; ``csv``) and, with ``--out DIR``, writes
``comparison.html``, ``comparison.parquet`` and ``comparison.csv``. Attack-transfer numbers join
the records with ``layer_a = layer_b = "output"`` and measures such as ``transfer_asr_a_to_b``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from typing import Any

from reprsim.errors import ReprsimError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``reprsim compare-models``."""
    parser = subparsers.add_parser(
        "compare-models",
        help="every similarity measure (and attack transfer) between two models you have",
        description="Compare two models' representations of the same inputs. A model is a Hugging Face folder "
        "(config.json; a diffusers UNet2DModel folder too), a checkpoint written by reprsim.train "
        "(.safetensors; a zoo diffusion UNet too), a TorchScript file "
        "(output only) or MODULE:CALLABLE (a factory; the current folder is importable).",
    )
    parser.add_argument("a", metavar="A", help="model A")
    parser.add_argument("b", metavar="B", help="model B")
    parser.add_argument(
        "--probe",
        required=True,
        metavar="SOURCE_OR_FILE",
        help="inputs: a data source (fashion_mnist, cifar10:root=DIR, mnist:n=500,split=train) or a "
        ".npy/.npz/.pt array of inputs or a .txt file of one text per line",
    )
    parser.add_argument("--labels", metavar="FILE", help=".npy of (N,) class ids (for --attack with array inputs)")
    parser.add_argument("--weights-a", metavar="FILE", help="weights for model A (.safetensors or a torch state dict)")
    parser.add_argument("--weights-b", metavar="FILE", help="weights for model B")
    parser.add_argument(
        "--layers",
        nargs="+",
        metavar="LAYER",
        default=["penultimate"],
        help="layers of both models, or 'all' (default: penultimate)",
    )
    parser.add_argument("--layers-a", nargs="+", metavar="LAYER", help="layers of A (overrides --layers)")
    parser.add_argument("--layers-b", nargs="+", metavar="LAYER", help="layers of B (overrides --layers)")
    parser.add_argument(
        "--measure",
        "-m",
        action="append",
        metavar="NAME",
        help="a measure (repeatable; 'paper' = the paper's 8; default: all); behavioural ones "
        "(agreement, cohen_kappa, error_consistency, capa, js_divergence) need --layers ... output",
    )
    parser.add_argument("--k", type=int, default=None, help="neighbours for kNN measures (default 10)")
    parser.add_argument(
        "--prepare",
        choices=["paper", "l2", "none"],
        default="paper",
        help="feature preparation: paper = clip at the 0.95 quantile + L2 rows (default)",
    )
    parser.add_argument("--attack", choices=["mi_fgsm", "pgd", "fgsm"], help="measure adversarial transfer both ways")
    parser.add_argument("--eps", type=float, default=None, help="attack budget in pixel scale (default 1/255)")
    parser.add_argument("--steps", type=int, default=None, help="attack steps (default 3)")
    parser.add_argument("--attack-n", type=int, default=None, help="inputs to attack (default 500)")
    parser.add_argument("--permutations", type=int, default=0, metavar="N", help="permutation test size (p-values)")
    parser.add_argument(
        "--calibrate",
        type=int,
        default=0,
        metavar="K",
        help="calibrated scores against K row permutations (adds null_mean, tau, calibrated)",
    )
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N", help="bootstrap resamples (intervals)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tokenizer",
        choices=["bytes"],
        default=None,
        help="for texts and a model without a tokenizer of its own: UTF-8 bytes",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when available)")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default=None,
        help="run both models in this dtype (features are measured in float32)",
    )
    parser.add_argument(
        "--base-a",
        metavar="DIR",
        help="base model folder of a PEFT adapter given as A (default: the one its adapter_config.json names)",
    )
    parser.add_argument("--base-b", metavar="DIR", help="base model folder of a PEFT adapter given as B")
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="model cache of RUN_DIR:UNIT_ID:a|b sweep models (default: $REPRSIM_CACHE or ~/.cache/reprsim)",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        default=None,
        metavar="PX",
        help="resize images to PX x PX inside Hugging Face vision models",
    )
    parser.add_argument(
        "--label-map",
        metavar="FILE",
        help="JSON {class of A: class of B} for --attack between models with different label spaces",
    )
    parser.add_argument(
        "--noise-seed",
        type=int,
        default=None,
        metavar="SEED",
        help="diffusion UNets: seed of every input's noise and timestep (default 0)",
    )
    parser.add_argument(
        "--timestep",
        type=int,
        default=None,
        metavar="T",
        help="diffusion UNets: one timestep for every input (default: uniform draws)",
    )
    parser.add_argument("--out", metavar="DIR", help="write comparison.html and the table (.parquet, .csv) here")
    parser.add_argument(
        "--save-features",
        action="store_true",
        help="with --out: also write features_a/b.safetensors (reprsim compare reloads them)",
    )
    parser.add_argument("--format", choices=["table", "json", "csv"], default="table")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
    return parser


def _layers(values: list[str] | None) -> Any:
    if values is None:
        return None
    return "all" if values == ["all"] else values[0] if len(values) == 1 else list(values)


def _measures(values: list[str] | None) -> Any:
    if not values:
        return "all"
    if values in (["all"], ["paper"]):
        return values[0]
    return values


def _wide_text(comp: Any) -> str:
    import pandas as pd

    t = comp.table

    def cell(r: Any) -> str:
        s = "nan" if math.isnan(r.value) else f"{r.value:.4f}"
        if "ci_low" in t.columns and not math.isnan(r.ci_low):
            s += f" [{r.ci_low:.3f},{r.ci_high:.3f}]"
        if "p_value" in t.columns and not math.isnan(r.p_value):
            s += f" p={r.p_value:.3g}"
        return s

    wide = t.assign(cell=[cell(r) for r in t.itertuples(index=False)]).pivot(
        index=["layer_a", "layer_b"], columns="measure", values="cell"
    )
    order = pd.MultiIndex.from_tuples([(a, b) for a in comp.layers_a for b in comp.layers_b])
    wide = wide.reindex(index=order, columns=comp.measures)
    if len(wide) == 1:  # one layer pair: one measure per line
        (la, lb), row = next(iter(wide.iterrows()))
        width = max(len(m) for m in comp.measures)
        return f"{la} (A) vs {lb} (B)\n" + "\n".join(f"{m:<{width}}  {row[m]}" for m in comp.measures)
    wide.index.names = ["layer_a", "layer_b"]
    return wide.reset_index().to_string(index=False)


def run(args: argparse.Namespace) -> int:
    """Load, compare, print, write. Returns the exit code (0)."""
    import numpy as np

    from reprsim.compare import compare_models
    from reprsim.metrics._validate import check_resamples

    check_resamples(args.permutations, "--permutations")
    check_resamples(args.bootstrap, "--bootstrap")
    check_resamples(args.calibrate, "--calibrate")
    labels = None
    if args.labels:
        try:
            labels = np.load(args.labels, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ReprsimError(f"cannot read --labels {args.labels}: {exc}") from exc
    attack = None
    if args.attack:
        attack = {"name": args.attack}
        for key, value in (("eps", args.eps), ("steps", args.steps), ("n", args.attack_n)):
            if value is not None:
                attack[key] = value
    elif args.eps is not None or args.steps is not None or args.attack_n is not None:
        raise ReprsimError("--eps/--steps/--attack-n need --attack (e.g. --attack mi_fgsm).")
    both = _layers(args.layers)
    layers: Any = both
    if args.layers_a or args.layers_b:
        layers = {"a": _layers(args.layers_a) or both, "b": _layers(args.layers_b) or both}
    params = {"k": args.k} if args.k is not None else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        comp = compare_models(
            args.a,
            args.b,
            args.probe,
            layers=layers,
            measures=_measures(args.measure),
            prepare=None if args.prepare == "none" else args.prepare,
            labels=labels,
            attack=attack,
            n_permutations=args.permutations,
            n_boot=args.bootstrap,
            calibrate=args.calibrate,
            seed=args.seed,
            params=params,
            weights_a=args.weights_a,
            weights_b=args.weights_b,
            tokenizer=args.tokenizer,
            batch_size=args.batch_size,
            device=args.device,
            progress=False if args.quiet else None,
            dtype=args.dtype,
            base={"a": args.base_a, "b": args.base_b},
            cache_dir=args.cache_dir,
            input_size=args.input_size,
            label_map=args.label_map,
            noise_seed=args.noise_seed,
            timesteps=args.timestep,
        )
    for w in caught:
        if "compare_models:" not in str(w.message):
            print(f"warning: {w.message}", file=sys.stderr)
    print_comparison(comp, args)
    return 0


def print_comparison(comp: Any, args: argparse.Namespace) -> None:
    """Print a Comparison as ``--format`` asks (notes and the preparation rule on stderr for json/csv,
    in the header for the table) and write ``--out`` (with ``--save-features``, the features too)."""
    for note in comp.warnings[:20]:
        print(f"note: {note}", file=sys.stderr)
    if args.format == "json":
        print(f"note: features prepared: {comp.prepare}", file=sys.stderr)
        print(json.dumps(comp.records(), indent=1))
    elif args.format == "csv":
        print(f"note: features prepared: {comp.prepare}", file=sys.stderr)
        from reprsim.results import csv_text

        sys.stdout.write(csv_text(comp.to_frame()))
    else:
        print(f"A: {comp.model_a}\nB: {comp.model_b}\ninputs: {comp.inputs}\nprepare: {comp.prepare}\n")
        print(_wide_text(comp))
        if comp.transfer is not None:
            print("\nattack transfer (" + (comp.attack or "") + "):")
            print(comp.transfer.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        paths = comp.save(args.out, features=bool(getattr(args, "save_features", False)))
        print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
