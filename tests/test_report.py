"""The report: files written, valid self-contained HTML, summary.json numbers, Markdown, CLI."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from test_analysis_fixture import make_results, write_run_dir

from reprsim.analysis import build_report, load_run
from reprsim.cli import main
from reprsim.errors import ReprsimError

_VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "area", "base", "wbr"}


class _Checker(HTMLParser):
    """Tracks the tag stack (every non-void tag closed in order) and every src/href value."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.refs: list[str] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.refs.append(value)
        self.images += tag == "img"
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_run_dir(tmp_path_factory.mktemp("run") / "run", n_seeds=3)
    build_report(root, "html", n_boot=200)
    return root


def test_report_files_are_written(run: Path) -> None:
    assert (run / "report.html").is_file() and (run / "summary.json").is_file()
    for name in ("overlap_data", "overlap_task", "overlap_attribute", "overlap_combined", "grid_test",
                 "scatter_transfer_asr_test", "layers", "accuracy"):  # fmt: skip
        assert (run / "figures" / f"{name}.png").stat().st_size > 5000
        assert (run / "figures" / f"{name}.svg").is_file()


def test_html_is_valid_and_self_contained(run: Path) -> None:
    text = (run / "report.html").read_text(encoding="utf-8")
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert text.startswith("<!DOCTYPE html>")
    assert checker.errors == [] and checker.stack == []
    assert checker.images == 8
    assert all(r.startswith("data:image/png;base64,") for r in checker.refs)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "<script" not in text.lower() and "@import" not in text
    assert "CKA rises with data overlap" in text
    assert "abc123" in text and "synthetic" in text  # provenance and config embedded


def test_summary_json_numbers_are_recomputed_from_the_table(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    df, _, _ = load_run(run)
    m = df[(df.overlap_kind == "data") & (df.measure == "cka") & (df.probe_set == "test")
           & (df.layer_a == "penultimate") & (df.layer_b == "penultimate")]  # fmt: skip
    eff = next(e for e in summary["overlap_effects"]
               if (e["overlap_kind"], e["measure"], e["probe_set"]) == ("data", "cka", "test"))  # fmt: skip
    assert eff["slope"] == pytest.approx(np.polyfit(m.data_fraction, m.value, 1)[0], rel=1e-9)
    assert eff["spearman"] == pytest.approx(sps.spearmanr(m.data_fraction, m.value).statistic, rel=1e-9)
    assert eff["n"] == len(m) == 15
    assert summary["headline"] and all(isinstance(s, str) for s in summary["headline"])
    assert {f["png"] for f in summary["figures"]} >= {"figures/overlap_data.png", "figures/layers.png"}
    assert summary["run"]["provenance"]["git_commit"] == "abc123"


def test_markdown_report(run: Path) -> None:
    path = build_report(run, "md", n_boot=200)
    text = path.read_text(encoding="utf-8")
    assert path.name == "report.md" and text.startswith("# reprsim report")
    assert "](figures/overlap_data.png)" in text and "| overlap_kind |" in text
    assert "http" not in text


def test_report_without_consequence_columns(tmp_path: Path) -> None:
    root = write_run_dir(tmp_path / "run", df=make_results(n_seeds=2, consequences=False))
    (root / "results.parquet").unlink()  # the CSV fallback is used
    path = build_report(root, n_boot=100)
    assert not list((root / "figures").glob("scatter_*"))
    summary = json.loads((root / "summary.json").read_text(encoding="utf-8"))
    assert summary["consequences"] == [] and "Consequences" not in path.read_text(encoding="utf-8")


def test_cli_report_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_run_dir(tmp_path / "run", n_seeds=2)
    assert main(["report", str(root), "--format", "md", "--n-boot", "100"]) == 0
    assert capsys.readouterr().out.strip().endswith("report.md")
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReprsimError, match="no results table"):
        load_run(empty)
    pd.DataFrame({"unit_id": ["u1"], "value": [0.5]}).to_csv(empty / "results.csv", index=False)
    with pytest.raises(ReprsimError, match="lacks required column"):
        load_run(empty)
    with pytest.raises(ValueError, match="format"):
        build_report(root, "pdf")
