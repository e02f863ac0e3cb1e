"""Does combining data and task overlap give the strongest effect? Two designs, seed as the unit.

* ``factorial`` kind — the 2 × 2 design: images {disjoint, shared} (``data_fraction`` 0/1) ×
  task {different, same attribute} (``task_fraction`` 0/1). Per seed the interaction
  y11 − y10 − y01 + y00, the two main effects, the simple effects and "both − best single factor";
  each summarised over seeds with a t interval (:func:`factorial_effects`).
* ``combined`` kind — a data × task grid with more levels: per seed the OLS fit
  value ~ 1 + d + t + d·t and the corner gains; coefficients and gains averaged over seeds with
  t intervals (:func:`combined_grid`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprsim.analysis import inference
from reprsim.analysis.cells import PrimaryFamily, headline_layer_mask, iter_cells
from reprsim.analysis.effects import apply_family, ensure_prepared
from reprsim.analysis.load import cell_axes

__all__ = ["INTERACTION_METHOD", "combined_grid", "factorial_effects"]

INTERACTION_METHOD = "per seed y11 − y10 − y01 + y00 (d = images shared, t = same task), t(n_seeds − 1) 95% interval"
_CORNERS = {"y00": (0, 0), "y10": (1, 0), "y01": (0, 1), "y11": (1, 1)}


def _fractions(g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return (
        pd.to_numeric(g["data_fraction"], errors="coerce").to_numpy(float),
        pd.to_numeric(g["task_fraction"], errors="coerce").to_numpy(float),
    )


def _corner_means(g: pd.DataFrame, corners: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """Seeds × corners table of mean values (NaN where a seed lacks a corner)."""
    d, t = _fractions(g)
    cols = {}
    for name, (cd, ct) in corners.items():
        m = np.isclose(d, cd) & np.isclose(t, ct)
        cols[name] = pd.Series(g["value"].to_numpy(float)[m]).groupby(g["seed"].to_numpy()[m]).mean()
    return pd.DataFrame(cols)


def _summ(prefix: str, values: pd.Series | np.ndarray) -> dict[str, Any]:
    s = inference.t_summary(np.asarray(values, dtype=float))
    return {prefix: s["estimate"], f"{prefix}_low": s["low"], f"{prefix}_high": s["high"], f"{prefix}_p": s["p"]}


def _factorial_cell(g: pd.DataFrame) -> dict[str, Any]:
    table = _corner_means(g, _CORNERS)
    n_all = int(g["seed"].nunique())
    complete = table.dropna()
    out: dict[str, Any] = {"n_seeds_total": n_all, "interaction_method": INTERACTION_METHOD}
    for name in _CORNERS:
        out[f"mean_{name}"] = float(table[name].mean()) if table[name].notna().any() else float("nan")
    y00, y10, y01, y11 = (complete[c] for c in ("y00", "y10", "y01", "y11"))
    inter = inference.t_summary((y11 - y10 - y01 + y00).to_numpy())
    out.update(
        estimate=inter["estimate"],
        low=inter["low"],
        high=inter["high"],
        p=inter["p"],
        sd=inter["sd"],
        n_seeds=inter["n"],
    )
    reason = inter["reason"]
    if np.ptp(g["value"].to_numpy(float)) == 0:
        reason = "all values equal: no variation to test"
    elif len(complete) < n_all:
        missing = n_all - len(complete)
        note = f"{missing} seed(s) lack one of the four cells and are left out"
        reason = f"{reason}; {note}" if reason else note
    out["reason"] = reason
    out.update(_summ("data_main", ((y10 - y00) + (y11 - y01)) / 2))
    out.update(_summ("task_main", ((y01 - y00) + (y11 - y10)) / 2))
    out.update(_summ("data_alone", y10 - y00))
    out.update(_summ("task_alone", y01 - y00))
    out.update(_summ("both", y11 - y00))
    # "combined is the strongest": both − the single factor with the larger mean gain (chosen once,
    # from the means, so the per-seed difference is not biased upwards by a per-seed max)
    best = "data" if (y10 - y00).mean() >= (y01 - y00).mean() else "task"
    out["best_single"] = best
    out.update(_summ("both_minus_best_single", y11 - (y10 if best == "data" else y01)))
    out["combined_strongest"] = inference.decide(
        out["both_minus_best_single"],
        out["both_minus_best_single_low"],
        out["both_minus_best_single_high"],
        out["both_minus_best_single_p"],
    )
    out["combined_strongest"] = {"rises": "yes", "falls": "no"}.get(out["combined_strongest"], "inconclusive")
    return out


def factorial_effects(
    df: pd.DataFrame, *, primary: PrimaryFamily | None = None, layers: str = "default"
) -> pd.DataFrame:
    """The 2 × 2 factorial analysis of every ``factorial`` cell (source × model × probe set × layer
    pair × measure).

    Returns
    -------
    DataFrame, one row per cell: the cell keys, ``estimate`` / ``low`` / ``high`` / ``p`` of the
    interaction (mean over seeds, t interval), ``p_adjusted`` (Holm over the primary cells),
    ``family``, ``verdict`` (``positive``, ``negative`` or ``inconclusive``), ``n_seeds``,
    ``reason``; the two main effects ``data_main`` / ``task_main``, the simple effects
    ``data_alone`` / ``task_alone`` / ``both`` and ``both_minus_best_single`` (each with
    ``_low``/``_high``/``_p``), ``best_single``, ``combined_strongest`` (yes/no/inconclusive) and
    the corner means ``mean_y00`` … ``mean_y11``.
    """
    primary = primary or PrimaryFamily()
    data = ensure_prepared(df, layers)
    fac = data[data["overlap_kind"] == "factorial"]
    if fac.empty:
        return pd.DataFrame()
    axes = [a for a in cell_axes(fac) if a != "overlap_kind"]
    head = headline_layer_mask(fac)
    rows = [
        {**keys, "headline_layer": bool(head.loc[g.index].all()), **_factorial_cell(g)}
        for keys, g in iter_cells(fac, axes)
    ]
    out = pd.DataFrame(rows)
    fam = out["headline_layer"] & pd.Series([primary.contains(m, p) for m, p in zip(out["measure"], out["probe_set"])])
    out = apply_family(out, fam, estimate="estimate", low="low", high="high", sd="sd")
    out["verdict"] = out["verdict"].map({"rises": "positive", "falls": "negative"}).fillna("inconclusive")
    return out


def _grid_seed(g: pd.DataFrame) -> dict[str, float]:
    d, t = _fractions(g)
    y = g["value"].to_numpy(float)
    design = np.column_stack([np.ones_like(d), d, t, d * t])
    if np.linalg.matrix_rank(design) < 4:
        return {}
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return dict(zip(["coef_intercept", "coef_data", "coef_task", "coef_interaction"], coef))


def combined_grid(df: pd.DataFrame, *, layers: str = "default") -> pd.DataFrame:
    """The ``combined`` data × task grid per cell, seed as the unit.

    Per seed: the OLS fit value ~ 1 + d + t + d·t (needs four cells of full rank) and the corner
    gains over (min d, min t): ``gain_data`` (max d, min t), ``gain_task`` (min d, max t),
    ``gain_both`` (max, max) and ``gain_both_minus_best_single`` (the single factor with the larger
    mean gain). Each is averaged over seeds with a t interval (``_low``/``_high``/``_p``).

    Returns one row per cell with those columns, ``n_seeds``, ``best_single``,
    ``combined_strongest`` (yes/no/inconclusive), ``reason`` and the grid's level counts.
    """
    data = ensure_prepared(df, layers)
    comb = data[data["overlap_kind"] == "combined"]
    if comb.empty:
        return pd.DataFrame()
    axes = [a for a in cell_axes(comb) if a != "overlap_kind"]
    rows = []
    for keys, g in iter_cells(comb, axes):
        d, t = _fractions(g)
        row: dict[str, Any] = {**keys, "n_data_levels": int(np.unique(d).size), "n_task_levels": int(np.unique(t).size)}
        fits = pd.DataFrame([_grid_seed(gs) for _, gs in g.groupby("seed")])
        for c in ("coef_intercept", "coef_data", "coef_task", "coef_interaction"):
            row.update(_summ(c, fits.get(c, [])))
        corners = {
            "none": (d.min(), t.min()),
            "data": (d.max(), t.min()),
            "task": (d.min(), t.max()),
            "both": (d.max(), t.max()),
        }
        table = _corner_means(g, corners).dropna()
        gains = {k: table[k] - table["none"] for k in ("data", "task", "both")}
        best = "data" if gains["data"].mean() >= gains["task"].mean() else "task"
        gains["both_minus_best_single"] = table["both"] - table[best]
        for k, v in gains.items():
            row.update(_summ(f"gain_{k}", v))
        row["best_single"] = best
        row["n_seeds"] = len(table)
        verdict = inference.decide(
            row["gain_both_minus_best_single"],
            row["gain_both_minus_best_single_low"],
            row["gain_both_minus_best_single_high"],
            row["gain_both_minus_best_single_p"],
        )
        row["combined_strongest"] = {"rises": "yes", "falls": "no"}.get(verdict, "inconclusive")
        row["reason"] = inference.t_summary(gains["both"].to_numpy())["reason"]
        if row["n_data_levels"] < 2 or row["n_task_levels"] < 2:
            row["reason"] = "the grid has one level of a factor: no corner comparison"
        rows.append(row)
    return pd.DataFrame(rows)
