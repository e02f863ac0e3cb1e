"""``reprsim config show|validate CONFIG``: print the resolved config or check it."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("config", help="show or validate a sweep config")
    parser.add_argument("action", choices=["show", "validate"])
    parser.add_argument("config", type=Path)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reprsim.experiments.config import dump_config, load_config
    from reprsim.experiments.grid import expand

    config = load_config(args.config)
    if args.action == "show":
        print(dump_config(config), end="")
    else:
        print(f"{args.config}: valid ({len(expand(config))} units)")
    return 0
