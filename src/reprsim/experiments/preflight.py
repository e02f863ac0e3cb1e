"""One preflight for ``reprsim config validate``, ``run --dry-run`` and ``run``: every problem, before any training.

It checks what the config schema cannot: that each source's kind can build the requested overlap
designs, train the requested models and run the requested consequence stages, and then asks each
kind (:meth:`~reprsim.experiments.kinds.base.Kind.check`) to load its data, build its splits and
models and check layers and measure parameters; finally that the run and cache folders are
writable. Problems are collected, not raised one by one, so a user fixes them in one pass.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from reprsim.errors import ConfigError
from reprsim.experiments.kinds import get_kind, kind_name_of

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
            problems.append(f"overlap.designs.{i}.sources: {unknown} are not sources of this config; "
                            f"its sources: {sorted(known)}")  # fmt: skip
        models = {m.name for m in config.models}
        unknown_models = sorted(set(design.models or ()) - models)
        if unknown_models:
            problems.append(f"overlap.designs.{i}.models: {unknown_models} are not models of this config; "
                            f"its models: {sorted(models)}")  # fmt: skip
        if design.sources is not None and source not in design.sources:
            continue
        if design.kind not in kind.overlap_kinds:
            problems.append(f"overlap.designs.{i}.kind: the {kind.name} kind (source {source!r}) builds "
                            f"{list(kind.overlap_kinds)}, not {design.kind!r}")  # fmt: skip
        elif design.kind == "data":
            used = {"align": any(a > 0 for a in design.align), "init": "shared" in design.init}
            missing = [arm for arm, on in used.items() if on and arm not in kind.design_arms]
            if missing:
                problems.append(f"overlap.designs.{i}: {missing} cannot be trained by the {kind.name} kind (source "
                                f"{source!r}; it trains {list(kind.design_arms) or 'neither align nor init: shared'}); "
                                "drop them from this design or restrict its sources")  # fmt: skip
    for i, spec in enumerate(config.consequences):
        if spec.kind not in kind.consequences:
            applies = list(kind.consequences) or "none"
            problems.append(f"consequences.{i}: {spec.kind} does not apply to the {kind.name} kind (source "
                            f"{source!r}); its consequence stages: {applies}")  # fmt: skip
    return problems


def _model_problems(config: ExperimentConfig, i: int, spec, source: str, kind) -> list[str]:  # noqa: ANN001
    from reprsim.experiments.kinds import model_kind_of
    from reprsim.llm.spec import hf_path_problem
    from reprsim.models.zoo import usable_models

    if spec.hf is not None and hf_path_problem(spec.hf):
        return []  # a folder that is not there: the kind's check says so (not that its kind is wrong)
    try:
        found = model_kind_of(spec)
    except ValueError as exc:
        return [f"models.{i}.name: {exc}"]
    if found not in kind.model_kinds:
        return [f"models.{i}.name: {spec.name!r} cannot be trained by the {kind.name} kind (source {source!r}); "
                f"usable models: {usable_models(kind.model_kinds)}"]  # fmt: skip
    return []


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
            kind = get_kind(kind_name_of(unit.source.name, unit.model))
        except ValueError:
            continue  # an unknown source: reported with the designs
        try:
            kind.recipe(unit)
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
        kind = get_kind(kind_name_of(unit.source.name, unit.model))
        try:
            model = kind.build(config, unit, kind.pair(config, unit, None), "b")
        except Exception:  # noqa: BLE001 - a split or model that does not build: the kind's check says why
            continue
        problem = layer_problem(model)
        if problem:
            problems.append(f"overlap.designs.{unit.design}.align: model {unit.model.name!r} has no penultimate "
                            f"layer to align ({problem}); drop align from this design or use another model")  # fmt: skip
    return problems


def _writable(folder: Path, what: str) -> list[str]:
    probe = folder
    while not probe.exists():  # the nearest existing ancestor decides whether it can be created
        probe = probe.parent
    if probe.is_dir() and os.access(probe, os.W_OK | os.X_OK):
        return []
    return [f"{what} {folder} is not writable (nearest existing folder: {probe}); choose another one"]


def preflight_problems(config: ExperimentConfig, units: list[Unit], *, out_dir: Path | None = None,
                       cache_dir: Path | None = None) -> list[str]:  # fmt: skip
    """Every problem that would make ``units`` of ``config`` fail, one line each (empty: all fine)."""
    problems: list[str] = []
    for source in dict.fromkeys(s.name for s in config.sources):
        for i, model in enumerate(config.models):
            try:
                kind = get_kind(kind_name_of(source, model))
            except ValueError as exc:
                problems.append(f"sources: {exc}")
                break
            problems += _design_problems(config, source, kind) + _model_problems(config, i, model, source, kind)
    recipes = _recipe_problems(units)
    if not problems:  # a kind's own checks assume its designs and models are ones it knows
        by_kind: dict[str, list[Unit]] = {}
        for unit in units:
            by_kind.setdefault(kind_name_of(unit.source.name, unit.model), []).append(unit)
        for name, kind_units in by_kind.items():
            # a kind that meets a bad recipe while checking reports the same error again: say it once
            problems += [p for p in get_kind(name).check(config, kind_units)
                         if not any(error in " ".join(p.split()) for error in recipes.values())]  # fmt: skip
        problems += _align_layer_problems(config, units)
    problems += list(recipes)
    for folder, what in ((out_dir, "the run folder (--out)"), (cache_dir, "the cache folder (--cache-dir)")):
        if folder is not None:
            problems += _writable(Path(folder), what)
    return list(dict.fromkeys(problems))


def preflight(config: ExperimentConfig, units: list[Unit], *, out_dir: Path | None = None,
              cache_dir: Path | None = None) -> None:  # fmt: skip
    """Raise :class:`ConfigError` listing every problem (one per line) when there is any."""
    problems = preflight_problems(config, units, out_dir=out_dir, cache_dir=cache_dir)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) found before any training:\n  " + "\n  ".join(problems))
