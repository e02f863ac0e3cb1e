"""Does similarity make adversarial examples transfer? Two causes of similarity, compared.

Overlap raises similarity *and* transfer, so a correlation between them, pooled or within a
fraction, cannot say whether similarity is what carries transfer. A design that moves similarity
by a second cause at fixed data overlap (an alignment loss of dose λ on model B, or B starting
from A's initial weights) identifies it: if similarity is what carries transfer, every cause gives
the same change in transfer per unit change in similarity.

Per seed and cause, with ``z`` the cause (the data fraction at λ = 0; λ, or shared initialisation,
within each data fraction) and ``S`` / ``T`` a similarity measure and the transfer success of the
unit's pairs:

* the **first stage** is the OLS slope of S on z (within each data fraction for the second causes),
* the **reduced form** the same slope of T,
* the **estimate** their ratio, Δtransfer / Δsimilarity (the Wald / instrumental-variable ratio).

Each is averaged over seeds with a t(n − 1) interval (the seed is the unit), and the
``difference`` of two causes' ratios is taken per seed, then averaged. A cause whose first stage
is inconclusive identifies nothing. The records of the primary measures on fixed-composition probe
sets, at the headline layer pair, with the headline consequence, form one Holm family; their
intervals are reported at the level of their Holm step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprsim.analysis import inference
from reprsim.analysis.cells import FIXED, PrimaryFamily, composition, headline_layer_mask, iter_cells
from reprsim.analysis.effects import apply_family, ensure_prepared

__all__ = ["CAUSES", "IDENTIFICATION_METHOD", "similarity_transfer"]

#: The causes of similarity a data-overlap design can vary (read from ``data_fraction``, ``align``, ``init``).
CAUSES: tuple[str, ...] = ("data_overlap", "alignment", "shared_init")
#: The consequence whose response to similarity is estimated, in order of preference.
TRANSFER_COLUMNS: tuple[str, ...] = ("transfer_asr", "transfer_asr_ba")
IDENTIFICATION_METHOD = (
    "per seed, the slope of transfer success on the cause over the slope of similarity on it "
    "(within each data fraction for alignment and shared initialisation); mean over seeds with a "
    "t(n − 1) 95% interval; the difference of two causes per seed, then averaged"
)
_CELL_AXES = ("run", "source", "model", "probe_set", "layer_a", "layer_b", "measure")


def _within_slope(z: np.ndarray, y: np.ndarray, strata: np.ndarray) -> float:
    """OLS slope of ``y`` on ``z`` with a separate intercept per stratum (NaN without variation in z)."""
    num = den = 0.0
    for s in np.unique(strata):
        m = strata == s
        dz = z[m] - z[m].mean()
        num += float(np.sum(dz * (y[m] - y[m].mean())))
        den += float(np.sum(dz * dz))
    return num / den if den > 0 else float("nan")


def _cause_rows(g: pd.DataFrame, cause: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows of a cell that vary ``cause`` and nothing else: ``(mask, z)``; None when absent."""
    align = pd.to_numeric(g["align"], errors="coerce").fillna(0.0).to_numpy() if "align" in g else np.zeros(len(g))
    shared = (g["init"].astype(str) == "shared").to_numpy() if "init" in g else np.zeros(len(g), bool)
    data = (g["overlap_kind"].astype(str) == "data").to_numpy()
    if cause == "data_overlap":
        mask, z = data & (align == 0) & ~shared, g["data_fraction"].to_numpy(float)
    elif cause == "alignment":
        mask, z = data & ~shared, align
    else:
        mask, z = data & (align == 0), shared.astype(float)
    if mask.sum() < 2 or np.unique(z[mask]).size < 2:
        return None
    return mask, z


def _per_seed(
    g: pd.DataFrame, cause: str, rows_of_cause: tuple[np.ndarray, np.ndarray], consequence: str
) -> pd.DataFrame:
    """Per seed: ``first_stage``, ``reduced_form`` and their ratio ``estimate`` for one cause (its
    :func:`_cause_rows`)."""
    mask, z = rows_of_cause
    t = pd.to_numeric(g[consequence], errors="coerce").to_numpy(float)[mask]
    keep = np.isfinite(t)
    t, z = t[keep], z[mask][keep]
    y = g["value"].to_numpy(float)[mask][keep]
    seeds = g["seed"].to_numpy()[mask][keep]
    # the second causes are compared within a data fraction; the data fraction is its own cause
    strata = np.zeros(len(t)) if cause == "data_overlap" else g["data_fraction"].to_numpy(float)[mask][keep]
    rows = []
    for seed in np.unique(seeds):
        m = seeds == seed
        first = _within_slope(z[m], y[m], strata[m])
        reduced = _within_slope(z[m], t[m], strata[m])
        ratio = reduced / first if np.isfinite(first) and first != 0 else float("nan")
        rows.append({"seed": seed, "first_stage": first, "reduced_form": reduced, "estimate": ratio})
    return pd.DataFrame(rows)


def _t_fields(values: pd.Series, prefix: str = "") -> dict[str, Any]:
    """The seed-as-unit summary of per-seed values (:func:`reprsim.analysis.inference.t_summary`) as
    record fields: ``estimate``, ``low``, ``high``, ``p``, ``sd``, ``n_seeds``, ``reason`` — or, with a
    ``prefix``, ``{prefix}``, ``{prefix}_low``, ``{prefix}_high``, ``{prefix}_p``, ``{prefix}_sd``."""
    t = inference.t_summary(values.to_numpy(float))
    pre = f"{prefix}_" if prefix else ""
    fields = {
        prefix or "estimate": t["estimate"],
        f"{pre}low": t["low"],
        f"{pre}high": t["high"],
        f"{pre}p": t["p"],
        f"{pre}sd": t["sd"],
    }
    return fields if prefix else fields | {"n_seeds": t["n"], "reason": t["reason"]}


def _records(
    cell: dict[str, Any], g: pd.DataFrame, causes: dict[str, tuple[np.ndarray, np.ndarray]], consequence: str
) -> list[dict[str, Any]]:
    """The records of one cell (``cell``: its keys, probe role and composition) and consequence, for the
    causes the cell varies (``causes``: each one's :func:`_cause_rows`)."""
    per_cause = {c: _per_seed(g, c, found, consequence) for c, found in causes.items()}
    per_cause = {c: p for c, p in per_cause.items() if not p.empty}
    base = {**cell, "consequence": consequence}
    out = []
    for cause, p in per_cause.items():
        first = _t_fields(p["first_stage"], "first_stage")
        identifies = (
            inference.decide(
                first["first_stage"], first["first_stage_low"], first["first_stage_high"], first["first_stage_p"]
            )
            != "inconclusive"
        )
        rec = {
            **base,
            "cause": cause,
            "compared": "",
            **_t_fields(p["estimate"]),
            **first,
            **_t_fields(p["reduced_form"], "reduced_form"),
            "identifies": identifies,
        }
        if not identifies:
            rec["note"] = (
                "first stage inconclusive: this cause does not detectably move similarity and identifies nothing"
            )
        out.append(rec)
    if "data_overlap" in per_cause:
        ref = per_cause["data_overlap"].set_index("seed")["estimate"]
        for cause in ("alignment", "shared_init"):
            if cause not in per_cause:
                continue
            other = per_cause[cause].set_index("seed")["estimate"]
            diff = (ref - other).dropna()  # seeds with both estimates
            both = all(r["identifies"] for r in out if r["cause"] in ("data_overlap", cause))
            rec = {
                **base,
                "cause": "difference",
                "compared": f"data_overlap − {cause}",
                **_t_fields(diff),
                "identifies": both,
            }
            if not both:
                rec["note"] = "a cause it compares identifies nothing (its first stage is inconclusive)"
            out.append(rec)
    return out


def similarity_transfer(
    df: pd.DataFrame, *, primary: PrimaryFamily | None = None, layers: str = "default"
) -> pd.DataFrame:
    """Transfer success per unit of similarity, through each cause of similarity (module docstring).

    Returns
    -------
    DataFrame, one record per (cell, consequence, cause): the cell keys (``source``, ``model``,
    ``measure``, ``probe_set``, ``layer_a``, ``layer_b``), ``consequence``, ``cause``
    (``data_overlap``, ``alignment``, ``shared_init`` or ``difference``; ``compared`` names the two
    causes of a difference), ``estimate`` / ``low`` / ``high`` / ``p`` / ``sd`` / ``n_seeds``,
    ``first_stage`` (+ ``_low``/``_high``/``_p``), ``reduced_form`` (+ the same), ``identifies``,
    ``family``, ``p_adjusted``, ``low_adjusted`` / ``high_adjusted`` (primary), ``verdict``
    (``positive``/``negative``/``inconclusive``; a difference ``differs``/``inconclusive``) and
    ``note``. Empty when the table has no data-overlap design with a transfer column.
    """
    primary = primary or PrimaryFamily()
    data = ensure_prepared(df, layers)
    consequences = [
        c for c in TRANSFER_COLUMNS if c in data.columns and np.isfinite(pd.to_numeric(data[c], errors="coerce")).any()
    ]
    data = data[data["overlap_kind"].astype(str) == "data"]
    if data.empty or not consequences:
        return pd.DataFrame()
    head = headline_layer_mask(data)
    axes = [a for a in _CELL_AXES if a in data.columns]
    rows = []
    for keys, g in iter_cells(data, axes):
        headline = bool(head.loc[g.index].all())
        cell = {**keys, "probe_role": str(g["probe_role"].iloc[0]), "composition": composition(g)}
        causes = {c: found for c in CAUSES if (found := _cause_rows(g, c)) is not None}
        for c in consequences:
            rows += [{**r, "headline_layer": headline} for r in _records(cell, g, causes, c)]
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    in_family = (
        out["headline_layer"]
        & (out["consequence"] == TRANSFER_COLUMNS[0])
        & (out["composition"] == FIXED)
        & pd.Series([primary.contains(m, p) for m, p in zip(out["measure"], out["probe_set"])], index=out.index)
    )
    out = apply_family(out, in_family, estimate="estimate", low="low", high="high", sd="sd")
    words = {"rises": "positive", "falls": "negative"}
    out["verdict"] = [
        "inconclusive"
        if not ident
        else ("differs" if v != "inconclusive" else v)
        if cause == "difference"
        else words.get(v, "inconclusive")
        for v, cause, ident in zip(out["verdict"], out["cause"], out["identifies"])
    ]  # a cause that does not move similarity identifies nothing, whatever its ratio
    if "note" not in out:
        out["note"] = ""
    out["note"] = out["note"].fillna("")
    return out
