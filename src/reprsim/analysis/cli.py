"""``reprsim report RUN_DIR [--format html|md]``: analyse a run folder and write its report."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``report`` command and return its parser."""
    parser = subparsers.add_parser(
        "report",
        help="analyse a run folder: report.html (or .md), summary.json and figures/",
        description="Turn a run folder's results table into statistics, figures and one self-contained report.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder written by `reprsim run --out RUN_DIR`")
    parser.add_argument("--format", choices=["html", "md"], default="html", help="report format (default: html)")
    parser.add_argument("--layers", choices=["default", "best"], default="default",
                        help="layer pair per unit: 'default' = penultimate (else the first pair); "
                        "'best' = max over layer pairs (labelled in the report)")  # fmt: skip
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for intervals (default: 1000)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the report; print its path. Returns the exit code (0)."""
    from reprsim.analysis.report import build_report

    if args.n_boot < 100:
        raise ValueError(f"--n-boot must be at least 100 for a usable interval, got {args.n_boot}.")
    path = build_report(args.run_dir, args.format, layers=args.layers, n_boot=args.n_boot)
    print(path)
    return 0
