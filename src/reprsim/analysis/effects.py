"""Effect of the overlap fraction on similarity, per cell, with the seed as the unit.

For every cell (source × model × overlap kind × probe set × layer pair × measure, and any other
grid axis; never pooled) the OLS slope of the value on the fraction is fitted within each seed;
the effect is the mean of the per-seed slopes with a t(n_seeds − 1) 95% interval. Primary cells
(the declared family, at the headline layer pair) get Holm-adjusted p-values; the others are
exploratory. Alongside: the paper's pooled R² and mutual information (with a within-seed
permutation null), Spearman ρ with a seed-bootstrap interval, and a standardised effect.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprsim.analysis import inference, stats
from reprsim.analysis.cells import (
    PrimaryFamily,
    composition,
    headline_layer_mask,
    is_distance,
    iter_cells,
    probe_classes,
)
from reprsim.analysis.load import cell_axes, prepare

__all__ = [
    "DEFAULT_N_PERM",
    "SLOPE_METHOD",
    "apply_family",
    "ensure_prepared",
    "fit_range",
    "fraction_means",
    "overlap_effects",
    "seed_effect",
]

SLOPE_METHOD = "mean of per-seed OLS slopes (value on fraction), t(n_seeds − 1) 95% interval"
DEFAULT_N_PERM = 1000
_KIND_ORDER = {"data": 0, "task": 1, "attribute": 2, "combined": 3, "factorial": 4}


def ensure_prepared(df: pd.DataFrame, layers: str = "default") -> pd.DataFrame:
    """Return ``df`` unchanged if it came from :func:`reprsim.analysis.load.prepare`, else prepare it."""
    if "layer_selection" in df.columns and "x" in df.columns:
        return df
    return prepare(df, layers)


def seed_effect(x: np.ndarray, y: np.ndarray, seeds: np.ndarray) -> dict[str, Any]:
    """The seed-as-unit slope of ``y`` on ``x``: per-seed OLS slopes summarised by
    :func:`reprsim.analysis.inference.t_summary`, plus ``reason`` when the cell cannot give one
    (one fraction level, all values equal, fewer than 3 seeds). Keys: ``slope``, ``slope_low``,
    ``slope_high``, ``slope_sd``, ``p``, ``n_seeds``, ``reason``."""
    levels = np.unique(x)
    nan = float("nan")
    if levels.size < 2:
        return {
            "slope": nan,
            "slope_low": nan,
            "slope_high": nan,
            "slope_sd": nan,
            "p": nan,
            "n_seeds": int(np.unique(seeds).size),
            "reason": "one fraction level: no slope",
        }
    if np.ptp(y) == 0:
        return {
            "slope": 0.0,
            "slope_low": nan,
            "slope_high": nan,
            "slope_sd": 0.0,
            "p": nan,
            "n_seeds": int(np.unique(seeds).size),
            "reason": "all values equal: no variation to test",
        }
    _, slopes = inference.per_seed_slopes(x, y, seeds)
    t = inference.t_summary(slopes)
    return {
        "slope": t["estimate"],
        "slope_low": t["low"],
        "slope_high": t["high"],
        "slope_sd": t["sd"],
        "p": t["p"],
        "n_seeds": t["n"],
        "reason": t["reason"],
    }


def _effect_sd(x: np.ndarray, y: np.ndarray, seeds: np.ndarray, slope: float) -> tuple[float, float, str | None]:
    """Mean per-seed slope / between-seed SD at the lowest fraction: (effect_sd, that fraction, reason)."""
    x0 = float(x.min())
    at0 = pd.Series(y[x == x0]).groupby(seeds[x == x0]).mean()
    if at0.size < 2:
        return float("nan"), x0, "one seed at the lowest fraction: no between-seed SD"
    sd0 = float(at0.std(ddof=1))
    if not np.isfinite(slope) or sd0 <= 0:
        return float("nan"), x0, "no between-seed variation at the lowest fraction" if sd0 <= 0 else None
    return slope / sd0, x0, None


#: Fixed-composition class subsets keep their classes' role only on part of a task sweep: at fraction
#: 1 the classes of ``ood_one_fixed`` become shared, at fraction 0 those of ``common_fixed`` are seen
#: by one model only. Their slope is fitted where the role holds.
FIT_RANGES: dict[str, tuple[str, str]] = {
    "ood_one_fixed": ("below", "fitted over fractions < 1 (at 1 its classes become shared)"),
    "common_fixed": ("above", "fitted over fractions > 0 (at 0 its classes are seen by one model only)"),
}


def fit_range(g: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows of a cell its slope is fitted on, and a note saying which fractions were left out
    (``""`` when none): a fixed-composition class subset (:data:`FIT_RANGES`) drops the fraction at
    which its classes change role."""
    role = str(g["probe_role"].iloc[0]) if len(g) else ""
    if role not in FIT_RANGES:
        return g, ""
    side, note = FIT_RANGES[role]
    keep = g["x"] < 1.0 if side == "below" else g["x"] > 0.0
    return (g[keep], note) if (~keep).any() else (g, "")


def _cell_row(g: pd.DataFrame, n_boot: int, n_perm: int, seed: int) -> dict[str, Any]:
    x, y, seeds = g["x"].to_numpy(float), g["value"].to_numpy(float), g["seed"].to_numpy()
    out = seed_effect(x, y, seeds)
    out["slope_method"] = SLOPE_METHOD
    out["effect_sd"], out["effect_sd_at"], sd_reason = _effect_sd(x, y, seeds, out["slope"])
    fit = stats.linear_fit(x, y)
    out["intercept"], out["r2"] = fit.intercept, fit.r2
    if out["reason"] and out["reason"].startswith("all values equal"):
        out["r2"] = float("nan")
    rho = stats.correlation_ci(
        x, y, seeds, method="spearman", n_boot=n_boot, seed=seed, min_groups=inference.MIN_SEEDS_FOR_BOOTSTRAP
    )
    out["spearman"], out["spearman_low"], out["spearman_high"] = rho["estimate"], rho["low"], rho["high"]
    out["spearman_ci_unit"] = rho["ci_unit"]
    mi = inference.mi_permutation_test(x, y, seeds, n_perm=n_perm if np.ptp(y) > 0 else 0, seed=seed)
    out["mutual_information"], out["mi_null95"], out["mi_p"], out["n_perm"] = (
        mi["mi"],
        mi["mi_null95"],
        mi["mi_p"],
        mi["n_perm"],
    )
    means = g.groupby("x")["value"].mean()
    out.update(
        n=len(g),
        n_levels=int(np.unique(x).size),
        x_min=float(x.min()),
        x_max=float(x.max()),
        value_at_min=float(means.iloc[0]),
        value_at_max=float(means.iloc[-1]),
    )
    if sd_reason and not out["reason"]:
        out["effect_sd_note"] = sd_reason
    return out


def apply_family(
    frame: pd.DataFrame,
    primary_mask: pd.Series,
    *,
    estimate: str,
    low: str,
    high: str,
    p: str = "p",
    sd: str | None = None,
    n: str = "n_seeds",
) -> pd.DataFrame:
    """Holm-adjust ``p`` over the rows of ``primary_mask`` and read each row's verdict.

    Adds ``family`` (primary/exploratory), ``p_adjusted`` (Holm; NaN for exploratory rows) and, when
    ``sd`` names the column of the between-seed SD of the per-seed estimates, the Holm-adjusted
    t interval ``{low}_adjusted`` / ``{high}_adjusted`` of each primary row — at the level of its
    Holm step (:func:`reprsim.analysis.inference.holm_levels`; the unadjusted interval elsewhere).
    ``verdict`` comes from the adjusted p and adjusted interval (primary) or the unadjusted ones
    (exploratory) (:func:`reprsim.analysis.inference.decide`), so it never disagrees with the
    interval reported next to it."""
    out = frame.copy()
    mask = primary_mask.to_numpy(bool)
    out["family"] = np.where(mask, "primary", "exploratory")
    adj = np.full(len(out), np.nan)
    levels = np.full(len(out), np.nan)
    if mask.any():
        adj[mask] = inference.holm(out.loc[mask, p].to_numpy(float))
        levels[mask] = inference.holm_levels(out.loc[mask, p].to_numpy(float))
    out["p_adjusted"] = adj
    lo_used, hi_used = out[low].to_numpy(float), out[high].to_numpy(float)
    if sd is not None:
        lo_adj, hi_adj = np.full(len(out), np.nan), np.full(len(out), np.nan)
        for i in np.flatnonzero(mask & np.isfinite(levels)):
            r = out.iloc[i]
            if np.isfinite(r[low]) and r[low] == r[high]:  # no between-seed variation: the interval is a point
                lo_adj[i] = hi_adj[i] = r[low]
            else:
                lo_adj[i], hi_adj[i] = inference.t_interval(r[estimate], r[sd], int(r[n]), 1.0 - levels[i])
        out[f"{low}_adjusted"], out[f"{high}_adjusted"] = lo_adj, hi_adj
        out["holm_level"] = 1.0 - levels
        lo_used = np.where(mask, lo_adj, lo_used)
        hi_used = np.where(mask, hi_adj, hi_used)
    used = np.where(mask, out["p_adjusted"], out[p])
    out["verdict"] = [inference.decide(e, lo, hi, pu) for e, lo, hi, pu in zip(out[estimate], lo_used, hi_used, used)]
    return out


def _verdict_note(r: pd.Series) -> str:
    if r["verdict"] != "inconclusive":
        if r.get("distance"):
            more = "rises" if r["verdict"] == "falls" else "falls"
            return f"a distance (lower = more similar): similarity {more}"
        return ""
    if isinstance(r.get("reason"), str) and r["reason"]:
        return r["reason"]
    used = r["p_adjusted"] if r["family"] == "primary" else r["p"]
    if np.isfinite(used) and used >= inference.ALPHA:
        return ("Holm-adjusted " if r["family"] == "primary" else "") + "p ≥ 0.05"
    return "interval contains 0"


def overlap_effects(
    df: pd.DataFrame,
    *,
    primary: PrimaryFamily | None = None,
    layers: str = "default",
    n_boot: int = stats.DEFAULT_N_BOOT,
    n_perm: int = DEFAULT_N_PERM,
    seed: int = stats.DEFAULT_SEED,
) -> pd.DataFrame:
    """The effect of the overlap fraction on each measure, per cell (see module docstring).

    ``x`` is the fraction the unit's kind varies (:func:`reprsim.analysis.load.overlap_x`; for
    combined/factorial kinds the grid diagonal).

    Returns
    -------
    DataFrame, one row per cell: the cell's axes (``source``, ``model``, ``overlap_kind``,
    ``probe_set``, ``layer_a``, ``layer_b``, ``measure``; ``run`` when several runs), ``probe_role``,
    ``composition``, ``probe_classes``, ``headline_layer``, ``distance``, ``slope``, ``slope_low``,
    ``slope_high``, ``slope_sd``, ``n_seeds``, ``slope_method``, ``p``, ``p_adjusted`` (primary only),
    ``family``, ``verdict`` (rises/falls/inconclusive), ``verdict_note``, ``reason`` (why a number is
    missing, else None), ``effect_sd`` (÷ between-seed SD at ``effect_sd_at``), ``intercept``,
    ``r2``, ``spearman`` (+ ``_low``/``_high``, bootstrap over seeds), ``mutual_information``,
    ``mi_null95``, ``mi_p``, ``n_perm``, ``n`` (pairs), ``n_levels``, ``x_min``, ``x_max``,
    ``value_at_min``, ``value_at_max``.
    """
    primary = primary or PrimaryFamily()
    data = ensure_prepared(df, layers)
    data = data[np.isfinite(data["x"])]
    axes = cell_axes(data)
    head = headline_layer_mask(data)
    rows = []
    for keys, g in iter_cells(data, axes):
        fitted, note = fit_range(g)
        if fitted.empty:  # only fractions at which the set's classes change role
            continue
        rows.append(
            {
                **keys,
                "probe_role": str(g["probe_role"].iloc[0]),
                "composition": composition(g),
                "probe_classes": probe_classes(fitted),
                "headline_layer": bool(head.loc[g.index].all()),
                "distance": is_distance(keys["measure"]),
                "fit_note": note,
                **_cell_row(fitted, n_boot, n_perm, seed),
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    in_family = out["headline_layer"] & pd.Series(
        [primary.contains(m, p, c) for m, p, c in zip(out["measure"], out["probe_set"], out["composition"])],
        index=out.index,
    )
    out = apply_family(out, in_family, estimate="slope", low="slope_low", high="slope_high", sd="slope_sd")
    out["verdict_note"] = out.apply(_verdict_note, axis=1)
    order = out["overlap_kind"].map(_KIND_ORDER).fillna(9)
    return out.assign(_o=order).sort_values(["_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


def fraction_means(df: pd.DataFrame, *, layers: str = "default") -> pd.DataFrame:
    """Mean and between-seed SD of each cell's values per requested fraction (per-seed means first).

    Returns
    -------
    DataFrame with the cell axes, ``probe_role``, ``data_fraction``, ``task_fraction``, ``x`` (NaN
    off a grid's diagonal), ``mean``, ``sd`` (over seeds, ddof=1; NaN for one seed), ``n_seeds``.
    """
    data = ensure_prepared(df, layers).copy()
    axes = cell_axes(data)
    for c in ("data_fraction", "task_fraction"):
        data[c] = pd.to_numeric(data[c], errors="coerce")
    keys = axes + ["probe_role", "data_fraction", "task_fraction"]
    per_seed = data.groupby(keys + ["seed"], dropna=False, sort=False).agg(x=("x", "first"), v=("value", "mean"))
    out = (
        per_seed.reset_index()
        .groupby(keys, dropna=False, sort=False)
        .agg(x=("x", "first"), mean=("v", "mean"), sd=("v", "std"), n_seeds=("v", "size"))
    )
    return out.reset_index()
