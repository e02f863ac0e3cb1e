"""Verdicts read from the Holm-adjusted p (primary cells) and from the raw p (exploratory cells).

A hand-built results table: one model, data overlap at fractions 0 and 1, three seeds, so each
seed's OLS slope is exactly value(1) − value(0) and the planted per-seed slopes are the slopes the
analysis must summarise. The slopes are chosen so that, with the declared primary family
{cka, cknna} × {test, kmnist} (three of its cells present), the Holm step matters:

* ``cka / test``    p ≈ 0.003 → adjusted ≈ 0.008: rises;
* ``cknna / test``  p ≈ 0.036 → adjusted 2p ≈ 0.073: inconclusive (raw p < 0.05);
* ``cka / kmnist``  p ≈ 0.041 → adjusted = the running maximum ≈ 0.073: inconclusive, although
  1·p < 0.05 (only the step-down's monotonicity makes it so).

Declared as exploratory (the same table, a family of ``cka / test`` alone), the last two read
``rises``. The same per-seed numbers planted as the interactions of a 2 × 2 factorial table give
the same verdicts there (``positive`` / ``inconclusive``): the factorial analysis reads its verdict
from the p-value and the unadjusted interval, so only the adjusted p keeps those two cells
inconclusive. Every t statistic, p and Holm step is computed here with ``scipy.stats.t``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from reprsim.analysis import PrimaryFamily, factorial_effects, overlap_effects

#: per-seed slopes (3 seeds) of each cell (measure, probe set)
SLOPES = {
    ("cka", "test"): (0.10, 0.11, 0.12),
    ("cknna", "test"): (0.07, 0.10, 0.14),
    ("cka", "kmnist"): (0.055, 0.10, 0.12),
    ("mutual_knn", "test"): (-0.10, -0.11, -0.125),  # never primary: exploratory, falls
}
BASE = {0: 0.40, 1: 0.45, 2: 0.42}  # per-seed value at fraction 0
FAMILY = PrimaryFamily(("cka", "cknna"), ("test", "kmnist"))
NARROW = PrimaryFamily(("cka",), ("test",))


def _table() -> pd.DataFrame:
    rows = []
    for (measure, probe), slopes in SLOPES.items():
        for seed, slope in enumerate(slopes):
            for x in (0.0, 1.0):
                rows.append(
                    {
                        "unit_id": f"u-{seed}-{x}",
                        "status": "ok",
                        "source": "mnist",
                        "model": "mlp",
                        "overlap_kind": "data",
                        "data_fraction": x,
                        "task_fraction": 1.0,
                        "seed": seed,
                        "probe_set": probe,
                        "probe_role": "id" if probe == "test" else "ood",
                        "n_probe": 100,
                        "layer_a": "penultimate",
                        "layer_b": "penultimate",
                        "measure": measure,
                        "value": BASE[seed] + slope * x,
                    }
                )
    return pd.DataFrame(rows)


def _factorial_table() -> pd.DataFrame:
    """value = base + 0.01·d + 0.02·t + I·d·t per seed, so each seed's interaction
    y11 − y10 − y01 + y00 is exactly the planted I (the numbers of SLOPES)."""
    rows = []
    for (measure, probe), inters in SLOPES.items():
        for seed, inter in enumerate(inters):
            for d in (0.0, 1.0):
                for t in (0.0, 1.0):
                    rows.append(
                        {
                            "unit_id": f"f-{seed}-{d}-{t}",
                            "status": "ok",
                            "source": "colorshapes",
                            "model": "mlp",
                            "overlap_kind": "factorial",
                            "data_fraction": d,
                            "task_fraction": t,
                            "seed": seed,
                            "probe_set": probe,
                            "n_probe": 100,
                            "layer_a": "penultimate",
                            "layer_b": "penultimate",
                            "measure": measure,
                            "value": BASE[seed] + 0.01 * d + 0.02 * t + inter * d * t,
                        }
                    )
    return pd.DataFrame(rows)


def _t_test(slopes: tuple[float, ...]) -> tuple[float, float, float, float]:
    """(mean, 95% low, 95% high, two-sided p) of the one-sample t-test on the per-seed slopes, by hand."""
    s = np.asarray(slopes, dtype=float)
    n = s.size
    mean = s.sum() / n
    se = np.sqrt(((s - mean) ** 2).sum() / (n - 1)) / np.sqrt(n)
    half = sps.t.ppf(0.975, n - 1) * se
    return mean, mean - half, mean + half, 2 * sps.t.sf(abs(mean / se), n - 1)


def _cell(effects: pd.DataFrame, measure: str, probe: str) -> pd.Series:
    hit = effects[(effects.measure == measure) & (effects.probe_set == probe)]
    assert len(hit) == 1
    return hit.iloc[0]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return _table()


def test_the_planted_slopes_make_the_holm_step_matter() -> None:
    p = {cell: _t_test(s)[3] for cell, s in SLOPES.items()}
    p1, p2, p3 = p["cka", "test"], p["cknna", "test"], p["cka", "kmnist"]
    assert p1 < p2 < p3 < 0.05  # every raw p passes
    assert 3 * p1 < 0.05 <= 2 * p2  # Holm: the first survives, the second does not ...
    assert p3 < 0.05 <= max(3 * p1, 2 * p2, p3)  # ... nor the third, through the running maximum only


def test_primary_cells_read_the_holm_adjusted_p(table) -> None:
    eff = overlap_effects(table, primary=FAMILY, n_boot=50, n_perm=20)
    order = [("cka", "test"), ("cknna", "test"), ("cka", "kmnist")]  # ascending raw p (checked above)
    p = [_t_test(SLOPES[c])[3] for c in order]
    adjusted = np.maximum.accumulate([min(1.0, (3 - i) * pi) for i, pi in enumerate(p)])  # Holm, m = 3
    want_verdict = ["rises", "inconclusive", "inconclusive"]
    for cell, adj, verdict in zip(order, adjusted, want_verdict):
        mean, low, high, raw = _t_test(SLOPES[cell])
        r = _cell(eff, *cell)
        assert r.family == "primary", cell
        assert (r.slope, r.slope_low, r.slope_high) == pytest.approx((mean, low, high), rel=1e-9), cell
        assert r.p == pytest.approx(raw, rel=1e-9) and r.p < 0.05, cell
        assert r.p_adjusted == pytest.approx(adj, rel=1e-9), cell
        assert r.verdict == verdict, (cell, r.p, r.p_adjusted)
    assert _cell(eff, "cknna", "test").verdict_note == "Holm-adjusted p ≥ 0.05"
    other = _cell(eff, "mutual_knn", "test")
    assert other.family == "exploratory" and np.isnan(other.p_adjusted) and other.verdict == "falls"


def test_the_same_cells_declared_exploratory_read_the_raw_p(table) -> None:
    eff = overlap_effects(table, primary=NARROW, n_boot=50, n_perm=20)
    head = _cell(eff, "cka", "test")
    assert head.family == "primary" and head.p_adjusted == pytest.approx(_t_test(SLOPES["cka", "test"])[3], rel=1e-9)
    for cell in (("cknna", "test"), ("cka", "kmnist")):
        r = _cell(eff, *cell)
        mean, low, high, raw = _t_test(SLOPES[cell])
        assert r.family == "exploratory" and np.isnan(r.p_adjusted), cell
        assert r.p == pytest.approx(raw, rel=1e-9) and low > 0, cell
        assert r.verdict == "rises", (cell, r.p)


def test_factorial_primary_cells_read_the_holm_adjusted_p() -> None:
    table = _factorial_table()
    order = [("cka", "test"), ("cknna", "test"), ("cka", "kmnist")]
    p = [_t_test(SLOPES[c])[3] for c in order]
    adjusted = np.maximum.accumulate([min(1.0, (3 - i) * pi) for i, pi in enumerate(p)])
    fac = factorial_effects(table, primary=FAMILY)
    for cell, adj, verdict in zip(order, adjusted, ["positive", "inconclusive", "inconclusive"]):
        mean, low, high, raw = _t_test(SLOPES[cell])
        r = _cell(fac, *cell)
        assert r.family == "primary" and (r.estimate, r.low, r.high) == pytest.approx((mean, low, high), rel=1e-9)
        assert r.p == pytest.approx(raw, rel=1e-9) and r.p_adjusted == pytest.approx(adj, rel=1e-9), cell
        assert r.verdict == verdict, (cell, r.p, r.p_adjusted)
    assert _cell(fac, "mutual_knn", "test").verdict == "negative"
    narrow = factorial_effects(table, primary=NARROW)
    for cell in (("cknna", "test"), ("cka", "kmnist")):
        r = _cell(narrow, *cell)
        assert r.family == "exploratory" and r.verdict == "positive", cell
