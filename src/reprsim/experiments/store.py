"""The run folder: per-unit results written atomically, the merged results table, provenance.

Layout of ``RUN_DIR``::

    config.yaml            the resolved config (every default filled in)
    provenance.json        package version, git commit, timings, seeds, executor
    units/<unit_id>/       unit.json (what the unit is), rows.parquet (its result rows),
                           status.json (written last: ok | failed + error), log.txt
    results.parquet        one row per (unit, probe set, layer pair, measure)
    results.csv            the same table as CSV

A unit counts as finished only once its ``status.json`` says ``ok``; every file is written to a
temporary name and renamed, so a run killed at any moment loses no finished unit and leaves no
half-written file behind.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from reprsim import results
from reprsim.errors import ReprsimError


from reprsim.storage import (
    RUN_LOCK_FILE,
    atomic_write_bytes,
    atomic_write_json,
)  # re-exported: they live in reprsim.storage


def atomic_write_frame(path: Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as parquet (``.parquet``) or CSV (``.csv``) atomically."""
    if path.suffix == ".parquet":
        data = frame.to_parquet(index=False)
    elif path.suffix == ".csv":
        data = results.csv_text(frame).encode()  # text cells such as '=cmd' defused for spreadsheets
    else:
        raise ValueError(f"unsupported table format {path.suffix!r}: use .parquet or .csv")
    atomic_write_bytes(path, data)


#: config sections that do not change what a run computes (a resume may change them)
_RUN_INDEPENDENT_SECTIONS = ("execution",)


def _config_differences(recorded_yaml: str, config_yaml: str) -> list[str]:
    """Dotted keys at which two resolved configs differ, ignoring :data:`_RUN_INDEPENDENT_SECTIONS`."""
    from reprsim.errors import ConfigError
    from reprsim.experiments.yaml_load import load_yaml_text

    try:
        old = load_yaml_text(recorded_yaml, "the recorded config.yaml")
        new = load_yaml_text(config_yaml, "the config")
    except ConfigError as exc:
        return [f"<unreadable: {exc}>"]

    def walk(a: Any, b: Any, path: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            keys = [k for k in dict.fromkeys([*a, *b]) if path or k not in _RUN_INDEPENDENT_SECTIONS]
            out = []
            for k in keys:
                sub = f"{path}.{k}" if path else str(k)
                out += [sub] if (k in a) != (k in b) else walk(a[k], b[k], sub)
            return out
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            return [d for i, (x, y) in enumerate(zip(a, b)) for d in walk(x, y, f"{path}.{i}" if path else str(i))]
        return [] if a == b else [path or "<the whole config>"]

    return walk(old, new, "")


class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir)

    # ---- folder-level -------------------------------------------------------------------
    def prepare(self, config_yaml: str, *, check_only: bool = False) -> None:
        """Create the folder, or check that an existing one belongs to the same config.

        Two configs are the same run when they differ at most in their ``execution`` section
        (executor, workers, threads, device: how the units run, not what they compute); resuming
        with other execution settings records them in ``config.yaml``. Any other difference is
        refused, naming the keys that differ. With ``check_only`` (``--dry-run``) the same checks
        are made but nothing is created or written.
        """
        config_path = self.root / results.CONFIG_FILE
        if config_path.exists():
            recorded = config_path.read_text()
            if recorded != config_yaml:
                differences = _config_differences(recorded, config_yaml)
                if differences:
                    shown = ", ".join(differences[:5]) + (
                        f" and {len(differences) - 5} more" if len(differences) > 5 else ""
                    )
                    raise ReprsimError(
                        f"{self.root} holds a run of a different config (it differs in {shown}); a run folder "
                        "is never overwritten: choose a new --out folder (or rerun with the exact config to resume)"
                    )
                if not check_only:  # only execution settings changed: record the ones this run uses
                    atomic_write_bytes(config_path, config_yaml.encode())
            return
        if self.root.is_dir() and any(p.name != RUN_LOCK_FILE for p in self.root.iterdir()):
            raise ReprsimError(f"{self.root} is not empty and holds no reprsim run; choose a new or empty --out folder")
        if check_only:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ReprsimError(
                f"cannot write to output folder {self.root}: {exc.strerror}; choose a writable --out"
            ) from None
        atomic_write_bytes(config_path, config_yaml.encode())

    def unit_dir(self, unit_id: str) -> Path:
        from reprsim.safe_paths import check_path_name

        return self.root / results.UNITS_DIR / check_path_name(unit_id, "unit id")

    def status(self, unit_id: str) -> str:
        """'ok', 'failed' or 'pending'."""
        return results.unit_status(self.root, unit_id)

    # ---- unit-level ---------------------------------------------------------------------
    def write_unit(self, unit_id: str, record: dict, rows: list[dict] | None, status: dict) -> None:
        """Persist one unit's outcome; ``status.json`` is written last so it marks completion."""
        unit_dir = self.unit_dir(unit_id)
        atomic_write_json(unit_dir / results.UNIT_FILES["record"], record)
        if rows is not None:
            atomic_write_frame(unit_dir / results.UNIT_FILES["rows"], pd.DataFrame(rows))
        atomic_write_json(unit_dir / results.UNIT_FILES["status"], status)

    def unit_statuses(self) -> dict[str, dict]:
        out = {}
        for path in sorted((self.root / results.UNITS_DIR).glob(f"*/{results.UNIT_FILES['status']}")):
            out[path.parent.name] = json.loads(path.read_text())
        return out

    def assemble(self, unit_ids: list[str] | None = None) -> pd.DataFrame:
        """Concatenate the rows of every finished unit (in grid order when ``unit_ids`` is given)."""
        return results.assemble_units(self.root, unit_ids)

    def write_results(self, frame: pd.DataFrame) -> None:
        atomic_write_frame(self.root / results.RESULTS_PARQUET, frame)
        atomic_write_frame(self.root / results.RESULTS_CSV, frame)

    def write_provenance(self, provenance: dict) -> None:
        atomic_write_json(self.root / results.PROVENANCE_FILE, provenance)


def git_commit() -> str | None:
    """The commit of the reprsim checkout, when it is a git work tree."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
