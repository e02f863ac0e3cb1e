"""Synthetic run folders for the analysis/report tests, with planted, known effects.

``make_results`` builds a results table following the runner's column contract; the value of a
measure is ``base + slope·x`` (+ seeded noise) at the penultimate layer pair, so tests can check
that the analysis recovers the planted slopes. Imported by the other ``test_analysis_*`` and
``test_report*`` modules (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

MEASURES = ("cka", "mutual_knn")
BASE = {"cka": 0.5, "mutual_knn": 0.2}
#: planted slopes per kind and measure on the in-distribution probe set "test"
SLOPES = {
    "data": {"cka": 0.10, "mutual_knn": 0.05},
    "task": {"cka": 0.30, "mutual_knn": 0.12},
    "attribute": {"cka": 0.20, "mutual_knn": 0.15},
}
#: combined grid: value = base + d·bd + t·bt + d·t·bdt
COMBINED = {"cka": (0.10, 0.20, 0.05), "mutual_knn": (0.05, 0.00, -0.04)}
OOD_SCALE = 0.5  # effects on the OOD probe set are half as large
LAYER_PAIRS = (("conv1", "conv1"), ("conv1", "penultimate"), ("penultimate", "conv1"), ("penultimate", "penultimate"))
NOISE = 0.004
TRANSFER = (0.2, 0.5)  # transfer_asr = a + b * cka(penultimate, test)


def _probe_sets(kind: str, task_fraction: float) -> list[tuple[str, str, int]]:
    sets = [("test", "id", 500), ("kmnist", "ood", 500)]
    if kind == "task":
        sets.append(("common", "common", 0 if task_fraction == 0 else 300))
        sets.append(("ood_one", "ood_one", 0 if task_fraction == 1 else 300))
    return sets


def make_results(*, n_seeds: int = 3, consequences: bool = True, seed: int = 0) -> pd.DataFrame:
    """A results table with the runner's columns and planted effects (see module docstring)."""
    rng = np.random.default_rng(seed)
    units: list[tuple[str, float, float]] = []
    units += [("data", f, 1.0) for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    units += [("task", np.nan, f) for f in (0.0, 0.5, 1.0)]
    units += [("attribute", 1.0, f) for f in (0.0, 0.5, 1.0)]
    units += [("combined", d, t) for d in (0.0, 0.5, 1.0) for t in (0.0, 0.5, 1.0)]
    rows = []
    uid = 0
    for kind, d, t in units:
        for s in range(n_seeds):
            uid += 1
            unit_id = f"u{uid:03d}"
            acc_a, acc_b = 0.9 + rng.normal(0, 0.01, 2)
            cka_test = None
            unit_rows = []
            for probe, role, n_probe in _probe_sets(kind, t):
                scale = OOD_SCALE if role == "ood" else 1.0
                for measure in MEASURES:
                    if kind == "combined":
                        bd, bt, bdt = COMBINED[measure]
                        effect = bd * d + bt * t + bdt * d * t
                    else:
                        effect = SLOPES[kind][measure] * (d if kind == "data" else t)
                    value = BASE[measure] + scale * effect + rng.normal(0, NOISE)
                    if probe == "test" and measure == "cka":
                        cka_test = value
                    for la, lb in LAYER_PAIRS:
                        if n_probe == 0:
                            v = -1.0  # the sentinel an empty probe set leaves behind
                        elif (la, lb) == ("penultimate", "penultimate"):
                            v = value
                        elif la == lb:
                            v = value + 0.05
                        else:
                            v = value - 0.3
                        unit_rows.append(
                            {
                                "unit_id": unit_id, "status": "ok", "source": "mnist", "model": "cnn",
                                "overlap_kind": kind, "data_fraction": d, "task_fraction": t,
                                "realised_data_fraction": d, "realised_task_fraction": t, "seed": s,
                                "probe_set": probe, "probe_role": role, "n_probe": n_probe,
                                "layer_a": la, "layer_b": lb, "measure": measure, "value": v,
                                "p_value": 0.001 if effect > 0.05 else 0.2, "acc_a": acc_a, "acc_b": acc_b,
                            }
                        )  # fmt: skip
            if consequences:
                tr = TRANSFER[0] + TRANSFER[1] * cka_test + rng.normal(0, 0.005)
                tr_ba = TRANSFER[0] + TRANSFER[1] * cka_test + rng.normal(0, 0.005)
                extra = {
                    "transfer_asr": tr, "transfer_asr_low": tr - 0.03, "transfer_asr_high": tr + 0.03,
                    "transfer_asr_ba": tr_ba, "whitebox_asr": 0.9 + rng.normal(0, 0.005),
                    "transfer_asr_conditional": tr - 0.05, "victim_clean_error": 0.1,
                }  # fmt: skip
                for r in unit_rows:
                    r.update(extra)
            rows += unit_rows
    return pd.DataFrame(rows)


def write_run_dir(path: Path, df: pd.DataFrame | None = None, **kwargs: object) -> Path:
    """Write a run folder (results.parquet/.csv, config.yaml, provenance.json) and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    df = make_results(**kwargs) if df is None else df  # type: ignore[arg-type]
    df.to_parquet(path / "results.parquet", index=False)
    df.to_csv(path / "results.csv", index=False)
    config = {"name": "synthetic", "source": "mnist", "model": "cnn", "seeds": [0, 1, 2],
              "measures": list(MEASURES), "overlap": {"data": [0, 0.25, 0.5, 0.75, 1.0]}}  # fmt: skip
    (path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    provenance = {"package_version": "0.1.0", "git_commit": "abc123", "start": "2025-01-01T00:00:00",
                  "end": "2025-01-01T00:05:00", "timings": {"total_s": 300.0}, "seeds": {"master": 0}}  # fmt: skip
    (path / "provenance.json").write_text(json.dumps(provenance), encoding="utf-8")
    return path


def test_fixture_follows_contract() -> None:
    df = make_results(n_seeds=2)
    for col in ("unit_id", "overlap_kind", "data_fraction", "task_fraction", "seed", "probe_set", "probe_role",
                "n_probe", "layer_a", "layer_b", "measure", "value", "acc_a", "acc_b", "transfer_asr"):  # fmt: skip
        assert col in df.columns
    assert set(df["overlap_kind"]) == {"data", "task", "attribute", "combined"}
    assert (df.loc[df["n_probe"] == 0, "value"] == -1.0).all()
    assert df[df["overlap_kind"] == "task"]["data_fraction"].isna().all()
    assert "transfer_asr" not in make_results(n_seeds=2, consequences=False).columns
