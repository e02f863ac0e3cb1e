"""Consequences: per-cell overlap effects on transfer with the white-box control beside them, and the
pooled (descriptive) similarity → transfer link."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from test_analysis_fixture import make_results

from reprsim.analysis import (
    consequence_by_fraction,
    consequence_effects,
    similarity_links,
)

PEN = (("penultimate", "penultimate"),)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_results(n_seeds=5, kinds=("data", "task"), layer_pairs=PEN, given_source_fooled=True)


def test_whitebox_sits_next_to_transfer_per_cell(table) -> None:
    eff = consequence_effects(table)
    for kind in ("data", "task"):
        cols = set(eff[eff.overlap_kind == kind].consequence)
        assert {"transfer_asr", "whitebox_asr", "transfer_asr_given_source_fooled", "transfer_asr_ba"} <= cols
    tr = eff[(eff.overlap_kind == "data") & (eff.consequence == "transfer_asr")].iloc[0]
    units = table[table.overlap_kind == "data"].drop_duplicates("unit_id")
    slopes = [np.polyfit(g.data_fraction, g.transfer_asr, 1)[0] for _, g in units.groupby("seed")]
    assert tr.slope == pytest.approx(np.mean(slopes), rel=1e-9) and tr.n_seeds == 5
    assert tr.family == "primary" and tr.verdict == "rises"
    wb = eff[(eff.overlap_kind == "data") & (eff.consequence == "whitebox_asr")].iloc[0]
    assert wb.family == "exploratory" and np.isnan(wb.p_adjusted)
    flat = eff[eff.consequence == "victim_clean_error"]
    assert (flat.reason == "all values equal: no variation to test").all()


def test_missing_given_source_fooled_column_is_handled() -> None:
    t = make_results(n_seeds=3, kinds=("data",), layer_pairs=PEN)
    assert "transfer_asr_given_source_fooled" not in t
    assert "transfer_asr_given_source_fooled" not in set(consequence_effects(t).consequence)
    assert consequence_effects(make_results(n_seeds=2, kinds=("data",), consequences=False)).empty


def test_by_fraction_means_over_seeds(table) -> None:
    byf = consequence_by_fraction(table)
    got = byf[(byf.overlap_kind == "task") & (byf.consequence == "whitebox_asr")].set_index("x")
    units = table[table.overlap_kind == "task"].drop_duplicates("unit_id")
    ref = units.groupby("task_fraction").whitebox_asr.agg(["mean", "std"])
    np.testing.assert_allclose(got.loc[ref.index, "mean"], ref["mean"])
    np.testing.assert_allclose(got.loc[ref.index, "sd"], ref["std"])


def test_pooled_link_never_pooling_kinds(table) -> None:
    links = similarity_links(table, n_boot=300)
    assert set(links.overlap_kind) == {"data", "task"}  # no "all kinds" row
    r = links[
        (links.overlap_kind == "data")
        & (links.measure == "cka")
        & (links.probe_set == "test")
        & (links.consequence == "transfer_asr")
    ].iloc[0]
    u = table[(table.overlap_kind == "data") & (table.measure == "cka") & (table.probe_set == "test")]
    assert r.spearman == pytest.approx(sps.spearmanr(u.value, u.transfer_asr).statistic, rel=1e-9)
    assert r.pearson == pytest.approx(np.corrcoef(u.value, u.transfer_asr)[0, 1], rel=1e-9)
    assert r.n == 25 and r.n_seeds == 5 and r.n_levels == 5
    assert "partial_r" not in links  # a within-fraction correlation does not identify similarity → transfer
    assert r.spearman > 0.8  # pooled: both follow the fraction
