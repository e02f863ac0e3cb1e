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
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from reprsim import results
from reprsim.errors import ReprsimError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def atomic_write_frame(path: Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as parquet (``.parquet``) or CSV (``.csv``) atomically."""
    if path.suffix == ".parquet":
        data = frame.to_parquet(index=False)
    elif path.suffix == ".csv":
        data = frame.to_csv(index=False).encode()
    else:
        raise ValueError(f"unsupported table format {path.suffix!r}: use .parquet or .csv")
    atomic_write_bytes(path, data)


class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir)

    # ---- folder-level -------------------------------------------------------------------
    def prepare(self, config_yaml: str) -> None:
        """Create the folder, or check that an existing one belongs to the same config."""
        config_path = self.root / results.CONFIG_FILE
        if config_path.exists():
            if config_path.read_text() != config_yaml:
                raise ReprsimError(
                    f"{self.root} holds a run of a different config; a run folder is never overwritten: "
                    "choose a new --out folder (or rerun with the exact config to resume)"
                )
            return
        if self.root.is_dir() and any(self.root.iterdir()):
            raise ReprsimError(f"{self.root} is not empty and holds no reprsim run; choose a new or empty --out folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ReprsimError(f"cannot write to output folder {self.root}: {exc.strerror}; choose a writable --out") from None
        atomic_write_bytes(config_path, config_yaml.encode())

    def unit_dir(self, unit_id: str) -> Path:
        return self.root / results.UNITS_DIR / unit_id

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
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
