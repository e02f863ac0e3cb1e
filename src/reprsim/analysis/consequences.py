"""Consequences of overlap and similarity: does transfer success follow?

One observation is one model pair (unit); intervals are over seeds, and nothing is pooled across
sources, models or overlap kinds.

* :func:`consequence_effects` — each consequence column on the overlap fraction, per cell
  (source × model × overlap kind), with the same seed-as-unit slope as the similarity effects; the
  white-box success (the control) sits next to transfer success, as does P(victim fooled | source
  fooled) when the attack stage recorded it.
* :func:`consequence_by_fraction` — mean and between-seed SD of each consequence per fraction.
* :func:`similarity_links` — transfer success against similarity per similarity cell: the pooled
  Spearman ρ with an interval that resamples seeds. It is descriptive only: overlap drives both, so
  it cannot say whether similarity carries transfer (a correlation within a fraction cannot
  either: it is a between-seed correlation over a handful of seeds). That question is answered by
  :func:`reprsim.analysis.identification.similarity_transfer`, from two causes of similarity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprsim.analysis import inference, stats
from reprsim.analysis.cells import group_keys, headline_layer_mask, iter_cells
from reprsim.analysis.effects import apply_family, ensure_prepared, seed_effect
from reprsim.analysis.load import cell_axes, consequence_columns

__all__ = [
    "HEADLINE_CONSEQUENCES",
    "LINK_CONSEQUENCES",
    "consequence_by_fraction",
    "consequence_effects",
    "similarity_links",
]

#: Consequences whose overlap effect is a primary test (Holm-adjusted together); the others
#: (white-box success, clean error, ...) are controls and reported as exploratory.
HEADLINE_CONSEQUENCES = ("transfer_asr", "jailbreak_transfer_asr")
#: Consequences related to similarity in :func:`similarity_links`.
LINK_CONSEQUENCES = ("transfer_asr", "transfer_asr_given_source_fooled", "jailbreak_transfer_asr")


def _base(name: str) -> str:
    return name.removesuffix("_ba")


def _units(data: pd.DataFrame) -> pd.DataFrame:
    """One row per unit (its consequence columns are the same on every row of the unit)."""
    units = data.drop_duplicates("unit_id")
    return units[np.isfinite(units["x"])]


_unit_axes = group_keys
#: The reason given for a consequence that cannot move with the fraction: model A's white-box
#: success in a data-overlap design (A, the attack inputs and the attack seed are the same at every
#: fraction), for instance.
CONSTANT = (
    "identical at every fraction within each seed (constant by construction: the same source model, "
    "inputs and attack seed at every fraction); reported, not tested"
)


def consequence_effects(df: pd.DataFrame, *, layers: str = "default") -> pd.DataFrame:
    """Each consequence on the overlap fraction, per (source, model, overlap kind) cell.

    Returns
    -------
    DataFrame with the cell keys, ``consequence`` (a column name; ``_ba`` = the B → A direction),
    the seed-as-unit ``slope`` / ``slope_low`` / ``slope_high`` / ``p`` / ``n_seeds`` / ``reason``,
    ``p_adjusted`` (Holm over :data:`HEADLINE_CONSEQUENCES`, both directions), ``family``,
    ``verdict``, ``x_min``/``x_max`` and the means there (``value_at_min``/``value_at_max``).
    Empty when the table has no consequence column.
    """
    data = ensure_prepared(df, layers)
    cols = consequence_columns(data)
    rows: list[dict[str, Any]] = []
    units = _units(data)
    for keys, u in iter_cells(units, _unit_axes(units)):
        for c in cols:
            v = pd.to_numeric(u[c], errors="coerce")
            sub = u[np.isfinite(v)]
            if sub.empty:
                continue
            x, y = sub["x"].to_numpy(float), pd.to_numeric(sub[c]).to_numpy(float)
            means = pd.Series(y).groupby(x).mean()
            effect = seed_effect(x, y, sub["seed"].to_numpy())
            if np.ptp(y) > 0 and _constant_within_seeds(x, y, sub["seed"].to_numpy()):
                effect["reason"] = CONSTANT
            rows.append(
                {
                    **keys,
                    "consequence": c,
                    **effect,
                    "n": len(sub),
                    "x_min": float(x.min()),
                    "x_max": float(x.max()),
                    "value_at_min": float(means.iloc[0]),
                    "value_at_max": float(means.iloc[-1]),
                }
            )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    fam = out["consequence"].map(_base).isin(HEADLINE_CONSEQUENCES) & (out["reason"] != CONSTANT)
    out = apply_family(out, fam, estimate="slope", low="slope_low", high="slope_high", sd="slope_sd")
    out.loc[out["reason"] == CONSTANT, "verdict"] = "constant by construction"
    return out


def _constant_within_seeds(x: np.ndarray, y: np.ndarray, seeds: np.ndarray) -> bool:
    """Whether ``y`` is identical at every fraction within every seed (over ≥ 2 fractions): then no
    overlap effect can show, and the column says nothing about overlap."""
    if np.unique(x).size < 2:
        return False
    return all(np.ptp(y[seeds == s]) == 0 for s in np.unique(seeds))


def consequence_by_fraction(df: pd.DataFrame, *, layers: str = "default") -> pd.DataFrame:
    """Mean and between-seed SD (ddof=1) of every consequence per cell and fraction.

    Returns a long table: cell keys, ``x``, ``consequence``, ``mean``, ``sd``, ``n_seeds``.
    """
    data = ensure_prepared(df, layers)
    cols = consequence_columns(data)
    units = _units(data)
    if not cols or units.empty:
        return pd.DataFrame(columns=[*_unit_axes(data), "x", "consequence", "mean", "sd", "n_seeds"])
    keys = _unit_axes(units)
    long = units.melt(id_vars=keys + ["x", "seed"], value_vars=cols, var_name="consequence", value_name="v")
    long["v"] = pd.to_numeric(long["v"], errors="coerce")
    long = long[np.isfinite(long["v"])]
    per_seed = long.groupby(keys + ["x", "consequence", "seed"], sort=False)["v"].mean().reset_index()
    out = per_seed.groupby(keys + ["x", "consequence"], sort=False)["v"].agg(mean="mean", sd="std", n_seeds="size")
    return out.reset_index().sort_values(keys + ["consequence", "x"], kind="stable").reset_index(drop=True)


def similarity_links(
    df: pd.DataFrame, *, layers: str = "default", n_boot: int = stats.DEFAULT_N_BOOT, seed: int = stats.DEFAULT_SEED
) -> pd.DataFrame:
    """Transfer success against similarity, pooled over the fractions of each similarity cell
    (never pooling kinds or designs); descriptive, see the module docstring.

    Returns
    -------
    DataFrame with the similarity cell's axes, ``probe_role``, ``headline_layer``, ``consequence``, ``n`` (pairs),
    ``n_seeds``, ``n_levels``, pooled ``spearman`` (+ ``_low``/``_high``, bootstrap over seeds) and ``pearson``.
    """
    data = ensure_prepared(df, layers)
    cols = [c for c in consequence_columns(data) if _base(c) in LINK_CONSEQUENCES]
    rows: list[dict[str, Any]] = []
    if not cols:
        return pd.DataFrame()
    data = data[np.isfinite(data["x"])]
    head = headline_layer_mask(data)
    for keys, g in iter_cells(data, cell_axes(data)):
        for c in cols:
            v = pd.to_numeric(g[c], errors="coerce").to_numpy(float)
            m = np.isfinite(v)
            if m.sum() < 3:
                continue
            sim, y = g["value"].to_numpy(float)[m], v[m]
            seeds, x = g["seed"].to_numpy()[m], g["x"].to_numpy(float)[m]
            rho = stats.correlation_ci(
                sim, y, seeds, method="spearman", n_boot=n_boot, seed=seed, min_groups=inference.MIN_SEEDS_FOR_BOOTSTRAP
            )
            pearson = stats.weighted_pearson(sim, y, np.ones((1, sim.size)))[0]
            rows.append(
                {
                    **keys,
                    "probe_role": str(g["probe_role"].iloc[0]),
                    "headline_layer": bool(head.loc[g.index].all()),
                    "consequence": c,
                    "n": int(m.sum()),
                    "n_seeds": int(np.unique(seeds).size),
                    "n_levels": int(np.unique(x).size),
                    "spearman": rho["estimate"],
                    "spearman_low": rho["low"],
                    "spearman_high": rho["high"],
                    "pearson": float(pearson),
                }
            )
    return pd.DataFrame(rows)
