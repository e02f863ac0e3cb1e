"""The numbers behind ``summary.json``: every analysis plus one plain sentence per finding.

Sentences are honest about uncertainty: a measure "rises" with overlap only when the slope's 95%
interval lies above 0; otherwise the sentence says it does not rise and why.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from reprsim.analysis import stats
from reprsim.analysis.agreement import measure_agreement, significance_summary
from reprsim.analysis.consequences import consequence_links
from reprsim.analysis.effects import combined_effects, ensure_prepared, fraction_means, overlap_effects

__all__ = ["summarize", "measure_label", "kind_label", "fmt_ci", "headline_probe_set", "headline_probe_sets", "jsonable"]

_MEASURE_LABELS = {
    "cka": "CKA", "unbiased_cka": "unbiased CKA", "linear_cka": "linear CKA", "rbf_cka": "RBF CKA",
    "mutual_knn": "mutual kNN", "cknna": "CKNNA", "cycle_knn": "cycle kNN", "lcs_knn": "LCS kNN",
    "edit_distance_knn": "edit-distance kNN", "svcca": "SVCCA", "cca": "CCA", "procrustes": "Procrustes",
}  # fmt: skip
_KIND_LABELS = {
    "data": "data overlap",
    "task": "task (class) overlap",
    "attribute": "task-only (attribute) overlap",
    "combined": "combined data and task overlap (grid diagonal)",
}
_CONSEQUENCE_LABELS = {
    "transfer_asr": "Transfer attack success",
    "transfer_asr_conditional": "Conditional transfer attack success",
    "whitebox_asr": "White-box attack success (control)",
    "victim_clean_error": "Victim clean error (control)",
    "jailbreak_transfer_asr": "Jailbreak transfer success",
    "jailbreak_whitebox_asr": "Jailbreak white-box success",
    "jailbreak_baseline_asr": "Jailbreak baseline success",
    "jailbreak_random_suffix_asr": "Jailbreak random-suffix success",
}
_HEADLINE_CONSEQUENCES = ("transfer_asr", "jailbreak_transfer_asr")


def measure_label(name: str) -> str:
    """Display name of a measure (``"cka"`` → ``"CKA"``); unknown names are returned unchanged."""
    return _MEASURE_LABELS.get(str(name), str(name))


def kind_label(kind: str) -> str:
    """Display phrase of an overlap kind (``"data"`` → ``"data overlap"``)."""
    return _KIND_LABELS.get(str(kind), f"{kind} overlap")


def consequence_label(name: str) -> str:
    """Display name of a consequence column; ``_ba`` columns are labelled as the reverse direction."""
    base = name[:-3] if name.endswith("_ba") else name
    label = _CONSEQUENCE_LABELS.get(base, base)
    return f"{label} (B→A)" if name.endswith("_ba") else label


def _decimals(*values: float) -> int:
    """Decimals that show an interval's width (last two values) to ~2 digits: 2 to 3 decimals,
    more only when every value is below 0.01 in magnitude."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return 2
    width = abs(finite[-1] - finite[-2]) if len(finite) >= 2 else 0.0
    biggest = max(abs(v) for v in finite)
    ref = width if width > 0 else biggest
    if ref <= 0:
        return 2
    d = max(2, -math.floor(math.log10(ref)) + 1)
    cap = 3 if biggest >= 0.01 else 6
    return int(min(cap, d))


def _f(v: float, d: int) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{d}f}"


def fmt_ci(est: float, low: float, high: float, decimals: int | None = None) -> str:
    """``"0.08 [0.06, 0.10]"`` with enough decimals to show the interval's width (at least 2)."""
    d = _decimals(est, low, high) if decimals is None else decimals
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{_f(est, d)} [CI n/a]"
    return f"{_f(est, d)} [{_f(low, d)}, {_f(high, d)}]"


def headline_probe_set(effects: pd.DataFrame, kind: str) -> str | None:
    """The probe set a kind's headline finding uses: ``ood_one`` for class-split task overlap (the
    paper's choice: the shared classes confound it), otherwise the in-distribution one."""
    sub = effects[effects["overlap_kind"] == kind]
    if sub.empty:
        return None
    prefer = ["ood_one", "id", "ood"] if kind == "task" else ["id", "common", "ood"]
    for role in prefer:
        hit = sub[sub["probe_role"] == role]
        if not hit.empty:
            return str(hit["probe_set"].iloc[0])
    return str(sub["probe_set"].iloc[0])


def headline_probe_sets(effects: pd.DataFrame, kind: str) -> list[str]:
    """The probe sets a kind's headline findings use: :func:`headline_probe_set` plus every fully
    out-of-distribution probe set (role ``ood``), which no class split confounds."""
    main = headline_probe_set(effects, kind)
    sub = effects[(effects["overlap_kind"] == kind) & (effects["probe_role"] == "ood")]
    return ([main] if main is not None else []) + sorted(set(sub["probe_set"].astype(str)) - {main})


def _trend(low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undetermined"
    return "rises" if low > 0 else ("falls" if high < 0 else "flat")


def _is_distance(measure: str) -> bool:
    from reprsim.metrics import MEASURES

    return measure in MEASURES and MEASURES[measure].kind == "distance"


def _effect_sentence(r: pd.Series) -> tuple[str, str]:
    m, kind = measure_label(r["measure"]), kind_label(r["overlap_kind"])
    where = f"on probe set '{r['probe_set']}'" + (f" ({r['probe_role']})" if r["probe_role"] else "")
    trend = _trend(r["slope_low"], r["slope_high"])
    verb = {
        "rises": "rises",
        "falls": "does not rise (it falls)",
        "flat": "does not rise (the slope's 95% CI includes 0)",
        "undetermined": "cannot be assessed (too few units or fraction levels)",
    }[trend]
    if _is_distance(r["measure"]) and trend in ("rises", "falls"):
        verb += " (a distance: lower means more similar)"
    d = _decimals(r["value_at_min"], r["value_at_max"], r["value_at_max"] - r["value_at_min"])
    text = (
        f"{m} {verb} with {kind} {where}: slope {fmt_ci(r['slope'], r['slope_low'], r['slope_high'])}, "
        f"R² {_f(r['r2'], 2)}, ρ {fmt_ci(r['spearman'], r['spearman_low'], r['spearman_high'], 2)}, "
        f"MI {_f(r['mutual_information'], 2)} nats; mean {_f(r['value_at_min'], d)} at {r['x_min']:g} → "
        f"{_f(r['value_at_max'], d)} at {r['x_max']:g} (n = {r['n']} pairs, {r['n_seeds']} seeds)."
    )
    return trend, text


def _link_sentence(r: pd.Series) -> tuple[str, str]:
    trend = _trend(r["spearman_low"], r["spearman_high"])
    verb = {"rises": "rises with", "falls": "falls with", "flat": "shows no clear monotone link to",
            "undetermined": "cannot be related to"}[trend]  # fmt: skip
    if r["predictor"] == "overlap":
        what, scope = kind_label(r["overlap_kind"]), ""
    else:
        what = f"{measure_label(r['predictor'])} on probe set '{r['probe_set']}'"
        scope = " (all overlap kinds pooled)" if r["overlap_kind"] == "all" else f" ({kind_label(r['overlap_kind'])})"
    text = (
        f"{consequence_label(r['consequence'])} {verb} {what}{scope}: "
        f"ρ {fmt_ci(r['spearman'], r['spearman_low'], r['spearman_high'], 2)}, "
        f"Pearson r {fmt_ci(r['pearson'], r['pearson_low'], r['pearson_high'], 2)}, "
        f"slope {fmt_ci(r['slope'], r['slope_low'], r['slope_high'])} (n = {r['n']} pairs)."
    )
    return trend, text


def _combined_sentences(comb: dict[str, pd.DataFrame], headline_probes: set[str]) -> list[dict[str, Any]]:
    out = []
    grid = comb["grid"]
    for _, r in grid.iterrows():
        m = measure_label(r["measure"])
        ans = r["combined_strongest"]
        best_single = "data" if r["gain_data"] >= r["gain_task"] else "task"
        lead = {
            "yes": "yes",
            "no": f"no (the {best_single} factor alone is at least as strong)",
            "not distinguishable": "not distinguishable (the difference's 95% CI includes 0)",
            "undetermined": "undetermined (the grid lacks corner cells)",
        }[ans]
        text = (
            f"Does combining data and task overlap give the strongest effect on {m} (probe set '{r['probe_set']}')? "
            f"{lead.capitalize()}: gain over (0, 0) is {fmt_ci(r['gain_both'], r['gain_both_low'], r['gain_both_high'])} "
            f"for both, {fmt_ci(r['gain_data'], r['gain_data_low'], r['gain_data_high'])} for data alone and "
            f"{fmt_ci(r['gain_task'], r['gain_task_low'], r['gain_task_high'])} for task alone; both − best single = "
            f"{fmt_ci(r['gain_both_minus_best_single'], r['gain_both_minus_best_single_low'], r['gain_both_minus_best_single_high'])}"
            f" (same data × task grid, bootstrap over seeds)."
        )
        out.append({"topic": "combined_grid", "measure": r["measure"], "probe_set": r["probe_set"], "answer": ans,
                    "headline": r["probe_set"] in headline_probes, "sentence": text})  # fmt: skip
    for _, r in comb["comparison"].iterrows():
        m = measure_label(r["measure"])
        task_name = "task-only (attribute)" if r["task_only_kind"] == "attribute" else "task (class split)"
        text = (
            f"Across overlap kinds for {m} on probe set '{r['probe_set']}', slope per unit overlap: data-only "
            f"{fmt_ci(r['slope_data'], r['slope_data_low'], r['slope_data_high'])}, {task_name} "
            f"{fmt_ci(r['slope_task_only'], r['slope_task_only_low'], r['slope_task_only_high'])}, combined "
            f"{fmt_ci(r['slope_combined'], r['slope_combined_low'], r['slope_combined_high'])}; combined − best single "
            f"{fmt_ci(r['combined_minus_best_single'], r['diff_low'], r['diff_high'])} → {r['combined_strongest']}"
            f" ({'fair comparison: ' if r['fair'] else 'caution, not a fair comparison: '}{r['fairness_note']})."
        )
        out.append({"topic": "combined_kinds", "measure": r["measure"], "probe_set": r["probe_set"],
                    "answer": r["combined_strongest"], "fair": bool(r["fair"]),
                    "headline": r["probe_set"] in headline_probes, "sentence": text})  # fmt: skip
    return out


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
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if obj is None or isinstance(obj, (int, str)):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)


def accuracy_table(data: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy of both models per overlap kind and fraction (one value per unit)."""
    cols = ["overlap_kind", "x", "acc_mean", "acc_std", "n"]
    if not {"acc_a", "acc_b"} <= set(data.columns):
        return pd.DataFrame(columns=cols)
    units = data.drop_duplicates("unit_id")
    units = units[np.isfinite(units["x"])]
    acc = units[["acc_a", "acc_b"]].apply(pd.to_numeric, errors="coerce").mean(axis=1)
    out = units.assign(acc=acc).groupby(["overlap_kind", "x"]).agg(
        acc_mean=("acc", "mean"), acc_std=("acc", "std"), n=("acc", "size")
    )
    return out.reset_index()[cols]


def summarize(
    df: pd.DataFrame, *, layers: str = "default", n_boot: int = stats.DEFAULT_N_BOOT, seed: int = stats.DEFAULT_SEED
) -> dict[str, Any]:
    """All analyses of a results table, as plain JSON-ready data plus one sentence per finding.

    Returns
    -------
    dict with keys ``layer_selection``, ``n_rows``, ``n_units``, ``overlap_kinds``, ``measures``,
    ``probe_sets``, ``findings`` (list of dicts with ``topic`` — "overlap", "combined_grid",
    "combined_kinds" or "consequence" — the identifying fields, ``trend``/``answer``, ``headline``
    and ``sentence``), ``headline`` (the headline sentences), ``overlap_effects``,
    ``fraction_means``, ``combined`` (``grid``, ``comparison``), ``consequences``, ``agreement``
    (measure → measure → ρ), ``significance``, ``accuracy``. NaN is ``None``.
    """
    data = ensure_prepared(df, layers)
    if data.empty:
        raise ValueError("no usable rows in the results table (all failed, empty probe sets or non-finite values).")
    effects = overlap_effects(data, n_boot=n_boot, seed=seed)
    comb = combined_effects(data, n_boot=n_boot, seed=seed)
    links = consequence_links(data, n_boot=n_boot, seed=seed)
    findings: list[dict[str, Any]] = []
    headline_probes: set[str] = set()
    for kind in effects["overlap_kind"].unique():
        hps = headline_probe_sets(effects, kind)
        for _, r in effects[effects["overlap_kind"] == kind].iterrows():
            trend, text = _effect_sentence(r)
            findings.append({"topic": "overlap", "overlap_kind": kind, "measure": r["measure"],
                             "probe_set": r["probe_set"], "probe_role": r["probe_role"], "trend": trend,
                             "headline": r["probe_set"] in hps, "sentence": text})  # fmt: skip
        if kind != "task" and hps:
            headline_probes.add(hps[0])
    findings += _combined_sentences(comb, headline_probes)
    for _, r in links.iterrows():
        trend, text = _link_sentence(r)
        n_kinds = links.loc[links["consequence"] == r["consequence"], "overlap_kind"].nunique()
        head = r["consequence"] in _HEADLINE_CONSEQUENCES and (
            r["predictor"] == "overlap"
            or (r["probe_set"] in headline_probes and (r["overlap_kind"] == "all" or n_kinds <= 2))
        )
        findings.append({"topic": "consequence", "consequence": r["consequence"], "overlap_kind": r["overlap_kind"],
                         "predictor": r["predictor"], "probe_set": r["probe_set"], "trend": trend,
                         "headline": bool(head), "sentence": text})  # fmt: skip
    agreement = measure_agreement(data)
    selections = sorted(data["layer_selection"].astype(str).unique())
    summary = {
        "layer_selection": selections,
        "n_rows": int(len(data)),
        "n_units": int(data["unit_id"].nunique()),
        "overlap_kinds": sorted(data["overlap_kind"].astype(str).unique()),
        "measures": sorted(data["measure"].astype(str).unique()),
        "probe_sets": sorted(data["probe_set"].astype(str).unique()),
        "findings": findings,
        "headline": [f["sentence"] for f in findings if f["headline"]],
        "overlap_effects": effects,
        "fraction_means": fraction_means(data),
        "combined": {"grid": comb["grid"], "comparison": comb["comparison"]},
        "consequences": links,
        "agreement": {str(k): {str(c): v for c, v in row.items()} for k, row in agreement.iterrows()},
        "significance": significance_summary(data),
        "accuracy": accuracy_table(data),
        "statistics": {
            "slope_ci": "OLS, 95% t interval (n - 2 df); units treated as independent",
            "correlation_ci": f"percentile bootstrap over seeds, {n_boot} resamples, seed {seed}",
            "mutual_information": "sklearn mutual_info_regression(X=fraction (N×1), n_neighbors=3, random_state=42), nats",
            "significance": "share of pairs with permutation p < 0.05, where the runner computed p-values",
        },
    }
    return jsonable(summary)
