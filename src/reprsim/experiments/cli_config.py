"""``reprsim config show|validate CONFIG [KEY=VALUE ...]``: print the resolved config or check it.

``KEY=VALUE`` overrides (:mod:`reprsim.experiments.overrides`) are applied first, exactly as
``reprsim run`` applies them, so ``config show`` prints the config a run with them would record."""

from __future__ import annotations

import argparse
from pathlib import Path

from reprsim.experiments.overrides import add_overrides_argument


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "config",
        help="show or validate a sweep config",
        description="show: print the resolved config (every default filled in, overrides applied); "
        "validate: check it as `reprsim run` does before any training (data, splits, models, layers, "
        "measure parameters) and count its units.",
    )
    parser.add_argument("action", choices=["show", "validate"])
    parser.add_argument("config", type=Path)
    add_overrides_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reprsim.experiments.config import dump_config
    from reprsim.experiments.overrides import load_config
    from reprsim.experiments.grid import expand
    from reprsim.experiments.preflight import preflight

    config = load_config(args.config, overrides=args.overrides or [])
    if args.action == "show":
        print(dump_config(config), end="")
    else:
        units = expand(config)
        preflight(config, units)  # the same checks `run` makes before any training: data, splits, models, layers
        print(f"{args.config}: valid ({len(units)} units)")
    return 0
