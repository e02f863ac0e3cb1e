"""The report's tables, built from ``summary.json`` records: display strings and a verdict class per row.

One compact table per claim group (rows: measure × probe set), the factorial and grid tables, the
consequence tables, the cross-family table, the cells that could not be tested, and the long
per-cell tables that the report folds away.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprsim.analysis.cells import GROUP_AXES, VARIES, finite
from reprsim.analysis.document import Table
from reprsim.analysis.text import (
    consequence_label,
    fmt,
    fmt_ci,
    fmt_p,
    design_label,
    measure_label,
    similarity_direction,
)

__all__ = [
    "calibrated_table",
    "cell_table",
    "design_groups",
    "consequence_tables",
    "effect_table",
    "factorial_table",
    "family_table",
    "grid_table",
    "link_table",
    "match",
    "problems_table",
]

_CLASS = {
    "more similar": "more",
    "less similar": "less",
    "inconclusive": "inconclusive",
    "positive": "more",
    "negative": "less",
    "rises": "more",
    "falls": "less",
}


def match(records: list[dict[str, Any]] | pd.DataFrame, keys: dict[str, Any]) -> pd.DataFrame:
    """The records whose columns equal ``keys`` (keys absent from the records are ignored)."""
    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(records)
    if frame.empty:
        return frame
    m = np.ones(len(frame), dtype=bool)
    for k, v in keys.items():
        if k in frame.columns:
            m &= frame[k].astype(str).to_numpy() == str(v)
    return frame[m]


VARIES_MARK = "†"
VARIES_NOTE = f"{VARIES_MARK} class composition varies with the overlap fraction (reported, not headlined)."


def _probe_label(r: pd.Series) -> str:
    label = str(r["probe_set"]) + (f" {VARIES_MARK}" if r.get("composition") == VARIES else "")
    classes = r.get("probe_classes") or ""
    return f"{label} ({classes} classes)" if classes else label


def _verdict(r: pd.Series) -> str:
    note = r.get("verdict_note") or ""
    return f"{r['verdict']} — {note}" if note else str(r["verdict"])


def _mi(r: pd.Series) -> str:
    if not finite(r.get("mutual_information")):
        return "n/a"
    if not finite(r.get("mi_null95")):
        return f"{fmt(r['mutual_information'])} (no null)"
    return f"{fmt(r['mutual_information'])} (null {fmt(r['mi_null95'])}, p {fmt_p(r['mi_p'])})"


def _effect(r: pd.Series) -> str:
    if not finite(r.get("slope")):
        return "n/a"
    return fmt_ci(r["slope"], r["slope_low"], r["slope_high"])


def _effect_adjusted(r: pd.Series) -> str:
    """The Holm-adjusted interval of a primary cell (at the level of its Holm step), else a dash."""
    if r.get("family") != "primary" or not finite(r.get("slope_low_adjusted")):
        return "—"
    return fmt_ci(r["slope"], r["slope_low_adjusted"], r["slope_high_adjusted"])


def _fit(r: pd.Series) -> str:
    """The fractions a cell's slope was fitted on, when they are not all of the design's."""
    note = r.get("fit_note") or ""
    return f" [{fmt(r['x_min'])}–{fmt(r['x_max'])}]" if note else ""


def _order(rows: pd.DataFrame, measures: list[str], probes: list[str]) -> pd.DataFrame:
    mo = {m: i for i, m in enumerate(measures)}
    po = {p: i for i, p in enumerate(probes)}
    return rows.assign(_m=rows["measure"].map(mo).fillna(99), _p=rows["probe_set"].map(po).fillna(99)).sort_values(
        ["_m", "_p", "measure", "probe_set"], kind="stable"
    )


def effect_table(rows: pd.DataFrame, measures: list[str], probes: list[str]) -> Table:
    """The compact claim table: one row per measure × probe set (headline probe sets first)."""
    all_primary = bool((rows["family"] == "primary").all())
    header = [
        "Measure",
        "Probe set",
        "Effect per unit overlap [95% CI]",
        "Holm-adjusted CI",
        "Normalised",
        "Verdict",
        "p (Holm)" if all_primary else "p",
        "R²",
        "MI, nats (null 95%, p)",
        "Seeds",
    ]
    body, classes = [], []
    for _, r in _order(rows, measures, probes).iterrows():
        primary = r["family"] == "primary"
        p = fmt_p(r["p_adjusted"] if primary else r["p"])
        if not all_primary:
            p += " (Holm)" if primary else " (unadj.)"
        body.append(
            [
                measure_label(r["measure"]),
                _probe_label(r) + _fit(r),
                _effect(r),
                _effect_adjusted(r),
                f"{fmt(r['effect_sd'], 1)} SD" if finite(r.get("effect_sd")) else "n/a",
                _verdict(r),
                p,
                fmt(r["r2"]),
                _mi(r),
                str(int(r["n_seeds"])) if finite(r.get("n_seeds")) else "0",
            ]
        )
        classes.append(_CLASS[similarity_direction(r["verdict"], bool(r["distance"]))])
    notes = [VARIES_NOTE] if (rows["composition"] == VARIES).any() else []
    notes += sorted({f"[a–b]: {n}" for n in rows.get("fit_note", pd.Series(dtype=str)).dropna() if n})
    return Table(header, body, classes, note=" ".join(notes))


def design_groups(frame: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """``(keys, rows)`` per design group and layer pair of an effects frame (run, source, model,
    overlap kind, design options, layer pair: the axes nothing is pooled across), in frame order."""
    if frame.empty:
        return []
    keys = [k for k in (*GROUP_AXES, "layer_a", "layer_b") if k in frame.columns]
    return [
        (dict(zip(keys, k if isinstance(k, tuple) else (k,))), g)
        for k, g in frame.groupby(keys, sort=False, dropna=False)
    ]


def calibrated_table(raw: pd.DataFrame, calibrated: pd.DataFrame, measures: list[str]) -> Table:
    """One design group's calibrated effects beside its raw ones: one row per measure × probe set
    of ``calibrated`` (raw effect and verdict from ``raw``, the same cell on ``value``)."""
    header = [
        "Measure",
        "Probe set",
        "Raw effect [95% CI]",
        "Raw verdict",
        "Calibrated effect [95% CI]",
        "Calibrated verdict",
        "p (calibrated)",
        "Calibrated at min → max",
        "Seeds",
    ]
    index = {(r["measure"], r["probe_set"]): r for _, r in raw.iterrows()} if not raw.empty else {}
    body, classes = [], []
    for _, c in _order(calibrated, measures, sorted(set(calibrated["probe_set"]))).iterrows():
        r = index.get((c["measure"], c["probe_set"]))
        primary = c["family"] == "primary"
        body.append(
            [
                measure_label(c["measure"]),
                _probe_label(c),
                _effect(r) if r is not None else "n/a",
                _verdict(r) if r is not None else "n/a",
                _effect(c),
                _verdict(c),
                fmt_p(c["p_adjusted"] if primary else c["p"]) + (" (Holm)" if primary else " (unadj.)"),
                f"{fmt(c['value_at_min'], 3)} → {fmt(c['value_at_max'], 3)}",
                str(int(c["n_seeds"])) if finite(c.get("n_seeds")) else "0",
            ]
        )
        classes.append(_CLASS[similarity_direction(c["verdict"], False)])
    return Table(header, body, classes, note=VARIES_NOTE if (calibrated["composition"] == VARIES).any() else "")


def cell_table(rows: pd.DataFrame) -> Table:
    """Every cell of a group (all measures, probe sets and layer pairs), for the folded details."""
    header = [
        "Measure",
        "Probe set",
        "Layers",
        "Family",
        "Effect [95% CI]",
        "Verdict",
        "p",
        "p (Holm)",
        "R²",
        "ρ [95% CI]",
        "MI (null 95%)",
        "Mean at min → max",
        "Seeds",
    ]
    body, classes = [], []
    for _, r in rows.sort_values(["measure", "probe_set", "layer_a", "layer_b"]).iterrows():
        body.append(
            [
                measure_label(r["measure"]),
                _probe_label(r),
                f"{r['layer_a']} × {r['layer_b']}",
                r["family"],
                _effect(r),
                _verdict(r),
                fmt_p(r["p"]),
                fmt_p(r["p_adjusted"]),
                fmt(r["r2"]),
                fmt_ci(r["spearman"], r["spearman_low"], r["spearman_high"], 2),
                _mi(r),
                f"{fmt(r['value_at_min'], 3)} → {fmt(r['value_at_max'], 3)}",
                str(int(r["n_seeds"])),
            ]
        )
        classes.append(_CLASS[similarity_direction(r["verdict"], bool(r["distance"]))])
    return Table(header, body, classes, left=4, note=VARIES_NOTE if (rows["composition"] == VARIES).any() else "")


def _ci(r: pd.Series, prefix: str) -> str:
    return fmt_ci(r[prefix], r[f"{prefix}_low"], r[f"{prefix}_high"])


def factorial_table(rows: pd.DataFrame, measures: list[str]) -> Table:
    """Factorial design: the interaction with its verdict next to the main effects, per measure × probe set."""
    header = [
        "Measure",
        "Probe set",
        "Interaction [95% CI]",
        "Verdict",
        "p (Holm)",
        "Data main effect",
        "Task main effect",
        "Both − best single",
        "Combined strongest?",
        "Seeds",
    ]
    body, classes = [], []
    for _, r in _order(rows, measures, []).iterrows():
        p = r["p_adjusted"] if r["family"] == "primary" else r["p"]
        verdict = r["verdict"] + (f" — {r['reason']}" if isinstance(r.get("reason"), str) and r["reason"] else "")
        body.append(
            [
                measure_label(r["measure"]),
                str(r["probe_set"]),
                fmt_ci(r["estimate"], r["low"], r["high"]),
                verdict,
                fmt_p(p) + ("" if r["family"] == "primary" else " (unadj.)"),
                _ci(r, "data_main"),
                _ci(r, "task_main"),
                f"{_ci(r, 'both_minus_best_single')} (vs {r['best_single']})",
                r["combined_strongest"],
                str(int(r["n_seeds"])),
            ]
        )
        classes.append(_CLASS.get(r["verdict"], "inconclusive"))
    return Table(header, body, classes)


def grid_table(rows: pd.DataFrame, measures: list[str]) -> Table:
    """The combined data × task grid: corner gains and the per-seed OLS interaction coefficient."""
    header = [
        "Measure",
        "Probe set",
        "Gain: data alone",
        "Gain: task alone",
        "Gain: both",
        "Both − best single",
        "Verdict (combined strongest?)",
        "Interaction coefficient",
        "Seeds",
    ]
    body, classes = [], []
    for _, r in _order(rows, measures, []).iterrows():
        body.append(
            [
                measure_label(r["measure"]),
                str(r["probe_set"]),
                _ci(r, "gain_data"),
                _ci(r, "gain_task"),
                _ci(r, "gain_both"),
                f"{_ci(r, 'gain_both_minus_best_single')} (vs {r['best_single']})",
                r["combined_strongest"],
                _ci(r, "coef_interaction"),
                str(int(r["n_seeds"])),
            ]
        )
        classes.append({"yes": "more", "no": "less"}.get(r["combined_strongest"], "inconclusive"))
    return Table(header, body, classes)


#: Consequences shown per fraction, the control (white-box success) first.
_FRACTION_ORDER = (
    "whitebox_asr",
    "transfer_asr",
    "transfer_asr_given_source_fooled",
    "transfer_asr_conditional",
    "jailbreak_whitebox_asr",
    "jailbreak_transfer_asr",
    "jailbreak_baseline_asr",
    "jailbreak_random_suffix_asr",
)


def consequence_tables(effects: pd.DataFrame, by_fraction: pd.DataFrame) -> list[Table]:
    """For one (source, model, kind): white-box next to transfer success per fraction, then each
    consequence's effect of the fraction with its verdict."""
    tables = []
    if not by_fraction.empty:
        present = set(by_fraction["consequence"])
        cols = [f"{base}{d}" for d in ("", "_ba") for base in _FRACTION_ORDER if f"{base}{d}" in present]
        pivot = {c: by_fraction[by_fraction["consequence"] == c].set_index("x") for c in cols}
        levels = sorted(set(by_fraction["x"]))
        header = ["Fraction"] + [consequence_label(c) for c in cols] + ["Seeds"]
        body = []
        for x in levels:
            cells = [f"{x:g}"]
            for c in cols:
                p = pivot[c]
                cells.append(f"{fmt(p.loc[x, 'mean'])} ± {fmt(p.loc[x, 'sd'])}" if x in p.index else "n/a")
            n = max(int(pivot[c].loc[x, "n_seeds"]) for c in cols if x in pivot[c].index)
            body.append(cells + [str(n)])
        tables.append(Table(header, body, caption="Mean ± between-seed SD per overlap fraction", left=1))
    if not effects.empty:
        header = [
            "Consequence",
            "Family",
            "Mean at min → max",
            "Effect per unit overlap [95% CI]",
            "Verdict",
            "p",
            "Seeds",
        ]
        body, classes = [], []
        for _, r in effects.iterrows():
            p = r["p_adjusted"] if r["family"] == "primary" else r["p"]
            verdict = r["verdict"] + (f" — {r['reason']}" if isinstance(r.get("reason"), str) and r["reason"] else "")
            body.append(
                [
                    consequence_label(r["consequence"]),
                    r["family"],
                    f"{fmt(r['value_at_min'])} → {fmt(r['value_at_max'])}",
                    _effect(r),
                    verdict,
                    fmt_p(p) + (" (Holm)" if r["family"] == "primary" else " (unadj.)"),
                    str(int(r["n_seeds"])),
                ]
            )
            classes.append(_CLASS.get(r["verdict"], "inconclusive"))
        tables.append(Table(header, body, classes, caption="Effect of the overlap fraction on each consequence"))
    return tables


def link_table(rows: pd.DataFrame, measures: list[str], probes: list[str]) -> Table:
    """Similarity vs transfer pooled over fractions (descriptive: overlap drives both)."""
    header = ["Measure", "Probe set", "Consequence", "Pooled ρ [95% CI]", "Pearson r", "Pairs", "Seeds"]
    body = []
    for _, r in _order(rows, measures, probes).iterrows():
        body.append(
            [
                measure_label(r["measure"]),
                str(r["probe_set"]),
                consequence_label(r["consequence"]),
                fmt_ci(r["spearman"], r["spearman_low"], r["spearman_high"], 2),
                fmt(r["pearson"]),
                str(int(r["n"])),
                str(int(r["n_seeds"])),
            ]
        )
    return Table(header, body, ["inconclusive"] * len(body), left=3)


def similarity_transfer_table(rows: pd.DataFrame) -> Table:
    """Transfer per unit of similarity through each cause, with each cause's first stage."""
    header = [
        "Measure",
        "Probe set",
        "Cause",
        "First stage: Δsimilarity per unit [95% CI]",
        "Δtransfer per unit similarity [95% CI]",
        "Holm-adjusted CI",
        "Verdict",
        "Seeds",
    ]
    body, classes = [], []
    for _, r in rows.iterrows():
        cause = r["compared"] if r["cause"] == "difference" else r["cause"]
        first = (
            "" if r["cause"] == "difference" else fmt_ci(r["first_stage"], r["first_stage_low"], r["first_stage_high"])
        )
        adjusted = (
            fmt_ci(r["estimate"], r["low_adjusted"], r["high_adjusted"])
            if r.get("family") == "primary" and "low_adjusted" in r
            else "(exploratory)"
        )
        verdict = r["verdict"] + (f" — {r['note']}" if isinstance(r.get("note"), str) and r["note"] else "")
        body.append(
            [
                measure_label(r["measure"]),
                str(r["probe_set"]),
                str(cause).replace("_", " "),
                first,
                fmt_ci(r["estimate"], r["low"], r["high"]),
                adjusted,
                verdict,
                str(int(r["n_seeds"])),
            ]
        )
        classes.append({"positive": "rises", "negative": "falls", "differs": "rises"}.get(r["verdict"], "inconclusive"))
    return Table(
        header,
        body,
        classes,
        left=3,
        caption="Per seed: slope of transfer on the cause ÷ slope of similarity on it; mean over seeds",
    )


def family_table(rows: list[dict[str, Any]]) -> Table:
    """The paper's cross-family table (mean MI and R² per overlap group)."""
    header = [
        "Overlap group",
        "Measure",
        "Mean MI, nats",
        "Mean MI null 95%",
        "MI ceiling ln(levels)",
        "Mean R²",
        "Cells",
        "Models",
        "Fraction levels",
    ]
    body = [
        [
            r["group"],
            measure_label(r["measure"]),
            fmt(r["mean_mi"]),
            fmt(r["mean_mi_null95"]),
            fmt(r["mi_ceiling"]),
            fmt(r["mean_r2"]),
            str(r["n_cells"]),
            str(r["n_models"]),
            str(r["n_levels"]),
        ]
        for r in rows
    ]
    return Table(header, body)


def problems_table(problems: list[dict[str, Any]]) -> Table:
    """What could not be analysed, and why."""
    body = [
        [str(p.get("scope", "")), str(p.get("reason", "")), str(p.get("n_cells", "")) if p.get("n_cells") else ""]
        for p in problems
    ]
    return Table(["Where", "Reason", "Cells"], body)


def kind_title(keys: dict[str, Any]) -> str:
    """Sub-heading of a claim group, e.g. ``"Data overlap — fashion_mnist · mlp (penultimate)"``."""
    where = " · ".join(str(keys[k]) for k in ("run", "source", "model") if keys.get(k) not in (None, ""))
    la, lb = keys.get("layer_a"), keys.get("layer_b")
    layers = f" ({la})" if la == lb else f" ({la} × {lb})"
    return f"{design_label(keys).capitalize()} — {where}{layers if la not in (None, '') else ''}"
