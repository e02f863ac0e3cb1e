"""Calibrated and behavioural overlap effects, and ``layers: best`` with the sweep's best rows, on
small tables built by hand in the result schema."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from reprsim.analysis import PrimaryFamily, build_report, summarize
from reprsim.analysis.findings import findings_markdown
from reprsim.analysis.load import BEST_SELECTED, BEST_WITH_NULL, clean_results, select_layers

FRACTIONS = (0.0, 0.5, 1.0)
SEEDS = (0, 1, 2, 3)
N = dict(n_boot=50, n_perm=50)


def _row(seed: int, x: float, la: str, lb: str, measure: str, value: float, **extra) -> dict:
    return {
        "unit_id": f"data-{x}-{seed}",
        "status": "ok",
        "source": "toy",
        "model": "mlp",
        "overlap_kind": "data",
        "data_fraction": x,
        "task_fraction": np.nan,
        "seed": seed,
        "probe_set": "test",
        "probe_role": "id",
        "n_probe": 100,
        "layer_a": la,
        "layer_b": lb,
        "measure": measure,
        "value": value,
        "p_value": np.nan,
        **extra,
    }


def make_table(calibrated: bool = True, outputs: bool = True, best: bool = False) -> pd.DataFrame:
    """Raw CKA rises by 0.2 per unit overlap; calibrated CKA by 0.50 + 0.01·seed (exactly, per seed);
    error consistency by 0.2 − 0.01·seed; JS divergence falls by 0.1; kNN-type cknna is flat but noisy."""
    rng = np.random.default_rng(0)
    rows = []
    for s in SEEDS:
        for x in FRACTIONS:
            for la in ("hidden", "penultimate"):
                shift = 0.0 if la == "penultimate" else -0.05
                cal = {"calibrated": 0.1 + (0.5 + 0.01 * s) * x, "null_mean": 0.05, "tau": 0.1} if calibrated else {}
                rows.append(_row(s, x, la, "penultimate", "cka", 0.3 + 0.2 * x + 0.01 * s + shift, **cal))
                rows.append(
                    _row(
                        s,
                        x,
                        la,
                        "penultimate",
                        "cknna",
                        0.4 + rng.normal(0, 0.01) + shift,
                        **({"calibrated": 0.3 + rng.normal(0, 0.05)} if calibrated else {}),
                    )
                )
            if best:  # the sweep's row: max over the pairs, p-value from the null of the maximum
                rows.append(_row(s, x, "best", "best", "cka", 0.3 + 0.2 * x + 0.01 * s, p_value=0.01 * (1 + s)))
            if outputs:
                rows.append(
                    _row(
                        s,
                        x,
                        "output",
                        "output",
                        "error_consistency",
                        0.1 + (0.2 - 0.01 * s) * x,
                        value_ci_low=0.0,
                        value_ci_high=0.5,
                        ci_n_boot=100,
                    )
                )
                rows.append(_row(s, x, "output", "output", "js_divergence", 0.3 - 0.1 * x + 0.002 * s))
    return pd.DataFrame(rows)


def _t_interval(slopes: np.ndarray) -> tuple[float, float, float]:
    m, se = slopes.mean(), slopes.std(ddof=1) / np.sqrt(slopes.size)
    q = sps.t.ppf(0.975, slopes.size - 1)
    return m, m - q * se, m + q * se


@pytest.fixture(scope="module")
def summary() -> dict:
    return summarize(make_table(), **N)


def _one(records: list[dict], **keys) -> dict:
    hit = [r for r in records if all(r[k] == v for k, v in keys.items())]
    assert len(hit) == 1, hit
    return hit[0]


def test_calibrated_effect_is_the_per_seed_slope_of_the_calibrated_column(summary) -> None:
    r = _one(summary["calibrated_effects"], measure="cka")
    # per-seed slopes are exactly 0.50, 0.51, 0.52, 0.53: mean 0.515, t(3) interval
    est, lo, hi = _t_interval(np.array([0.50, 0.51, 0.52, 0.53]))
    assert (
        r["slope"] == pytest.approx(est)
        and r["slope_low"] == pytest.approx(lo)
        and r["slope_high"] == pytest.approx(hi)
    )
    assert (r["layer_a"], r["layer_b"]) == ("penultimate", "penultimate")  # the headline pair only
    assert r["family"] == "exploratory" and r["p_adjusted"] is None and r["verdict"] == "rises"
    assert r["column"] == "calibrated"
    # raw effects are untouched: CKA's raw slope is 0.2
    raw = _one(summary["overlap_effects"], measure="cka", layer_a="penultimate")
    assert raw["slope"] == pytest.approx(0.2)
    assert {e["measure"] for e in summary["overlap_effects"]} == {"cka", "cknna"}  # behavioural rows stay apart


def test_behavioural_effects_from_the_output_rows(summary) -> None:
    ec = _one(summary["behavioural_effects"], measure="error_consistency")
    est, lo, hi = _t_interval(np.array([0.20, 0.19, 0.18, 0.17]))
    assert (ec["slope"], ec["slope_low"], ec["slope_high"]) == pytest.approx((est, lo, hi))
    assert ec["layer_a"] == "output" and ec["family"] == "exploratory" and not ec["distance"]
    js = _one(summary["behavioural_effects"], measure="js_divergence")
    assert js["slope"] == pytest.approx(-0.1) and js["distance"] and js["verdict"] == "falls"
    assert "similarity rises" in js["verdict_note"]
    assert "behavioural" in summary["statistics"] and "calibrated" in summary["statistics"]


def test_declared_families_are_holm_adjusted_on_their_own(summary) -> None:
    primary = PrimaryFamily(calibrated=True, behavioural=("error_consistency",))
    s = summarize(make_table(), primary=primary, **N)
    cal = {r["measure"]: r for r in s["calibrated_effects"]}
    assert cal["cka"]["family"] == cal["cknna"]["family"] == "primary"
    ps = np.array([cal["cka"]["p"], cal["cknna"]["p"]])
    holm = np.minimum(1, np.maximum.accumulate(np.sort(ps) * np.array([2, 1])))[np.argsort(np.argsort(ps))]
    assert [cal["cka"]["p_adjusted"], cal["cknna"]["p_adjusted"]] == pytest.approx(holm.tolist())
    beh = {r["measure"]: r for r in s["behavioural_effects"]}
    assert beh["error_consistency"]["family"] == "primary" and beh["js_divergence"]["family"] == "exploratory"
    # the raw primary family is the same with or without the secondary ones
    assert s["analysis"]["family_size"] == summary["analysis"]["family_size"]


def test_findings_sentences(summary) -> None:
    text = findings_markdown(summary)
    assert "**On calibrated scores** (exploratory, unadjusted): CKA on 'test'" in text
    assert "**Error consistency vs overlap** (exploratory, unadjusted): error consistency on 'test'" in text
    # cknna's calibrated score is flat noise: inconclusive, written with its bounding interval
    cknna = _one(summary["calibrated_effects"], measure="cknna")
    assert cknna["verdict"] == "inconclusive"
    assert "no detectable effect, bounded by [" in text.split("CKNNA on 'test'")[1].split(";")[0]


def test_old_tables_have_no_secondary_sections(tmp_path) -> None:
    s = summarize(make_table(calibrated=False, outputs=False), **N)
    assert "calibrated_effects" not in s and "behavioural_effects" not in s
    assert "calibrated" not in findings_markdown(s).lower()
    make_table(calibrated=False, outputs=False).to_parquet(tmp_path / "results.parquet")
    md = build_report(tmp_path, "md", figures=False, **N).read_text()
    assert "Calibrated similarity vs overlap" not in md and "Behavioural similarity" not in md


def test_report_shows_both_sections(tmp_path) -> None:
    make_table().to_parquet(tmp_path / "results.parquet")
    md = build_report(tmp_path, "md", figures=False, **N).read_text()
    assert "Calibrated similarity vs overlap" in md and "Behavioural similarity vs overlap" in md
    assert "Calibrated effect [95% CI]" in md and "error consistency" in md
    html = (tmp_path / "report.html").read_text()
    assert "Calibrated similarity vs overlap" in html
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert {r["measure"] for r in saved["behavioural_effects"]} == {"error_consistency", "js_divergence"}


def test_best_layers_use_the_sweep_rows_with_their_null() -> None:
    data = clean_results(make_table(outputs=True, best=True))
    best = select_layers(data, "best")
    cka = best[best.measure == "cka"]
    assert (cka.layer_selection == BEST_WITH_NULL).all() and len(cka) == len(FRACTIONS) * len(SEEDS)
    assert sorted(cka.p_value.round(2).unique()) == [0.01, 0.02, 0.03, 0.04]  # the sweep's selection-aware p
    cknna = best[best.measure == "cknna"]  # no sweep row: the maximum picked here, labelled so
    assert (cknna.layer_selection == BEST_SELECTED).all() and (cknna.layer_a == "max over layer pairs").all()
    assert (best[best.measure == "error_consistency"].layer_a == "output").all()  # outputs kept as they are
    default = select_layers(data, "default")
    assert "best" not in set(default.layer_a)  # the maximum is not a layer pair of its own
    s = summarize(make_table(best=True), layers="best", **N)
    assert "null of that maximum" in s["statistics"]["best_layers"]
    assert "selected maximum" in s["statistics"]["best_layers_selected"]
