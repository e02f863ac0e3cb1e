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

from reprsim.results import CONTRACT_COLUMNS

MEASURES = ("cka", "mutual_knn")
BASE = {"cka": 0.5, "mutual_knn": 0.2}
#: planted slopes per kind and measure on the in-distribution probe set "test"
SLOPES = {
    "data": {"cka": 0.10, "mutual_knn": 0.05},
    "task": {"cka": 0.30, "mutual_knn": 0.12},
    "attribute": {"cka": 0.20, "mutual_knn": 0.15},
}
#: combined grid and factorial design: value = base + d·bd + t·bt + d·t·bdt
COMBINED = {"cka": (0.10, 0.20, 0.05), "mutual_knn": (0.05, 0.00, -0.04)}
FACTORIAL = {"cka": (0.05, 0.30, 0.10), "mutual_knn": (0.02, 0.10, 0.00)}
OOD_SCALE = 0.5  # effects on the OOD probe set are half as large
LAYER_PAIRS = (("conv1", "conv1"), ("conv1", "penultimate"), ("penultimate", "conv1"), ("penultimate", "penultimate"))
NOISE = 0.004
TRANSFER = (0.2, 0.5)  # transfer_asr = a + b * cka(penultimate, test)


def _probe_sets(kind: str, task_fraction: float) -> list[tuple[str, str, int, int]]:
    """(name, role, n_probe, n_probe_classes) of a unit's probe sets."""
    sets = [("test", "id", 500, 10), ("kmnist", "ood", 500, 10)]
    if kind == "task":  # 10 classes, 5 per model: the class subsets change with the fraction
        shared = round(5 * task_fraction)
        sets.append(("common", "common", 0 if shared == 0 else 60 * shared, shared))
        sets.append(("ood_one", "ood_one", 0 if shared == 5 else 60 * 2 * (5 - shared), 2 * (5 - shared)))
        sets.append(("ood_one_fixed", "ood_one_fixed", 120, 2))
    return sets


def _effect(kind: str, measure: str, d: float, t: float) -> float:
    if kind in ("combined", "factorial"):
        bd, bt, bdt = (COMBINED if kind == "combined" else FACTORIAL)[measure]
        return bd * d + bt * t + bdt * d * t
    return SLOPES[kind][measure] * (d if kind == "data" else t)


def _units(kinds: tuple[str, ...]) -> list[tuple[str, float, float]]:
    units: list[tuple[str, float, float]] = []
    if "data" in kinds:
        units += [("data", f, 1.0) for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    if "task" in kinds:
        units += [("task", np.nan, f) for f in (0.0, 0.4, 1.0)]
    if "attribute" in kinds:
        units += [("attribute", 1.0, f) for f in (0.0, 0.5, 1.0)]
    if "combined" in kinds:
        units += [("combined", d, t) for d in (0.0, 0.5, 1.0) for t in (0.0, 0.5, 1.0)]
    if "factorial" in kinds:
        units += [("factorial", d, t) for d in (0.0, 1.0) for t in (0.0, 1.0)]
    return units


def make_results(
    *,
    n_seeds: int = 3,
    consequences: bool = True,
    seed: int = 0,
    kinds: tuple[str, ...] = ("data", "task", "attribute", "combined", "factorial"),
    layer_pairs: tuple[tuple[str, str], ...] = LAYER_PAIRS,
    given_source_fooled: bool = False,
    model: str = "cnn",
    noise: float = NOISE,
) -> pd.DataFrame:
    """A results table with the runner's columns and planted effects (see module docstring)."""
    rng = np.random.default_rng(seed)
    rows = []
    uid = 0
    for kind, d, t in _units(kinds):
        for s in range(n_seeds):
            uid += 1
            unit_id = f"{model}-u{uid:03d}"
            acc_a, acc_b = 0.9 + rng.normal(0, 0.01, 2)
            cka_test = None
            unit_rows = []
            for probe, role, n_probe, n_classes in _probe_sets(kind, t):
                scale = OOD_SCALE if role == "ood" else 1.0
                for measure in MEASURES:
                    effect = _effect(kind, measure, 0.0 if np.isnan(d) else d, t)
                    value = BASE[measure] + scale * effect + rng.normal(0, noise)
                    if probe == "test" and measure == "cka":
                        cka_test = value
                    for la, lb in layer_pairs:
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
                                "unit_id": unit_id,
                                "status": "ok",
                                "source": "mnist",
                                "model": model,
                                "overlap_kind": kind,
                                "data_fraction": d,
                                "task_fraction": t,
                                "realised_data_fraction": d,
                                "realised_task_fraction": t,
                                "seed": s,
                                "probe_set": probe,
                                "probe_role": role,
                                "n_probe": n_probe,
                                "n_probe_classes": n_classes,
                                "layer_a": la,
                                "layer_b": lb,
                                "measure": measure,
                                "value": v,
                                "p_value": 0.001 if effect > 0.05 else 0.2,
                                "acc_a": acc_a,
                                "acc_b": acc_b,
                            }
                        )
            if consequences:
                tr = TRANSFER[0] + TRANSFER[1] * cka_test + rng.normal(0, 0.005)
                tr_ba = TRANSFER[0] + TRANSFER[1] * cka_test + rng.normal(0, 0.005)
                extra = {
                    "transfer_asr": tr,
                    "transfer_asr_low": tr - 0.03,
                    "transfer_asr_high": tr + 0.03,
                    "transfer_asr_ba": tr_ba,
                    "whitebox_asr": 0.9 + rng.normal(0, 0.005),
                    "transfer_asr_conditional": tr - 0.05,
                    "victim_clean_error": 0.1,
                }
                if given_source_fooled:
                    extra["transfer_asr_given_source_fooled"] = tr / 0.9
                for r in unit_rows:
                    r.update(extra)
            rows += unit_rows
    return pd.DataFrame(rows)


def write_run_dir(path: Path, df: pd.DataFrame | None = None, *, config: dict | None = None, **kwargs: object) -> Path:
    """Write a run folder (results.parquet/.csv, config.yaml, provenance.json) and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    df = make_results(**kwargs) if df is None else df  # type: ignore[arg-type]
    df.to_parquet(path / "results.parquet", index=False)
    df.to_csv(path / "results.csv", index=False)
    if config is None:
        config = {
            "name": "synthetic",
            "sources": [{"name": "mnist", "options": {"per_class": 300}}],
            "models": [{"name": "cnn"}],
            "train": {"epochs": 5, "batch_size": 64},
            "seeds": sorted(int(s) for s in df["seed"].unique()),
            "layers": ["conv1", "penultimate"],
            "measures": {"names": list(MEASURES)},
            "probe_size": 500,
            "overlap": {
                "designs": [
                    {"kind": "data", "fractions": [0, 0.25, 0.5, 0.75, 1.0]},
                    {"kind": "task", "fractions": [0, 0.4, 1.0]},
                ]
            },
        }
    (path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    provenance = {
        "package_version": "0.1.0",
        "git_commit": "abc123",
        "start": "2025-01-01T00:00:00",
        "end": "2025-01-01T00:05:00",
        "timings": {"total_s": 300.0},
        "seeds": {"master": 0},
    }
    (path / "provenance.json").write_text(json.dumps(provenance), encoding="utf-8")
    return path


def test_fixture_follows_contract() -> None:
    df = make_results(n_seeds=2)
    assert set(CONTRACT_COLUMNS) <= set(df.columns)
    for col in ("probe_role", "n_probe", "n_probe_classes", "acc_a", "acc_b", "transfer_asr"):
        assert col in df.columns
    assert set(df["overlap_kind"]) == {"data", "task", "attribute", "combined", "factorial"}
    assert (df.loc[df["n_probe"] == 0, "value"] == -1.0).all()
    assert df[df["overlap_kind"] == "task"]["data_fraction"].isna().all()
    ood_one = df[(df.probe_set == "ood_one") & (df.n_probe > 0)].groupby("task_fraction").n_probe_classes.first()
    assert ood_one.nunique() > 1  # the varying composition the analysis must label
    assert df[df.probe_set == "ood_one_fixed"].n_probe_classes.nunique() == 1
    assert "transfer_asr" not in make_results(n_seeds=2, consequences=False).columns
