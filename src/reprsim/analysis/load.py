"""Reading a run folder and preparing its tidy results table for analysis.

The results table has one row per (unit, probe set, layer pair, measure); its column names are a
contract with the experiment runner (see ``load_run``). Every analysis function first calls
:func:`prepare`, which drops rows that must never enter a statistic (failed units, empty probe
sets, non-finite values), picks one layer pair per unit (explicitly, see :func:`select_layers`)
and adds the column ``x``: the overlap fraction the unit's overlap kind varies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reprsim.errors import ReprsimError

__all__ = [
    "REQUIRED_COLUMNS",
    "CONSEQUENCE_COLUMNS",
    "load_run",
    "clean_results",
    "select_layers",
    "overlap_x",
    "prepare",
    "consequence_columns",
]

REQUIRED_COLUMNS: tuple[str, ...] = (
    "unit_id",
    "overlap_kind",
    "data_fraction",
    "task_fraction",
    "seed",
    "probe_set",
    "layer_a",
    "layer_b",
    "measure",
    "value",
)

#: Consequence columns the analysis relates to similarity, in display order. Each may also come
#: with ``_low``/``_high`` interval columns (ignored here) and a ``_ba`` reverse direction.
CONSEQUENCE_COLUMNS: tuple[str, ...] = (
    "transfer_asr",
    "transfer_asr_conditional",
    "whitebox_asr",
    "victim_clean_error",
    "jailbreak_transfer_asr",
    "jailbreak_whitebox_asr",
    "jailbreak_baseline_asr",
    "jailbreak_random_suffix_asr",
)

OVERLAP_KINDS: tuple[str, ...] = ("data", "task", "attribute", "combined")
LAYER_SELECTIONS: tuple[str, ...] = ("default", "best")


def load_run(run_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Load a run folder written by ``reprsim run``.

    Reads ``results.parquet`` (or ``results.csv`` when the parquet file is absent),
    ``config.yaml`` and ``provenance.json`` (each optional; an absent file gives ``{}``).

    Returns
    -------
    df : pandas.DataFrame
        The results table as written, one row per (unit, probe set, layer pair, measure).
    config : dict
        The resolved config.
    provenance : dict
        Package version, git commit, times, timings, seeds.

    Raises
    ------
    ReprsimError
        When the folder or its results table is missing, or a required column is absent.
    """
    import yaml

    root = Path(run_dir)
    if not root.is_dir():
        raise ReprsimError(f"run folder {str(root)!r} does not exist; pass the --out folder of `reprsim run`.")
    parquet, csv = root / "results.parquet", root / "results.csv"
    if parquet.is_file():
        df = pd.read_parquet(parquet)
    elif csv.is_file():
        df = pd.read_csv(csv)
    else:
        raise ReprsimError(
            f"no results table in {str(root)!r} (expected results.parquet or results.csv); "
            "has `reprsim run` finished at least one unit there?"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ReprsimError(
            f"results table in {str(root)!r} lacks required column(s) {missing}; "
            f"it has {sorted(df.columns)}. Was it written by a compatible reprsim version?"
        )
    config: dict[str, Any] = {}
    if (root / "config.yaml").is_file():
        loaded = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))
        config = loaded if isinstance(loaded, dict) else {"config": loaded}
    provenance: dict[str, Any] = {}
    if (root / "provenance.json").is_file():
        try:
            provenance = json.loads((root / "provenance.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ReprsimError(f"provenance.json in {str(root)!r} is not valid JSON ({exc}).") from exc
    return df, config, provenance


def clean_results(df: pd.DataFrame) -> pd.DataFrame:
    """Drop rows that must not enter any statistic and return a copy.

    Dropped: ``status`` other than ``"ok"``; probe sets with ``n_probe == 0`` (empty probe sets,
    whose values are sentinels — the paper's notebook kept such rows in one regression); and
    non-finite ``value``.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
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
    return out


_KEYS = ["unit_id", "probe_set", "measure"]


def select_layers(df: pd.DataFrame, how: str = "default") -> pd.DataFrame:
    """Reduce every (unit, probe set, measure) to one value across its layer pairs.

    ``how="default"``: keep the row with ``layer_a == layer_b == "penultimate"`` when there is
    one, else the first layer pair the table lists for that unit. ``how="best"``: the maximum value
    over all layer pairs (the paper's "best layer pair"; meaningful only for similarities). The
    returned copy carries a ``layer_selection`` column naming the choice.
    """
    if how not in LAYER_SELECTIONS:
        raise ValueError(f"layer selection must be one of {list(LAYER_SELECTIONS)}, got {how!r}.")
    if df.empty:
        out = df.copy()
        out["layer_selection"] = pd.Series(dtype=object)
        return out
    if how == "best":
        idx = df.groupby(_KEYS, sort=False, dropna=False)["value"].idxmax()
        out = df.loc[idx.to_numpy()].copy()
        out["layer_selection"] = "best layer pair (max over pairs)"
        return out
    work = df.copy()
    work["_order"] = np.arange(len(work))
    pen = (work["layer_a"].astype(str) == "penultimate") & (work["layer_b"].astype(str) == "penultimate")
    work["_pen"] = pen.astype(int)
    chosen = work.sort_values(["_pen", "_order"], ascending=[False, True], kind="stable").drop_duplicates(
        _KEYS, keep="first"
    )
    out = chosen.sort_values("_order").drop(columns=["_order", "_pen"])
    out["layer_selection"] = np.where(
        (out["layer_a"].astype(str) == "penultimate") & (out["layer_b"].astype(str) == "penultimate"),
        "penultimate",
        "first layer pair",
    )
    return out


def overlap_x(df: pd.DataFrame) -> pd.Series:
    """The overlap fraction each row's overlap kind varies (the regressor ``x``), as requested.

    data → ``data_fraction``; task and attribute → ``task_fraction``; combined → the common fraction
    on the grid's diagonal (``data_fraction == task_fraction``) and NaN off the diagonal (the full
    grid is analysed by ``combined_effects``). Unknown kinds give NaN.
    """
    d = pd.to_numeric(df["data_fraction"], errors="coerce")
    t = pd.to_numeric(df["task_fraction"], errors="coerce")
    kind = df["overlap_kind"].astype(str)
    x = pd.Series(np.nan, index=df.index, dtype=float)
    x[kind.eq("data")] = d[kind.eq("data")]
    is_task = kind.isin(["task", "attribute"])
    x[is_task] = t[is_task]
    diag = kind.eq("combined") & np.isclose(d.fillna(-1), t.fillna(-2))
    x[diag] = d[diag]
    return x


def prepare(df: pd.DataFrame, layers: str = "default") -> pd.DataFrame:
    """:func:`clean_results`, then :func:`select_layers`, then add the regressor column ``x``."""
    out = select_layers(clean_results(df), layers)
    out["x"] = overlap_x(out)
    if "probe_role" not in out.columns:
        out["probe_role"] = ""
    out["probe_role"] = out["probe_role"].fillna("").astype(str)
    return out


def consequence_columns(df: pd.DataFrame) -> list[str]:
    """Consequence columns present with at least one finite value (``_ba`` variants included)."""
    found = []
    for base in CONSEQUENCE_COLUMNS:
        for name in (base, f"{base}_ba"):
            if name in df.columns and np.isfinite(pd.to_numeric(df[name], errors="coerce")).any():
                found.append(name)
    return found
