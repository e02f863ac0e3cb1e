"""The paired stage (``measures.paired``): which units pair, the rows it writes, the seed-level summary
and the report section."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from reprsim import storage
from reprsim.analysis.paired import paired_sentence, paired_summary
from reprsim.experiments import paired
from reprsim.experiments.config import MeasureSpec
from reprsim.experiments.grid import expand
from reprsim.experiments.overrides import load_config
from reprsim.results import UNITS_DIR


def _config(*overrides):
    # quick: a data design (fractions 0, 1) and a task design (0.2, 1); two seeds
    return load_config("configs/quick.yaml", overrides=["seeds=[0,1]", *overrides])


def _index(unit, probes):
    """A feature index with the given ``{probe: (inputs hash, n)}`` and keys named after the unit."""
    return {
        name: {"inputs": inputs, "n": n, "a": f"{unit.unit_id}-{name}-a", "b": f"{unit.unit_id}-{name}-b"}
        for name, (inputs, n) in probes.items()
    }


def test_grouping_pairs_highest_with_lowest_fraction_on_shared_inputs_only():
    units = expand(_config())
    indexes = {}
    for u in units:
        f = paired.varying_fraction(u)
        # mnist: the same inputs everywhere; test: inputs that change with the task fraction only;
        # empty: no rows at all
        test_hash = f"task-{f}" if u.overlap_kind == "task" else "fixed"
        indexes[u.unit_id] = _index(u, {"mnist": ("m", 200), "test": (test_hash, 200), "empty": ("e", 0)})
    left_out = next(u for u in units if u.overlap_kind == "data" and u.seed == 1 and u.data_fraction == 1.0)
    del indexes[left_out.unit_id]  # a unit finished before `paired` was on: its seed's data comparison goes

    comps = paired.comparisons(units, indexes)
    got = sorted((c.unit_1.overlap_kind, c.seed, c.probe_set) for c in comps)
    assert got == [
        ("data", 0, "mnist"),
        ("data", 0, "test"),
        ("task", 0, "mnist"),
        ("task", 1, "mnist"),
    ]
    for c in comps:
        assert c.unit_1.seed == c.unit_2.seed == c.seed
        assert paired.varying_fraction(c.unit_1) == 1.0
        assert paired.varying_fraction(c.unit_2) == (0.0 if c.unit_1.overlap_kind == "data" else 0.2)
        assert dict(c.arm) == paired.arm_of(c.unit_1) == paired.arm_of(c.unit_2)
        assert c.keys_1["a"].startswith(c.unit_1.unit_id) and c.keys_2["a"].startswith(c.unit_2.unit_id)


def test_stage_writes_the_hand_computed_cka_difference(tmp_path):
    # no preparation, so the features are used as given. 1-D features: linear CKA is the squared
    # correlation, so CKA(x, x) = 1 and CKA(x, y) = 0 for centred orthogonal x, y: difference 1 − 0 = 1.
    config = _config("seeds=[0]", "measures.prepare=none", "measures.paired={n_boot: 50, measures: [cka]}")
    units = [u for u in expand(config) if u.overlap_kind == "data"]
    high, low = sorted(units, key=paired.varying_fraction, reverse=True)
    x = np.array([1.0, -1.0] * 8)[:, None]
    y = np.array([1.0, 1.0, -1.0, -1.0] * 4)[:, None]
    run, cache = tmp_path / "run", tmp_path / "cache"
    for unit, (fa, fb) in ((high, (x, x)), (low, (x, y))):
        keys = {("mnist", "a"): f"{unit.unit_id}-a", ("mnist", "b"): f"{unit.unit_id}-b"}
        paired.write_feature_index(run / UNITS_DIR / unit.unit_id, {"mnist": ("same", 16)}, keys)
        for side, feats in (("a", fa), ("b", fb)):
            storage.write_verified_arrays(cache / "features" / f"{keys['mnist', side]}.rsv", {"penultimate": feats})

    path = paired.run_paired_stage(config, units, run, cache)
    table = pd.read_csv(path)
    assert list(table.columns) == list(paired.PAIRED_COLUMNS)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["design"], row["probe_set"], row["measure"], row["layer"]) == ("data", "mnist", "cka", "penultimate")
    assert (row["fraction_1"], row["fraction_2"], row["seed"], row["n"], row["n_boot"]) == (1.0, 0.0, 0, 16, 50)
    assert row["value1"] == pytest.approx(1.0) and row["value2"] == pytest.approx(0.0, abs=1e-12)
    assert row["difference"] == pytest.approx(1.0)
    assert row["ci_low"] <= row["ci_high"] <= 1.0 + 1e-9  # CKA(x, x) = 1 on every resample; CKA(x, y) ≥ 0
    assert (row["unit_1"], row["unit_2"]) == (high.unit_id, low.unit_id)


def test_stage_is_off_by_default_and_leaves_out_missing_features(tmp_path):
    config = _config("seeds=[0]")
    assert paired.run_paired_stage(config, expand(config), tmp_path, tmp_path) is None
    config = _config("seeds=[0]", "measures.paired={n_boot: 10}")
    units = [u for u in expand(config) if u.overlap_kind == "data"]
    for u in units:  # indexed, but nothing in the cache
        paired.write_feature_index(
            tmp_path / UNITS_DIR / u.unit_id, {"mnist": ("h", 16)}, {("mnist", "a"): "x", ("mnist", "b"): "y"}
        )
    table = pd.read_csv(paired.run_paired_stage(config, units, tmp_path, tmp_path / "cache"))
    assert table.empty and list(table.columns) == list(paired.PAIRED_COLUMNS)


def _hand_made():
    base = {"design": "data", "source": "s", "model": "m", "align": 0.0, "probe_set": "mnist", "layer": "penultimate"}
    base |= {"fraction_1": 1.0, "fraction_2": 0.0}
    rows = [
        base | {"measure": "cka", "seed": 0, "difference": 0.1, "ci_low": 0.05, "ci_high": 0.15},
        base | {"measure": "cka", "seed": 1, "difference": 0.2, "ci_low": -0.1, "ci_high": 0.5},
        base | {"measure": "cka", "seed": 2, "difference": 0.3, "ci_low": 0.2, "ci_high": 0.4},
        # another measure: summarised on its own, never pooled with cka
        base | {"measure": "cknna", "seed": 0, "difference": -0.5, "ci_low": -0.6, "ci_high": -0.4},
        base | {"measure": "cknna", "seed": 1, "difference": -0.4, "ci_low": -0.5, "ci_high": -0.3},
        base | {"measure": "cknna", "seed": 2, "difference": -0.6, "ci_low": -0.7, "ci_high": -0.5},
    ]
    return pd.DataFrame(rows)


def test_summary_is_per_measure_with_a_t_interval_over_seeds():
    out = paired_summary(_hand_made()).set_index("measure")
    cka = out.loc["cka"]
    # mean 0.2, SD 0.1 over 3 seeds; t(2, 0.975) = 4.302653: half-width 4.302653 · 0.1 / √3
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert cka["n_seeds"] == 3 and cka["mean_difference"] == pytest.approx(0.2)
    assert (cka["low"], cka["high"]) == (pytest.approx(0.2 - half, abs=1e-6), pytest.approx(0.2 + half, abs=1e-6))
    assert cka["n_excluding_zero"] == 2  # seed 1's interval [-0.1, 0.5] contains 0
    assert cka["median_ci_width"] == pytest.approx(0.2)  # widths 0.1, 0.6, 0.2
    assert cka["verdict"] == "inconclusive"  # the t interval contains 0
    cknna = out.loc["cknna"]
    assert cknna["mean_difference"] == pytest.approx(-0.5) and cknna["n_excluding_zero"] == 3
    assert cknna["high"] < 0 and cknna["verdict"] == "lower"
    sentence = paired_sentence(out.reset_index())
    assert "inconclusive (the interval contains 0)" in sentence and "exploratory" in sentence


def test_report_section_only_when_paired_csv_exists(tmp_path):
    from test_analysis_fixture import write_run_dir

    from reprsim.analysis import build_report
    from reprsim.analysis.findings import findings_markdown

    root = write_run_dir(tmp_path / "run", n_seeds=3)
    build_report(root, "md", n_boot=50, n_perm=50, figures=False)
    assert "Paired differences on shared inputs" not in (root / "report.md").read_text()
    assert "paired_differences" not in json.loads((root / "summary.json").read_text())

    _hand_made().to_csv(root / "paired.csv", index=False)
    build_report(root, "md", n_boot=50, n_perm=50, figures=False)
    text = (root / "report.md").read_text()
    assert "## Paired differences on shared inputs" in text
    assert "| 2/3 |" in text  # cka: two of three seeds' intervals exclude 0
    summary = json.loads((root / "summary.json").read_text())
    assert len(summary["paired_differences"]) == 2
    assert "**Paired differences on shared inputs**" in findings_markdown(summary)


def test_paired_option_validation():
    assert MeasureSpec().paired is None and MeasureSpec(paired=0).paired is None
    assert "paired" not in MeasureSpec(paired=0).model_dump()  # off: old run folders still resume
    spec = MeasureSpec(paired={"n_boot": 30})
    assert (spec.paired.n_boot, spec.paired.level, spec.paired.measures) == (30, 0.95, None)
    with pytest.raises(ValidationError, match="n_boot"):
        MeasureSpec(paired={"n_boot": 1})
    with pytest.raises(ValidationError, match="n_boot"):
        MeasureSpec(paired={"n_boot": "many"})
    with pytest.raises(ValidationError, match="level"):
        MeasureSpec(paired={"level": 1.5})
    with pytest.raises(ValidationError, match="must be 0 \\(off\\) or a mapping"):
        MeasureSpec(paired=5)
    with pytest.raises(ValidationError, match="unknown measure"):
        MeasureSpec(paired={"measures": ["nope"]})
