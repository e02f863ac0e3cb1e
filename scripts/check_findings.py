"""Check (or rewrite) the README's findings block against what reprsim prints for a run.

    python3 scripts/check_findings.py RUN_DIR            # exit 1 with a diff when the README differs
    python3 scripts/check_findings.py RUN_DIR --write    # replace the README's block with the run's findings

The block sits between the two marker comments below; its text is exactly the output of
``reprsim report RUN_DIR --format md --findings``. CI runs the main job from an empty cache and
then this check, so findings in the README never drift from the code.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START = "<!-- findings: printed by `reprsim report runs/default --format md --findings`; do not edit by hand -->"
END = "<!-- /findings -->"


def printed_findings(run_dir: str) -> str:
    """What ``reprsim report RUN_DIR --format md --findings`` prints."""
    done = subprocess.run(
        ["reprsim", "report", run_dir, "--format", "md", "--findings"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(
            f"check_findings: `reprsim report {run_dir} --findings` failed (exit {done.returncode}):\n{done.stderr}"
        )
    return done.stdout


def split_readme(text: str) -> tuple[str, str, str]:
    """(before, block, after) around the findings markers; exits when they are missing."""
    if START not in text or END not in text:
        sys.exit(f"check_findings: {README} has no findings block (the markers {START!r} … {END!r})")
    before, rest = text.split(START, 1)
    block, after = rest.split(END, 1)
    return before, block.strip("\n") + "\n", after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--write", action="store_true", help="replace the README's block with the run's findings")
    args = parser.parse_args()
    found = printed_findings(args.run_dir)
    before, block, after = split_readme(README.read_text(encoding="utf-8"))
    if args.write:
        README.write_text(f"{before}{START}\n{found}{END}{after}", encoding="utf-8")
        print(f"check_findings: wrote the findings of {args.run_dir} into {README}")
        return 0
    if block == found:
        print("check_findings: the README's findings block is what the run prints")
        print("findings: 1 passed, 0 failed")
        return 0
    diff = difflib.unified_diff(
        block.splitlines(),
        found.splitlines(),
        "README.md (findings block)",
        f"reprsim report {args.run_dir} --findings",
        lineterm="",
    )
    print("\n".join(diff))
    print("check_findings: the README's findings differ from the run's (above); rerun with --write after checking")
    print("findings: 0 passed, 1 failed")
    return 1


if __name__ == "__main__":
    sys.exit(main())
