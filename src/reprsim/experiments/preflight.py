"""One preflight for ``reprsim config validate``, ``run --dry-run`` and ``run``: every problem, before any training.

It checks what the config schema cannot: that each model entry's family can train on each
source's world (:func:`reprsim.experiments.composition.compose`), that the pair can build the
requested overlap designs and run the requested consequence stages, and then asks each world ×
family (:meth:`~reprsim.experiments.composition.Composition.check`) to load its data, build its
splits and models and check layers and measure parameters; finally that the run and cache folders
are writable. Problems are collected, not raised one by one, so a user fixes them in one pass.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from reprsim.errors import ConfigError
from reprsim.experiments.composition import Composition, compose, composition_of
from reprsim.experiments.worlds import get_world, world_name_of

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.grid import Unit

__all__ = ["preflight", "preflight_problems"]


def _design_problems(config: ExperimentConfig, source: str, kind) -> list[str]:  # noqa: ANN001
    problems = []
    known = {s.name for s in config.sources}
    for i, design in enumerate(config.overlap.designs):
        unknown = sorted(set(design.sources or ()) - known)
        if unknown:
            problems.append(
                f"overlap.designs.{i}.sources: {unknown} are not sources of this config; its sources: {sorted(known)}"
            )
        models = {m.name for m in config.models}
        unknown_models = sorted(set(design.models or ()) - models)
        if unknown_models:
            problems.append(
                f"overlap.designs.{i}.models: {unknown_models} are not models of this config; "
                f"its models: {sorted(models)}"
            )
        if design.sources is not None and source not in design.sources:
            continue
        if design.kind not in kind.overlap_kinds:
            problems.append(
                f"overlap.designs.{i}.kind: the {kind.name} kind (source {source!r}) builds "
                f"{list(kind.overlap_kinds)}, not {design.kind!r}"
            )
        elif design.kind == "data":
            used = {"align": any(a > 0 for a in design.align), "init": "shared" in design.init}
            missing = [arm for arm, on in used.items() if on and arm not in kind.family.design_arms]
            if missing:
                problems.append(
                    f"overlap.designs.{i}: {missing} cannot be trained by the {kind.name} kind (source "
                    f"{source!r}; it trains {list(kind.family.design_arms) or 'neither align nor init: shared'}); "
                    "drop them from this design or restrict its sources"
                )
    for i, spec in enumerate(config.consequences):
        if spec.kind not in kind.consequences:
            applies = list(kind.consequences) or "none"
            problems.append(
                f"consequences.{i}: {spec.kind} does not apply to the {kind.name} kind (source "
                f"{source!r}); its consequence stages: {applies}"
            )
    return problems


def _composition(i: int, spec, source: str) -> tuple[Composition | None, list[str]]:  # noqa: ANN001
    """The world × family of model entry ``i`` on ``source``, or None with the problem lines."""
    from reprsim.experiments.families import FAMILIES, get_family
    from reprsim.models.hf_spec import hf_path_problem
    from reprsim.models.zoo import usable_models

    try:
        return compose(source, spec), []
    except ValueError as exc:
        if spec.hf is not None and (problem := hf_path_problem(spec.hf)):
            return None, [f"models.{spec.name}: {problem}"]  # not there: not that its family is wrong
        world = world_name_of(source)
        families = [get_family(name) for name in FAMILIES]
        takes = sorted({kind for f in families if world in f.kinds for kind in f.model_kinds})
        return None, [f"models.{i}.name: {exc}; usable models: {usable_models(takes)}"]


def _recipe_problems(units: list[Unit]) -> dict[str, str]:
    """Each model entry's recipe (the top-level ``train`` with the entry's ``train`` overrides) parses:
    ``{problem line: the error's text}`` for those that do not."""
    problems: dict[str, str] = {}
    seen = set()
    for unit in units:
        key = (unit.source.name, unit.model.name, json.dumps(unit.train, sort_keys=True, default=str))
        if key in seen:
            continue
        seen.add(key)
        try:
            world = get_world(world_name_of(unit.source.name))
        except ValueError:
            continue  # an unknown source: reported with the designs
        try:
            world.recipe(unit)
        except (TypeError, ValueError) as exc:
            where = f"models.{unit.model.name}.train" if unit.model.train else "train"
            error = " ".join(str(exc).split())
            problems[f"{where}: {error}"] = error
    return problems


def _align_layer_problems(config: ExperimentConfig, units: list[Unit]) -> list[str]:
    """Each (design, source, model) with an ``align`` dose: model B has a penultimate layer to align."""
    from reprsim.training.alignment import layer_problem

    problems, seen = [], set()
    for unit in units:
        group = (unit.design, unit.source.name, unit.model.name)
        if unit.align <= 0 or group in seen:
            continue
        seen.add(group)
        try:
            kind = composition_of(unit)
            model = kind.build(config, unit, kind.pair(config, unit, None), "b")
        except Exception:  # noqa: BLE001 - a split or model that does not build: the kind's check says why
            continue
        problem = layer_problem(model)
        if problem:
            problems.append(
                f"overlap.designs.{unit.design}.align: model {unit.model.name!r} has no penultimate "
                f"layer to align ({problem}); drop align from this design or use another model"
            )
    return problems


def _writable(folder: Path, what: str) -> list[str]:
    probe = folder
    while not probe.exists():  # the nearest existing ancestor decides whether it can be created
        probe = probe.parent
    if probe.is_dir() and os.access(probe, os.W_OK | os.X_OK):
        return []
    return [f"{what} {folder} is not writable (nearest existing folder: {probe}); choose another one"]


def preflight_problems(
    config: ExperimentConfig, units: list[Unit], *, out_dir: Path | None = None, cache_dir: Path | None = None
) -> list[str]:
    """Every problem that would make ``units`` of ``config`` fail, one line each (empty: all fine)."""
    problems: list[str] = []
    for source in dict.fromkeys(s.name for s in config.sources):
        try:
            world_name_of(source)
        except ValueError as exc:
            problems.append(f"sources: {exc}")
            continue
        for i, model in enumerate(config.models):
            kind, lines = _composition(i, model, source)
            problems += lines if kind is None else _design_problems(config, source, kind)
    recipes = _recipe_problems(units)
    if not problems:  # a world × family's own checks assume its designs and models are ones it knows
        groups: dict[tuple[str, str], list[Unit]] = {}
        for unit in units:
            kind = composition_of(unit)
            groups.setdefault((kind.world.name, kind.family.name), []).append(unit)
        for group in groups.values():
            # a check that meets a bad recipe reports the same error again: say it once
            problems += [
                p
                for p in composition_of(group[0]).check(config, group)
                if not any(error in " ".join(p.split()) for error in recipes.values())
            ]
        problems += _align_layer_problems(config, units)
    problems += list(recipes)
    for folder, what in ((out_dir, "the run folder (--out)"), (cache_dir, "the cache folder (--cache-dir)")):
        if folder is not None:
            problems += _writable(Path(folder), what)
    return list(dict.fromkeys(problems))


def preflight(
    config: ExperimentConfig, units: list[Unit], *, out_dir: Path | None = None, cache_dir: Path | None = None
) -> None:
    """Raise :class:`ConfigError` listing every problem (one per line) when there is any."""
    problems = preflight_problems(config, units, out_dir=out_dir, cache_dir=cache_dir)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) found before any training:\n  " + "\n  ".join(problems))
