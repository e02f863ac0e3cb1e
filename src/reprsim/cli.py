"""Command-line entry point: ``reprsim <command> ...``.

Each command lives in the module of the stage it belongs to and exposes two functions:
``add_parser(subparsers)`` registering its arguments, and ``run(args) -> int``. Modules are
imported lazily so ``reprsim --help`` stays fast and a broken optional stage cannot break the rest.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from reprsim import __version__

# command name -> module implementing add_parser/run
COMMANDS: dict[str, str] = {
    "run": "reprsim.cli_run",
    "config": "reprsim.experiments.cli_config",
    "compare": "reprsim.compare.cli_features",
    "compare-models": "reprsim.compare.cli",
    "data": "reprsim.data.cli",
    "report": "reprsim.analysis.cli",
    "measures": "reprsim.metrics.cards",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reprsim",
        description="Causal experiments on representational similarity.",
    )
    parser.add_argument("--version", action="version", version=f"reprsim {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a stage not installed/implemented must not break the others
            sub = subparsers.add_parser(name, help=f"(unavailable: {exc})")
            sub.set_defaults(_unavailable=str(exc))
            continue
        module.add_parser(subparsers)
    return parser


def _os_error_line(exc: OSError, args: argparse.Namespace) -> str:
    """One line for an operating-system error: what failed, where, and what to do."""
    where = f" while writing {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        folders = [
            f"--{name.replace('_', '-')} {getattr(args, name)}"
            for name in ("out", "cache_dir")
            if getattr(args, name, None) is not None
        ]
        elsewhere = f" (or choose another {' / '.join(folders)})" if folders else ""
        return (
            f"no space left on the device{where}: free some space{elsewhere} and rerun the same command; "
            "finished units are kept"
        )
    return f"{exc.strerror or exc}{where}"


def main(argv: list[str] | None = None) -> int:
    from reprsim.errors import ReprsimError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_unavailable", None):
        print(f"reprsim {args.command}: unavailable ({args._unavailable})", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (ReprsimError, ValueError, TypeError, FileNotFoundError, PermissionError) as exc:
        print(f"reprsim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a vanished mount, ...: one line, never a traceback
        print(f"reprsim {args.command}: error: {_os_error_line(exc, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"reprsim {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
