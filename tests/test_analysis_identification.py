"""Issue 22's analysis numbers against hand computations: Holm-adjusted intervals, the fit ranges of
the fixed-composition probe sets, the two-cause similarity → transfer estimates and the findings text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from reprsim.analysis import inference, summarize
from reprsim.analysis.effects import apply_family, overlap_effects
from reprsim.analysis.findings import findings_markdown
from reprsim.analysis.identification import similarity_transfer


def _t(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """mean, low, high, p of a one-sample t test, by hand."""
    n = values.size
    se = values.std(ddof=1) / np.sqrt(n)
    half = sps.t.ppf(0.5 + level / 2, n - 1) * se
    p = 2 * sps.t.sf(abs(values.mean() / se), n - 1)
    return values.mean(), values.mean() - half, values.mean() + half, p


# ---- Holm-adjusted intervals -----------------------------------------------------------------


def test_holm_levels_follow_the_step_down_by_hand() -> None:
    p = np.array([0.030, 0.001, np.nan, 0.012, 0.04])
    # sorted finite: 0.001 (step 1: 0.05/4, rejected), 0.012 (step 2: 0.05/3, rejected),
    # 0.030 (step 3: 0.05/2 = 0.025, fails: the procedure stops), 0.04 (gets step 3's level)
    expected = np.array([0.025, 0.0125, np.nan, 0.05 / 3, 0.025])
    np.testing.assert_allclose(inference.holm_levels(p), expected, equal_nan=True)


def test_adjusted_interval_is_the_t_interval_at_the_holm_step_and_agrees_with_the_verdict() -> None:
    per_seed = {  # three primary cells and one exploratory cell, five seeds each
        "strong": np.array([0.30, 0.32, 0.29, 0.31, 0.33]),
        "weak": np.array([0.02, 0.05, 0.01, 0.06, 0.02]),  # raw p ≈ 0.030, fails after Holm
        "null": np.array([0.01, -0.02, 0.03, -0.01, 0.00]),
        "explore": np.array([0.02, 0.05, 0.01, 0.06, 0.02]),
    }
    rows = []
    for name, v in per_seed.items():
        est, lo, hi, p = _t(v)
        rows.append(
            {
                "cell": name,
                "slope": est,
                "slope_low": lo,
                "slope_high": hi,
                "p": p,
                "slope_sd": v.std(ddof=1),
                "n_seeds": v.size,
            }
        )
    frame = pd.DataFrame(rows)
    mask = pd.Series([True, True, True, False])
    out = apply_family(frame, mask, estimate="slope", low="slope_low", high="slope_high", sd="slope_sd").set_index(
        "cell"
    )
    raw = np.array([r["p"] for r in rows[:3]])
    assert raw[1] < 0.05  # the weak cell would "rise" unadjusted
    order = np.argsort(raw)  # strong, weak, null
    m = 3
    levels = {}
    stopped = None
    for i, j in enumerate(order):
        lvl = 0.05 / (m - i)
        if stopped is None and raw[j] >= lvl:
            stopped = lvl
        levels[rows[j]["cell"]] = lvl if stopped is None else stopped
    for name in ("strong", "weak", "null"):
        _, lo, hi, _ = _t(per_seed[name], level=1 - levels[name])
        assert out.loc[name, "slope_low_adjusted"] == pytest.approx(lo, rel=1e-10)
        assert out.loc[name, "slope_high_adjusted"] == pytest.approx(hi, rel=1e-10)
    assert out.loc["strong", "verdict"] == "rises" and out.loc["strong", "slope_low_adjusted"] > 0
    # raw p < 0.05 but Holm p ≥ 0.05: inconclusive, and its adjusted interval contains 0
    assert out.loc["weak", "p_adjusted"] >= 0.05 and out.loc["weak", "verdict"] == "inconclusive"
    assert out.loc["weak", "slope_low_adjusted"] < 0 < out.loc["weak", "slope_high_adjusted"]
    # the same numbers, exploratory, read from the unadjusted p and interval
    assert out.loc["explore", "verdict"] == "rises" and np.isnan(out.loc["explore", "slope_low_adjusted"])


# ---- fit ranges of the fixed-composition probe sets ------------------------------------------


def _task_table(roles: dict[str, str]) -> pd.DataFrame:
    """A task design at fractions 0, .5, 1 over 4 seeds: every probe set's value jumps at the fraction
    where the fixed subsets change role (so a fit over all fractions would be wrong)."""
    rng = np.random.default_rng(3)
    rows = []
    for seed in range(4):
        for f in (0.0, 0.5, 1.0):
            for probe, role in roles.items():
                value = (
                    0.4 + 0.1 * f + 0.5 * (f == 1.0) + 0.3 * (f == 0.0) * (role == "common_fixed") + rng.normal(0, 0.01)
                )
                rows.append(
                    {
                        "unit_id": f"u{seed}-{f}",
                        "source": "s",
                        "model": "m",
                        "overlap_kind": "task",
                        "data_fraction": np.nan,
                        "task_fraction": f,
                        "seed": seed,
                        "probe_set": probe,
                        "probe_role": role,
                        "layer_a": "penultimate",
                        "layer_b": "penultimate",
                        "measure": "cka",
                        "value": value,
                        "n_probe": 100,
                        "n_probe_classes": 2,
                    }
                )
    return pd.DataFrame(rows)


def test_fixed_probe_slopes_are_fitted_where_their_classes_keep_their_role() -> None:
    roles = {"test": "id", "ood_one_fixed": "ood_one_fixed", "common_fixed": "common_fixed"}
    table = _task_table(roles)
    eff = overlap_effects(table, n_boot=100, n_perm=100).set_index("probe_set")
    for probe, keep in (
        ("ood_one_fixed", lambda x: x < 1),
        ("common_fixed", lambda x: x > 0),
        ("test", lambda x: x >= 0),
    ):
        sub = table[(table.probe_set == probe) & keep(table.task_fraction)]
        slopes = np.array([np.polyfit(g.task_fraction, g.value, 1)[0] for _, g in sub.groupby("seed")])
        assert eff.loc[probe, "slope"] == pytest.approx(slopes.mean(), rel=1e-10)
        assert (eff.loc[probe, "x_min"], eff.loc[probe, "x_max"]) == (sub.task_fraction.min(), sub.task_fraction.max())
    assert eff.loc["ood_one_fixed", "x_max"] == 0.5 and "< 1" in eff.loc["ood_one_fixed", "fit_note"]
    assert eff.loc["common_fixed", "x_min"] == 0.5 and "> 0" in eff.loc["common_fixed", "fit_note"]
    assert eff.loc["test", "fit_note"] == "" and eff.loc["test", "x_max"] == 1.0
    assert eff.loc["ood_one_fixed", "slope"] == pytest.approx(0.1, abs=0.03)  # the planted slope, not the jump


# ---- similarity → transfer through two causes ------------------------------------------------

FRACTIONS = (0.0, 0.5, 1.0)
DOSES = (0.0, 2.0)


def _two_cause_table(n_seeds: int = 6, align_gain: float = 0.5) -> pd.DataFrame:
    """Data overlap × alignment dose; similarity S and transfer T per unit. Transfer follows
    similarity with the same slope through both causes (1.5 per unit of S), plus noise."""
    rng = np.random.default_rng(11)
    rows = []
    for seed in range(n_seeds):
        for f in FRACTIONS:
            for lam in DOSES:
                s = 0.5 + 0.2 * f + 0.05 * lam * align_gain / 0.5 + rng.normal(0, 0.01)
                t = 0.1 + 1.5 * s + rng.normal(0, 0.01)
                for measure, value in (("cka", s), ("cknna", 0.9 * s)):
                    rows.append(
                        {
                            "unit_id": f"u{seed}-{f}-{lam}",
                            "source": "fashion",
                            "model": "mlp",
                            "overlap_kind": "data",
                            "data_fraction": f,
                            "task_fraction": 1.0,
                            "seed": seed,
                            "probe_set": "test",
                            "probe_role": "id",
                            "layer_a": "penultimate",
                            "layer_b": "penultimate",
                            "measure": measure,
                            "value": value,
                            "n_probe": 100,
                            "transfer_asr": t,
                            "whitebox_asr": 0.5 + 0.02 * seed,
                            "align": lam,
                            "init": "independent",
                        }
                    )
    return pd.DataFrame(rows)


def _ratios(table: pd.DataFrame, measure: str) -> tuple[np.ndarray, np.ndarray]:
    """Per seed, by hand: Δtransfer/Δsimilarity through data overlap (λ = 0 rows, OLS slopes on the
    fraction) and through alignment (within each fraction, the λ difference; summed over fractions)."""
    t = table[table.measure == measure]
    data, align = [], []
    for _, g in t.groupby("seed"):
        g0 = g[g["align"] == 0]
        data.append(np.polyfit(g0.data_fraction, g0.transfer_asr, 1)[0] / np.polyfit(g0.data_fraction, g0.value, 1)[0])
        hi, lo = g[g["align"] == DOSES[1]].set_index("data_fraction"), g[g["align"] == 0].set_index("data_fraction")
        align.append((hi.transfer_asr - lo.transfer_asr).sum() / (hi.value - lo.value).sum())
    return np.array(data), np.array(align)


def test_similarity_transfer_ratios_and_their_difference_by_hand() -> None:
    table = _two_cause_table()
    st = similarity_transfer(table)
    for measure in ("cka", "cknna"):
        data, align = _ratios(table, measure)
        rec = st[(st.measure == measure) & (st.consequence == "transfer_asr")].set_index("cause")
        for cause, values in (("data_overlap", data), ("alignment", align), ("difference", data - align)):
            est, lo, hi, p = _t(values)
            r = rec.loc[cause]
            assert (r.estimate, r.low, r.high, r.p) == pytest.approx((est, lo, hi, p), rel=1e-9)
            assert r.n_seeds == 6 and r.family == "primary"
        t = table[(table.measure == measure) & (table["align"] == 0)]
        first = np.array([np.polyfit(g.data_fraction, g.value, 1)[0] for _, g in t.groupby("seed")])
        assert rec.loc["data_overlap", "first_stage"] == pytest.approx(first.mean(), rel=1e-9)
        assert rec.loc["data_overlap", "verdict"] == "positive" and rec.loc["alignment", "verdict"] == "positive"
        assert rec.loc["difference", "verdict"] == "inconclusive"  # the same 1.5 per unit through both causes
        assert rec.loc["data_overlap", "estimate"] == pytest.approx(1.5 if measure == "cka" else 1.5 / 0.9, rel=0.1)
    # the primary family: 2 measures × 1 fixed probe set × 3 records, Holm-adjusted together
    prim = st[st.family == "primary"]
    assert len(prim) == 6
    np.testing.assert_allclose(prim.p_adjusted, inference.holm(prim.p.to_numpy()), rtol=1e-12)


def test_a_cause_that_does_not_move_similarity_identifies_nothing() -> None:
    table = _two_cause_table(align_gain=0.0)  # the alignment dose leaves similarity where it was
    st = similarity_transfer(table)
    rec = st[(st.measure == "cka") & (st.consequence == "transfer_asr")].set_index("cause")
    assert not rec.loc["alignment", "identifies"] and rec.loc["alignment", "verdict"] == "inconclusive"
    assert "identifies nothing" in rec.loc["alignment", "note"]
    assert rec.loc["difference", "verdict"] == "inconclusive" and not rec.loc["difference", "identifies"]
    assert rec.loc["data_overlap", "identifies"]


def test_summary_records_and_findings_answer_the_consequence_question() -> None:
    table = _two_cause_table()
    s = summarize(table, n_boot=100, n_perm=100)
    recs = s["similarity_transfer"]
    fields = {
        "source",
        "model",
        "measure",
        "probe_set",
        "cause",
        "estimate",
        "low",
        "high",
        "n_seeds",
        "verdict",
        "first_stage",
        "first_stage_low",
        "first_stage_high",
    }
    assert recs and all(fields <= set(r) for r in recs)
    assert {r["cause"] for r in recs} == {"data_overlap", "alignment", "difference"}
    text = findings_markdown(s)
    assert "Does similarity make adversarial examples transfer?" in text
    assert "Two causes of similarity" in text and "no difference is detectable" in text
    # white-box success of A is the same at every fraction within a seed: said so, not tested
    assert "constant by construction" in text
    assert "within-fraction" not in text.lower()
    cons = pd.DataFrame(s["consequences"]["effects"])
    assert (cons.loc[cons.consequence == "whitebox_asr", "verdict"] == "constant by construction").all()


def test_findings_never_read_an_inconclusive_interval_as_no_effect() -> None:
    rng = np.random.default_rng(0)
    table = _two_cause_table()
    table["value"] = np.where(table.measure == "cknna", 0.5 + rng.normal(0, 0.05, len(table)), table["value"])
    text = findings_markdown(summarize(table, n_boot=100, n_perm=100))
    assert "inconclusive: no detectable effect, bounded by [" in text
    assert " no effect" not in text.replace("no detectable effect", "")


def test_methods_give_each_design_its_own_probe_facts() -> None:
    """Two sources share the probe-set name 'ood_one_fixed' with 2 and 24 classes: neither overwrites the other."""
    from reprsim.analysis.load import prepare
    from reprsim.analysis.methods import _probes

    a = _task_table({"ood_one_fixed": "ood_one_fixed"})
    b = a.assign(source="colorshapes", n_probe_classes=24, n_probe=600)
    table = prepare(pd.concat([a, b], ignore_index=True))
    eff = overlap_effects(table, n_boot=100, n_perm=100)
    text = _probes(table, eff.to_dict("records"))
    assert "s, task overlap (class split): 'ood_one_fixed' (ood_one_fixed, 100 inputs, 2 classes" in text
    assert "colorshapes, task overlap (class split): 'ood_one_fixed' (ood_one_fixed, 600 inputs, 24 classes" in text


def test_a_report_with_jailbreak_consequences_only_builds_its_figures(tmp_path) -> None:
    """A chat/LM run has jailbreak columns and no transfer_asr: its consequence groups and their
    similarity-vs-transfer figure use the jailbreak column (this used to fail with KeyError)."""
    from reprsim.analysis import build_report

    table = _two_cause_table(n_seeds=3).rename(
        columns={"transfer_asr": "jailbreak_transfer_asr", "whitebox_asr": "jailbreak_whitebox_asr"}
    )
    table = table[table["align"] == 0]
    table.to_parquet(tmp_path / "results.parquet")
    build_report(tmp_path, n_boot=100, n_perm=100)
    summary = __import__("json").loads((tmp_path / "summary.json").read_text())
    claim = next(c for c in summary["claims"] if c["id"] == "consequences")
    assert claim["groups"] and "jailbreak transfer" in claim["groups"][0]["summary"]
    assert "vision models only" in claim["summary"]  # read as the published paper reads LM consequences
    assert any(f["title"] == "Transfer success vs similarity" for f in summary["figures"])
