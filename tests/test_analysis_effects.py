"""Overlap effects per cell with the seed as the unit, on a synthetic run with planted effects;
numbers are recomputed independently from the fixture table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.feature_selection import mutual_info_regression
from test_analysis_fixture import NOISE, SLOPES, make_results

from reprsim.analysis import (
    PrimaryFamily,
    clean_results,
    fraction_means,
    overlap_effects,
    select_layers,
    summarize,
)
from reprsim.results import CELL_AXES

N_BOOT, N_PERM = 200, 200


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_results(n_seeds=4, kinds=("data", "task", "attribute"))


@pytest.fixture(scope="module")
def effects(table: pd.DataFrame) -> pd.DataFrame:
    return overlap_effects(table, n_boot=N_BOOT, n_perm=N_PERM)


def _manual(
    table: pd.DataFrame, kind: str, measure: str, probe: str, layers=("penultimate", "penultimate")
) -> pd.DataFrame:
    """The rows an honest analyst would use: one layer pair, non-empty probe sets."""
    t = table[(table.overlap_kind == kind) & (table.measure == measure) & (table.probe_set == probe)]
    return t[(t.layer_a == layers[0]) & (t.layer_b == layers[1]) & (t.n_probe > 0)]


def _row(
    effects: pd.DataFrame, kind: str, measure: str, probe: str, layers=("penultimate", "penultimate")
) -> pd.Series:
    hit = effects[
        (effects.overlap_kind == kind)
        & (effects.measure == measure)
        & (effects.probe_set == probe)
        & (effects.layer_a == layers[0])
        & (effects.layer_b == layers[1])
    ]
    assert len(hit) == 1
    return hit.iloc[0]


def test_every_cell_axis_is_a_key_and_nothing_is_pooled(table, effects) -> None:
    assert set(CELL_AXES) <= set(effects.columns)
    assert not effects.duplicated(list(CELL_AXES)).any()
    data = clean_results(table)
    expected = data.groupby(list(CELL_AXES)).ngroups
    assert len(effects) == expected  # one record per cell: every layer pair, probe set and measure


@pytest.mark.parametrize("kind", ["data", "task", "attribute"])
@pytest.mark.parametrize("measure", ["cka", "mutual_knn"])
def test_planted_slope_is_recovered(effects: pd.DataFrame, kind: str, measure: str) -> None:
    r = _row(effects, kind, measure, "test")
    planted = SLOPES[kind][measure]
    assert r.slope_low < planted < r.slope_high
    assert r.slope == pytest.approx(planted, abs=6 * NOISE)
    # the pre-registered primary family is CKA and CKNNA on fixed-composition sets; mutual kNN is exploratory
    assert r.verdict == "rises" and r.family == ("primary" if measure == "cka" else "exploratory")


@pytest.mark.parametrize(
    ("kind", "measure", "probe"),
    [("data", "cka", "test"), ("task", "mutual_knn", "ood_one"), ("attribute", "cka", "kmnist")],
)
def test_per_seed_t_interval_matches_a_hand_computation(table, effects, kind, measure, probe) -> None:
    m = _manual(table, kind, measure, probe)
    xcol = "data_fraction" if kind == "data" else "task_fraction"
    slopes = [np.polyfit(g[xcol], g.value, 1)[0] for _, g in m.groupby("seed")]
    n = len(slopes)
    mean, sd = np.mean(slopes), np.std(slopes, ddof=1)
    half = sps.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    p = 2 * sps.t.sf(abs(mean) / (sd / np.sqrt(n)), n - 1)
    r = _row(effects, kind, measure, probe)
    assert r.n_seeds == n == 4
    assert r.slope == pytest.approx(mean, rel=1e-9)
    assert (r.slope_low, r.slope_high) == pytest.approx((mean - half, mean + half), rel=1e-9)
    assert r.p == pytest.approx(p, rel=1e-9)
    assert "per-seed" in r.slope_method
    x, y = m[xcol].to_numpy(float), m.value.to_numpy(float)
    assert r.r2 == pytest.approx(sps.linregress(x, y).rvalue ** 2, rel=1e-9)
    assert r.spearman == pytest.approx(sps.spearmanr(x, y).statistic, rel=1e-9)
    assert r.mutual_information == pytest.approx(
        mutual_info_regression(x.reshape(-1, 1), y, n_neighbors=3, random_state=42)[0], rel=1e-12
    )
    at0 = m[m[xcol] == x.min()].groupby("seed").value.mean()
    assert r.effect_sd == pytest.approx(mean / at0.std(ddof=1), rel=1e-9)
    assert 0 < r.mi_p <= 1 and np.isfinite(r.mi_null95)


def _holm_by_hand(p: np.ndarray) -> np.ndarray:
    m = p.size
    out = np.empty(m)
    running = 0.0
    for rank, i in enumerate(np.argsort(p)):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_over_the_primary_family_by_hand(effects) -> None:
    prim = effects[effects.family == "primary"]
    # default family: cka, cknna × every fixed-composition probe set, at the headline (penultimate) layer pair
    assert ((prim.layer_a == "penultimate") & (prim.layer_b == "penultimate")).all()
    assert set(prim.measure) == {"cka"}  # the fixture has no cknna
    assert (prim.composition == "fixed").all()
    assert set(effects[(effects.composition != "fixed") & (effects.measure == "cka")].family) == {"exploratory"}
    np.testing.assert_allclose(prim.p_adjusted.to_numpy(float), _holm_by_hand(prim.p.to_numpy(float)), rtol=1e-12)
    expl = effects[effects.family == "exploratory"]
    assert len(expl) and expl.p_adjusted.isna().all()
    assert (expl.layer_a != "penultimate").any()


def test_declared_primary_family_changes_the_correction(table) -> None:
    narrow = overlap_effects(table, primary=PrimaryFamily(("cka",), ("test",)), n_boot=N_BOOT, n_perm=N_PERM)
    prim = narrow[narrow.family == "primary"]
    assert set(prim.measure) == {"cka"} and set(prim.probe_set) == {"test"} and len(prim) == 3
    np.testing.assert_allclose(prim.p_adjusted.to_numpy(float), _holm_by_hand(prim.p.to_numpy(float)), rtol=1e-12)
    assert (narrow[narrow.family == "exploratory"].measure == "mutual_knn").any()


def test_two_models_are_reported_per_model_not_pooled() -> None:
    """Each model's own fit has R² ≈ 0.94; pooled over models (different baselines) R² is near 0."""
    rng = np.random.default_rng(3)
    rows = []
    for model, base in (("small", 0.2), ("large", 0.8)):
        for seed in range(5):
            for x in (0.0, 0.25, 0.5, 0.75, 1.0):
                rows.append(
                    {
                        "unit_id": f"{model}-{seed}-{x}",
                        "source": "mnist",
                        "model": model,
                        "overlap_kind": "data",
                        "data_fraction": x,
                        "task_fraction": 1.0,
                        "seed": seed,
                        "probe_set": "test",
                        "layer_a": "penultimate",
                        "layer_b": "penultimate",
                        "measure": "cka",
                        "value": base + 0.1 * x + rng.normal(0, 0.0085),
                    }
                )
    df = pd.DataFrame(rows)
    pooled = sps.linregress(df.data_fraction, df.value).rvalue ** 2
    assert pooled < 0.05
    eff = overlap_effects(df, n_boot=N_BOOT, n_perm=N_PERM)
    assert sorted(eff.model) == ["large", "small"]
    for _, r in eff.iterrows():
        own = df[df.model == r.model]
        assert r.r2 == pytest.approx(sps.linregress(own.data_fraction, own.value).rvalue ** 2, rel=1e-9)
        assert 0.9 < r.r2 < 0.97 and r.verdict == "rises" and r.n_seeds == 5
    summary = summarize(df, n_boot=N_BOOT, n_perm=N_PERM)
    recs = summary["overlap_effects"]
    assert len(recs) == 2 and {r["model"] for r in recs} == {"small", "large"}
    assert all(
        {"source", "model", "overlap_kind", "probe_set", "layer_a", "layer_b", "measure"} <= set(r) for r in recs
    )


def test_composition_labels_and_empty_probe_sets(table, effects) -> None:
    assert (table.value == -1.0).any()  # the fixture does plant sentinels
    ood = _row(effects, "task", "cka", "ood_one")
    assert ood.composition == "varies with the fraction" and ood.probe_classes == "6–10"
    assert ood.n == 8 and ood.x_max == 0.4  # fraction 1 has no ood_one classes (empty set dropped)
    fixed = _row(effects, "task", "cka", "ood_one_fixed")
    assert fixed.composition == "fixed" and fixed.probe_classes == "2"
    assert _row(effects, "data", "cka", "test").composition == "fixed"
    assert (clean_results(table).value != -1.0).all()


def test_cells_that_cannot_be_tested_say_why() -> None:
    base = make_results(n_seeds=4, kinds=("data",), layer_pairs=(("penultimate", "penultimate"),), consequences=False)
    one_level = base[base.data_fraction == 0.5].assign(source="one_level")
    one_seed = base[base.seed == 0].assign(source="one_seed")
    flat = base.assign(source="flat", value=0.7)
    eff = overlap_effects(pd.concat([one_level, one_seed, flat]), n_boot=N_BOOT, n_perm=N_PERM)
    why = {s: set(g.reason) for s, g in eff.groupby("source")}
    assert why["one_level"] == {"one fraction level: no slope"}
    assert why["one_seed"] == {"1 seed (fewer than 3): no interval"}
    assert why["flat"] == {"all values equal: no variation to test"}
    assert (eff.verdict == "inconclusive").all()
    summary = summarize(pd.concat([one_level, one_seed, flat]), n_boot=N_BOOT, n_perm=N_PERM)
    json.dumps(summary, allow_nan=False)  # NaN became null, never a number
    reasons = {p["reason"] for p in summary["problems"]}
    assert {
        "one fraction level: no slope",
        "1 seed (fewer than 3): no interval",
        "all values equal: no variation to test",
    } <= reasons


def test_distance_measures_are_labelled() -> None:
    t = make_results(n_seeds=3, kinds=("data",), layer_pairs=(("penultimate", "penultimate"),), consequences=False)
    t = t[t.measure == "cka"].assign(measure="procrustes_distance", value=lambda d: 1 - d.value)
    r = overlap_effects(t, n_boot=N_BOOT, n_perm=N_PERM).query("probe_set == 'test'").iloc[0]
    assert r.verdict == "falls" and r.distance and "similarity rises" in r.verdict_note


def test_failed_units_and_nan_values_are_dropped(table) -> None:
    bad = table.copy()
    first, second = bad.unit_id.unique()[:2]
    bad.loc[bad.unit_id == first, "status"] = "failed"
    bad.loc[bad.unit_id == second, "value"] = np.nan
    kept = clean_results(bad)
    assert not kept.unit_id.isin([first, second]).any()


def test_layer_selection_keeps_every_pair_or_the_labelled_best(table) -> None:
    default = select_layers(clean_results(table), "default")
    assert len(default) == len(clean_results(table))
    best = select_layers(clean_results(table), "best")
    assert (best.layer_a == "max over layer pairs").all()
    units = clean_results(table)
    expected = units.groupby(["unit_id", "probe_set", "measure"]).value.max()
    got = best.set_index(["unit_id", "probe_set", "measure"]).value
    np.testing.assert_allclose(got.loc[expected.index], expected)
    with pytest.raises(ValueError, match="layer selection"):
        select_layers(table, "mean")


def test_fraction_means_are_means_over_seeds(table) -> None:
    fm = fraction_means(table)
    m = _manual(table, "data", "cka", "test")
    ref = m.groupby("data_fraction").value.agg(["mean", "std"])
    got = fm[
        (fm.overlap_kind == "data")
        & (fm.measure == "cka")
        & (fm.probe_set == "test")
        & (fm.layer_a == "penultimate")
        & (fm.layer_b == "penultimate")
    ].set_index("x")
    np.testing.assert_allclose(got.loc[ref.index, "mean"], ref["mean"], rtol=1e-12)
    np.testing.assert_allclose(got.loc[ref.index, "sd"], ref["std"], rtol=1e-12)
    assert (got.n_seeds == 4).all()


def test_summary_of_a_table_without_the_contract_columns_states_why() -> None:
    s = summarize(pd.DataFrame({"unit_id": ["u1"], "value": [0.5]}))
    assert s["status"] == "not analysed" and "lacks the required column(s)" in s["problems"][0]["reason"]
    s = summarize(make_results(n_seeds=2, kinds=("data",)).assign(n_probe=0))
    assert s["status"] == "not analysed" and "no usable rows" in s["problems"][0]["reason"]
