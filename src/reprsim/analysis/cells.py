"""Cells of a run and what the report says about them.

A *cell* is one level of every grid axis besides the overlap fraction and the seed (see
:func:`reprsim.analysis.load.cell_axes`); effects are estimated within a cell and never pooled
across cells. This module also decides, from the table alone, which cells the report headlines:

* the headline layer pair of a model (``penultimate``/``penultimate``, else its first pair),
* a probe set's composition: ``fixed``, or ``varies with the fraction`` for the class subsets of a
  task-overlap split (``common``, ``ood_one``, ``ood_all``), whose classes change with the fraction,
* the headline probe sets of an overlap kind (fixed-composition sets first),
* membership of the declared primary family (``analysis.primary``: measures × probe sets).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reprsim.analysis.spec import PRIMARY_MEASURES, PRIMARY_PROBE_SETS, AnalysisSpec
from reprsim.results import CLASS_PROBE_ROLES, DESIGN_AXES

__all__ = [
    "PrimaryFamily",
    "GROUP_AXES",
    "composition",
    "group_keys",
    "headline_layer_mask",
    "headline_probe_sets",
    "is_distance",
    "iter_cells",
    "probe_classes",
]

FIXED = "fixed"
VARIES = "varies with the fraction"


@dataclass(frozen=True)
class PrimaryFamily:
    """The declared primary family: ``measures`` × ``probe_sets`` (``"fixed"`` = every probe set whose
    composition does not change with the fraction; ``"all"`` = every probe set). ``calibrated``: the
    calibrated scores of ``measures`` form a Holm family of their own; ``behavioural``: the behavioural
    measures (layer ``output``) that form one (both exploratory by default).

    Built from the config's ``analysis.primary`` (see :meth:`from_config`; schema and defaults in
    :mod:`reprsim.analysis.spec`)."""

    measures: tuple[str, ...] = PRIMARY_MEASURES
    probe_sets: tuple[str, ...] | str = PRIMARY_PROBE_SETS
    source: str = field(default="the default", compare=False)
    calibrated: bool = False
    behavioural: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> PrimaryFamily:
        """Read ``analysis.primary`` of a run's config dict, validated by
        :class:`reprsim.analysis.spec.AnalysisSpec`; defaults when it is absent."""
        section = (config or {}).get("analysis") if isinstance(config, dict) else None
        if not section:
            return cls()
        from pydantic import ValidationError

        from reprsim.errors import ConfigError

        try:
            spec = AnalysisSpec.model_validate(section)
        except ValidationError as exc:
            msgs = "; ".join(f"analysis.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid analysis section in config.yaml: {msgs}") from None
        probes = spec.primary.probe_sets
        return cls(
            tuple(spec.primary.measures),
            probes if isinstance(probes, str) else tuple(probes),
            source="config.yaml",
            calibrated=spec.primary.calibrated,
            behavioural=tuple(spec.primary.behavioural),
        )

    def contains(self, measure: str, probe_set: str, composition: str = FIXED) -> bool:
        """Whether the cell (measure, probe set of that composition) is a primary test."""
        if measure not in self.measures:
            return False
        if self.probe_sets == "all":
            return True
        if self.probe_sets == "fixed":
            return composition == FIXED
        return probe_set in self.probe_sets

    def describe(self) -> str:
        probes = (
            {"all": "every probe set", "fixed": "every fixed-composition probe set"}.get(self.probe_sets)
            if isinstance(self.probe_sets, str)
            else "probe sets " + ", ".join(self.probe_sets)
        )
        return f"measures {', '.join(self.measures)} × {probes}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "measures": list(self.measures),
            "probe_sets": self.probe_sets if isinstance(self.probe_sets, str) else list(self.probe_sets),
            "calibrated": self.calibrated,
            "behavioural": list(self.behavioural),
            "declared_in": self.source,
        }

    def secondary(self, what: str) -> PrimaryFamily:
        """The family of the calibrated (``what="calibrated"``) or behavioural (``"behavioural"``)
        effects: the declared one, or an empty family (every such cell exploratory)."""
        if what not in ("calibrated", "behavioural"):
            raise ValueError(f"what must be 'calibrated' or 'behavioural'; got {what!r}.")
        measures = (self.measures if self.calibrated else ()) if what == "calibrated" else self.behavioural
        return PrimaryFamily(tuple(measures), self.probe_sets, source=self.source)


#: The axes of a claim's group (a design in one source and model), in order; present ones only.
GROUP_AXES: tuple[str, ...] = ("run", "source", "model", "overlap_kind", *DESIGN_AXES)


def group_keys(frame: pd.DataFrame) -> list[str]:
    """The :data:`GROUP_AXES` ``frame`` has: the keys of a design group (run, source, model, overlap
    kind and the design options the table records)."""
    return [k for k in GROUP_AXES if k in frame.columns]


def iter_cells(df: pd.DataFrame, axes: list[str]) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    """``(keys, rows)`` for every cell (combination of ``axes`` present), in table order."""
    if df.empty:
        return
    for key, g in df.groupby(axes, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        yield dict(zip(axes, key)), g


def composition(g: pd.DataFrame) -> str:
    """``"varies with the fraction"`` for a task-overlap class subset (role ``common``, ``ood_one``,
    ``ood_all``) or when ``n_probe_classes`` differs between the cell's fractions; else ``"fixed"``."""
    kinds = {str(v) for v in g["overlap_kind"].unique()}
    roles = {str(v) for v in g["probe_role"].unique()} if "probe_role" in g else set()
    if "task" in kinds and roles & set(CLASS_PROBE_ROLES):
        return VARIES
    if "n_probe_classes" in g and "x" in g:
        k = pd.to_numeric(g["n_probe_classes"], errors="coerce").to_numpy(float)
        x = g["x"].to_numpy()
        known = ~np.isnan(k) & pd.notna(x)
        _, first = np.unique(x[known], return_index=True)  # each fraction's first known class count
        if np.unique(k[known][first]).size > 1:
            return VARIES
    return FIXED


def probe_classes(g: pd.DataFrame) -> str:
    """The number of classes in the cell's probe set (``"2"``, or ``"2–8"`` when it varies); ``""``
    when the table does not record it."""
    if "n_probe_classes" not in g:
        return ""
    k = pd.to_numeric(g["n_probe_classes"], errors="coerce").dropna()
    if k.empty:
        return ""
    lo, hi = int(k.min()), int(k.max())
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def _model_keys(df: pd.DataFrame) -> list[str]:
    return [c for c in ("run", "source", "model") if c in df.columns]


def headline_layer_mask(df: pd.DataFrame) -> pd.Series:
    """True for the rows of each model's headline layer pair: ``penultimate``/``penultimate`` when
    the model has it, else the first layer pair the table lists for that model."""
    if df.empty:
        return pd.Series(False, index=df.index)
    pair = df["layer_a"].astype(str) + "\x00" + df["layer_b"].astype(str)
    keys = _model_keys(df)
    mask = pd.Series(False, index=df.index)
    pen = "penultimate\x00penultimate"
    for idx in df.groupby(keys, sort=False, dropna=False).groups.values():
        pairs = pair.loc[idx]
        chosen = pen if (pairs == pen).any() else pairs.iloc[0]
        mask.loc[idx] = pairs == chosen
    return mask


_ROLE_RANK = {"ood_one_fixed": 0, "common_fixed": 1, "id": 2, "ood_one": 3, "common": 4, "ood_all": 5, "ood": 6}


def headline_probe_sets(cells: pd.DataFrame, kind: str) -> list[str]:
    """The probe sets a kind's claim headlines, given the cell records of that kind (columns
    ``probe_set``, ``probe_role``, ``composition``): the fixed-composition ones only — for task
    overlap ``ood_one_fixed`` / ``common_fixed`` and the fully out-of-distribution sets, never the
    class subsets whose composition varies with the fraction; for the other kinds the
    in-distribution and OOD sets. When no set qualifies, every probe set (each labelled)."""
    sub = cells[cells["overlap_kind"] == kind].drop_duplicates("probe_set")
    if sub.empty:
        return []
    roles = dict(zip(sub["probe_set"], sub["probe_role"]))
    comp = dict(zip(sub["probe_set"], sub["composition"]))
    chosen = [p for p in roles if comp[p] == FIXED and roles[p] in ("ood_one_fixed", "common_fixed", "id", "ood", "")]
    if not chosen:
        chosen = list(roles)
    return sorted(chosen, key=lambda p: (_ROLE_RANK.get(roles[p], 9), str(p)))


def is_distance(measure: str) -> bool:
    """Whether a measure is a distance (lower = more similar), per the measure registry."""
    from reprsim.metrics import MEASURES

    return measure in MEASURES and MEASURES[measure].kind == "distance"


def finite(v: Any) -> bool:
    """``v`` is a finite number."""
    try:
        return v is not None and bool(np.isfinite(float(v)))
    except (TypeError, ValueError):
        return False
