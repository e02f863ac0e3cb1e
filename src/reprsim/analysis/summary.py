"""The numbers behind ``summary.json``: every analysis of a results table, JSON-ready.

Bad input never raises here: a table without the contract columns, or with no usable row, gives a
summary with ``status: "not analysed"`` and the reason in ``problems``; a cell that cannot be
tested (one fraction level, one seed, all values equal) carries its ``reason``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprsim.analysis import inference, stats
from reprsim.analysis.agreement import measure_agreement, significance_summary
from reprsim.analysis.cells import PrimaryFamily, group_keys
from reprsim.analysis.claims import build_claims
from reprsim.analysis.consequences import (
    HEADLINE_CONSEQUENCES,
    consequence_by_fraction,
    consequence_effects,
    similarity_links,
)
from reprsim.analysis.effects import (
    DEFAULT_N_PERM,
    SLOPE_METHOD,
    fraction_means,
    overlap_effects,
)
from reprsim.analysis.factorial import (
    INTERACTION_METHOD,
    combined_grid,
    factorial_effects,
)
from reprsim.analysis.families import GROUPING, family_table
from reprsim.analysis.identification import IDENTIFICATION_METHOD, similarity_transfer
from reprsim.analysis.load import BEST_SELECTED, BEST_WITH_NULL, behavioural_rows, cell_axes, missing_columns, prepare
from reprsim.analysis.secondary import (
    BEHAVIOURAL_METHOD,
    CALIBRATED_METHOD,
    behavioural_effects,
    calibrated_effects,
)
from reprsim.results import CONTRACT_COLUMNS

__all__ = ["accuracy_table", "jsonable", "statistics_text", "summarize"]


def jsonable(obj: Any) -> Any:
    """Convert numpy/pandas scalars and containers to JSON types; NaN/inf become ``None``."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, pd.DataFrame):
        return jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if obj is None or isinstance(obj, (int, str)):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)


def accuracy_table(data: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy of both models per (source, model, overlap kind) and fraction, over seeds."""
    keys = group_keys(data)
    cols = [*keys, "x", "acc_mean", "acc_sd", "n_seeds"]
    if not {"acc_a", "acc_b"} <= set(data.columns):
        return pd.DataFrame(columns=cols)
    units = data.drop_duplicates("unit_id")
    units = units[np.isfinite(units["x"])]
    acc = units[["acc_a", "acc_b"]].apply(pd.to_numeric, errors="coerce").mean(axis=1)
    per_seed = units.assign(acc=acc).groupby([*keys, "x", "seed"])["acc"].mean().reset_index()
    out = per_seed.groupby([*keys, "x"]).agg(acc_mean=("acc", "mean"), acc_sd=("acc", "std"), n_seeds=("acc", "size"))
    return out.reset_index()[cols]


def _selection_text(selections: set[str]) -> dict[str, str]:
    """What the report's Methods say about a best-layer-pair selection (nothing without one)."""
    out = {}
    if BEST_WITH_NULL in selections:
        out["best_layers"] = (
            "the best layer pair's value is the maximum over layer pairs, and its p-value and "
            "calibrated score come from the null of that maximum (the same row permutation of "
            "every layer of B before taking the maximum; Algorithm 2), so they account for the "
            "selection"
        )
    if BEST_SELECTED in selections:
        out["best_layers_selected"] = (
            "where the table has no best-pair rows with their own null, the best layer "
            "pair is the maximum picked by the analysis: a selected maximum, biased "
            "upwards, whose per-row p-value and calibrated score do not account for the selection (run the "
            "sweep with measures.calibrate: K for one that does)"
        )
    return out


def statistics_text(primary: PrimaryFamily, n_family: int, n_boot: int, n_perm: int) -> dict[str, str]:
    """How every number was computed, one entry per statistic (shown in the report's Methods)."""
    return {
        "unit": "the seed: every interval is over seeds (rows of one seed share model A)",
        "effect": SLOPE_METHOD + "; with fewer than 3 seeds no interval is given",
        "correction": f"Holm over the primary family ({primary.describe()}, at each model's headline layer pair; "
        f"{n_family} tests); a primary interval is also given at the level of its Holm step (adjusted), next to the "
        "unadjusted 95% interval; all other cells are exploratory (unadjusted p and interval)",
        "verdict": "rises / falls when the (Holm-adjusted, for primary tests) p < 0.05 and the (adjusted) interval "
        'excludes 0; otherwise inconclusive — which is not "no effect": the interval bounds the effect',
        "fit_range": "a fixed-composition class subset is fitted over the fractions at which its classes keep their "
        "role (ood_one_fixed: fractions < 1; common_fixed: fractions > 0)",
        "effect_sd": "mean per-seed slope / between-seed SD at the lowest fraction",
        "r2": "in-sample R² of the pooled OLS fit (the paper's)",
        "spearman": f"Spearman ρ, percentile bootstrap over seeds ({n_boot} resamples; no interval with fewer than "
        f"{inference.MIN_SEEDS_FOR_BOOTSTRAP} seeds)",
        "mutual_information": "sklearn mutual_info_regression(X = fraction, n_neighbors=3, random_state=42), nats; "
        f"null: {n_perm} permutations of the fraction labels within each seed (mi_p, 95th percentile mi_null95)",
        "factorial": INTERACTION_METHOD + "; Holm over the primary family's interaction tests",
        "consequences": "consequence on fraction per (source, model, overlap kind), the same per-seed slope; "
        f"Holm over {', '.join(HEADLINE_CONSEQUENCES)} (both directions); controls exploratory",
        "links": "similarity vs transfer per cell, pooled over fractions: Spearman ρ (bootstrap over seeds); "
        "descriptive only, since overlap drives both",
        "similarity_transfer": IDENTIFICATION_METHOD + "; Holm over the primary measures × fixed probe sets (transfer "
        "A→B); a cause whose first stage (its effect on similarity) is inconclusive identifies nothing",
    }


def _not_analysed(reason: str, df: pd.DataFrame | None) -> dict[str, Any]:
    return jsonable(
        {
            "status": "not analysed",
            "problems": [{"scope": "table", "reason": reason}],
            "n_rows": 0 if df is None else len(df),
            "n_units": 0,
            "overlap_effects": [],
            "combined": {"interaction": [], "grid": []},
            "claims": [],
            "headline": [],
        }
    )


def _cell_problems(frames: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    out = []
    for name, frame in frames.items():
        if frame.empty or "reason" not in frame:
            continue
        with_reason = frame[frame["reason"].notna() & (frame["reason"].astype(str) != "")]
        for reason, g in with_reason.groupby("reason", sort=False):
            out.append({"scope": name, "reason": str(reason), "n_cells": len(g)})
    return out


def summarize(
    df: pd.DataFrame,
    *,
    primary: PrimaryFamily | None = None,
    layers: str = "default",
    n_boot: int = stats.DEFAULT_N_BOOT,
    n_perm: int = DEFAULT_N_PERM,
    seed: int = stats.DEFAULT_SEED,
) -> dict[str, Any]:
    """All analyses of a results table, JSON-ready (NaN → ``None``).

    Returns
    -------
    dict with ``status`` ("ok" or "not analysed"), ``problems`` (table-level reasons and counts of
    cells that could not be tested, by reason), ``cell_axes``, ``layer_selection``, ``n_rows``,
    ``n_units``, ``n_seeds``, ``overlap_kinds``, ``measures``, ``probe_sets``, ``analysis``
    (primary family, correction, alpha, resample counts), ``statistics`` (method text),
    ``claims`` and ``headline`` (one-line answers), ``overlap_effects`` (one record per cell),
    ``fraction_means``, ``combined`` (``interaction``: factorial records; ``grid``: the combined
    grid), ``consequences`` (``effects``, ``by_fraction``, ``links``), ``families`` (the
    cross-family table with its ``grouping``), ``agreement``, ``significance``, ``accuracy`` and,
    only when the table has them, ``calibrated_effects`` (rows with a ``calibrated`` column) and
    ``behavioural_effects`` (rows on the layer ``output``), one record per cell as
    ``overlap_effects`` (:mod:`reprsim.analysis.secondary`). Behavioural rows enter no other analysis.
    """
    primary = primary or PrimaryFamily()
    missing = missing_columns(df)
    if missing:
        return _not_analysed(
            f"the table lacks the required column(s) {', '.join(missing)}; a results table needs "
            f"{', '.join(CONTRACT_COLUMNS)}",
            df,
        )
    data = prepare(df, layers)
    behaviour = behavioural_rows(data)
    outputs, data = data[behaviour], data[~behaviour]
    if data.empty:
        return _not_analysed(
            "no usable rows: every row is from a failed unit, an empty probe set, or has a non-finite value", df
        )
    effects = overlap_effects(data, primary=primary, n_boot=n_boot, n_perm=n_perm, seed=seed)
    secondary = {
        "calibrated_effects": calibrated_effects(data, primary=primary, n_boot=n_boot, n_perm=n_perm, seed=seed),
        "behavioural_effects": behavioural_effects(outputs, primary=primary, n_boot=n_boot, n_perm=n_perm, seed=seed),
    }
    secondary = {k: v for k, v in secondary.items() if not v.empty}
    factorial = factorial_effects(data, primary=primary)
    grid = combined_grid(data)
    cons = consequence_effects(data)
    links = similarity_links(data, n_boot=n_boot, seed=seed)
    transfer = similarity_transfer(data, primary=primary)
    claims = build_claims(effects, factorial, cons, transfer)
    problems = []
    absent = [m for m in primary.measures if m not in set(data["measure"])]
    if absent:
        problems.append({"scope": "table", "reason": f"primary measure(s) {', '.join(absent)} not in the table"})
    if not isinstance(primary.probe_sets, str):
        absent = [p for p in primary.probe_sets if p not in set(data["probe_set"])]
        if absent:
            problems.append({"scope": "table", "reason": f"primary probe set(s) {', '.join(absent)} not in the table"})
    if effects.empty:
        problems.append(
            {
                "scope": "table",
                "reason": "no unit has an overlap fraction its kind varies "
                "(overlap_kind must be data, task, attribute, combined or factorial)",
            }
        )
    problems += _cell_problems(
        {
            "overlap_effects": effects,
            **secondary,
            "combined.interaction": factorial,
            "consequences": cons,
            "links": links,
            "similarity_transfer": transfer,
        }
    )
    n_family = int(np.isfinite(effects.loc[effects["family"] == "primary", "p"]).sum()) if not effects.empty else 0
    agreement = measure_agreement(data)
    fam = family_table(effects, primary.measures)
    summary = {
        "status": "ok",
        "problems": problems,
        "cell_axes": cell_axes(data),
        "layer_selection": sorted(data["layer_selection"].astype(str).unique()),
        "n_rows": len(data),
        "n_units": int(data["unit_id"].nunique()),
        "n_seeds": int(data["seed"].nunique()),
        "overlap_kinds": sorted(data["overlap_kind"].astype(str).unique()),
        "measures": sorted(data["measure"].astype(str).unique()),
        "probe_sets": sorted(data["probe_set"].astype(str).unique()),
        "analysis": {
            "primary": primary.as_dict(),
            "family_size": n_family,
            "correction": "Holm",
            "alpha": inference.ALPHA,
            "level": inference.LEVEL,
            "n_boot": n_boot,
            "n_permutations": n_perm,
            "resampling_seed": seed,
            "slope_method": SLOPE_METHOD,
        },
        "statistics": statistics_text(primary, n_family, n_boot, n_perm)
        | ({"calibrated": CALIBRATED_METHOD} if "calibrated_effects" in secondary else {})
        | ({"behavioural": BEHAVIOURAL_METHOD} if "behavioural_effects" in secondary else {})
        | _selection_text(set(data["layer_selection"].astype(str))),
        "claims": claims,
        "headline": [c["summary"] for c in claims],
        "overlap_effects": effects,
        "fraction_means": fraction_means(data),
        "combined": {"interaction": factorial, "grid": grid},
        "consequences": {"effects": cons, "by_fraction": consequence_by_fraction(data), "links": links},
        "similarity_transfer": transfer,
        "families": {"grouping": GROUPING, "rows": fam},
        "agreement": {str(k): {str(c): v for c, v in row.items()} for k, row in agreement.iterrows()},
        "significance": significance_summary(data),
        "accuracy": accuracy_table(data),
        **secondary,
    }
    return jsonable(summary)
