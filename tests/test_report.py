"""The report: files, valid self-contained HTML, the same tables in Markdown, summary.json keys,
figures with legends and no blank bands, foreign and multi-run tables, bad input, the CLI."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_analysis_fixture import make_results, write_run_dir

from reprsim.analysis import build_report, load_run
from reprsim.cli import main
from reprsim.errors import ReprsimError
from reprsim.results import CELL_AXES, CONTRACT_COLUMNS

_VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "area", "base", "wbr"}
FAST = {"n_boot": 100, "n_perm": 100, "figures": False}


class _Checker(HTMLParser):
    """Tag stack (every non-void tag closed in order), src/href values, and each table's header/rows."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.refs: list[str] = []
        self.images = 0
        self.tables: list[dict] = []
        self.row_classes: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.refs.append(value)
        self.images += tag == "img"
        if tag == "table":
            self.tables.append({"header": [], "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
            self.row_classes.append(dict(attrs).get("class") or "")
        elif tag in ("th", "td"):
            self._cell = []
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td") and self._cell is not None:
            text = "".join(self._cell)
            (self.tables[-1]["header"] if tag == "th" else self.tables[-1]["rows"][-1]).append(text)
            self._cell = None
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def _parse(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    return checker


def _md_tables(text: str) -> list[list[str]]:
    lines = text.splitlines()
    out = []
    for i in range(len(lines) - 1):
        if lines[i].startswith("| ") and lines[i + 1].startswith("|---"):
            out.append([c.strip() for c in re.split(r"(?<!\\)\|", lines[i])[1:-1]])
    return out


def test_report_files_are_written(synthetic_report: Path) -> None:
    run = synthetic_report
    for name in ("report.html", "report.md", "summary.json"):
        assert (run / name).is_file()
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    pngs = {f["png"] for f in summary["figures"]}
    assert {"figures/overlap-mnist-cnn-data.png", "figures/layers.png", "figures/accuracy.png"} <= pngs
    assert any(p.startswith("figures/factorial") for p in pngs) and any(p.startswith("figures/link") for p in pngs)
    for p in pngs:
        assert (run / p).stat().st_size > 5000 and (run / p).with_suffix(".svg").is_file()


def test_html_is_valid_self_contained_and_reads_like_a_results_section(synthetic_report: Path) -> None:
    text = (synthetic_report / "report.html").read_text(encoding="utf-8")
    page = _parse(text)
    assert text.startswith("<!DOCTYPE html>")
    assert page.errors == [] and page.stack == []
    summary = json.loads((synthetic_report / "summary.json").read_text(encoding="utf-8"))
    assert page.images == len(summary["figures"])
    assert all(r.startswith("data:image/png;base64,") for r in page.refs)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "<script" not in text.lower() and "@import" not in text
    for section in (
        'id="findings"',
        'id="methods"',
        'id="data"',
        'id="task"',
        'id="combined"',
        'id="consequences"',
        'id="families"',
        "<details>",
    ):
        assert section in text
    assert {"more", "inconclusive"} <= set(page.row_classes)  # rows coloured by verdict
    claim = page.tables[0]
    assert claim["header"][:6] == [
        "Measure",
        "Probe set",
        "Effect per unit overlap [95% CI]",
        "Holm-adjusted CI",
        "Normalised",
        "Verdict",
    ]
    assert "MI, nats (null 95%, p)" in claim["header"] and "Seeds" in claim["header"]
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)  # a missing number is never printed as NaN
    assert "abc123" in text and "synthetic" in text  # provenance and config embedded
    assert "composition varies with the fraction" in text and "ood_one_fixed" in text


def test_methods_paragraph_comes_from_the_config(synthetic_report: Path) -> None:
    summary = json.loads((synthetic_report / "summary.json").read_text(encoding="utf-8"))
    methods = " ".join(summary["methods"])
    assert "5 seeds (0, 1, 2, 3, 4)" in methods
    assert "data overlap at fractions 0, 0.25, 0.5, 0.75, 1" in methods
    assert "300 training examples per class" in methods and "epochs 5" in methods
    # probe facts per design: the task design's ood_one set varies with the fraction, the data design's test set does not
    assert "task overlap (class split): " in methods and "'ood_one' (ood_one, " in methods
    assert "classes, composition varies with the fraction)" in methods
    assert "data overlap: 'test' (id, " in methods
    assert "Holm" in summary["statistics"]["correction"]
    html = (synthetic_report / "report.html").read_text(encoding="utf-8")
    assert "Multiple testing: Holm over the primary family" in html


def test_markdown_holds_the_same_tables(synthetic_report: Path) -> None:
    html_tables = [t["header"] for t in _parse((synthetic_report / "report.html").read_text(encoding="utf-8")).tables]
    md = (synthetic_report / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# reprsim report") and "](figures/" in md and "http" not in md
    assert [[h.replace("|", "\\|") for h in t] for t in html_tables] == _md_tables(md)
    assert "**rises**" in md and "<details>" in md


def test_summary_json_keys(synthetic_report: Path) -> None:
    s = json.loads((synthetic_report / "summary.json").read_text(encoding="utf-8"))
    assert s["status"] == "ok" and s["cell_axes"] == list(CELL_AXES)
    assert s["analysis"]["correction"] == "Holm" and s["analysis"]["primary"]["measures"] == ["cka", "cknna"]
    keys = {
        "slope",
        "slope_low",
        "slope_high",
        "n_seeds",
        "slope_method",
        "p",
        "p_adjusted",
        "verdict",
        "r2",
        "spearman",
        "spearman_low",
        "spearman_high",
        "mutual_information",
        "mi_p",
        "mi_null95",
        "effect_sd",
        "family",
        "composition",
        "reason",
    }
    for rec in s["overlap_effects"]:
        assert set(CELL_AXES) | keys <= set(rec)
    inter = s["combined"]["interaction"]
    assert inter and all(
        {"measure", "probe_set", "estimate", "low", "high", "n_seeds", "verdict"} <= set(r) for r in inter
    )
    assert set(s["consequences"]) == {"effects", "by_fraction", "links"}
    assert "two-level mean" in s["families"]["grouping"] and s["families"]["rows"]
    assert [c["id"] for c in s["claims"]] == ["data", "task", "combined", "consequences"]
    assert all(isinstance(c["summary"], str) and c["summary"] for c in s["claims"])


def _verdict_by_hand(p: float, low: float, high: float) -> str:
    return "rises" if p < 0.05 and low > 0 else "falls" if p < 0.05 and high < 0 else "inconclusive"


def _holm_by_hand(p: list[float], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm-adjusted p-values and the per-test level of the step-down (a failed step's level for
    every later test), written out from Holm (1979)."""
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted, levels = np.empty(m), np.empty(m)
    running, stopped = 0.0, None
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
        level = alpha / (m - rank)
        if stopped is None and p[i] >= level:
            stopped = level
        levels[i] = level if stopped is None else stopped
    return adjusted, levels


def test_summary_verdicts_are_recomputed_from_the_table(synthetic_report: Path) -> None:
    """Every overlap-effect record of summary.json against the run's own table: per-seed OLS slopes
    (numpy), the t(n − 1) test, Holm over the declared family (membership decided here: headline
    layer pair, the family's measures, probe sets whose class count never moves), the verdict."""
    from scipy import stats as sps

    s = json.loads((synthetic_report / "summary.json").read_text(encoding="utf-8"))
    table = pd.read_parquet(synthetic_report / "results.parquet")
    table = table[table.n_probe > 0]
    family = s["analysis"]["primary"]
    recs = s["overlap_effects"]
    got = []
    for rec in recs:
        cell = table[np.logical_and.reduce([table[a].astype(str) == str(rec[a]) for a in CELL_AXES])]
        kind = rec["overlap_kind"]
        d, t = cell.data_fraction.to_numpy(float), cell.task_fraction.to_numpy(float)
        x = d if kind == "data" else t if kind in ("task", "attribute") else np.where(np.isclose(d, t), d, np.nan)
        keep = np.isfinite(x)
        if rec["probe_set"] == "ood_one_fixed":  # its classes keep their role below fraction 1 only
            keep &= x < 1
        cell, x = cell[keep], x[keep]
        assert (rec["x_min"], rec["x_max"]) == (x.min(), x.max()), rec["probe_set"]
        slopes = np.array([np.polyfit(x[cell.seed == sd], g.value, 1)[0] for sd, g in cell.groupby("seed")])
        n, mean = slopes.size, slopes.mean()
        se = slopes.std(ddof=1) / np.sqrt(n)
        p = 2 * sps.t.sf(abs(mean / se), n - 1)
        assert rec["slope"] == pytest.approx(mean, rel=1e-9) and rec["p"] == pytest.approx(p, rel=1e-6, abs=1e-300)
        fixed = cell.groupby("task_fraction").n_probe_classes.first().nunique() == 1 and not (
            kind == "task" and rec["probe_set"] in ("common", "ood_one", "ood_all")
        )
        in_family = rec["measure"] in family["measures"] and (
            family["probe_sets"] == "all"
            or (family["probe_sets"] == "fixed" and fixed)
            or rec["probe_set"] in family["probe_sets"]
        )
        headline = rec["layer_a"] == rec["layer_b"] == "penultimate"
        got.append((rec, mean, se, n, p, headline and in_family))
    primary = [g for g in got if g[5]]
    assert len(primary) == s["analysis"]["family_size"] > 0
    adjusted, levels = _holm_by_hand([g[4] for g in primary])
    for (rec, mean, se, n, p, _), adj, level in zip(primary, adjusted, levels):
        half = sps.t.ppf(1 - level / 2, n - 1) * se
        assert rec["family"] == "primary" and rec["p_adjusted"] == pytest.approx(adj, rel=1e-6, abs=1e-300)
        assert rec["verdict"] == _verdict_by_hand(adj, mean - half, mean + half), rec
    for rec, mean, se, n, p, is_primary in got:
        if not is_primary:
            half = sps.t.ppf(0.975, n - 1) * se
            assert rec["family"] == "exploratory" and rec["p_adjusted"] is None, rec
            assert rec["verdict"] == _verdict_by_hand(p, mean - half, mean + half), rec
    # the planted effects are all increases, far above the noise: every cell rises
    assert {rec["verdict"] for rec in recs} == {"rises"}


def _blank_band(png: Path) -> float:
    """Height share of the longest run of all-white pixel rows strictly inside the image's content."""
    import matplotlib.image as mpimg

    img = mpimg.imread(str(png))[..., :3]
    ink = np.any(img < 0.95, axis=(1, 2))
    rows = np.flatnonzero(ink)
    inner = ink[rows[0] : rows[-1] + 1]
    longest = run = 0
    for v in inner:
        run = 0 if v else run + 1
        longest = max(longest, run)
    return longest / img.shape[0]


def _edges_clear(png: Path) -> bool:
    import matplotlib.image as mpimg

    img = mpimg.imread(str(png))[..., :3]
    return bool(np.all(img[:, :2] > 0.95) and np.all(img[:, -2:] > 0.95))


def test_figures_have_a_legend_and_no_blank_band(synthetic_report: Path) -> None:
    summary = json.loads((synthetic_report / "summary.json").read_text(encoding="utf-8"))
    for fig in summary["figures"]:
        png = synthetic_report / fig["png"]
        svg = png.with_suffix(".svg").read_text(encoding="utf-8")
        heatmap = fig["png"].startswith(("figures/grid", "figures/layers"))
        assert heatmap or 'id="legend_1"' in svg, f"{fig['png']} has no legend"
        assert _blank_band(png) < 0.06, f"{fig['png']} has a blank band"
        assert _edges_clear(png), f"{fig['png']} is cut off at its left or right edge (e.g. a legend too wide)"


def test_report_of_a_folder_with_only_a_csv_of_contract_columns(tmp_path: Path) -> None:
    df = make_results(n_seeds=3, kinds=("data",), layer_pairs=(("penultimate", "penultimate"),))
    folder = tmp_path / "foreign"
    folder.mkdir()
    df[list(CONTRACT_COLUMNS)].to_csv(folder / "results.csv", index=False)
    path = build_report(folder, **FAST)
    s = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert s["status"] == "ok" and s["analysis"]["primary"]["declared_in"] == "the default"
    assert any("No config.yaml" in p for p in s["methods"]) and path.name == "report.html"


def test_several_runs_are_analysed_together_never_pooled(tmp_path: Path) -> None:
    a = write_run_dir(tmp_path / "a", n_seeds=3, kinds=("data",), layer_pairs=(("penultimate", "penultimate"),))
    b = write_run_dir(
        tmp_path / "b", n_seeds=3, kinds=("data", "attribute"), layer_pairs=(("penultimate", "penultimate"),), seed=1
    )
    with pytest.raises(ReprsimError, match="--out"):
        build_report([a, b], **FAST)
    path = build_report([a, b], out=tmp_path / "both", **FAST)
    s = json.loads((path.parent / "summary.json").read_text(encoding="utf-8"))
    assert s["cell_axes"][0] == "run"
    cka = [
        r
        for r in s["overlap_effects"]
        if r["overlap_kind"] == "data" and r["measure"] == "cka" and r["probe_set"] == "test"
    ]
    assert sorted(r["run"] for r in cka) == ["a", "b"] and all(r["n_seeds"] == 3 for r in cka)
    groups = {r["group"] for r in s["families"]["rows"]}
    assert {"data overlap", "task-only overlap (attribute tasks, same images)"} <= groups
    assert s["run"]["run_dirs"] == [str(a), str(b)]
    assert any("2 runs analysed together (a, b)" in p for p in s["methods"])


def test_declared_primary_family_is_read_from_config(tmp_path: Path) -> None:
    df = make_results(n_seeds=3, kinds=("data",), layer_pairs=(("penultimate", "penultimate"),))
    config = {"name": "narrow", "analysis": {"primary": {"measures": ["cka"], "probe_sets": ["test"]}}}
    root = write_run_dir(tmp_path / "run", df, config=config)
    build_report(root, **FAST)
    s = json.loads((root / "summary.json").read_text(encoding="utf-8"))
    assert s["analysis"]["family_size"] == 1 and s["analysis"]["primary"]["declared_in"] == "config.yaml"
    (root / "config.yaml").write_text(yaml.safe_dump({"analysis": {"primary": {"measure": ["cka"]}}}), encoding="utf-8")
    with pytest.raises(ReprsimError, match="analysis.primary.measure"):
        build_report(root, **FAST)


def test_bad_tables_get_a_stated_reason_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    pd.DataFrame({"unit_id": ["u1"], "value": [0.5]}).to_csv(root / "results.csv", index=False)
    path = build_report(root, **FAST)
    s = json.loads((root / "summary.json").read_text(encoding="utf-8"))
    assert s["status"] == "not analysed" and "overlap_kind" in s["problems"][0]["reason"]
    assert "lacks the required column(s)" in path.read_text(encoding="utf-8")
    df, _, _ = load_run(root)  # loading a foreign table is not an error; analysing says why
    assert list(df.columns) == ["unit_id", "value"]
    assert main(["report", str(root), "--n-boot", "100", "--n-perm", "100"]) == 2
    assert "not analysed" in capsys.readouterr().err
    empty = write_run_dir(tmp_path / "empty", make_results(n_seeds=2, kinds=("data",)).assign(status="failed"))
    build_report(empty, **FAST)
    assert "no usable rows" in (empty / "report.md").read_text(encoding="utf-8")


def test_cli_report_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_run_dir(tmp_path / "run", n_seeds=3, kinds=("data",), layer_pairs=(("penultimate", "penultimate"),))
    assert main(["report", str(root), "--format", "md", "--n-boot", "100", "--n-perm", "100", "--no-figures"]) == 0
    assert capsys.readouterr().out.strip().endswith("report.md")
    assert main(["report", str(root), str(root)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReprsimError, match="no results table"):
        load_run(empty)
    with pytest.raises(ValueError, match="format"):
        build_report(root, "pdf")
