"""``eps: auto`` for ``attack_transfer``: one ε per design, from the source model's white-box success.

An attack whose white-box success sits near 0 cannot show a difference in transfer, and a fixed
ε means a different attack strength on every data set. With ``eps: auto`` the runner chooses, before
any unit's consequences run, one ε for every unit of a design (per source and model, so ε never
varies with the fraction, the seed or an arm): on the design's *reference unit* — its first seed at
its lowest fraction that has an attack set (ordinary arm: λ = 0, independent initialisation) — model
A is trained (or loaded from the cache: the sweep reuses it) and ε is the smallest point of the grid
``eps_max · k / 32`` (k = 1 … 32) at which A's white-box success on the unit's attack set (the
stage's attack, steps, subset and seed) reaches ``target_whitebox``. The grid is searched by
bisection, assuming success grows with ε: ε_max first (a target it misses is an error naming the
design and the success reached), then 5 halvings: 6 attack evaluations, deterministic.

The choice is stored in the run folder (``attack_eps.json``) with its evaluations, so a resumed run
uses the same ε; every row records the ε used (column ``attack_eps``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reprsim.errors import ConfigError
from reprsim.threads import limited_threads

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.grid import Unit

__all__ = ["ATTACK_EPS_FILE", "GRID_POINTS", "eps_grid", "resolve_attack_eps", "smallest_eps", "with_attack_eps"]

#: the run-folder file holding each design's chosen ε
ATTACK_EPS_FILE = "attack_eps.json"
#: points of the ε grid ``eps_max · k / GRID_POINTS``, k = 1 … GRID_POINTS (a power of two: bisection is exact)
GRID_POINTS = 32


def eps_grid(eps_max: float, points: int = GRID_POINTS) -> np.ndarray:
    """The candidate ε values ``eps_max · k / points`` for k = 1 … points, shape (points,), increasing."""
    return eps_max * np.arange(1, points + 1) / points


def smallest_eps(
    success: Callable[[float], float], grid: np.ndarray, target: float
) -> tuple[float | None, list[tuple[float, float]]]:
    """The smallest ``grid`` value whose ``success(ε) >= target``, by bisection (success assumed to grow with ε).

    Evaluates the largest ε first; returns ``(None, evaluations)`` when even it misses the target.
    Returns ``(ε, evaluations)`` with ``evaluations`` the ``(ε, success)`` pairs in the order tried
    (1 + ⌈log2 len(grid)⌉ of them at most).
    """
    tried: list[tuple[float, float]] = []

    def reaches(i: int) -> bool:
        value = float(success(float(grid[i])))
        tried.append((float(grid[i]), value))
        return value >= target

    if not reaches(len(grid) - 1):
        return None, tried
    lo, hi = -1, len(grid) - 1  # invariant: grid[hi] reaches the target; grid[lo] does not (lo = -1: ε = 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid
    return float(grid[hi]), tried


def _auto_spec(config: ExperimentConfig) -> tuple[int, Any] | None:
    return next(
        (
            (j, c)
            for j, c in enumerate(config.consequences)
            if c.kind == "attack_transfer" and getattr(c, "eps", None) == "auto"
        ),
        None,
    )


def _group(unit: Unit) -> str:
    return f"overlap.designs.{unit.design}|{unit.source.name}|{unit.model.name}"


def _reference_order(config: ExperimentConfig, units: list[Unit]) -> list[Unit]:
    """The first seed's units in increasing fraction order, ordinary arms first."""
    first = [u for u in units if u.seed == config.seeds[0]]
    frac = lambda x: -1.0 if x is None else x  # noqa: E731
    return sorted(first, key=lambda u: (frac(u.task_fraction), frac(u.data_fraction), u.align, u.init != "independent"))


def _choose(
    config: ExperimentConfig, spec: Any, units: list[Unit], cache_dir: Path, progress: bool
) -> dict[str, Any] | str:
    """The record of one design's ε, or the problem line when no ε up to the cap reaches the target."""
    from reprsim.devices import resolve_device
    from reprsim.experiments.driver import trained_model
    from reprsim.experiments.composition import composition_of

    device = resolve_device(config.execution.device)
    where = f"overlap.designs.{units[0].design} (source {units[0].source.name!r}, model {units[0].model.name!r})"
    for unit in _reference_order(config, units):
        kind = composition_of(unit)
        pair = kind.pair(config, unit, cache_dir)
        if len(pair.attack_set()[1]) == 0:
            continue
        a = trained_model(kind, config, unit, pair, "a", cache_dir, device, progress)
        eps, tried = smallest_eps(
            lambda e: kind.whitebox_asr(spec, unit, pair, a, e), eps_grid(spec.eps_max), spec.target_whitebox
        )
        if eps is None:
            best = max(tried, key=lambda t: t[1])
            return (
                f"{where}: eps: auto cannot reach white-box success {spec.target_whitebox:g}: the best reached "
                f"with ε up to eps_max {spec.eps_max:g} is {best[1]:.3f} (at ε = {best[0]:.4g}, model A of unit "
                f"{unit.unit_id}); raise eps_max or lower target_whitebox"
            )
        return {
            "eps": eps,
            "whitebox_asr": dict(tried)[eps],
            "reference_unit": unit.unit_id,
            "evaluations": [list(t) for t in tried],
            "spec": spec.model_dump(mode="json"),
        }
    return f"{where}: eps: auto needs a unit with an attack set (a label space both models share); none has one"


def resolve_attack_eps(
    config: ExperimentConfig, units: list[Unit], cache_dir: Path, stored: dict[str, Any], progress: bool = False
) -> dict[str, dict[str, Any]]:
    """Each design group's ε record (``{"overlap.designs.i|source|model": {"eps": ..., ...}}``) for the
    ``eps: auto`` stage of ``config``, reusing the ``stored`` records that match the reference unit
    and the stage's settings; ``{}`` when no stage uses ``eps: auto``.

    ``units`` must be the whole grid (:func:`~reprsim.experiments.grid.expand`): the reference unit
    of a design does not depend on which units are still to run. Models are trained with
    ``execution.threads_per_unit`` torch and BLAS threads, as in a unit, so that the cached weights are the
    ones a unit would train. Raises :class:`ConfigError` listing each design whose target no ε up
    to ``eps_max`` reaches.
    """
    found = _auto_spec(config)
    if found is None:
        return {}
    j, spec = found
    groups: dict[str, list[Unit]] = {}
    for unit in units:
        if unit.overlap_kind in ("data", "task", "combined", "attribute", "factorial"):
            groups.setdefault(_group(unit), []).append(unit)
    records, problems = {}, []
    with limited_threads(config.execution.threads_per_unit):
        for name, members in groups.items():
            old = stored.get(name)
            if (
                old is not None
                and old.get("spec") == spec.model_dump(mode="json")
                and old.get("reference_unit") in {u.unit_id for u in members}
            ):
                records[name] = old
                continue
            chosen = _choose(config, spec, members, cache_dir, progress)
            if isinstance(chosen, str):
                problems.append(chosen)
            else:
                records[name] = chosen
    if problems:
        raise ConfigError(
            f"consequences.{j}: {len(problems)} problem(s) before any attack ran:\n  " + "\n  ".join(problems)
        )
    return records


def with_attack_eps(units: list[Unit], records: dict[str, dict[str, Any]]) -> list[Unit]:
    """``units`` with ``attack_eps`` set from their design group's record (unchanged without records)."""
    if not records:
        return units
    return [replace(u, attack_eps=records[_group(u)]["eps"]) if _group(u) in records else u for u in units]


def read_records(run_dir: Path) -> dict[str, Any]:
    """The ε records stored in a run folder (empty when it has none)."""
    path = Path(run_dir) / ATTACK_EPS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
