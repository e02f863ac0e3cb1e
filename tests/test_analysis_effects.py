"""Overlap effects, combined grid, consequences, agreement and summary on a synthetic run with
planted effects; numbers are recomputed independently from the fixture table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.feature_selection import mutual_info_regression
from test_analysis_fixture import COMBINED, NOISE, SLOPES, TRANSFER, make_results

from reprsim.analysis import (
    clean_results,
    combined_effects,
    consequence_links,
    fraction_means,
    measure_agreement,
    overlap_effects,
    select_layers,
    significance_summary,
    summarize,
)

N_BOOT = 200


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_results(n_seeds=3)


@pytest.fixture(scope="module")
def effects(table: pd.DataFrame) -> pd.DataFrame:
    return overlap_effects(table, n_boot=N_BOOT)


def _manual(table: pd.DataFrame, kind: str, measure: str, probe: str) -> pd.DataFrame:
    """The rows an honest analyst would use: penultimate layers, non-empty probe sets."""
    t = table[(table.overlap_kind == kind) & (table.measure == measure) & (table.probe_set == probe)]
    return t[(t.layer_a == "penultimate") & (t.layer_b == "penultimate") & (t.n_probe > 0)]


def _row(effects: pd.DataFrame, kind: str, measure: str, probe: str) -> pd.Series:
    hit = effects[(effects.overlap_kind == kind) & (effects.measure == measure) & (effects.probe_set == probe)]
    assert len(hit) == 1
    return hit.iloc[0]


@pytest.mark.parametrize("kind", ["data", "task", "attribute"])
@pytest.mark.parametrize("measure", ["cka", "mutual_knn"])
def test_planted_slope_is_recovered(effects: pd.DataFrame, kind: str, measure: str) -> None:
    r = _row(effects, kind, measure, "test")
    planted = SLOPES[kind][measure]
    assert r.slope_low < planted < r.slope_high
    assert r.slope == pytest.approx(planted, abs=6 * NOISE)
    assert r.spearman > 0.8 and r.r2 > 0.8


@pytest.mark.parametrize(("kind", "measure", "probe"), [("data", "cka", "test"), ("task", "mutual_knn", "ood_one"),
                                                        ("attribute", "cka", "kmnist"), ("combined", "cka", "test")])  # fmt: skip
def test_effect_numbers_match_independent_recomputation(table, effects, kind, measure, probe) -> None:
    m = _manual(table, kind, measure, probe)
    if kind == "combined":
        m = m[m.data_fraction == m.task_fraction]
    x = (m.data_fraction if kind in ("data", "combined") else m.task_fraction).to_numpy(float)
    y = m.value.to_numpy(float)
    r = _row(effects, kind, measure, probe)
    slope, intercept = np.polyfit(x, y, 1)
    assert r.slope == pytest.approx(slope, rel=1e-9)
    assert r.intercept == pytest.approx(intercept, rel=1e-9)
    assert r.r2 == pytest.approx(sps.linregress(x, y).rvalue ** 2, rel=1e-9)
    assert r.spearman == pytest.approx(sps.spearmanr(x, y).statistic, rel=1e-9)
    mi = mutual_info_regression(x.reshape(-1, 1), y, n_neighbors=3, random_state=42)[0]
    assert r.mutual_information == pytest.approx(mi, rel=1e-12)
    assert r.n == len(m) and r.spearman_low <= r.spearman <= r.spearman_high


def test_empty_probe_sets_are_dropped(table, effects) -> None:
    assert (table.value == -1.0).any()  # the fixture does plant sentinels
    r = _row(effects, "task", "cka", "ood_one")
    assert r.n == 6 and r.x_max == 0.5  # fraction 1 has no ood_one classes
    assert r.value_at_min > 0.4
    c = _row(effects, "task", "cka", "common")
    assert c.n == 6 and c.x_min == 0.5
    assert (clean_results(table).value != -1.0).all()


def test_failed_units_and_nan_values_are_dropped(table) -> None:
    bad = table.copy()
    bad.loc[bad.unit_id == "u001", "status"] = "failed"
    bad.loc[bad.unit_id == "u002", "value"] = np.nan
    kept = clean_results(bad)
    assert not kept.unit_id.isin(["u001", "u002"]).any()


def test_layer_selection_default_best_and_fallback(table) -> None:
    default = select_layers(clean_results(table), "default")
    assert (default.layer_a == "penultimate").all() and (default.layer_b == "penultimate").all()
    assert (default.layer_selection == "penultimate").all()
    best = select_layers(clean_results(table), "best")
    assert ((best.layer_a == "conv1") & (best.layer_b == "conv1")).all()  # planted +0.05 there
    assert best.layer_selection.str.contains("max").all()
    no_pen = table[~((table.layer_a == "penultimate") & (table.layer_b == "penultimate"))]
    first = select_layers(clean_results(no_pen), "default")
    assert ((first.layer_a == "conv1") & (first.layer_b == "conv1")).all()
    assert (first.layer_selection == "first layer pair").all()
    with pytest.raises(ValueError, match="layer selection"):
        select_layers(table, "mean")


def test_fraction_means_match_groupby(table) -> None:
    fm = fraction_means(table)
    m = _manual(table, "data", "cka", "test")
    ref = m.groupby("data_fraction").value.agg(["mean", "std"])
    got = fm[(fm.overlap_kind == "data") & (fm.measure == "cka") & (fm.probe_set == "test")].set_index("x")
    np.testing.assert_allclose(got.loc[ref.index, "mean"], ref["mean"], rtol=1e-12)
    np.testing.assert_allclose(got.loc[ref.index, "std"], ref["std"], rtol=1e-12)
    assert (got.n == 3).all()


def test_combined_grid_recovers_planted_design_and_verdicts(table) -> None:
    comb = combined_effects(table, n_boot=N_BOOT)
    grid = comb["grid"].set_index(["measure", "probe_set"])
    for measure, (bd, bt, bdt) in COMBINED.items():
        r = grid.loc[(measure, "test")]
        assert r.coef_data == pytest.approx(bd, abs=0.01)
        assert r.coef_task == pytest.approx(bt, abs=0.01)
        assert r.coef_interaction == pytest.approx(bdt, abs=0.015)
        m = _manual(table, "combined", measure, "test")
        corner = lambda d, t: m[(m.data_fraction == d) & (m.task_fraction == t)].value.mean()  # noqa: E731
        assert r.gain_both == pytest.approx(corner(1, 1) - corner(0, 0), rel=1e-9)
        assert r.gain_data == pytest.approx(corner(1, 0) - corner(0, 0), rel=1e-9)
        assert r.gain_both_low <= r.gain_both <= r.gain_both_high
    assert grid.loc[("cka", "test"), "combined_strongest"] == "yes"  # 0.35 > 0.2
    assert grid.loc[("mutual_knn", "test"), "combined_strongest"] == "no"  # interaction cancels data
    cmp = comb["comparison"].set_index(["measure", "probe_set"])
    assert cmp.loc[("cka", "test"), "task_only_kind"] == "attribute"
    assert cmp.loc[("cka", "test"), "combined_strongest"] == "yes"
    assert cmp.loc[("mutual_knn", "test"), "combined_strongest"] == "no"
    assert not cmp.fair.any() and cmp.fairness_note.str.contains("levels differ").all()  # 5 vs 3 levels


def test_consequence_links_recover_planted_transfer(table) -> None:
    links = consequence_links(table, n_boot=N_BOOT)
    r = links[(links.consequence == "transfer_asr") & (links.predictor == "cka") & (links.probe_set == "test")
              & (links.overlap_kind == "all")].iloc[0]  # fmt: skip
    assert r.slope == pytest.approx(TRANSFER[1], abs=0.03)
    units = _manual(table, "data", "cka", "test")
    ref = sps.spearmanr(units.value, units.transfer_asr).statistic
    d = links[(links.consequence == "transfer_asr") & (links.predictor == "cka") & (links.probe_set == "test")
              & (links.overlap_kind == "data")].iloc[0]  # fmt: skip
    assert d.spearman == pytest.approx(ref, rel=1e-9)
    assert d.pearson == pytest.approx(sps.pearsonr(units.value, units.transfer_asr).statistic, rel=1e-9)
    ov = links[(links.consequence == "transfer_asr") & (links.predictor == "overlap") & (links.overlap_kind == "data")]
    assert ov.iloc[0].spearman_low > 0
    wb = links[(links.consequence == "whitebox_asr") & (links.predictor == "overlap") & (links.overlap_kind == "data")]
    assert wb.iloc[0].spearman_low < 0.5  # the flat control is not reported as a strong link
    assert "transfer_asr_ba" in set(links.consequence)


def test_missing_consequence_columns_give_empty_links() -> None:
    links = consequence_links(make_results(n_seeds=2, consequences=False), n_boot=N_BOOT)
    assert links.empty and "spearman" in links.columns


def test_measure_agreement_is_a_symmetric_rank_correlation(table) -> None:
    agr = measure_agreement(table)
    assert list(agr.index) == list(agr.columns) == ["cka", "mutual_knn"]
    np.testing.assert_allclose(np.diag(agr), 1.0)
    assert agr.loc["cka", "mutual_knn"] == agr.loc["mutual_knn", "cka"]
    d = select_layers(clean_results(table)).pivot_table(index=["unit_id", "probe_set"], columns="measure", values="value")
    assert agr.loc["cka", "mutual_knn"] == pytest.approx(sps.spearmanr(d.cka, d.mutual_knn).statistic, rel=1e-9)
    with pytest.raises(ValueError, match="probe set"):
        measure_agreement(table, probe_set="nope")


def test_significance_summary_counts_pairs(table) -> None:
    sig = significance_summary(table)
    r = sig[(sig.overlap_kind == "data") & (sig.measure == "cka") & (sig.probe_set == "test")].iloc[0]
    m = _manual(table, "data", "cka", "test")
    assert r.n_tested == len(m) and r.n_significant == int((m.p_value < 0.05).sum())
    assert significance_summary(table.drop(columns="p_value")).empty


def test_summary_sentences_are_honest(table) -> None:
    s = summarize(table, n_boot=N_BOOT)
    by = {(f["overlap_kind"], f["measure"], f["probe_set"]): f for f in s["findings"] if f["topic"] == "overlap"}
    up = by[("data", "cka", "test")]
    assert up["trend"] == "rises" and up["sentence"].startswith("CKA rises with data overlap")
    eff = pd.DataFrame(s["overlap_effects"]).set_index(["overlap_kind", "measure", "probe_set"])
    r = eff.loc[("data", "cka", "test")]
    assert f"slope {r.slope:.3f} [{r.slope_low:.3f}, {r.slope_high:.3f}]" in up["sentence"]
    assert f"R² {r.r2:.2f}" in up["sentence"] and f"ρ {r.spearman:.2f}" in up["sentence"]
    flat = by[("combined", "mutual_knn", "kmnist")]  # planted ≈ 0.005 per unit: CI includes 0
    assert flat["trend"] == "flat" and "does not rise" in flat["sentence"]
    grid = [f for f in s["findings"] if f["topic"] == "combined_grid" and f["probe_set"] == "test"]
    answers = {f["measure"]: f["answer"] for f in grid}
    assert answers == {"cka": "yes", "mutual_knn": "no"}
    assert any(f["sentence"].startswith("Does combining") and "No (" in f["sentence"] for f in grid)
    heads = [f for f in s["findings"] if f["headline"] and f["topic"] == "overlap"]
    assert {(f["overlap_kind"], f["probe_set"]) for f in heads} >= {("data", "test"), ("task", "ood_one")}


def test_summary_flags_a_falling_measure() -> None:
    t = make_results(n_seeds=3, consequences=False)
    t.loc[t.overlap_kind == "data", "value"] = 1.0 - t.loc[t.overlap_kind == "data", "value"]
    s = summarize(t, n_boot=N_BOOT)
    f = next(f for f in s["findings"] if f["topic"] == "overlap" and f["overlap_kind"] == "data"
             and f["measure"] == "cka" and f["probe_set"] == "test")  # fmt: skip
    assert f["trend"] == "falls" and "does not rise (it falls)" in f["sentence"]
    assert not any(f["topic"] == "consequence" for f in s["findings"])


def test_summarize_rejects_an_empty_table(table) -> None:
    with pytest.raises(ValueError, match="no usable rows"):
        summarize(table.assign(n_probe=0))
