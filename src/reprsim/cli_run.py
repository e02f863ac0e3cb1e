"""``reprsim run CONFIG --out RUN_DIR``: run (or resume) a sweep and write its results and report."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from reprsim.experiments.overrides import add_overrides_argument

#: exit codes of ``reprsim run`` (also in the --help epilog and the README)
EXIT_OK = 0  # every unit of the sweep is finished
EXIT_UNITS_FAILED = 1  # the sweep ran to its end but some units failed (listed; rerun with --retry-failed)
EXIT_BAD_INPUT = 2  # one-line error: bad input (nothing started) or a system error such as a full disk (reprsim.cli)
EXIT_INTERRUPTED = 130  # Ctrl-C: finished units are kept; the same command resumes (set in reprsim.cli)

EPILOG = """\
overrides:
  KEY=VALUE arguments change the config without editing its file: dotted keys, list items by
  index, YAML values, e.g.  seeds=[0,1,2] train.epochs=5 overlap.designs.0.fractions=[0,0.5,1]
  measures.names=[cka,cknna]. The run folder's config.yaml records the resolved config.

exit status:
  0    every unit finished
  1    the sweep ran to its end but some units failed: they are listed with their errors
       (also in DIR/units/<id>/status.json); rerun the same command with --retry-failed
  2    an error, on one line: bad input (config, override, a run folder of another config,
       missing data: nothing was started) or a system error such as a full disk (finished
       units are kept; free space and rerun)
  130  interrupted: finished units are kept; rerun the same command to resume
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a sweep from a YAML config (resumable)",
        description="Run every unit of a sweep that is not finished in --out, then write "
        "results.parquet/results.csv and report.html there.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", type=Path, help="YAML config (see configs/)")
    add_overrides_argument(parser)
    parser.add_argument("--out", type=Path, required=True, help="run folder (created; resumed if it exists)")
    parser.add_argument("--executor", choices=["local", "ray"], help="override execution.executor")
    parser.add_argument("--address", help="Ray cluster address (e.g. auto) for --executor ray")
    parser.add_argument("--workers", type=int, help="override execution.workers")
    parser.add_argument(
        "--cache-dir", type=Path, help="split/checkpoint/feature cache (default $REPRSIM_CACHE or ~/.cache/reprsim)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list the units (and which are done); run nothing")
    parser.add_argument("--retry-failed", action="store_true", help="also rerun units that failed before")
    parser.add_argument("--no-report", action="store_true", help="do not build report.html at the end")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reprsim.experiments.config import dump_config
    from reprsim.experiments.overrides import load_config
    from reprsim.experiments.executors import make_executor
    from reprsim.experiments.grid import expand
    from reprsim.experiments.preflight import preflight
    from reprsim.experiments.runner import default_cache_dir, plan, run_experiment
    from reprsim.experiments.store import RunStore

    config = load_config(args.config, overrides=args.overrides or [])
    if args.workers is not None and args.workers < 1:
        raise ValueError("--workers must be at least 1")
    flags = {"workers": args.workers, "executor": args.executor, "address": args.address}
    flags = {k: v for k, v in flags.items() if v is not None}
    if flags:  # recorded in the run folder's config.yaml like any other execution setting
        config = config.model_copy(update={"execution": config.execution.model_copy(update=flags)})
    if args.dry_run:
        # a folder of another config would be refused by the run: say so instead of listing its units
        RunStore(args.out).prepare(dump_config(config), check_only=True)
        grid = plan(config, args.out)
        pending = set(grid.loc[grid["status"] != "ok", "unit_id"]) if len(grid) else set()
        preflight(
            config,
            [u for u in expand(config) if u.unit_id in pending],
            out_dir=args.out,
            cache_dir=args.cache_dir or default_cache_dir(),
        )
        counts = grid["status"].value_counts().to_dict()
        print(grid.to_string(index=False))
        print(f"{len(grid)} units: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        failed = (
            [uid for uid, status in zip(grid["unit_id"], grid["status"]) if status == "failed"]
            if "unit_id" in grid
            else []
        )
        if failed:
            _print_failed(args, failed)
        return EXIT_OK
    executor = None
    if args.executor or args.address:
        executor = make_executor(config.execution, args.executor, args.address)
    summary = run_experiment(
        config,
        args.out,
        executor=executor,
        cache_dir=args.cache_dir,
        retry_failed=args.retry_failed,
        progress=not args.quiet,
    )
    n_ok = sum(status == "ok" for status in summary.statuses.values())
    print(f"{n_ok}/{len(summary.units)} units done; results: {args.out / 'results.parquet'}")
    report = None if args.no_report or summary.results is None or summary.results.empty else _report(args.out)
    if report is not None:
        print(f"report: {report}")
    if summary.failed:
        _print_failed(args, summary.failed, total=len(summary.units))
        return EXIT_UNITS_FAILED
    return EXIT_OK


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _print_failed(args: argparse.Namespace, failed: list[str], total: int | None = None) -> None:
    """List failed units with their one-line errors (from units/<id>/status.json) on stderr,
    then the command that reruns them."""
    from reprsim import results
    from reprsim.experiments.store import RunStore

    store = RunStore(args.out)
    of = f" of {total}" if total is not None else ""
    print(f"{len(failed)}{of} unit(s) failed:", file=sys.stderr)
    for uid in failed:
        path = store.unit_dir(uid) / results.UNIT_FILES["status"]
        try:
            error = json.loads(path.read_text()).get("error") or "no error recorded"
        except (OSError, ValueError) as exc:
            error = f"(cannot read {path}: {exc})"
        print(f"  {uid}: {_one_line(error)}", file=sys.stderr)
    command = ["reprsim", "run", str(args.config), *(args.overrides or []), "--out", str(args.out)]
    if args.cache_dir is not None:
        command += ["--cache-dir", str(args.cache_dir)]
    print(
        f"logs: {args.out}/units/<id>/log.txt; rerun them with: {shlex.join(command)} --retry-failed", file=sys.stderr
    )


def _report(run_dir: Path) -> Path | None:
    """Build the run's report; a failure is a warning (the results are safe on disk), not an error."""
    try:
        from reprsim.analysis import build_report

        return build_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - any report failure must leave the finished run usable
        print(f"warning: the report could not be built ({exc}); retry with `reprsim report {run_dir}`", file=sys.stderr)
        return None
