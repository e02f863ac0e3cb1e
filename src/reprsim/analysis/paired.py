"""Paired differences on shared inputs: the seed-level summary of a run's ``paired.csv``.

``paired.csv`` (written by the sweep's paired stage, ``measures.paired``) holds, per design arm, seed,
probe set and measure, value₁ − value₂ of the pair at the highest fraction vs the pair at the lowest,
on the same probe inputs, with a within-seed paired-bootstrap interval over those inputs. Here each
(arm, probe set, measure) is summarised over seeds — never pooled across arms, probe sets or measures:
the mean difference with a t interval over the seeds' differences (the seed is the unit), how many
seeds' within-seed intervals exclude 0, and the median within-seed interval width. These are
exploratory (outside the Holm primary family).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from reprsim.analysis.inference import LEVEL, t_summary
from reprsim.analysis.text import design_label, fmt, fmt_ci, measure_label

__all__ = ["PAIRED_FILE", "load_paired", "paired_sentence", "paired_summary", "paired_table_rows"]

PAIRED_FILE = "paired.csv"
#: the columns that identify one summarised cell (``run`` first when several runs are analysed)
CELL_COLUMNS = (
    "run",
    "design",
    "source",
    "model",
    "align",
    "init",
    "task_images",
    "probe_set",
    "measure",
    "layer",
    "fraction_1",
    "fraction_2",
)
NEEDED = ("design", "probe_set", "measure", "seed", "difference", "ci_low", "ci_high")


def load_paired(runs: list[Any]) -> pd.DataFrame | None:
    """The ``paired.csv`` of each run (objects with ``path`` and ``name``) that has one, concatenated
    (with a ``run`` column when several runs are given); None when none has one."""
    frames = []
    for run in runs:
        path = Path(run.path) / PAIRED_FILE
        if not path.is_file():
            continue
        frame = pd.read_csv(path)
        missing = [c for c in NEEDED if c not in frame.columns]
        if missing:
            raise ValueError(f"{path} lacks the column(s) {', '.join(missing)}; rerun the sweep to rewrite it.")
        if len(runs) > 1:
            frame.insert(0, "run", run.name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def paired_summary(paired: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """One record per (arm, probe set, measure): ``n_seeds``, ``mean_difference`` with its t interval
    (``low``, ``high``) over the seeds' differences, ``n_excluding_zero`` (seeds whose within-seed
    interval excludes 0), ``median_ci_width`` and ``verdict`` (``higher`` / ``lower`` when the t interval
    excludes 0, else ``inconclusive``)."""
    if paired is None or paired.empty:
        return pd.DataFrame()
    axes = [c for c in CELL_COLUMNS if c in paired.columns]
    records = []
    for key, g in paired.groupby(axes, sort=False, dropna=False):
        g = g[pd.to_numeric(g["difference"], errors="coerce").notna()]
        if g.empty:
            continue
        t = t_summary(g["difference"], level=level)
        low, high = g["ci_low"].astype(float), g["ci_high"].astype(float)
        excludes = int(((low > 0) | (high < 0)).sum())
        verdict = "inconclusive"
        if pd.notna(t["low"]) and (t["low"] > 0 or t["high"] < 0):
            verdict = "higher" if t["low"] > 0 else "lower"
        records.append(
            dict(zip(axes, key if isinstance(key, tuple) else (key,)))
            | {
                "n_seeds": int(g["seed"].nunique()),
                "mean_difference": t["estimate"],
                "low": t["low"],
                "high": t["high"],
                "n_excluding_zero": excludes,
                "median_ci_width": float((high - low).median()),
                "verdict": verdict,
            }
        )
    return pd.DataFrame(records)


def _fractions(r: dict[str, Any]) -> str:
    return f"{float(r['fraction_1']):g} vs {float(r['fraction_2']):g}" if "fraction_1" in r else ""


def _arm(r: dict[str, Any]) -> str:
    where = " · ".join(str(r[k]) for k in ("run", "source", "model") if k in r and pd.notna(r[k]))
    return f"{design_label(r | {'overlap_kind': r['design']})} ({where})"


def paired_table_rows(records: pd.DataFrame) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, display rows and verdicts of the report's paired-differences table."""
    header = [
        "design",
        "probe set",
        "measure",
        "fractions",
        "seeds",
        "mean difference [t interval]",
        "seeds excluding 0",
        "median within-seed width",
        "verdict",
    ]
    rows, verdicts = [], []
    for _, r in records.iterrows():
        r = r.dropna().to_dict() | {"low": r["low"], "high": r["high"]}
        rows.append(
            [
                _arm(r),
                str(r["probe_set"]),
                measure_label(r["measure"]),
                _fractions(r),
                str(r["n_seeds"]),
                fmt_ci(r["mean_difference"], r["low"], r["high"]),
                f"{r['n_excluding_zero']}/{r['n_seeds']}",
                fmt(r["median_ci_width"], 3),
                r["verdict"],
            ]
        )
        verdicts.append(r["verdict"])
    return header, rows, verdicts


def paired_sentence(records: pd.DataFrame) -> str:
    """One findings sentence: per design, the headline measures' paired differences (empty when none)."""
    if records is None or records.empty:
        return ""
    parts = []
    for _, r in records.iterrows():
        r = r.dropna().to_dict() | {"low": r["low"], "high": r["high"]}
        verdict = "inconclusive (the interval contains 0)" if r["verdict"] == "inconclusive" else r["verdict"]
        parts.append(
            f"{measure_label(r['measure'])} on '{r['probe_set']}' ({_arm(r)}, {_fractions(r)}): "
            f"{fmt_ci(r['mean_difference'], r['low'], r['high'])}, {verdict}; "
            f"{r['n_excluding_zero']} of {r['n_seeds']} seeds' own intervals exclude 0"
        )
    return (
        "**Paired differences on shared inputs** (highest vs lowest overlap within each seed, the same probe "
        "inputs; exploratory, unadjusted): " + "; ".join(parts) + "."
    )
