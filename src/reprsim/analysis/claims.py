"""The paper's claims and the one-line answer the run gives to each.

A claim is answered per *group* — one (run, source, model, overlap kind) at its headline layer
pair — and never by pooling groups. Each group gets one line: how many of its primary tests say
similarity rises, falls or is inconclusive, on the headline (fixed-composition) probe sets and,
separately, on the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprsim.analysis.cells import VARIES, group_keys, headline_probe_sets
from reprsim.analysis.text import (
    consequence_label,
    fmt,
    fmt_ci,
    design_label,
    measure_label,
    similarity_direction,
    where_label,
)

__all__ = ["CLAIMS", "build_claims", "effect_groups", "similarity_transfer_answer"]

#: (id, title, overlap kinds) of the claims the report answers, in order.
CLAIMS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("data", "Does data overlap raise representational similarity?", ("data",)),
    ("task", "Does task overlap raise representational similarity?", ("task", "attribute")),
    ("combined", "Does combining data and task overlap give the strongest effect?", ("factorial", "combined")),
    ("consequences", "Does similarity make adversarial examples transfer?", ()),
)
_keys = group_keys


def effect_groups(
    effects: pd.DataFrame, kinds: tuple[str, ...]
) -> list[tuple[dict[str, Any], pd.DataFrame, list[str]]]:
    """``(keys, rows, headline probe sets)`` per group of the given kinds; ``rows`` are the group's
    cells at the headline layer pair (``keys`` include that layer pair)."""
    if effects.empty:
        return []
    sub = effects[effects["overlap_kind"].isin(kinds) & effects["headline_layer"]]
    out = []
    for key, g in sub.groupby(_keys(sub), sort=False):
        keys = dict(zip(_keys(sub), key if isinstance(key, tuple) else (key,)))
        keys.update(layer_a=g["layer_a"].iloc[0], layer_b=g["layer_b"].iloc[0])
        out.append((keys, g, headline_probe_sets(g, str(keys["overlap_kind"]))))
    return out


def _counts(rows: pd.DataFrame) -> dict[str, int]:
    dirs = [similarity_direction(v, bool(d)) for v, d in zip(rows["verdict"], rows["distance"])]
    return {k: dirs.count(k) for k in ("more similar", "less similar", "inconclusive")}


def _count_phrase(rows: pd.DataFrame) -> str:
    c = _counts(rows)
    n = len(rows)
    return (
        f"similarity rises in {c['more similar']} of {n} test{'s' if n != 1 else ''}, falls in "
        f"{c['less similar']}, inconclusive in {c['inconclusive']}"
    )


def _effect_line(keys: dict[str, Any], g: pd.DataFrame, heads: list[str]) -> tuple[str, dict[str, int]]:
    prim = g[g["family"] == "primary"]
    lead = f"{design_label(keys).capitalize()}, {where_label(keys)}"
    if prim.empty:
        return f"{lead}: no primary test in this group (every cell is exploratory).", _counts(prim)
    head = prim[prim["probe_set"].isin(heads)]
    rest = prim[~prim["probe_set"].isin(heads)]
    parts = []
    if not head.empty:
        parts.append(
            f"on the headline probe set{'s' if len(heads) > 1 else ''} {', '.join(heads)} {_count_phrase(head)}"
        )
    if not rest.empty:
        varies = sorted(set(rest.loc[rest["composition"] == VARIES, "probe_set"]))
        others = sorted(set(rest["probe_set"]))
        label = "composition varies with the fraction" if varies and set(varies) == set(others) else "other probe sets"
        parts.append(f"on {', '.join(others)} ({label}) {_count_phrase(rest)}")
    return f"{lead}: " + "; ".join(parts) + " (primary tests, Holm-adjusted).", _counts(
        head if not head.empty else prim
    )


def _factorial_groups(fac: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    if fac.empty:
        return []
    sub = fac[fac["headline_layer"]]
    keys = [k for k in ("run", "source", "model") if k in sub.columns]
    out = []
    for key, g in sub.groupby(keys, sort=False):
        k = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        k.update(overlap_kind="factorial", layer_a=g["layer_a"].iloc[0], layer_b=g["layer_b"].iloc[0])
        out.append((k, g))
    return out


def _factorial_line(keys: dict[str, Any], g: pd.DataFrame) -> str:
    prim = g[g["family"] == "primary"]
    rows = prim if not prim.empty else g
    n = len(rows)
    v = list(rows["verdict"])
    strongest = list(rows["combined_strongest"])
    return (
        f"Factorial design, {where_label(keys)}: the interaction (y11 − y10 − y01 + y00) is positive in "
        f"{v.count('positive')} of {n} {'primary ' if not prim.empty else ''}tests, negative in {v.count('negative')}, "
        f"inconclusive in {v.count('inconclusive')}; combining beats the best single factor in "
        f"{strongest.count('yes')} of {n}, loses in {strongest.count('no')}, inconclusive in "
        f"{strongest.count('inconclusive')}."
    )


def _consequence_line(keys: dict[str, Any], cons: pd.DataFrame) -> str:
    def pick(name: str) -> pd.Series | None:
        hit = cons[cons["consequence"] == name]
        return hit.iloc[0] if len(hit) else None

    parts = []
    for prefix, direction in ((p, d) for p in ("", "jailbreak_") for d in ("", "_ba")):
        tr = pick(f"{prefix}transfer_asr{direction}")
        if tr is None:
            continue
        wb = pick(f"{prefix}whitebox_asr{direction}")
        gf = pick(f"transfer_asr_given_source_fooled{direction}") if not prefix else None
        text = (
            f"{consequence_label(tr['consequence'])} {fmt(tr['value_at_min'])} → {fmt(tr['value_at_max'])} "
            f"(slope {fmt_ci(tr['slope'], tr['slope_low'], tr['slope_high'])}, {tr['verdict']})"
        )
        if wb is not None:
            text += f", white-box {fmt(wb['value_at_min'])} → {fmt(wb['value_at_max'])} ({wb['verdict']})"
        if gf is not None:
            text += f", P(victim fooled | source fooled) {fmt(gf['value_at_min'])} → {fmt(gf['value_at_max'])} ({gf['verdict']})"
        parts.append(text)
    if not parts:
        return ""
    return f"{design_label(keys).capitalize()}, {where_label(keys)}: " + "; ".join(parts) + "."


#: How jailbreak (language-model) consequences are read, as the published paper now reads them.
JAILBREAK_READING = (
    "The published (ICML 2026) paper claims a consequence of similarity — more transferable "
    "adversarial attacks — for vision models only; for language models it reports weaker trends and "
    "no longer claims jailbreak transfer. The jailbreak results here are associations with their "
    "per-seed 95% intervals; one whose interval covers zero is inconclusive, and none is evidence "
    "that similarity causes jailbreak transfer."
)
_CAUSE_UNITS = {
    "data_overlap": "per unit of overlap fraction",
    "alignment": "per unit of λ",
    "shared_init": "(shared vs independent initial weights)",
}
_CAUSE_LABELS = {
    "data_overlap": "data overlap",
    "alignment": "the alignment loss (λ)",
    "shared_init": "shared initialisation",
}


def _transfer_record_text(r: pd.Series) -> str:
    """One cause's record: its first stage, then transfer per unit of similarity (Holm-adjusted interval)."""
    measure = measure_label(r["measure"])
    if r["cause"] == "difference":
        return f"difference ({r['compared'].replace('_', ' ')}) {_adjusted_ci(r)} per unit {measure} ({r['verdict']})"
    first = fmt_ci(r["first_stage"], r["first_stage_low"], r["first_stage_high"])
    text = f"{_CAUSE_LABELS.get(r['cause'], r['cause'])} moves {measure} by {first} {_CAUSE_UNITS.get(r['cause'], '')}"
    if not r["identifies"]:
        return text + " (inconclusive: it identifies nothing)"
    return text + f", and transfer by {_adjusted_ci(r)} per unit {measure} ({r['verdict']})"


def _adjusted_ci(r: pd.Series) -> str:
    """The record's interval: Holm-adjusted for a primary record (said so), else unadjusted."""
    if r.get("family") == "primary" and "low_adjusted" in r and np.isfinite(r["low_adjusted"]):
        return fmt_ci(r["estimate"], r["low_adjusted"], r["high_adjusted"]) + " (Holm-adjusted)"
    return fmt_ci(r["estimate"], r["low"], r["high"])


def similarity_transfer_answer(st: pd.DataFrame) -> tuple[str, list[dict[str, Any]]]:
    """The answer to "does similarity make adversarial examples transfer?" from the
    :func:`reprsim.analysis.identification.similarity_transfer` records: a summary and one line per
    (source, model, measure, probe set) of the primary family."""
    if st.empty:
        return ("Not identified in this run: no data-overlap design with transfer attacks.", [])
    prim = st[st["family"] == "primary"]
    if prim.empty:
        return ("No primary similarity → transfer record (the primary measures or fixed probe sets are absent).", [])
    causes = [c for c in ("alignment", "shared_init") if (prim["cause"] == c).any()]
    groups = []
    for key, g in prim.groupby(
        [k for k in ("run", "source", "model", "layer_a", "layer_b", "measure", "probe_set") if k in prim.columns],
        sort=False,
    ):
        keys = dict(
            zip(
                [k for k in ("run", "source", "model", "layer_a", "layer_b", "measure", "probe_set") if k in prim],
                key if isinstance(key, tuple) else (key,),
            )
        )
        order = {"data_overlap": 0, "alignment": 1, "shared_init": 2, "difference": 3}
        g = g.assign(_o=g["cause"].map(order)).sort_values("_o", kind="stable")
        line = (
            f"{where_label(keys)}, {measure_label(keys['measure'])} on '{keys['probe_set']}': "
            + "; ".join(_transfer_record_text(r) for _, r in g.iterrows())
            + "."
        )
        groups.append({"keys": keys, "summary": line})
    if not causes:
        return (
            "Not identified: this run varies similarity only through overlap, which also drives transfer; a second "
            "cause (overlap.designs[i].align or init) is needed to separate them.",
            groups,
        )
    diffs = prim[prim["cause"] == "difference"]
    data_rows = prim[prim["cause"] == "data_overlap"]
    counts = []
    for cause in ("data_overlap", *causes):
        rows = prim[prim["cause"] == cause]
        counts.append(
            f"through {_CAUSE_LABELS[cause]}, transfer per unit similarity is positive in "
            f"{(rows['verdict'] == 'positive').sum()} of {len(rows)} primary tests "
            f"({(~rows['identifies']).sum()} without a detectable first stage)"
        )
    dv = list(diffs["verdict"])
    answer = (
        f"Two causes of similarity, compared (Holm-adjusted over {len(prim)} primary tests): "
        + "; ".join(counts)
        + f"; the causes give detectably different transfer per unit similarity in {dv.count('differs')} of "
        f"{len(dv)} comparisons, inconclusive in {dv.count('inconclusive')}."
    )
    identified = diffs[diffs["identifies"]]
    if identified.empty:
        answer += (
            " No comparison is identified (a cause's first stage is inconclusive), so this run cannot say "
            "whether similarity carries transfer."
        )
    elif (identified["verdict"] == "differs").any():
        answer += (
            " Where they differ, similarity alone does not account for transfer: the same change in similarity "
            "buys different changes in transfer depending on its cause."
        )
    elif (data_rows["verdict"] == "positive").any():
        answer += (
            " Where both are identified, no difference is detectable (the intervals bound how large it can "
            "be): consistent with similarity carrying transfer, not proof of it."
        )
    return answer, groups


def build_claims(
    effects: pd.DataFrame, factorial: pd.DataFrame, cons: pd.DataFrame, similarity_transfer: pd.DataFrame
) -> list[dict[str, Any]]:
    """Every claim with its groups and one-line answers.

    Returns a list of dicts: ``id``, ``title``, ``summary`` (one line for the claim), ``groups``
    (each ``keys``, ``summary`` and, for effect claims, ``headline_probe_sets``).
    """
    claims = []
    for cid, title, kinds in CLAIMS:
        groups: list[dict[str, Any]] = []
        if cid in ("data", "task"):
            total = {"more similar": 0, "less similar": 0, "inconclusive": 0}
            for keys, g, heads in effect_groups(effects, kinds):
                line, counts = _effect_line(keys, g, heads)
                total = {k: total[k] + counts[k] for k in total}
                groups.append({"keys": keys, "summary": line, "headline_probe_sets": heads})
            n = sum(total.values())
            summary = (
                (
                    f"Across {len(groups)} group{'s' if len(groups) != 1 else ''} (never pooled), on headline probe sets "
                    f"similarity rises in {total['more similar']} of {n} primary tests, falls in {total['less similar']}, "
                    f"inconclusive in {total['inconclusive']}."
                )
                if groups
                else "Not tested in this run."
            )
        elif cid == "combined":
            fac_groups = _factorial_groups(factorial)
            for keys, g in fac_groups:
                groups.append({"keys": keys, "summary": _factorial_line(keys, g)})
            prim = pd.concat([g[g["family"] == "primary"] for _, g in fac_groups]) if fac_groups else pd.DataFrame()
            v = list(prim["verdict"]) if not prim.empty else []
            strongest = list(prim["combined_strongest"]) if not prim.empty else []
            summary = (
                (
                    f"Across {len(groups)} factorial group{'s' if len(groups) != 1 else ''} (never pooled), the "
                    f"interaction is positive in {v.count('positive')} of {len(v)} primary tests, negative in "
                    f"{v.count('negative')}, inconclusive in {v.count('inconclusive')}; combining beats the best "
                    f"single factor in {strongest.count('yes')}, loses in {strongest.count('no')}, inconclusive in "
                    f"{strongest.count('inconclusive')}."
                )
                if groups
                else (
                    "Not tested as a factorial design in this run."
                    + (" See the data × task grid below." if (effects["overlap_kind"] == "combined").any() else "")
                )
            )
        else:
            for keys, g, heads in effect_groups(effects, ("data", "task", "attribute", "combined", "factorial")):
                if cons.empty:
                    break
                m = np.ones(len(cons), dtype=bool)
                for k in _keys(cons):
                    m &= cons[k].astype(str).to_numpy() == str(keys[k])
                line = _consequence_line(keys, cons[m])
                if line:
                    groups.append({"keys": keys, "summary": line, "headline_probe_sets": heads})
            answer, identified = similarity_transfer_answer(similarity_transfer)
            heads_cons = cons[cons["family"] == "primary"] if not cons.empty else cons
            if groups:
                v = list(heads_cons["verdict"])
                summary = (
                    f"{answer} Transfer success itself rises with overlap in {v.count('rises')} of {len(v)} "
                    f"primary tests (Holm-adjusted), falls in {v.count('falls')}, inconclusive in "
                    f"{v.count('inconclusive')}."
                )
            else:
                summary = "No consequence columns in this run."
            if not cons.empty and cons["consequence"].astype(str).str.startswith("jailbreak").any():
                summary += " " + JAILBREAK_READING
            claims.append(
                {"id": cid, "title": title, "summary": summary, "groups": groups, "similarity_transfer": identified}
            )
            continue
        claims.append({"id": cid, "title": title, "summary": summary, "groups": groups})
    return claims
