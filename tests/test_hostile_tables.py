"""Hostile and careless tables (issue 27, cases 5, 6, 8): duplicated units, fractions written as text,
values that are not numbers, foreign overlap kinds, deeply nested / undecodable files, Markdown and
spreadsheet injection, and degenerate features. One temporary folder per test."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_analysis_fixture import make_results

from reprsim import metrics
from reprsim.analysis import build_report
from reprsim.analysis.document import Bullets, Heading, Para, Pre, Table, to_markdown
from reprsim.analysis.load import check_table, load_run, overlap_x
from reprsim.cli import main
from reprsim.errors import ReprsimError
from reprsim.results import csv_text

FAST = {"n_boot": 100, "n_perm": 100, "figures": False}


def _table() -> pd.DataFrame:
    return make_results(n_seeds=2, kinds=("data",), consequences=False)


# ---- case 5: foreign tables ---------------------------------------------------------------------
def test_conflicting_duplicate_units_are_an_error_listing_them(tmp_path):
    df = _table()
    bad = df.iloc[[0]].copy()
    bad["value"] = bad["value"] + 0.5  # the same key, another value: averaging it would bias the slope
    with pytest.raises(ReprsimError, match=rf"1 duplicated key.*{bad['unit_id'].iloc[0]}/"):
        check_table(pd.concat([df, bad], ignore_index=True))
    run = tmp_path / "run"
    run.mkdir()
    pd.concat([df, bad], ignore_index=True).to_csv(run / "results.csv", index=False)
    assert main(["report", str(run), "--no-figures", "--n-boot", "100", "--n-perm", "100"]) == 2
    assert not (run / "summary.json").exists()


def test_identical_duplicates_are_dropped_with_a_note():
    df = _table()
    out, notes = check_table(pd.concat([df, df.iloc[:3]], ignore_index=True))
    assert len(out) == len(df)
    assert pd.testing.assert_frame_equal(out.reset_index(drop=True), df.reset_index(drop=True)) is None
    assert [n["reason"] for n in notes] == ["3 identical duplicate row(s) dropped"]


@pytest.mark.parametrize(("value", "shown"), [("25%", "'25%'"), (1.5, "1.5"), (-0.1, "-0.1"), ("abc", "'abc'")])
def test_fractions_must_be_numbers_in_0_1_naming_the_row(value, shown):
    df = _table().astype({"data_fraction": object})
    df.loc[4, "data_fraction"] = value
    with pytest.raises(ReprsimError, match=rf"column data_fraction .*row 5 \({re.escape(shown)}\)"):
        check_table(df)


def test_values_that_are_not_numbers_are_listed_in_the_problems(tmp_path):
    df = _table().astype({"value": object})
    df.loc[7, "value"] = "0.9x"
    run = tmp_path / "run"
    run.mkdir()
    df.to_csv(run / "results.csv", index=False)
    build_report(run, **FAST)
    problems = [p["reason"] for p in json.loads((run / "summary.json").read_text())["problems"]]
    assert any("1 value(s) are not numbers" in p and "row 8 ('0.9x')" in p for p in problems)


def test_a_foreign_overlap_kind_is_analysed_as_its_own_kind_with_a_note(tmp_path):
    df = _table()
    df["overlap_kind"] = "DATA"
    x = overlap_x(df)
    assert np.array_equal(x.to_numpy(), df["data_fraction"].to_numpy())  # the one fraction that varies
    run = tmp_path / "run"
    run.mkdir()
    df.to_csv(run / "results.csv", index=False)
    build_report(run, **FAST)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert {e["overlap_kind"] for e in summary["overlap_effects"]} == {"DATA"}
    assert any("'DATA' are not one of" in p["reason"] for p in summary["problems"])


# ---- case 6: files that are not what they claim -----------------------------------------------------
def test_deeply_nested_provenance_is_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _table().to_csv(run / "results.csv", index=False)
    (run / "provenance.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ReprsimError, match="provenance.json .* not valid JSON \\(nested too deeply\\)"):
        load_run(run)
    (run / "provenance.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ReprsimError, match="provenance.json .* not valid JSON"):
        load_run(run)


def test_random_bytes_and_non_text_fields_in_a_jsonl_corpus(tmp_path):
    from reprsim.data.corpora import CorpusSpec, corpus_documents

    rng = np.random.default_rng(0)
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(bytes(rng.integers(128, 256, 4000, dtype=np.uint8)))
    with pytest.raises(ReprsimError, match="junk.jsonl is not UTF-8 text"):
        corpus_documents(CorpusSpec("junk", str(junk)))
    for i, value in enumerate([None, [1, 2], {"a": 1}, 3]):
        f = tmp_path / f"f{i}.jsonl"
        f.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"text": value}) + "\n")
        with pytest.raises(ReprsimError, match="line 2: field\\(s\\) text .* are not text"):
            corpus_documents(CorpusSpec(f"f{i}", str(f)))
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps({"text": "a b"}) + "\n" + json.dumps({"text": "c"}) + "\n")
    assert corpus_documents(CorpusSpec("ok", str(ok))) == ("a b", "c")


# ---- case 8: injection ---------------------------------------------------------------------------
_EVIL = [
    "<script>alert(1)</script>",
    "# Injected heading",
    "![x](http://evil.example/t.png)",
    "[click](javascript:alert(1))",
    "<img src=x onerror=alert(1)>",
    "1. list",
    "> quote",
    "`code`",
]


def test_markdown_escapes_table_strings_like_html():
    blocks = [
        Heading(_EVIL[1], 2),
        *[Para(t) for t in _EVIL],
        Bullets(_EVIL),
        Table(["model", "value"], [[t, "-0.30"] for t in _EVIL]),
        Pre("```\n# x\n```"),
    ]
    md = to_markdown(blocks, _EVIL[0], Path("."))
    lines = md.splitlines()
    fenced = [i for i, ln in enumerate(lines) if ln.startswith("```")]
    outside = lines[: fenced[0]] + lines[fenced[-1] + 1 :]  # the Pre block is literal code
    assert "<" not in md.replace("<details>", "").replace("</details>", "")  # no raw HTML at all
    assert "](" not in md and "![" not in md  # no link or image syntax survives
    assert [ln for ln in outside if ln.startswith("#")] == [
        "# &lt;script&gt;alert(1)&lt;/script&gt;",
        "## \\# Injected heading",
    ]
    assert "\\# Injected heading" in lines and "1\\. list" in lines and "&gt; quote" in lines
    assert "| \\# Injected heading | -0.30 |" not in md  # cells: only inline escapes ...
    assert "| # Injected heading | -0.30 |" in md  # ... a '#' inside a table row is no heading
    fence = next(ln for ln in lines if ln.startswith("```"))
    assert fence == "````"  # a longer fence than the backtick run inside the block


def test_report_md_of_a_hostile_table_holds_no_raw_html(tmp_path):
    df = _table()
    df["model"] = _EVIL[0]
    df["source"] = "[x](javascript:alert(1))"
    run = tmp_path / "run"
    run.mkdir()
    df.to_csv(run / "results.csv", index=False)
    build_report(run, **FAST)
    md = (run / "report.md").read_text()
    assert "<script" not in md and "](javascript" not in md
    assert "<script" not in (run / "report.html").read_text()


def test_csv_cells_that_start_a_formula_are_defused_but_numbers_stay_numbers():
    frame = pd.DataFrame(
        {
            "model": ["=cmd|'/c calc'!A1", "+1", "-x", "@SUM(A1)", "plain", "-0.5"],
            "value": [-0.5, 1.0, -2.0, 0.0, 3.0, -1.0],
        }
    )
    text = csv_text(frame)
    back = pd.read_csv(__import__("io").StringIO(text))
    assert list(back["model"]) == ["'=cmd|'/c calc'!A1", "'+1", "'-x", "'@SUM(A1)", "plain", "'-0.5"]
    assert list(back["value"]) == [-0.5, 1.0, -2.0, 0.0, 3.0, -1.0]  # numbers untouched, negative ones too
    assert "\n-0.5," not in text and ",-0.5\n" in text


def test_run_store_and_comparison_write_defused_csv(tmp_path):
    from reprsim.experiments.store import atomic_write_frame

    frame = pd.DataFrame({"model": ['=HYPERLINK("http://x")'], "value": [-1.5]})
    atomic_write_frame(tmp_path / "results.csv", frame)
    assert (tmp_path / "results.csv").read_text().splitlines()[1] == '"\'=HYPERLINK(""http://x"")",-1.5'


# ---- case 5/6: degenerate features --------------------------------------------------------------
def test_identical_rows_give_nan_with_a_warning_for_every_measure():
    rng = np.random.default_rng(0)
    X = np.tile(rng.normal(size=(1, 6)), (50, 1))  # 50 identical inputs
    Y = rng.normal(size=(50, 4))
    for other in (Y, X.copy()):
        with pytest.warns(UserWarning, match="rows of X.* are the same point"):
            got = metrics.compute_all(X, other, on_error="nan")
        assert all(math.isnan(v) for v in got.values()), got
    with pytest.raises(ValueError, match="cknna is undefined: all 50 rows of X are the same point"):
        metrics.compute("cknna", X, Y)


def test_identical_rows_in_the_layer_engine_are_nan_too():
    from reprsim.compare.similarity import SimilarityEngine

    rng = np.random.default_rng(1)
    const = np.tile(rng.normal(size=(1, 5)), (40, 1))
    engine = SimilarityEngine(
        {"l": const}, {"l": rng.normal(size=(40, 3))}, ["cka", "mutual_knn", "rsa"], progress=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = engine.compute()
    assert all(math.isnan(v) for v in values.values()), values
    assert any("same point" in w for w in engine.warnings)


@pytest.mark.parametrize(("d1", "d2"), [(5, 5), (3, 7), (7, 3)])
def test_procrustes_distance_of_a_rotated_copy_is_zero_to_1e_12(d1, d2):
    rng = np.random.default_rng(2)
    n = 60
    rank = min(d1, d2)
    base = rng.normal(size=(n, rank))
    Qx, _ = np.linalg.qr(rng.normal(size=(d1, d1)))
    Qy, _ = np.linalg.qr(rng.normal(size=(d2, d2)))
    X = np.hstack([base, np.zeros((n, d1 - rank))]) @ Qx + 3.0  # the same shape, rotated, shifted, scaled
    Y = 2.5 * np.hstack([base, np.zeros((n, d2 - rank))]) @ Qy - 1.0
    assert metrics.compute("procrustes_distance", X, Y) <= 1e-12
    assert metrics.compute_all(X, Y, ["procrustes", "procrustes_distance"])["procrustes_distance"] <= 1e-12
    assert float(np.arccos(min(1.0, metrics.compute("procrustes", X, Y)))) <= 1e-7  # the old formula: not exact
    # far from 0 the value is the arccos of the similarity, recomputed here from its definition
    Z = rng.normal(size=(n, d2))
    Xc, Zc = X - X.mean(0), Z - Z.mean(0)
    s = np.linalg.svd(Xc.T @ Zc, compute_uv=False).sum() / (np.linalg.norm(Xc) * np.linalg.norm(Zc))
    assert metrics.compute("procrustes_distance", X, Z) == pytest.approx(math.acos(s), abs=1e-12)


def test_procrustes_distance_near_zero_matches_the_chord_formula():
    """Just below the switch (s > 1 − 1e-4) the residual formula agrees with arccos to 1e-9."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 6))
    Y = X + 0.004 * rng.normal(size=(80, 6))
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    s = np.linalg.svd(Xc.T @ Yc, compute_uv=False).sum() / (np.linalg.norm(Xc) * np.linalg.norm(Yc))
    assert 1 - s < 1e-4
    assert metrics.compute("procrustes_distance", X, Y) == pytest.approx(math.acos(s), rel=1e-6)


def test_rank_one_copies_stay_inside_every_measures_range():
    """A rank-1 representation and its affine copy: rounding used to give rbf_cka 1.0000000000000013 and
    procrustes 1.0000000000000002; every value must lie in the measure's declared range."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 1)) @ rng.normal(size=(1, 6)) + 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = metrics.compute_all(X, 2.0 * X + 1.0, on_error="nan")
    for name, v in got.items():
        lo, hi = metrics.MEASURES[name].value_range
        assert math.isnan(v) or lo <= v <= hi, (name, v)
    assert got["procrustes"] == 1.0 and got["cka"] == pytest.approx(1.0, abs=1e-12)


def test_clamp_only_absorbs_rounding():
    from reprsim.metrics._validate import clamp_rounding

    assert clamp_rounding(1.0 + 1e-15, (0.0, 1.0)) == 1.0
    assert clamp_rounding(-1e-15, (0.0, 1.0)) == 0.0
    assert clamp_rounding(1.01, (0.0, 1.0)) == 1.01  # a real error stays visible
    assert clamp_rounding(0.5, (0.0, 1.0)) == 0.5
