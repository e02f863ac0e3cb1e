"""``reprsim run CONFIG --out RUN_DIR``: run (or resume) a sweep and write its results and report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a sweep from a YAML config (resumable)",
        description="Run every unit of a sweep that is not finished in --out, then write "
        "results.parquet/results.csv and report.html there.",
    )
    parser.add_argument("config", type=Path, help="YAML config (see configs/)")
    parser.add_argument("--out", type=Path, required=True, help="run folder (created; resumed if it exists)")
    parser.add_argument("--executor", choices=["local", "ray"], help="override execution.executor")
    parser.add_argument("--address", help="Ray cluster address (e.g. auto) for --executor ray")
    parser.add_argument("--workers", type=int, help="override execution.workers")
    parser.add_argument("--cache-dir", type=Path, help="split/checkpoint/feature cache (default $REPRSIM_CACHE or ~/.cache/reprsim)")
    parser.add_argument("--dry-run", action="store_true", help="list the units (and which are done); run nothing")
    parser.add_argument("--retry-failed", action="store_true", help="also rerun units that failed before")
    parser.add_argument("--no-report", action="store_true", help="do not build report.html at the end")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reprsim.experiments.config import load_config
    from reprsim.experiments.executors import make_executor
    from reprsim.experiments.runner import plan, run_experiment

    config = load_config(args.config)
    if args.workers is not None:
        if args.workers < 1:
            raise ValueError("--workers must be at least 1")
        config = config.model_copy(update={"execution": config.execution.model_copy(update={"workers": args.workers})})
    if args.dry_run:
        grid = plan(config, args.out)
        counts = grid["status"].value_counts().to_dict()
        print(grid.to_string(index=False))
        print(f"{len(grid)} units: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        return 0
    executor = None
    if args.executor or args.address:
        executor = make_executor(config.execution, args.executor, args.address)
    summary = run_experiment(
        config, args.out, executor=executor, cache_dir=args.cache_dir, retry_failed=args.retry_failed,
        progress=not args.quiet, report=not args.no_report,
    )  # fmt: skip
    n_ok = sum(status == "ok" for status in summary.statuses.values())
    print(f"{n_ok}/{len(summary.units)} units done; results: {args.out / 'results.parquet'}")
    if summary.report is not None:
        print(f"report: {summary.report}")
    if summary.failed:
        print(f"{len(summary.failed)} unit(s) failed (see units/<id>/status.json); rerun with --retry-failed",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0
