"""The paper's cross-family table: mean mutual information and R² per overlap group.

The paper (PAPER.md §8, cell 41) answers "which overlap has the strongest effect" with a
two-level mean of MI per group of regression files. Here one "file" is one cell of the effects
table at a model's headline layer pair and headline probe set; MI and R² are averaged over the
cells of a model (run × source × model), then over models. The grouping and its caveats (MI's
ceiling is ln(number of fraction levels), groups may differ in models) are stated with the table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reprsim.analysis.cells import headline_probe_sets

__all__ = ["GROUPING", "GROUP_LABELS", "family_table"]

#: Overlap kind → the paper's group name.
GROUP_LABELS = {
    "data": "data overlap",
    "task": "task + data overlap (class split)",
    "attribute": "task-only overlap (attribute tasks, same images)",
    "combined": "combined (data × task grid, diagonal)",
    "factorial": "combined (factorial: both shared vs neither)",
}

GROUPING = (
    "Groups by overlap kind: data → data overlap; task → task + data overlap (class split: the images "
    "move with their classes); attribute → task-only overlap (same images, attribute tasks); combined / "
    "factorial → combined (the grid's diagonal, i.e. both shared vs neither). Per group and measure, each "
    "cell is one (run, source, model) at its headline layer pair and headline probe set; MI and R² are "
    "averaged over a model's cells, then over models (the paper's two-level mean). MI is bounded by "
    "ln(number of fraction levels), so groups with fewer levels cannot reach the same MI."
)


def family_table(effects: pd.DataFrame, measures: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """Mean MI, its permutation null's 95th percentile and R² per overlap group × measure.

    ``effects`` is :func:`reprsim.analysis.effects.overlap_effects`' table; ``measures`` are the
    measures to tabulate (the primary family's). Returns columns ``group``, ``overlap_kind``,
    ``measure``, ``mean_mi``, ``mean_mi_null95``, ``mean_r2``, ``n_cells``, ``n_models``,
    ``n_levels`` (the distinct fraction-level counts, e.g. "5" or "3, 6") and ``mi_ceiling``
    (ln of the largest level count). Empty when there is nothing to tabulate.
    """
    cols = [
        "group",
        "overlap_kind",
        "measure",
        "mean_mi",
        "mean_mi_null95",
        "mean_r2",
        "n_cells",
        "n_models",
        "n_levels",
        "mi_ceiling",
    ]
    if effects.empty:
        return pd.DataFrame(columns=cols)
    model_keys = [c for c in ("run", "source", "model") if c in effects.columns]
    picked = []
    for _, g in effects[effects["headline_layer"]].groupby(model_keys + ["overlap_kind"], sort=False):
        kind = str(g["overlap_kind"].iloc[0])
        heads = headline_probe_sets(g, kind)
        if heads:
            picked.append(g[g["probe_set"] == heads[0]])
    if not picked:
        return pd.DataFrame(columns=cols)
    cells = pd.concat(picked)
    cells = cells[cells["measure"].isin(list(measures))]
    rows = []
    for (kind, measure), g in cells.groupby(["overlap_kind", "measure"], sort=False):
        per_model = g.groupby(model_keys, sort=False)[["mutual_information", "mi_null95", "r2"]].mean()
        levels = sorted(set(g["n_levels"].astype(int)))
        rows.append(
            {
                "group": GROUP_LABELS.get(kind, kind),
                "overlap_kind": kind,
                "measure": measure,
                "mean_mi": float(per_model["mutual_information"].mean()),
                "mean_mi_null95": float(per_model["mi_null95"].mean()),
                "mean_r2": float(per_model["r2"].mean()),
                "n_cells": len(g),
                "n_models": len(per_model),
                "n_levels": ", ".join(map(str, levels)),
                "mi_ceiling": float(np.log(max(levels))),
            }
        )
    order = {k: i for i, k in enumerate(GROUP_LABELS)}
    out = pd.DataFrame(rows, columns=cols)
    return out.assign(_o=out["overlap_kind"].map(order).fillna(9)).sort_values(["_o", "measure"]).drop(columns="_o")
