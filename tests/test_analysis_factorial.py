"""The factorial (2 × 2) design and the combined grid, seed as the unit, against hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from test_analysis_fixture import COMBINED, FACTORIAL, make_results

from reprsim.analysis import PrimaryFamily, combined_grid, factorial_effects, summarize

PEN = (("penultimate", "penultimate"), ("conv1", "conv1"))


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_results(n_seeds=5, kinds=("factorial", "combined"), layer_pairs=PEN, consequences=False)


def _corners(table: pd.DataFrame, measure: str, probe: str) -> pd.DataFrame:
    m = table[
        (table.overlap_kind == "factorial")
        & (table.measure == measure)
        & (table.probe_set == probe)
        & (table.layer_a == "penultimate")
    ]
    return m.pivot_table(index="seed", columns=["data_fraction", "task_fraction"], values="value")


def _t(values: np.ndarray) -> tuple[float, float, float]:
    n = values.size
    half = sps.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return values.mean(), values.mean() - half, values.mean() + half


FAMILY = PrimaryFamily(("cka", "mutual_knn"), "all")  # declared here: the test does not lean on the default


def _interaction_p(table: pd.DataFrame, measure: str, probe: str) -> tuple[float, float, float, float]:
    """(estimate, low, high, two-sided t p) of the per-seed interaction, by hand."""
    c = _corners(table, measure, probe)
    inter = (c[(1.0, 1.0)] - c[(1.0, 0.0)] - c[(0.0, 1.0)] + c[(0.0, 0.0)]).to_numpy()
    est, low, high = _t(inter)
    se = inter.std(ddof=1) / np.sqrt(inter.size)
    return est, low, high, 2 * sps.t.sf(abs(est / se), inter.size - 1)


@pytest.mark.parametrize(("measure", "planted"), [("cka", "positive"), ("mutual_knn", "inconclusive")])
def test_interaction_and_main_effects_by_hand(table, measure, planted) -> None:
    fac = factorial_effects(table, primary=FAMILY)
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
    # the verdict: Holm over the family's cells at the headline layer pair, then the interval's side
    cells = [(m, p) for m in FAMILY.measures for p in sorted(table.probe_set.unique())]
    p = np.array([_interaction_p(table, *cell)[3] for cell in cells])
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate([min(1.0, (p.size - i) * p[j]) for i, j in enumerate(order)])
    adj = adjusted[cells.index((measure, "test"))]
    assert r.p_adjusted == pytest.approx(adj, rel=1e-9)
    verdict = "positive" if adj < 0.05 and low > 0 else "negative" if adj < 0.05 and high < 0 else "inconclusive"
    assert r.verdict == verdict == planted


def test_factorial_verdicts_family_and_keys(table) -> None:
    fac = factorial_effects(table)
    for key in (
        "source",
        "model",
        "probe_set",
        "layer_a",
        "layer_b",
        "measure",
        "estimate",
        "low",
        "high",
        "n_seeds",
        "verdict",
    ):
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
    assert recs and all(
        {
            "measure",
            "probe_set",
            "estimate",
            "low",
            "high",
            "n_seeds",
            "verdict",
            "source",
            "model",
            "layer_a",
            "layer_b",
        }
        <= set(r)
        for r in recs
    )


def test_factorial_with_two_seeds_gives_no_interval() -> None:
    t = make_results(n_seeds=2, kinds=("factorial",), layer_pairs=PEN[:1], consequences=False)
    r = factorial_effects(t).iloc[0]
    assert np.isfinite(r.estimate) and np.isnan(r.low) and "no interval" in r.reason and r.verdict == "inconclusive"


def test_combined_grid_uses_per_seed_fits(table) -> None:
    grid = combined_grid(table)
    r = grid[(grid.measure == "cka") & (grid.probe_set == "test") & (grid.layer_a == "penultimate")].iloc[0]
    m = table[
        (table.overlap_kind == "combined")
        & (table.measure == "cka")
        & (table.probe_set == "test")
        & (table.layer_a == "penultimate")
    ]
    coefs = []
    for _, g in m.groupby("seed"):
        d, t = g.data_fraction.to_numpy(), g.task_fraction.to_numpy()
        design = np.column_stack([np.ones_like(d), d, t, d * t])
        coefs.append(np.linalg.lstsq(design, g.value.to_numpy(), rcond=None)[0][3])
    est, low, high = _t(np.array(coefs))
    assert (r.coef_interaction, r.coef_interaction_low, r.coef_interaction_high) == pytest.approx(
        (est, low, high), rel=1e-9
    )
    assert r.coef_interaction == pytest.approx(COMBINED["cka"][2], abs=0.02)
    per_seed = m.pivot_table(index="seed", columns=["data_fraction", "task_fraction"], values="value")
    gain_both = per_seed[(1.0, 1.0)] - per_seed[(0.0, 0.0)]
    assert r.gain_both == pytest.approx(gain_both.mean(), rel=1e-9) and r.n_seeds == 5
    assert r.combined_strongest == "yes"
