"""``reprsim report DIR [DIR ...] [--out DIR]``: analyse one run folder, or several together, and
write report.html, report.md, summary.json and figures/.

Exit codes: 0 report written; 2 bad arguments, a missing folder or table, or a table that could not
be analysed (the report and summary.json written anyway say why).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``report`` command and return its parser."""
    parser = subparsers.add_parser(
        "report",
        help="analyse run folders: report.html, report.md, summary.json and figures/",
        description="Turn one or more run folders' results tables (or folders holding only a results.parquet / "
        "results.csv with the contract columns) into statistics, figures and one self-contained report.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="DIR", help="run folder(s) written by `reprsim run --out DIR`")
    parser.add_argument(
        "--out", metavar="DIR", help="where to write the report (required with several DIRs; default: the run folder)"
    )
    parser.add_argument(
        "--format",
        choices=["html", "md"],
        default="html",
        help="which of the two reports (both are written) to print the path of (default: html)",
    )
    parser.add_argument(
        "--layers",
        choices=["default", "best"],
        default="default",
        help="'default': every layer pair is its own cell (headline: penultimate); "
        "'best': the max over layer pairs per unit (labelled; the sweep's 'best' rows, whose "
        "p-value comes from the null of the maximum, when the run has them)",
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples over seeds (default: 1000)")
    parser.add_argument("--n-perm", type=int, default=1000, help="permutations of the MI null (default: 1000)")
    parser.add_argument("--no-figures", action="store_true", help="tables and numbers only (faster)")
    parser.add_argument(
        "--findings",
        action="store_true",
        help="print the findings section (Markdown: numbers, intervals, corrections, verdicts) "
        "instead of the report's path; the README's findings block is this output",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the report; print its path. Returns the exit code (see the module docstring)."""
    from reprsim.analysis.report import build_report
    from reprsim.results import SUMMARY_FILE

    from reprsim.metrics._validate import check_resamples

    if args.n_boot < 100:
        raise ValueError(f"--n-boot must be at least 100 for a usable interval, got {args.n_boot}.")
    if args.n_perm < 100:
        raise ValueError(f"--n-perm must be at least 100 for a usable permutation p-value, got {args.n_perm}.")
    check_resamples(args.n_boot, "--n-boot")
    check_resamples(args.n_perm, "--n-perm")
    if len(args.run_dirs) > 1 and not args.out:
        raise ValueError("several run folders are analysed together: give --out DIR for the combined report.")
    path = build_report(
        args.run_dirs if len(args.run_dirs) > 1 else args.run_dirs[0],
        args.format,
        out=args.out,
        layers=args.layers,
        n_boot=args.n_boot,
        n_perm=args.n_perm,
        figures=not args.no_figures,
    )
    summary = json.loads((Path(path).parent / SUMMARY_FILE).read_text(encoding="utf-8"))
    if args.findings:
        from reprsim.analysis.findings import findings_markdown

        print(findings_markdown(summary), end="")
    else:
        print(path)
    if summary.get("status") != "ok":
        reasons = "; ".join(p["reason"] for p in summary.get("problems", []))
        print(f"reprsim report: not analysed: {reasons}", file=sys.stderr)
        return 2
    return 0
