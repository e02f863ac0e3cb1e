"""The report's *Methods* paragraphs, generated from the run's config and its results table.

Design (overlap kinds and fractions), sizes (examples per class, probe sizes, training-set sizes
when the table records them), models and training, seeds, probe sets and their class composition,
measures and consequences, then the statistics and the correction actually used. A table without a
config gets the design inferred from the table, and says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprsim.analysis.cells import VARIES
from reprsim.analysis.text import design_label, kind_label, measure_label
from reprsim.results import DESIGN_AXES

__all__ = ["methods_paragraphs"]


def _levels(values: Any) -> str:
    vals = sorted({float(v) for v in values if v is not None and np.isfinite(float(v))})
    return ", ".join(f"{v:g}" for v in vals) if vals else "none"


def _design(config: dict[str, Any], data: pd.DataFrame) -> str:
    designs = ((config.get("overlap") or {}).get("designs") or []) if config else []
    parts = []
    for d in designs:
        kind = d.get("kind", "?")
        name = kind_label(kind) + (f" (sources {', '.join(d['sources'])})" if d.get("sources") else "")
        if kind == "factorial":
            task, other = d.get("task", "shape"), d.get("other_task", "color")
            parts.append(
                f"{name}: images disjoint / shared × model B's task '{other}' / '{task}' (model A learns "
                f"'{task}'), a 2 × 2 design"
            )
        elif "fractions" in d:
            parts.append(f"{name} at fractions {_levels(d['fractions'])}")
        elif "levels" in d:
            parts.append(f"{name} at levels {_levels(d['levels'])} (attributes {', '.join(d.get('attributes', []))})")
        elif "data_fractions" in d:
            parts.append(
                f"{name} with data fractions {_levels(d['data_fractions'])} × task fractions "
                f"{_levels(d.get('task_fractions', []))}"
            )
        else:
            parts.append(name)
    if not parts:  # inferred from the table
        for kind, g in data.groupby("overlap_kind", sort=False):
            if kind in ("combined", "factorial"):
                parts.append(
                    f"{kind_label(kind)} with data fractions {_levels(g['data_fraction'])} × task fractions "
                    f"{_levels(g['task_fraction'])}"
                )
            else:
                parts.append(f"{kind_label(kind)} at fractions {_levels(g['x'])}")
    return "; ".join(parts)


def _sizes(config: dict[str, Any], data: pd.DataFrame) -> list[str]:
    out = []
    for s in (config.get("sources") or []) if config else []:
        opts = s.get("options") or {}
        size = f", {opts['per_class']} training examples per class sampled" if "per_class" in opts else ""
        out.append(f"source {s.get('name')}{size}")
    train_cols = [c for c in ("n_train_a", "n_train_b") if c in data.columns]
    if train_cols:
        units = data.drop_duplicates("unit_id")
        for kind, g in units.groupby("overlap_kind", sort=False):
            n = pd.to_numeric(g[train_cols].stack(), errors="coerce").dropna()
            if len(n):
                rng = f"{int(n.min())}" if n.min() == n.max() else f"{int(n.min())}–{int(n.max())}"
                out.append(f"{kind_label(kind)}: {rng} training examples per model")
    return out


def _training(config: dict[str, Any]) -> str:
    models = ", ".join(
        m.get("name", "?") + (f" {m['options']}" if m.get("options") else "") for m in config.get("models") or []
    )
    train = config.get("train") or {}
    recipe = ", ".join(f"{k} {train[k]}" for k in ("epochs", "batch_size", "optimizer", "lr") if k in train)
    return f"Models: {models or 'see the table'}" + (f", trained with {recipe}" if recipe else "") + "."


def _probes(data: pd.DataFrame, effects: list[dict[str, Any]]) -> str:
    """One clause per design's probe set: role, size, classes and whether its composition varies.

    Keyed by (source, design, probe set): two designs may use one probe-set name (``ood_one_fixed``
    of a 10-class and a 100-class source) with different sizes and classes."""
    keys = [k for k in ("run", "source", "overlap_kind", *DESIGN_AXES) if k in data.columns]
    eff = pd.DataFrame(effects)
    designs: dict[str, list[str]] = {}
    for key, g in data.groupby([*keys, "probe_set"], sort=False, dropna=False):
        where = dict(zip([*keys, "probe_set"], key))
        probe = where.pop("probe_set")
        role = str(g["probe_role"].iloc[0]) if "probe_role" in g else ""
        n = pd.to_numeric(g["n_probe"], errors="coerce").dropna() if "n_probe" in g else pd.Series(dtype=float)
        size = "" if n.empty else (f"{int(n.min())}" if n.min() == n.max() else f"{int(n.min())}–{int(n.max())}")
        mine = eff
        for k, v in where.items():
            if not mine.empty and k in mine:
                mine = mine[mine[k].astype(str) == str(v)]
        mine = mine[mine["probe_set"].astype(str) == str(probe)] if not mine.empty else mine
        classes = sorted({str(c) for c in mine.get("probe_classes", pd.Series(dtype=str)).dropna() if c})
        varies = not mine.empty and (mine["composition"] == VARIES).any()
        facts = [role] if role else []
        facts += [f"{size} inputs"] if size else []
        facts += [f"{'/'.join(classes)} classes"] if classes else []
        facts.append("composition varies with the fraction" if varies else "fixed composition")
        label = " · ".join(str(where[k]) for k in ("run", "source") if k in where)
        designs.setdefault(f"{label}, {design_label(where)}", []).append(f"'{probe}' ({', '.join(facts)})")
    parts = [f"{design}: {', '.join(probes)}" for design, probes in designs.items()]
    return ("Probe sets per design — " + "; ".join(parts) + ".") if parts else ""


def _consequences(config: dict[str, Any]) -> str:
    out = []
    for c in config.get("consequences") or [] if config else []:
        if isinstance(c, dict) and c.get("kind") == "attack_transfer":
            out.append(
                f"{c.get('attack', 'mi_fgsm')} transfer attacks (ε {c.get('eps_data')} for data overlap, "
                f"{c.get('eps_task')} otherwise; {c.get('steps')} steps; {c.get('n')} inputs), crafted on each "
                "model and applied to the other"
            )
        elif isinstance(c, dict) and c.get("kind") == "jailbreak_transfer":
            out.append("jailbreak suffixes optimised on one chat model and tried on the other")
    return ("Consequences: " + "; ".join(out) + ".") if out else ""


def methods_paragraphs(
    config: dict[str, Any], data: pd.DataFrame, summary: dict[str, Any], *, together: str | None = None
) -> list[str]:
    """The Methods section as a list of paragraphs (plain text); the statistics themselves follow as
    the items of ``summary["statistics"]``. ``together`` describes several runs analysed at once."""
    seeds = sorted(data["seed"].unique().tolist())
    n_units = data["unit_id"].nunique()
    design = (
        f"Design. {n_units} model pairs over {len(seeds)} seed{'s' if len(seeds) != 1 else ''} "
        f"({', '.join(map(str, seeds))}): {_design(config, data)}. Both models of a pair are compared on the "
        "same probe inputs."
    )
    if together:
        design += f" {together} The design is inferred from the tables."
    elif not config:
        design += " No config.yaml was found, so the design is inferred from the table."
    sizes = _sizes(config, data)
    if config and config.get("probe_size"):
        sizes.append(f"in-distribution probe sets of up to {config['probe_size']} inputs")
    if sizes:
        design += " Sizes: " + "; ".join(sizes) + "."
    paras = [design]
    if config:
        layers = ", ".join(map(str, config.get("layers") or []))
        measures = ", ".join(measure_label(m) for m in summary.get("measures", []))
        paras.append(
            f"{_training(config)} Layers compared: {layers or 'see the table'}. Measures: {measures}. "
            f"{_consequences(config)}".strip()
        )
    probes = _probes(data, summary.get("overlap_effects", []))
    if probes:
        paras.append(
            probes + " Class subsets of a task-overlap split (common, ood_one, ood_all) change their classes "
            "with the fraction and are reported but not headlined; fixed-composition sets (ood_one_fixed, "
            "common_fixed) hold them constant."
        )
    paras.append(
        f"Statistics. Effects are estimated per cell — every combination of "
        f"{', '.join(summary.get('cell_axes', []))} — and never pooled across cells:"
    )
    return paras
