"""The factorial (2 × 2) design and the combined grid, seed as the unit, against hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from test_analysis_fixture import COMBINED, FACTORIAL, make_results

from reprsim.analysis import combined_grid, factorial_effects, summarize

PEN = (("penultimate", "penultimate"), ("conv1", "conv1"))


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_results(n_seeds=5, kinds=("factorial", "combined"), layer_pairs=PEN, consequences=False)


def _corners(table: pd.DataFrame, measure: str, probe: str) -> pd.DataFrame:
    m = table[(table.overlap_kind == "factorial") & (table.measure == measure) & (table.probe_set == probe)
              & (table.layer_a == "penultimate")]  # fmt: skip
    return m.pivot_table(index="seed", columns=["data_fraction", "task_fraction"], values="value")


def _t(values: np.ndarray) -> tuple[float, float, float]:
    n = values.size
    half = sps.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return values.mean(), values.mean() - half, values.mean() + half


@pytest.mark.parametrize("measure", ["cka", "mutual_knn"])
def test_interaction_and_main_effects_by_hand(table, measure) -> None:
    fac = factorial_effects(table)
    r = fac[(fac.measure == measure) & (fac.probe_set == "test") & (fac.layer_a == "penultimate")].iloc[0]
    c = _corners(table, measure, "test")
    y00, y10, y01, y11 = c[(0.0, 0.0)], c[(1.0, 0.0)], c[(0.0, 1.0)], c[(1.0, 1.0)]
    est, low, high = _t((y11 - y10 - y01 + y00).to_numpy())
    assert (r.estimate, r.low, r.high) == pytest.approx((est, low, high), rel=1e-9)
    assert r.n_seeds == 5
    assert r.estimate == pytest.approx(FACTORIAL[measure][2], abs=0.01)
    assert r.data_main == pytest.approx(((y10 - y00 + y11 - y01) / 2).mean(), rel=1e-9)
    assert r.task_main == pytest.approx(((y01 - y00 + y11 - y10) / 2).mean(), rel=1e-9)
    best = "data" if (y10 - y00).mean() >= (y01 - y00).mean() else "task"
    assert r.best_single == best == "task"
    assert r.both_minus_best_single == pytest.approx((y11 - y01).mean(), rel=1e-9)
    assert r.verdict in ("positive", "negative", "inconclusive")


def test_factorial_verdicts_family_and_keys(table) -> None:
    fac = factorial_effects(table)
    for key in ("source", "model", "probe_set", "layer_a", "layer_b", "measure", "estimate", "low", "high", "n_seeds",
                "verdict"):  # fmt: skip
        assert key in fac.columns
    prim = fac[fac.family == "primary"]
    assert (prim.layer_a == "penultimate").all() and prim.p_adjusted.notna().all()
    pos = prim[(prim.measure == "cka") & (prim.probe_set == "test")].iloc[0]
    assert pos.verdict == "positive" and pos.combined_strongest == "yes"  # planted +0.10 interaction
    # mutual kNN is exploratory in the default family (CKA, CKNNA)
    null = fac[(fac.measure == "mutual_knn") & (fac.probe_set == "test") & (fac.layer_a == "penultimate")].iloc[0]
    assert null.verdict == "inconclusive"  # planted 0: the interval contains 0 (never "no effect")
    s = summarize(table, n_boot=100, n_perm=100)
    recs = s["combined"]["interaction"]
    assert recs and all({"measure", "probe_set", "estimate", "low", "high", "n_seeds", "verdict", "source", "model",
                         "layer_a", "layer_b"} <= set(r) for r in recs)  # fmt: skip


def test_factorial_with_two_seeds_gives_no_interval() -> None:
    t = make_results(n_seeds=2, kinds=("factorial",), layer_pairs=PEN[:1], consequences=False)
    r = factorial_effects(t).iloc[0]
    assert np.isfinite(r.estimate) and np.isnan(r.low) and "no interval" in r.reason and r.verdict == "inconclusive"


def test_combined_grid_uses_per_seed_fits(table) -> None:
    grid = combined_grid(table)
    r = grid[(grid.measure == "cka") & (grid.probe_set == "test") & (grid.layer_a == "penultimate")].iloc[0]
    m = table[(table.overlap_kind == "combined") & (table.measure == "cka") & (table.probe_set == "test")
              & (table.layer_a == "penultimate")]  # fmt: skip
    coefs = []
    for _, g in m.groupby("seed"):
        d, t = g.data_fraction.to_numpy(), g.task_fraction.to_numpy()
        design = np.column_stack([np.ones_like(d), d, t, d * t])
        coefs.append(np.linalg.lstsq(design, g.value.to_numpy(), rcond=None)[0][3])
    est, low, high = _t(np.array(coefs))
    assert (r.coef_interaction, r.coef_interaction_low, r.coef_interaction_high) == pytest.approx((est, low, high), rel=1e-9)
    assert r.coef_interaction == pytest.approx(COMBINED["cka"][2], abs=0.02)
    per_seed = m.pivot_table(index="seed", columns=["data_fraction", "task_fraction"], values="value")
    gain_both = per_seed[(1.0, 1.0)] - per_seed[(0.0, 0.0)]
    assert r.gain_both == pytest.approx(gain_both.mean(), rel=1e-9) and r.n_seeds == 5
    assert r.combined_strongest == "yes"
