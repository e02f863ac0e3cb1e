"""Which folder a report may be written into, and which of its files a new report may delete.

A report goes into a run folder (the default), an empty or new folder, or a folder holding an
earlier report reprsim made (its ``summary.json`` says so); any other folder is refused, so that
``reprsim report --out ~/Documents`` cannot touch files reprsim did not write. Of an earlier report
only the figures its ``summary.json`` lists are deleted (PNG and its SVG twin, plain files inside
``figures/``); ``figures/`` itself must be a real folder, never a symlink.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from reprsim.errors import ReprsimError
from reprsim.results import CONFIG_FILE, REPORT_HTML, REPORT_MD, RESULTS_CSV, RESULTS_PARQUET, SUMMARY_FILE, UNITS_DIR
from reprsim.safe_paths import check_writable_target, path_name_problem, safe_folder

__all__ = ["FIGURES_DIR", "remove_old_figures", "report_folder"]

FIGURES_DIR = "figures"
_RUN_MARKERS = (CONFIG_FILE, RESULTS_PARQUET, RESULTS_CSV, UNITS_DIR)


def _previous_summary(root: Path) -> dict[str, Any] | None:
    """The ``summary.json`` of an earlier report in ``root`` (a dict with ``status`` and ``run``), or None."""
    path = root / SUMMARY_FILE
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return summary if isinstance(summary, dict) and "status" in summary and "run" in summary else None


def report_folder(out: str | Path | None, runs: list[Any]) -> Path:
    """The folder to write the report into (created if missing): ``out``, or the first run's folder.

    Raises ReprsimError when ``out`` exists but is not a folder, or is a non-empty folder that is
    neither a run folder (config.yaml, results.parquet / .csv or units/) nor a report folder.
    """
    if out is None:
        return Path(runs[0].path)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ReprsimError(f"--out {root} is not a folder; give a new or empty folder for the report")
    if root.is_dir():
        entries = [p.name for p in root.iterdir()]
        ours = any(name in entries for name in _RUN_MARKERS) or _previous_summary(root) is not None
        if entries and not ours:
            raise ReprsimError(
                f"--out {root} is not empty and holds neither a reprsim run nor a reprsim report "
                f"(no {CONFIG_FILE}, results table or {SUMMARY_FILE}); choose a new or empty folder"
            )
    root.mkdir(parents=True, exist_ok=True)
    return root


def remove_old_figures(root: Path) -> None:
    """Delete the figures of the earlier report in ``root`` that its ``summary.json`` lists (and only
    those: plain PNG / SVG files directly inside ``figures/``). A symlinked ``figures/``, or a symlink
    (or anything but a file) where ``report.html``, ``report.md`` or ``summary.json`` go, is an error
    raised before anything is deleted or written."""
    for name in (REPORT_HTML, REPORT_MD, SUMMARY_FILE):
        check_writable_target(root / name, "report file")
    figures = root / FIGURES_DIR
    if not os.path.lexists(figures):
        return
    safe_folder(figures, "figures folder")
    summary = _previous_summary(root) or {}
    listed = summary.get("figures") if isinstance(summary.get("figures"), list) else []
    for fig in listed:
        png = fig.get("png") if isinstance(fig, dict) else None
        if not isinstance(png, str) or not png.startswith(f"{FIGURES_DIR}/"):
            continue
        name = png[len(FIGURES_DIR) + 1 :]
        if path_name_problem(name) is not None or not name.endswith(".png"):
            continue
        for file in (figures / name, figures / f"{name[:-4]}.svg"):
            try:
                if stat.S_ISREG(os.lstat(file).st_mode):
                    file.unlink()
            except OSError:
                continue
