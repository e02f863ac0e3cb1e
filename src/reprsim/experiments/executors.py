"""Executors: where the units of a sweep run. The sweep logic only sees :class:`Executor`.

``LocalExecutor`` runs units in this process (one worker) or in worker processes; ``RayExecutor``
runs each unit as a Ray task declaring its CPU/GPU needs. Both call the same
:func:`reprsim.experiments.driver.execute_unit` and return its outcome to the driver, which alone
writes the run folder (workers of a cluster need not share its file system).

Adding an executor (e.g. Slurm through ``submitit``) means implementing ``submit_all``: take a list
of :class:`UnitTask` and yield ``(task, outcome)`` pairs as units finish (optionally calling
``on_stage(unit_id, stage)`` as units move through their stages).
"""

from __future__ import annotations

import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from queue import Empty
from typing import Any

from reprsim.errors import ReprsimError
from reprsim.experiments.config import ExecutionSpec, ExperimentConfig
from reprsim.experiments.grid import Unit
from reprsim.experiments.driver import execute_unit


@dataclass(frozen=True)
class UnitTask:
    """Everything a worker needs to run one unit (picklable)."""

    config: ExperimentConfig
    unit: Unit
    cache_dir: Path
    log_path: Path | None = None
    progress: bool = False
    stage_queue: Any = None  # a multiprocessing queue receiving the unit's stage records

    def __call__(self) -> dict:
        return execute_unit(
            self.config,
            self.unit,
            self.cache_dir,
            log_path=self.log_path,
            progress=self.progress,
            stage_queue=self.stage_queue,
        )


def _run_task(task: UnitTask) -> dict:
    return task()


StageCallback = Callable[[str, str], None]


class Executor(ABC):
    @abstractmethod
    def submit_all(
        self, tasks: list[UnitTask], on_stage: StageCallback | None = None
    ) -> Iterator[tuple[UnitTask, dict]]:
        """Run the tasks; yield ``(task, outcome)`` as each finishes (any order)."""


class LocalExecutor(Executor):
    """Units in this process (``workers=1``) or in ``workers`` spawned processes."""

    def __init__(self, workers: int = 1):
        self.workers = workers

    def submit_all(
        self, tasks: list[UnitTask], on_stage: StageCallback | None = None
    ) -> Iterator[tuple[UnitTask, dict]]:
        if self.workers <= 1 or len(tasks) <= 1:  # in this process: the unit shows its own stage bar
            for task in tasks:
                yield task, task()
            return
        context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
        manager = context.Manager() if on_stage is not None else None
        queue = manager.Queue() if manager is not None else None
        if queue is not None:
            tasks = [replace(task, stage_queue=queue) for task in tasks]
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        try:
            pending = {pool.submit(_run_task, task): task for task in tasks}
            while pending:
                done, _ = wait(pending, timeout=None if queue is None else 0.5, return_when=FIRST_COMPLETED)
                _drain_stages(queue, on_stage)
                for future in done:
                    task = pending.pop(future)
                    yield task, future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if manager is not None:
                manager.shutdown()


def _drain_stages(queue: Any, on_stage: StageCallback | None) -> None:
    while queue is not None and on_stage is not None:
        try:
            record = queue.get_nowait()
        except Empty:
            return
        on_stage(record.unit_id, record.getMessage().removeprefix("stage "))


class RayExecutor(Executor):
    """Each unit a Ray task with ``num_cpus=threads_per_unit`` and ``num_gpus=gpus_per_unit``."""

    def __init__(
        self,
        address: str | None = None,
        threads_per_unit: int = 1,
        gpus_per_unit: float = 0.0,
        num_cpus: int | None = None,
    ):
        try:
            import ray
        except ImportError:
            raise ReprsimError("the ray executor needs Ray: pip install 'reprsim[ray]'") from None
        self._ray = ray
        if not ray.is_initialized():
            init_kwargs = {"address": address, "include_dashboard": False, "log_to_driver": False}
            if address is None and num_cpus is not None:
                init_kwargs["num_cpus"] = num_cpus
            ray.init(**init_kwargs)
        self._remote = ray.remote(num_cpus=threads_per_unit, num_gpus=gpus_per_unit, max_retries=0)(_run_task)

    def submit_all(
        self, tasks: list[UnitTask], on_stage: StageCallback | None = None
    ) -> Iterator[tuple[UnitTask, dict]]:
        ray = self._ray  # stages are not streamed back from a cluster: each unit's log has them
        pending = {self._remote.remote(task): task for task in tasks}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    task = pending.pop(ref)
                    yield task, ray.get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref)


def make_executor(spec: ExecutionSpec, executor: str | None = None, address: str | None = None) -> Executor:
    """The executor a run asks for (command-line choices override the config)."""
    name = executor or spec.executor
    if name == "local":
        return LocalExecutor(workers=spec.workers)
    if name == "ray":
        return RayExecutor(
            address=address or spec.address,
            threads_per_unit=spec.threads_per_unit,
            gpus_per_unit=spec.gpus_per_unit,
            num_cpus=spec.workers * spec.threads_per_unit,
        )
    raise ReprsimError(f"unknown executor {name!r}; choose 'local' or 'ray'")
