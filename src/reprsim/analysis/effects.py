"""Effect of overlap on similarity: per-kind regressions, per-fraction means, and the combined
data × task grid, including a fair test of "combining data and task overlap gives the strongest
effect" (same architecture, source and levels; numbers with bootstrap intervals over seeds).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprsim.analysis import stats
from reprsim.analysis.load import prepare

__all__ = ["overlap_effects", "fraction_means", "combined_effects", "ensure_prepared", "GROUP_KEYS"]

GROUP_KEYS = ["overlap_kind", "measure", "probe_set"]
_KIND_ORDER = {"data": 0, "task": 1, "attribute": 2, "combined": 3}


def ensure_prepared(df: pd.DataFrame, layers: str = "default") -> pd.DataFrame:
    """Return ``df`` unchanged if it came from :func:`reprsim.analysis.load.prepare`, else prepare it."""
    if "layer_selection" in df.columns and "x" in df.columns:
        return df
    return prepare(df, layers)


def _sorted(out: pd.DataFrame) -> pd.DataFrame:
    if out.empty:
        return out
    order = out["overlap_kind"].map(_KIND_ORDER).fillna(9)
    return out.assign(_o=order).sort_values(["_o", "measure", "probe_set"]).drop(columns="_o").reset_index(drop=True)


def _role(group: pd.DataFrame) -> str:
    roles = group["probe_role"].dropna().astype(str).unique() if "probe_role" in group else []
    return str(roles[0]) if len(roles) else ""


def overlap_effects(
    df: pd.DataFrame, *, layers: str = "default", n_boot: int = stats.DEFAULT_N_BOOT, seed: int = stats.DEFAULT_SEED
) -> pd.DataFrame:
    """Regress each similarity measure on its overlap fraction, per overlap kind × measure × probe set.

    ``x`` is the requested fraction of the unit's kind (see :func:`reprsim.analysis.load.overlap_x`;
    for ``combined`` the grid diagonal). Rows of empty probe sets and failed units are dropped first.

    Returns
    -------
    DataFrame, one row per (overlap_kind, measure, probe_set), columns: ``probe_role``, ``slope``,
    ``slope_low``, ``slope_high`` (95% t interval), ``intercept``, ``r2``, ``mutual_information``
    (nats, sklearn ``mutual_info_regression``, n_neighbors=3, random_state=42, X = raw fraction),
    ``spearman``, ``spearman_low``, ``spearman_high`` (percentile bootstrap over seeds), ``ci_unit``,
    ``n`` (units), ``n_levels`` (distinct fractions), ``n_seeds``, ``x_min``, ``x_max``,
    ``value_at_min``, ``value_at_max`` (means at the lowest and highest fraction).
    """
    data = ensure_prepared(df, layers)
    data = data[np.isfinite(data["x"])]
    rows: list[dict[str, Any]] = []
    for (kind, measure, probe), g in data.groupby(GROUP_KEYS, sort=False):
        x, y = g["x"].to_numpy(float), g["value"].to_numpy(float)
        fit = stats.linear_fit(x, y)
        rho = stats.correlation_ci(x, y, g["seed"].to_numpy(), method="spearman", n_boot=n_boot, seed=seed)
        means = g.groupby("x")["value"].mean()
        rows.append(
            {
                "overlap_kind": kind,
                "measure": measure,
                "probe_set": probe,
                "probe_role": _role(g),
                "slope": fit.slope,
                "slope_low": fit.slope_low,
                "slope_high": fit.slope_high,
                "intercept": fit.intercept,
                "r2": fit.r2,
                "mutual_information": stats.mutual_information(x, y),
                "spearman": rho["estimate"],
                "spearman_low": rho["low"],
                "spearman_high": rho["high"],
                "ci_unit": rho["ci_unit"],
                "n": int(len(g)),
                "n_levels": int(np.unique(x).size),
                "n_seeds": int(g["seed"].nunique()),
                "x_min": float(x.min()),
                "x_max": float(x.max()),
                "value_at_min": float(means.iloc[0]),
                "value_at_max": float(means.iloc[-1]),
            }
        )
    return _sorted(pd.DataFrame(rows, columns=_EFFECT_COLUMNS))


_EFFECT_COLUMNS = [
    "overlap_kind", "measure", "probe_set", "probe_role", "slope", "slope_low", "slope_high", "intercept", "r2",
    "mutual_information", "spearman", "spearman_low", "spearman_high", "ci_unit", "n", "n_levels", "n_seeds",
    "x_min", "x_max", "value_at_min", "value_at_max",
]  # fmt: skip


def fraction_means(df: pd.DataFrame, *, layers: str = "default") -> pd.DataFrame:
    """Mean ± standard deviation (ddof=1) of each measure per overlap fraction.

    Returns
    -------
    DataFrame with columns ``overlap_kind``, ``measure``, ``probe_set``, ``probe_role``,
    ``data_fraction``, ``task_fraction``, ``x`` (the kind's regressor; NaN off the combined grid's
    diagonal), ``mean``, ``std`` (NaN for a single seed), ``n``.
    """
    data = ensure_prepared(df, layers).copy()
    keys = GROUP_KEYS + ["probe_role", "data_fraction", "task_fraction"]
    data["data_fraction"] = pd.to_numeric(data["data_fraction"], errors="coerce")
    data["task_fraction"] = pd.to_numeric(data["task_fraction"], errors="coerce")
    out = (
        data.groupby(keys, dropna=False, sort=True)
        .agg(x=("x", "first"), mean=("value", "mean"), std=("value", "std"), n=("value", "size"))
        .reset_index()
    )
    return _sorted(out)


def _ols(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OLS coefficients with 95% t intervals; NaN when the design is rank deficient or saturated."""
    from scipy import stats as sps

    n, p = design.shape
    nan = np.full(p, np.nan)
    if np.linalg.matrix_rank(design) < p or n <= p:
        return nan, nan, nan
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    s2 = float(resid @ resid) / (n - p)
    se = np.sqrt(np.diag(s2 * np.linalg.inv(design.T @ design)))
    t = float(sps.t.ppf(0.975, n - p))
    return coef, coef - t * se, coef + t * se


def _verdict(low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undetermined"
    if low > 0:
        return "yes"
    if high < 0:
        return "no"
    return "not distinguishable"


def _grid_row(g: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    d = pd.to_numeric(g["data_fraction"], errors="coerce").to_numpy(float)
    t = pd.to_numeric(g["task_fraction"], errors="coerce").to_numpy(float)
    y = g["value"].to_numpy(float)
    design = np.column_stack([np.ones_like(d), d, t, d * t])
    coef, low, high = _ols(design, y)
    out: dict[str, Any] = {
        "n": int(len(g)),
        "n_data_levels": int(np.unique(d).size),
        "n_task_levels": int(np.unique(t).size),
    }
    for i, name in enumerate(["intercept", "data", "task", "interaction"]):
        out[f"coef_{name}"], out[f"coef_{name}_low"], out[f"coef_{name}_high"] = coef[i], low[i], high[i]
    d0, d1, t0, t1 = d.min(), d.max(), t.min(), t.max()
    corners = {
        "none": (d == d0) & (t == t0),
        "data": (d == d1) & (t == t0),
        "task": (d == d0) & (t == t1),
        "both": (d == d1) & (t == t1),
    }
    if d1 == d0 or t1 == t0 or not all(m.any() for m in corners.values()):
        for k in ("data", "task", "both", "both_minus_best_single"):
            out[f"gain_{k}"] = out[f"gain_{k}_low"] = out[f"gain_{k}_high"] = np.nan
        out["combined_strongest"] = "undetermined"
        return out
    w, unit = stats.bootstrap_weights(g["seed"].to_numpy(), n_boot=n_boot, seed=seed)
    w = np.vstack([np.ones((1, len(g))), w])  # row 0: the point estimate
    with np.errstate(invalid="ignore", divide="ignore"):
        means = {k: (w * m * y).sum(axis=1) / (w * m).sum(axis=1) for k, m in corners.items()}
    gains = {k: means[k] - means["none"] for k in ("data", "task", "both")}
    gains["both_minus_best_single"] = gains["both"] - np.maximum(gains["data"], gains["task"])
    for k, v in gains.items():
        lo, hi = stats._percentile_ci(v[1:], 0.95)
        out[f"gain_{k}"], out[f"gain_{k}_low"], out[f"gain_{k}_high"] = float(v[0]), lo, hi
    out["ci_unit"] = unit
    out["combined_strongest"] = _verdict(out["gain_both_minus_best_single_low"], out["gain_both_minus_best_single_high"])
    return out


def _kind_comparison(data: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Slopes of data-only, task-only (attribute; else class-split task) and combined (diagonal)."""
    rows = []
    data = data[np.isfinite(data["x"])]
    for (measure, probe), g in data.groupby(["measure", "probe_set"], sort=True):
        kinds = set(g["overlap_kind"])
        task_kind = "attribute" if "attribute" in kinds else ("task" if "task" in kinds else None)
        singles = [k for k in ("data", task_kind) if k in kinds]
        if "combined" not in kinds or not singles:
            continue
        row: dict[str, Any] = {"measure": measure, "probe_set": probe, "task_only_kind": task_kind or ""}
        samples = {}
        levels, models, sources = {}, {}, {}
        for i, kind in enumerate(["data", "task_only", "combined"]):
            real = {"data": "data", "task_only": task_kind, "combined": "combined"}[kind]
            sub = g[g["overlap_kind"] == real] if real else g.iloc[0:0]
            if len(sub) < 3 or sub["x"].nunique() < 2:
                row[f"slope_{kind}"] = row[f"slope_{kind}_low"] = row[f"slope_{kind}_high"] = np.nan
                continue
            x, y = sub["x"].to_numpy(float), sub["value"].to_numpy(float)
            lo, hi, s = stats.slope_ci(x, y, sub["seed"].to_numpy(), n_boot=n_boot, seed=seed + i)
            row[f"slope_{kind}"] = stats.linear_fit(x, y).slope
            row[f"slope_{kind}_low"], row[f"slope_{kind}_high"] = lo, hi
            samples[kind] = (row[f"slope_{kind}"], s)
            levels[kind] = sub["x"].nunique()
            models[kind] = tuple(sorted(sub["model"].astype(str).unique())) if "model" in sub else ()
            sources[kind] = tuple(sorted(sub["source"].astype(str).unique())) if "source" in sub else ()
        singles_avail = [k for k in ("data", "task_only") if k in samples]
        if "combined" in samples and singles_avail:
            best_est = max(samples[k][0] for k in singles_avail)
            best_s = np.max(np.vstack([samples[k][1] for k in singles_avail]), axis=0)
            diff_est = samples["combined"][0] - best_est
            lo, hi = stats._percentile_ci(samples["combined"][1] - best_s, 0.95)
        else:
            diff_est = lo = hi = np.nan
        row["combined_minus_best_single"], row["diff_low"], row["diff_high"] = diff_est, lo, hi
        row["combined_strongest"] = _verdict(lo, hi)
        notes = []
        if len(set(levels.values())) > 1:
            notes.append(f"levels differ {levels}")
        if len(set(models.values())) > 1:
            notes.append(f"models differ {models}")
        if len(set(sources.values())) > 1:
            notes.append(f"sources differ {sources}")
        row["fair"] = not notes
        row["fairness_note"] = "; ".join(notes) if notes else "same models, sources and number of levels"
        rows.append(row)
    return pd.DataFrame(rows)


def combined_effects(
    df: pd.DataFrame, *, layers: str = "default", n_boot: int = stats.DEFAULT_N_BOOT, seed: int = stats.DEFAULT_SEED
) -> dict[str, pd.DataFrame]:
    """Does combining data and task overlap give the strongest effect?

    Returns
    -------
    dict with two DataFrames:

    ``"grid"`` — per measure × probe set of the ``combined`` kind's data × task grid: the two-factor
    OLS ``value ~ 1 + d + t + d·t`` (``coef_*`` with 95% t intervals) and the mean similarity gains
    over the (min, min) corner of (max d, min t) = ``gain_data``, (min d, max t) = ``gain_task``,
    (max, max) = ``gain_both``, and ``gain_both_minus_best_single`` = gain_both − max(gain_data,
    gain_task), each with a percentile bootstrap interval over seeds; ``combined_strongest`` is
    "yes" (interval above 0), "no" (below 0), "not distinguishable" or "undetermined".

    ``"comparison"`` — per measure × probe set present in several kinds: slope per unit fraction of
    data-only, task-only (``attribute`` kind, else the class-split ``task`` kind) and combined
    (grid diagonal) with bootstrap intervals, the difference combined − best single kind with its
    interval, the verdict, and whether the comparison is fair (same models, sources, levels).
    """
    data = ensure_prepared(df, layers)
    grid_rows = []
    comb = data[data["overlap_kind"] == "combined"]
    for (measure, probe), g in comb.groupby(["measure", "probe_set"], sort=True):
        grid_rows.append({"measure": measure, "probe_set": probe, "probe_role": _role(g), **_grid_row(g, n_boot, seed)})
    return {"grid": pd.DataFrame(grid_rows), "comparison": _kind_comparison(data, n_boot, seed)}
