"""The findings of a run, as Markdown: what ``reprsim report DIR --format md --findings`` prints.

Every number comes from the run's summary (:func:`reprsim.analysis.summary.summarize`): per claim
its one-line answer, then, per design group, each primary test with its values at the lowest and
highest fraction, the slope with its 95% interval and its Holm-adjusted interval, the Holm p and
the verdict. An inconclusive test is written as "no detectable effect" together with the interval
that bounds it — never as "no effect". The README's findings block is this text, verbatim, for the
main job; CI re-runs the main job and fails when the two differ.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reprsim.analysis.cells import GROUP_AXES
from reprsim.analysis.paired import paired_sentence
from reprsim.analysis.text import (
    design_label,
    fmt,
    fmt_ci,
    fmt_interval,
    fmt_p,
    measure_label,
    similarity_direction,
    where_label,
)

__all__ = ["findings_markdown"]


_CONSEQUENCE_NAMES = {
    "transfer_asr": "transfer A→B",
    "transfer_asr_ba": "transfer B→A",
    "whitebox_asr": "white-box on A",
    "whitebox_asr_ba": "white-box on B",
    "jailbreak_transfer_asr": "jailbreak transfer A→B",
    "jailbreak_transfer_asr_ba": "jailbreak transfer B→A",
    "jailbreak_whitebox_asr": "jailbreak white-box on A",
    "jailbreak_whitebox_asr_ba": "jailbreak white-box on B",
}


def _frame(records: Any) -> pd.DataFrame:
    return pd.DataFrame(records) if records else pd.DataFrame()


def _verdict_text(verdict: str, distance: bool, low: Any, high: Any) -> str:
    if verdict == "inconclusive":
        if not (pd.notna(low) and pd.notna(high)):
            return "inconclusive: no interval"
        return f"inconclusive: no detectable effect, bounded by {fmt_interval(low, high)}"
    return verdict + (f" (a distance: {similarity_direction(verdict, True)})" if distance else "")


def _effect_bullet(r: pd.Series) -> str:
    lo, hi = r.get("slope_low_adjusted"), r.get("slope_high_adjusted")
    fit = f", fitted over fractions {fmt(r['x_min'])}–{fmt(r['x_max'])}" if r.get("fit_note") else ""
    classes = f"{r['probe_classes']} classes" if r.get("probe_classes") else ""
    about = ", ".join(x for x in (classes, fit.removeprefix(", ")) if x)
    return (
        f"{measure_label(r['measure'])} on '{r['probe_set']}'{f' ({about})' if about else ''}: "
        f"{fmt(r['value_at_min'], 3)} → {fmt(r['value_at_max'], 3)}, slope "
        f"{fmt_ci(r['slope'], r['slope_low'], r['slope_high'])}, Holm-adjusted {fmt_ci(r['slope'], lo, hi)}, "
        f"Holm p {fmt_p(r['p_adjusted'])}, {_verdict_text(r['verdict'], bool(r['distance']), lo, hi)}"
    )


def _group_keys(frame: pd.DataFrame) -> list[str]:
    return [k for k in (*GROUP_AXES, "layer_a", "layer_b") if k in frame.columns]


def _effects_section(effects: pd.DataFrame, kinds: tuple[str, ...]) -> list[str]:
    if effects.empty:
        return []
    prim = effects[(effects["family"] == "primary") & effects["overlap_kind"].isin(kinds)]
    lines = []
    for key, g in prim.groupby(_group_keys(prim), sort=False, dropna=False):
        keys = dict(zip(_group_keys(prim), key if isinstance(key, tuple) else (key,)))
        lines.append(f"* {design_label(keys).capitalize()} — {where_label(keys)}, {int(g['n_seeds'].max())} seeds:")
        lines += [f"  * {_effect_bullet(r)}" for _, r in g.iterrows()]
    return lines


def _consequence_section(summary: dict[str, Any]) -> list[str]:
    cons = _frame(summary.get("consequences", {}).get("effects"))
    lines = []
    if not cons.empty:
        for key, g in cons.groupby(_group_keys(cons), sort=False, dropna=False):
            keys = dict(zip(_group_keys(cons), key if isinstance(key, tuple) else (key,)))
            shown = g[g["consequence"].isin(list(_CONSEQUENCE_NAMES))]
            if shown.empty:
                continue
            parts = []
            for _, r in shown.iterrows():
                name = _CONSEQUENCE_NAMES[r["consequence"]]
                if r["verdict"] == "constant by construction":
                    parts.append(f"{name} {fmt(r['value_at_min'])} (constant by construction: not tested)")
                    continue
                adj = (
                    f", Holm-adjusted {fmt_ci(r['slope'], r['slope_low_adjusted'], r['slope_high_adjusted'])}"
                    if r["family"] == "primary" and pd.notna(r.get("slope_low_adjusted"))
                    else ""
                )
                primary = r["family"] == "primary"
                lo, hi = (
                    (r["slope_low_adjusted"], r["slope_high_adjusted"])
                    if primary
                    else (r["slope_low"], r["slope_high"])
                )
                parts.append(
                    f"{name} {fmt(r['value_at_min'])} → {fmt(r['value_at_max'])} (slope "
                    f"{fmt_ci(r['slope'], r['slope_low'], r['slope_high'])}{adj}; "
                    f"{_verdict_text(r['verdict'], False, lo, hi)})"
                )
            lines.append(f"* {design_label(keys).capitalize()} — {where_label(keys)}: " + "; ".join(parts) + ".")
    return lines


def _secondary_cell(r: pd.Series) -> str:
    primary = r["family"] == "primary"
    lo, hi = (r["slope_low_adjusted"], r["slope_high_adjusted"]) if primary else (r["slope_low"], r["slope_high"])
    keys = r.to_dict()
    return (
        f"{measure_label(r['measure'])} on '{r['probe_set']}' ({design_label(keys)}, {where_label(keys)}): "
        f"{fmt(r['value_at_min'], 3)} → {fmt(r['value_at_max'], 3)}, slope "
        f"{fmt_ci(r['slope'], r['slope_low'], r['slope_high'])}"
        f"{', Holm p ' + fmt_p(r['p_adjusted']) if primary else ''}, "
        f"{_verdict_text(r['verdict'], bool(r['distance']), lo, hi)}"
    )


def _secondary_sentences(summary: dict[str, Any]) -> list[str]:
    """One sentence for calibrated effects and one for error consistency vs overlap, when the summary
    has them, over the fixed-composition probe sets, and one for the paired differences on shared inputs."""
    out = []
    for key, title, measures in (
        ("calibrated_effects", "On calibrated scores", None),
        ("behavioural_effects", "Error consistency vs overlap", ("error_consistency",)),
    ):
        eff = _frame(summary.get(key))
        if eff.empty:
            continue
        eff = eff[eff["composition"] == "fixed"]
        if measures is not None:
            eff = eff[eff["measure"].isin(measures)]
        if eff.empty:
            continue
        family = "a Holm family of its own" if (eff["family"] == "primary").any() else "exploratory, unadjusted"
        out += [f"**{title}** ({family}): " + "; ".join(_secondary_cell(r) for _, r in eff.iterrows()) + ".", ""]
    paired = paired_sentence(_frame(summary.get("paired_differences")))
    return out + ([paired, ""] if paired else [])


def findings_markdown(summary: dict[str, Any]) -> str:
    """The findings section of a run's summary as Markdown (ends with a newline)."""
    if summary.get("status") != "ok":
        reasons = "; ".join(p.get("reason", "") for p in summary.get("problems", []))
        return f"**Not analysed**: {reasons}\n"
    a = summary["analysis"]
    primary = a["primary"]
    probes = primary["probe_sets"] if isinstance(primary["probe_sets"], str) else ", ".join(primary["probe_sets"])
    out = [
        f"{summary['n_units']} model pairs, {summary['n_seeds']} seeds. Primary family: "
        f"{', '.join(measure_label(m) for m in primary['measures'])} × {probes} probe sets, at the headline layer "
        f"pair ({a['family_size']} tests, Holm); every interval is over seeds (t, 95%), and a primary test's "
        "Holm-adjusted interval (at its Holm step's level) agrees with its verdict. Slopes are per unit of overlap "
        "fraction.",
        "",
    ]
    effects = _frame(summary.get("overlap_effects"))
    claims = {c["id"]: c for c in summary.get("claims", [])}
    sections = (("data", ("data",)), ("task", ("task", "attribute")))
    for cid, kinds in sections:
        claim = claims.get(cid)
        if claim is None:
            continue
        out += [f"**{claim['title']}** {claim['summary']}", ""]
        body = _effects_section(effects, kinds)
        out += body + ([""] if body else [])
    if "combined" in claims and claims["combined"]["groups"]:
        c = claims["combined"]
        out += [f"**{c['title']}** {c['summary']}", ""] + [f"* {g['summary']}" for g in c["groups"]] + [""]
    cons = claims.get("consequences")
    if cons is not None:
        out += [f"**{cons['title']}** {cons['summary']}", ""]
        out += [f"* {g['summary']}" for g in cons.get("similarity_transfer", [])]
        out += _consequence_section(summary)
        out.append("")
    out += _secondary_sentences(summary)
    return "\n".join(out).rstrip("\n") + "\n"
