"""The sweep: expand a config into units, run the unfinished ones, assemble the results table.

``run_experiment`` is what ``reprsim run`` calls. It is resumable: units already marked ``ok`` in
the run folder are skipped, units that failed are rerun only with ``retry_failed=True``, and
results are written per unit as soon as the unit finishes.
"""

from __future__ import annotations

import os
import shutil
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from reprsim import __version__
from reprsim.experiments import attack_eps, paired
from reprsim.experiments.config import ExperimentConfig, dump_config
from reprsim.experiments.executors import Executor, UnitTask, make_executor
from reprsim.experiments.grid import Unit, expand, unit_record
from reprsim.experiments.store import RunStore, git_commit
from reprsim.storage import RUN_LOCK_FILE, RunLock, atomic_write_json
from reprsim.experiments.preflight import preflight


def default_cache_dir() -> Path:
    """Shared cache of splits, checkpoints and features (``$REPRSIM_CACHE`` or ``~/.cache/reprsim``)."""
    return Path(os.environ.get("REPRSIM_CACHE", Path.home() / ".cache" / "reprsim"))


@dataclass
class RunSummary:
    run_dir: Path
    units: list[Unit]
    statuses: dict[str, str]
    ran: list[str] = field(default_factory=list)
    results: pd.DataFrame | None = None

    @property
    def failed(self) -> list[str]:
        return [uid for uid, status in self.statuses.items() if status == "failed"]


def plan(config: ExperimentConfig, run_dir: str | Path) -> pd.DataFrame:
    """The grid of units with their status in ``run_dir`` (for ``--dry-run``); touches nothing."""
    store = RunStore(run_dir)
    rows = []
    for unit in expand(config):
        row = unit.describe()
        row["status"] = store.status(unit.unit_id)
        rows.append(row)
    return pd.DataFrame(rows)


def run_experiment(
    config: ExperimentConfig,
    run_dir: str | Path,
    *,
    executor: Executor | None = None,
    cache_dir: str | Path | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> RunSummary:
    """Run every unfinished unit of the sweep and write ``results.parquet`` / ``results.csv``.

    Returns a :class:`RunSummary` with the per-unit statuses and the assembled results table.
    """
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    store = RunStore(run_dir)
    units = expand(config)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    wanted = {"pending", "failed"} if retry_failed else {"pending"}
    todo = [u for u in units if store.status(u.unit_id) in wanted]

    # One run per folder at a time: a second `reprsim run` on it is refused at once (with our PID).
    created = not Path(run_dir).exists()
    with RunLock(run_dir), _removed_if_unused(Path(run_dir), created):
        # Everything that can be checked without training is checked before any unit starts.
        preflight(config, todo, out_dir=Path(run_dir), cache_dir=cache)
        eps: dict = {}
        if todo:  # eps: auto — each design's ε, chosen (or read back) before any unit's attacks run
            store.prepare(dump_config(config), check_only=True)  # a foreign run folder fails before training
            eps = attack_eps.resolve_attack_eps(config, units, cache, attack_eps.read_records(Path(run_dir)), progress)
            todo = attack_eps.with_attack_eps(todo, eps)
        store.prepare(dump_config(config))
        if eps:
            atomic_write_json(Path(run_dir) / attack_eps.ATTACK_EPS_FILE, eps)
        executor = executor or make_executor(config.execution)

        tasks = [
            UnitTask(
                config,
                unit,
                cache,
                log_path=store.unit_dir(unit.unit_id) / "log.txt",
                progress=progress and config.execution.workers == 1,
            )
            for unit in todo
        ]
        ran = []
        bar = tqdm(total=len(units), initial=len(units) - len(todo), desc="sweep", unit="pair", disable=not progress)
        # With worker processes, a second line shows the stage of every running unit.
        stages = _StageLine({u.unit_id: u for u in todo}, enabled=progress and config.execution.workers > 1)
        try:
            for task, outcome in executor.submit_all(tasks, on_stage=stages.update if stages.enabled else None):
                uid = task.unit.unit_id
                store.write_unit(uid, unit_record(task.unit), outcome.get("rows"), outcome["status"])
                ran.append(uid)
                stages.finish(uid)
                bar.set_postfix_str(f"{_label(task.unit)} {outcome['status']['status']}")
                bar.update(1)
                if outcome["status"]["status"] != "ok":
                    tqdm.write(f"unit {uid} failed: {outcome['status'].get('error')}", file=sys.stderr)
        finally:
            stages.close()
            bar.close()

        results = store.assemble([u.unit_id for u in units])
        store.write_results(results)
        statuses = {u.unit_id: store.status(u.unit_id) for u in units}
        paired.run_paired_stage(config, [u for u in units if statuses[u.unit_id] == "ok"], Path(run_dir), cache)
        store.write_provenance(_provenance(config, units, store, started, time.perf_counter() - t0, executor))
    return RunSummary(Path(run_dir), units, statuses, ran, results)


@contextmanager
def _removed_if_unused(run_dir: Path, created: bool):
    """Remove a run folder this call created when it fails before writing anything but its lock."""
    try:
        yield
    except BaseException:
        if created and all(p.name == RUN_LOCK_FILE for p in run_dir.iterdir()):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _label(unit: Unit) -> str:
    """A short name of a unit for progress displays, e.g. ``task t=0.4 s=1``."""
    parts = [unit.overlap_kind]
    if unit.data_fraction is not None and unit.overlap_kind != "attribute":
        parts.append(f"d={unit.data_fraction:g}")
    if unit.task_fraction is not None and unit.overlap_kind != "data":
        parts.append(f"t={unit.task_fraction:g}")
    return " ".join(parts + [f"s={unit.seed}"])


class _StageLine:
    """A progress line listing the current stage of each running unit."""

    def __init__(self, units: dict[str, Unit], enabled: bool):
        self.units, self.enabled, self.running = units, enabled, {}
        self.line = tqdm(total=0, bar_format="{desc}", position=1, leave=False, disable=not enabled)

    def update(self, unit_id: str, stage: str) -> None:
        self.running[unit_id] = stage
        self._show()

    def finish(self, unit_id: str) -> None:
        self.running.pop(unit_id, None)
        self._show()

    def _show(self) -> None:
        self.line.set_description_str(" | ".join(f"{_label(self.units[u])}: {s}" for u, s in self.running.items()))

    def close(self) -> None:
        self.line.close()


def _provenance(config, units, store, started, seconds, executor) -> dict:
    import numpy
    import torch

    statuses = store.unit_statuses()
    return {
        "reprsim_version": __version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "executor": type(executor).__name__,
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "seconds_this_invocation": round(seconds, 2),
        "config_name": config.name,
        "units": {
            u.unit_id: {
                "seeds": u.seeds(),
                "status": statuses.get(u.unit_id, {}).get("status", "pending"),
                "timings": statuses.get(u.unit_id, {}).get("timings"),
            }
            for u in units
        },
    }
