"""Reading run folders and preparing their results table for analysis.

The table's columns are the contract of :mod:`reprsim.results`. Every analysis function first calls
:func:`prepare`, which drops rows that must never enter a statistic (failed units, empty probe
sets, non-finite values), optionally reduces the layer pairs (:func:`select_layers`) and adds the
column ``x``: the overlap fraction the unit's overlap kind varies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reprsim.errors import ReprsimError
from reprsim.results import (
    BEST_LAYER,
    CELL_AXES,
    CONFIG_FILE,
    DESIGN_AXES,
    CONSEQUENCE_COLUMNS,
    CONTRACT_COLUMNS,
    PROVENANCE_FILE,
    load_results,
)

__all__ = [
    "KNOWN_KINDS",
    "LAYER_SELECTIONS",
    "Run",
    "behavioural_rows",
    "cell_axes",
    "check_table",
    "clean_results",
    "consequence_columns",
    "load_run",
    "load_runs",
    "missing_columns",
    "overlap_x",
    "prepare",
    "select_layers",
]

LAYER_SELECTIONS: tuple[str, ...] = ("default", "best")
#: Overlap kinds whose regressor is the data × task grid's diagonal (data fraction == task fraction).
DIAGONAL_KINDS: tuple[str, ...] = ("combined", "factorial")
#: The overlap kinds reprsim's sweeps write; another kind in a foreign table is analysed as its own.
KNOWN_KINDS: tuple[str, ...] = ("data", "task", "attribute", "combined", "factorial")


@dataclass
class Run:
    """One loaded run folder (``config``/``provenance`` are ``{}`` when the file is absent)."""

    name: str
    path: Path
    table: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: not UTF-8; Recursion: nested too deeply
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0]
        raise ReprsimError(f"{path} is not valid YAML ({why}); fix or remove it to analyse the table alone.") from None
    return loaded if isinstance(loaded, dict) else {}


def load_run(run_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Load a run folder: the results table, the config and the provenance.

    Reads the table with :func:`reprsim.results.load_results` (``results.parquet``, else
    ``results.csv``, else the finished units), and ``config.yaml`` / ``provenance.json`` when present
    (an absent file gives ``{}``). The table is returned as written — a table lacking contract
    columns is not an error here; :func:`missing_columns` says which are absent.

    Raises
    ------
    ReprsimError
        When the folder does not exist or holds no results table.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise ReprsimError(f"run folder {str(root)!r} does not exist; pass the --out folder of `reprsim run`.")
    df = load_results(root)
    config = _read_yaml(root / CONFIG_FILE) if (root / CONFIG_FILE).is_file() else {}
    provenance: dict[str, Any] = {}
    if (root / PROVENANCE_FILE).is_file():
        try:
            provenance = json.loads((root / PROVENANCE_FILE).read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError; nesting too deep
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise ReprsimError(
                f"{PROVENANCE_FILE} in {str(root)!r} is not valid JSON ({why}); "
                "fix or remove it to analyse the table alone."
            ) from None
    return df, config, provenance


def load_runs(run_dirs: list[str | Path]) -> list[Run]:
    """Load several run folders (see :func:`load_run`); with more than one, every table gets a ``run``
    column (the folder name, made unique) and its ``unit_id`` is prefixed with it, so that units and
    seeds of different runs are never confused."""
    if not run_dirs:
        raise ReprsimError("give at least one run folder")
    runs: list[Run] = []
    names: list[str] = []
    for d in run_dirs:
        df, config, provenance = load_run(d)
        name = Path(d).resolve().name or str(d)
        while name in names:
            name += "'"
        names.append(name)
        runs.append(Run(name, Path(d), df, config, provenance))
    if len(runs) > 1:
        for run in runs:
            t = run.table.copy()
            t["run"] = run.name
            if "unit_id" in t.columns:
                t["unit_id"] = run.name + "/" + t["unit_id"].astype(str)
            run.table = t
    return runs


def missing_columns(df: pd.DataFrame) -> list[str]:
    """The contract columns (:data:`reprsim.results.CONTRACT_COLUMNS`) the table lacks, in contract order."""
    return [c for c in CONTRACT_COLUMNS if c not in df.columns]


def _rows_text(df: pd.DataFrame, mask: pd.Series, column: str, limit: int = 5) -> str:
    """``row 3 ('25%'), row 7 ('x')`` for the first ``limit`` masked rows (1-based data rows)."""
    idx = np.flatnonzero(mask.to_numpy())
    shown = ", ".join(f"row {i + 1} ({df[column].iloc[i]!r})" for i in idx[:limit])
    return shown + (f" and {len(idx) - limit} more" if len(idx) > limit else "")


def check_table(df: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Check a (possibly foreign) results table before analysis; return it and notes for the report.

    Errors (ReprsimError, one line naming the column and rows): a fraction that is not a number in
    [0, 1] (``"25%"``, ``1.5``); duplicate rows of one key (``unit_id``, ``probe_set``, ``layer_a``,
    ``layer_b``, ``measure``, and ``run``) whose contract values differ — they would be averaged
    silently. Notes (``{"scope": "table", "reason": ...}``): identical duplicates (dropped), values
    that are not numbers (their rows cannot enter a statistic), overlap kinds reprsim does not know
    (analysed as their own kind, see :func:`overlap_x`). A table lacking contract columns is
    returned unchanged (the analysis reports it).
    """
    notes: list[dict[str, str]] = []
    if missing_columns(df) or df.empty:
        return df, notes
    df = df.reset_index(drop=True)
    for col in ("data_fraction", "task_fraction"):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = df[col].notna() & ~(num.between(0.0, 1.0))
        if bad.any():
            raise ReprsimError(
                f"column {col} must hold numbers in [0, 1] (a share, 0.25 not '25%'), or be empty "
                f"where the kind does not vary it; got {_rows_text(df, bad, col)}"
            )
    num = pd.to_numeric(df["value"], errors="coerce")
    bad = df["value"].notna() & num.isna()
    if bad.any():
        notes.append(
            {
                "scope": "table",
                "reason": f"{int(bad.sum())} value(s) are not numbers and were left out: "
                f"{_rows_text(df, bad, 'value')}",
            }
        )
    key = (["run"] if "run" in df.columns else []) + ["unit_id", "probe_set", "layer_a", "layer_b", "measure"]
    cols = list(dict.fromkeys(key + [c for c in CONTRACT_COLUMNS if c in df.columns]))
    dup = df.duplicated(key, keep=False)
    if dup.any():  # only the duplicated rows are compared as text (cheap on a 10⁶-row table)
        text = df.loc[dup, cols].astype(str)
        conflicts = text.groupby(key, sort=False).nunique().gt(1).any(axis=1)
        if conflicts.any():
            shown = ["/".join(map(str, k)) for k in conflicts[conflicts].index[:5]]
            more = f" and {int(conflicts.sum()) - 5} more" if conflicts.sum() > 5 else ""
            raise ReprsimError(
                f"the table has {int(conflicts.sum())} duplicated key(s) ({', '.join(key)}) with different "
                f"values: {', '.join(shown)}{more}; keep one row per key (they would be averaged)"
            )
        drop = pd.Series(False, index=df.index)
        drop[text.index] = text.duplicated(key, keep="first")
        notes.append({"scope": "table", "reason": f"{int(drop.sum())} identical duplicate row(s) dropped"})
        df = df.loc[~drop].reset_index(drop=True)
    unknown = sorted(set(df["overlap_kind"].astype(str)) - set(KNOWN_KINDS))
    if unknown:
        notes.append(
            {
                "scope": "table",
                "reason": f"overlap kind(s) {', '.join(map(repr, unknown))} are not one of "
                f"{', '.join(KNOWN_KINDS)} (case matters): each is analysed as its own kind, against the one "
                "fraction that varies within it",
            }
        )
    return df, notes


def clean_results(df: pd.DataFrame) -> pd.DataFrame:
    """Drop rows that must not enter any statistic and return a copy.

    Dropped: ``status`` other than ``"ok"``; probe sets with ``n_probe == 0`` (empty probe sets,
    whose values are sentinels — the paper's notebook kept such rows in one regression); and
    non-finite ``value``. Raises ``ValueError`` naming the absent contract columns.
    """
    missing = missing_columns(df)
    if missing:
        raise ValueError(f"results table lacks required column(s) {missing}; got columns {sorted(df.columns)}.")
    keep = pd.Series(True, index=df.index)
    if "status" in df.columns:
        keep &= df["status"].fillna("ok").astype(str).eq("ok")
    if "n_probe" in df.columns:
        keep &= pd.to_numeric(df["n_probe"], errors="coerce").fillna(1) > 0
    keep &= np.isfinite(pd.to_numeric(df["value"], errors="coerce"))
    out = df.loc[keep].copy()
    out["value"] = out["value"].astype(float)
    for axis in CELL_AXES + tuple(a for a in DESIGN_AXES if a in out.columns):
        # axes compare as text; a missing level is its own level
        out[axis] = out[axis].astype(object).where(out[axis].notna(), "").astype(str)
    return out


_UNIT_KEYS = ["unit_id", "probe_set", "measure"]
BEST_PAIR = "max over layer pairs"
#: ``layer_selection`` of best-pair rows: from the sweep's rows whose p-value and calibration come
#: from the null of the maximum (selection-aware), or the maximum picked here (a selected maximum).
BEST_WITH_NULL = "max over layer pairs, null of the maximum"
BEST_SELECTED = "max over layer pairs, selected here (its p-value ignores the selection)"
OUTPUT_SELECTION = "model outputs"


def behavioural_rows(df: pd.DataFrame) -> pd.Series:
    """True for the behavioural rows of a table: layer ``output`` on both sides and a measure of
    :data:`reprsim.metrics.behavioural.BEHAVIOURAL` (they compare outputs, not representations)."""
    from reprsim.metrics.behavioural import BEHAVIOURAL, OUTPUT_LAYER

    if df.empty:
        return pd.Series(False, index=df.index)
    out = df["layer_a"].astype(str).eq(OUTPUT_LAYER) & df["layer_b"].astype(str).eq(OUTPUT_LAYER)
    return out & df["measure"].astype(str).isin(BEHAVIOURAL)


def _sweep_best_rows(df: pd.DataFrame) -> pd.Series:
    return df["layer_a"].astype(str).eq(BEST_LAYER) & df["layer_b"].astype(str).eq(BEST_LAYER)


def select_layers(df: pd.DataFrame, how: str = "default") -> pd.DataFrame:
    """Choose which layer pairs enter the analysis.

    ``how="default"``: every layer pair, each analysed as its own cell (the report headlines
    ``penultimate``/``penultimate``, else the first pair a model lists); the sweep's ``best`` rows
    (a maximum over those same pairs) are left out. ``how="best"``: per (unit, probe set, measure)
    one row with ``layer_a`` = ``layer_b`` = ``"max over layer pairs"``: the sweep's
    ``layer_a = layer_b = "best"`` row when the table has one (written with ``measures.calibrate``;
    its ``p_value`` and calibration columns come from the null of the maximum, so they account for
    the selection), else the maximum over the layer pairs picked here (the paper's "best layer
    pair": a selected maximum, meaningful only for similarities). ``layer_selection`` says which.
    Behavioural rows (layer ``output``) are kept as they are in both. Adds ``layer_selection``.
    """
    if how not in LAYER_SELECTIONS:
        raise ValueError(f"layer selection must be one of {list(LAYER_SELECTIONS)}, got {how!r}.")
    if df.empty:
        out = df.copy()
        out["layer_selection"] = "every layer pair" if how == "default" else BEST_SELECTED
        return out
    best, behaviour = _sweep_best_rows(df), behavioural_rows(df)
    if how == "default":
        out = df.loc[~best].copy()
        out["layer_selection"] = np.where(behavioural_rows(out), OUTPUT_SELECTION, "every layer pair")
        return out
    with_null = df.loc[best].copy()
    with_null["layer_selection"] = BEST_WITH_NULL
    covered = pd.MultiIndex.from_frame(with_null[_UNIT_KEYS].astype(str))
    pairs = df.loc[~best & ~behaviour]
    pairs = pairs[~pd.MultiIndex.from_frame(pairs[_UNIT_KEYS].astype(str)).isin(covered)]
    picked = pd.DataFrame(columns=df.columns)
    if not pairs.empty:
        idx = pairs.groupby(_UNIT_KEYS, sort=False, dropna=False)["value"].idxmax()
        picked = df.loc[idx.to_numpy()].copy()
    picked["layer_selection"] = BEST_SELECTED
    kept = df.loc[behaviour].assign(layer_selection=OUTPUT_SELECTION)
    out = pd.concat([f for f in (with_null, picked, kept) if not f.empty]).sort_index(kind="stable")
    chosen = ~behavioural_rows(out)
    out.loc[chosen, "layer_a"] = BEST_PAIR
    out.loc[chosen, "layer_b"] = BEST_PAIR
    return out


def overlap_x(df: pd.DataFrame) -> pd.Series:
    """The overlap fraction each row's overlap kind varies (the regressor ``x``), as requested.

    data → ``data_fraction``; task and attribute → ``task_fraction``; combined and factorial → the
    common fraction on the grid's diagonal (``data_fraction == task_fraction``) and NaN off it (the
    full grid is analysed in :mod:`reprsim.analysis.factorial`). A kind not in
    :data:`KNOWN_KINDS` (e.g. ``DATA`` from a foreign table) gets the one fraction that varies
    among its rows, and NaN when none or both do.
    """
    d = pd.to_numeric(df["data_fraction"], errors="coerce")
    t = pd.to_numeric(df["task_fraction"], errors="coerce")
    kind = df["overlap_kind"].astype(str)
    x = pd.Series(np.nan, index=df.index, dtype=float)
    x[kind.eq("data")] = d[kind.eq("data")]
    is_task = kind.isin(["task", "attribute"])
    x[is_task] = t[is_task]
    diag = kind.isin(DIAGONAL_KINDS) & np.isclose(d.fillna(-1), t.fillna(-2))
    x[diag] = d[diag]
    for other in set(kind) - set(KNOWN_KINDS):  # a foreign kind: regress on the one fraction it varies
        rows = kind.eq(other)
        varies = [f for f in (d, t) if f[rows].nunique() > 1]
        if len(varies) == 1:
            x[rows] = varies[0][rows]
    return x


def prepare(df: pd.DataFrame, layers: str = "default") -> pd.DataFrame:
    """:func:`clean_results`, then :func:`select_layers`, then add the regressor column ``x``
    (and an empty ``probe_role`` when the table has none)."""
    out = select_layers(clean_results(df), layers)
    out["x"] = overlap_x(out)
    if "probe_role" not in out.columns:
        out["probe_role"] = ""
    out["probe_role"] = out["probe_role"].fillna("").astype(str)
    return out


def cell_axes(df: pd.DataFrame) -> list[str]:
    """The axes a cell is defined by in this table: ``run`` (when several runs are analysed
    together), :data:`reprsim.results.CELL_AXES` and, right after ``overlap_kind``, the
    :data:`reprsim.results.DESIGN_AXES` the table records."""
    axes = ["run"] if "run" in df.columns else []
    for axis in CELL_AXES:
        axes.append(axis)
        if axis == "overlap_kind":
            axes += [a for a in DESIGN_AXES if a in df.columns]
    return axes


def consequence_columns(df: pd.DataFrame) -> list[str]:
    """Consequence columns present with at least one finite value (``_ba`` variants included)."""
    found = []
    for base in CONSEQUENCE_COLUMNS:
        for name in (base, f"{base}_ba"):
            if name in df.columns and np.isfinite(pd.to_numeric(df[name], errors="coerce")).any():
                found.append(name)
    return found
