"""The report of a run: ``report.html`` (self-contained, images embedded as base64, no external
resources) or ``report.md``, plus ``summary.json`` and the figures under ``RUN_DIR/figures/``."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from reprsim.analysis import stats
from reprsim.analysis.load import clean_results, load_run, prepare
from reprsim.analysis.summary import headline_probe_set, summarize

__all__ = ["build_report", "make_figures", "FORMATS"]

FORMATS = ("html", "md")
_CONSEQUENCE_PLOTS = ("transfer_asr", "jailbreak_transfer_asr")


def _main_probe(effects: pd.DataFrame) -> str | None:
    for kind in ("data", "attribute", "combined", "task"):
        hp = headline_probe_set(effects, kind)
        if hp is not None:
            return hp
    return None


def _layer_choice(raw: pd.DataFrame, probe: str | None) -> tuple[str, str, str] | None:
    """A (unit, measure, probe set) with the most layer pairs; prefers CKA and the main probe set."""
    if raw.empty:
        return None
    counts = raw.groupby(["unit_id", "measure", "probe_set"], sort=False).size()
    counts = counts[counts >= 2]
    if counts.empty:
        return None
    best = counts.max()
    cand = counts[counts == best].reset_index()
    cand["_pref"] = (cand["measure"] != "cka").astype(int) + (cand["probe_set"] != probe).astype(int)
    row = cand.sort_values("_pref", kind="stable").iloc[0]
    return str(row["unit_id"]), str(row["measure"]), str(row["probe_set"])


def make_figures(raw: pd.DataFrame, data: pd.DataFrame, effects: pd.DataFrame, out_dir: Path) -> list[dict[str, str]]:
    """Draw every figure the run supports into ``out_dir`` (PNG + SVG).

    Returns a list of ``{"section", "title", "png", "caption"}`` dicts (``png`` is a path).
    """
    from reprsim.analysis import plots

    figs: list[dict[str, str]] = []

    def add(section: str, title: str, path: Path | None, caption: str) -> None:
        if path is not None:
            figs.append({"section": section, "title": title, "png": str(path), "caption": caption})

    for kind in ("data", "task", "attribute", "combined"):
        add("overlap", f"Similarity vs. overlap ({kind})", plots.plot_overlap_boxes(data, kind, out_dir),
            "Box plots over seeds per overlap fraction; probe sets side by side, lines are OLS fits per probe set."
            + (" For the combined kind, the grid's diagonal (data = task fraction)." if kind == "combined" else ""))  # fmt: skip
    probe = _main_probe(effects)
    comb = data[data["overlap_kind"] == "combined"]
    if not comb.empty:
        gp = probe if probe in set(comb["probe_set"]) else str(comb["probe_set"].iloc[0])
        add("combined", "Data × task grid", plots.plot_grid_heatmap(data, gp, out_dir),
            "Mean similarity per cell of the data × task overlap grid.")  # fmt: skip
    for c in _CONSEQUENCE_PLOTS:
        if c in data.columns and probe is not None:
            add("consequences", f"{c} vs. similarity", plots.plot_transfer_scatter(data, c, probe, out_dir),
                "One point per model pair; black line: OLS fit pooled over overlap kinds; ρ with a bootstrap "
                "interval over seeds.")  # fmt: skip
    choice = _layer_choice(raw, probe)
    if choice is not None:
        add("layers", "Layer × layer similarity", plots.plot_layer_heatmap(raw, *choice, out_dir),
            f"Every computed layer pair of unit {choice[0]} ({choice[1]}, probe set '{choice[2]}').")  # fmt: skip
    add("accuracy", "Accuracy vs. overlap", plots.plot_accuracy(data, out_dir),
        "Mean test accuracy of the two models per overlap fraction (± std over seeds): if accuracy is flat while "
        "similarity rises, accuracy does not explain the effect.")  # fmt: skip
    return figs


# --------------------------------------------------------------------------------------------
# rendering

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1a1a1a;line-height:1.45;background:#fff}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.82em;margin:.6em 0}th,td{border:1px solid #ddd;padding:.2em .45em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.85em;color:#444}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}.finding{margin:.3em 0}
.scroll{overflow-x:auto;max-width:100%}
.yes,.rises{color:#005a8c}.no,.falls,.flat{color:#8c3b00}.note{color:#555;font-size:.9em}
"""

_FLOAT = "{:.4g}".format


def _records_frame(records: Any, columns: list[str] | None = None) -> pd.DataFrame:
    """The records as a DataFrame, restricted to ``columns`` (those present) when given."""
    frame = pd.DataFrame(records) if records else pd.DataFrame()
    if columns and not frame.empty:
        frame = frame[[c for c in columns if c in frame.columns]]
    return frame


def _html_table(records: Any, columns: list[str] | None = None) -> str:
    frame = _records_frame(records, columns)
    if frame.empty:
        return '<p class="note">(nothing to show)</p>'
    return frame.to_html(index=False, border=0, na_rep="", float_format=_FLOAT, escape=True)


def _md_table(records: Any, columns: list[str] | None = None) -> str:
    frame = _records_frame(records, columns)
    if frame.empty:
        return "(nothing to show)\n"

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return ""
        if isinstance(v, float):
            return _FLOAT(v)
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


_EFFECT_COLS = ["overlap_kind", "measure", "probe_set", "probe_role", "slope", "slope_low", "slope_high", "r2",
                "mutual_information", "spearman", "spearman_low", "spearman_high", "n", "n_levels", "n_seeds",
                "value_at_min", "value_at_max"]  # fmt: skip
_GRID_COLS = ["measure", "probe_set", "gain_data", "gain_data_low", "gain_data_high", "gain_task", "gain_task_low",
              "gain_task_high", "gain_both", "gain_both_low", "gain_both_high", "gain_both_minus_best_single",
              "gain_both_minus_best_single_low", "gain_both_minus_best_single_high", "combined_strongest",
              "coef_data", "coef_task", "coef_interaction", "coef_interaction_low", "coef_interaction_high", "n"]  # fmt: skip
_CMP_COLS = ["measure", "probe_set", "task_only_kind", "slope_data", "slope_task_only", "slope_combined",
             "combined_minus_best_single", "diff_low", "diff_high", "combined_strongest", "fair", "fairness_note"]  # fmt: skip
_LINK_COLS = ["consequence", "overlap_kind", "predictor", "probe_set", "n", "spearman", "spearman_low",
              "spearman_high", "pearson", "pearson_low", "pearson_high", "slope", "slope_low", "slope_high"]  # fmt: skip
_MEANS_COLS = ["overlap_kind", "measure", "probe_set", "data_fraction", "task_fraction", "mean", "std", "n"]


def _sections(summary: dict[str, Any]) -> list[tuple[str, str, str, list[str], list[tuple[Any, list[str] | None, str]]]]:
    """(id, title, intro, finding sentences, tables) per section; shared by the HTML and MD writers."""
    f = summary["findings"]
    agreement = [{"measure": k, **v} for k, v in summary["agreement"].items()]
    return [
        ("overlap", "Similarity vs. overlap", "Regression of each measure on its overlap fraction.",
         [x["sentence"] for x in f if x["topic"] == "overlap"], [(summary["overlap_effects"], _EFFECT_COLS, "Effects")]),
        ("combined", "Does combining data and task overlap give the strongest effect?",
         "Within the data × task grid (same models, same units) and across overlap kinds (slopes per unit overlap).",
         [x["sentence"] for x in f if x["topic"].startswith("combined")],
         [(summary["combined"]["grid"], _GRID_COLS, "Data × task grid"),
          (summary["combined"]["comparison"], _CMP_COLS, "Across overlap kinds")]),
        ("consequences", "Consequences: transfer success vs. similarity and overlap", "",
         [x["sentence"] for x in f if x["topic"] == "consequence"],
         [(summary["consequences"], _LINK_COLS, "Links")]),
        ("layers", "Layer pairs", "", [], []),
        ("agreement", "Which measures agree", "Spearman ρ between measures across model pairs and probe sets.", [],
         [(agreement, None, "Measure × measure")]),
        ("significance", "Significance against a permutation null", "Where the runner computed p-values.", [],
         [(summary["significance"], None, "Share of significant pairs")]),
        ("accuracy", "Accuracy vs. overlap", "", [], [(summary["accuracy"], None, "Accuracy")]),
        ("means", "Mean ± std per fraction", "", [], [(summary["fraction_means"], _MEANS_COLS, "Per-fraction means")]),
    ]  # fmt: skip


def _img_tag(png: Path, alt: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _figure_html(fg: dict[str, str]) -> str:
    caption = html.escape(f"{fg['title']}. {fg['caption']}")
    return f'<figure>{_img_tag(Path(fg["png"]), fg["title"])}<figcaption>{caption}</figcaption></figure>'


def _render_html(summary: dict[str, Any], figs: list[dict[str, str]], config: dict, provenance: dict, title: str) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", f"<h1>{e(title)}</h1>"]  # fmt: skip
    parts.append(
        f'<p class="note">{summary["n_units"]} model pairs, {summary["n_rows"]} results rows; layer selection: '
        f'{e(", ".join(summary["layer_selection"]))}; overlap kinds: {e(", ".join(summary["overlap_kinds"]))}; '
        f'measures: {e(", ".join(summary["measures"]))}.</p>'
    )
    parts.append('<h2 id="summary">Summary</h2>')
    main_fig = next((fg for fg in figs if fg["section"] == "overlap"), None)
    if main_fig is not None:  # the paper's main figure first; it is not repeated below
        parts.append(_figure_html(main_fig))
    parts += [f'<p class="finding">{e(s)}</p>' for s in summary["headline"]] or ['<p class="note">No findings.</p>']
    parts.append("<ul class=\"note\">" + "".join(f"<li>{e(k)}: {e(v)}</li>" for k, v in summary["statistics"].items()) + "</ul>")
    for sid, stitle, intro, sentences, tables in _sections(summary):
        sec_figs = [fg for fg in figs if fg["section"] == sid and fg is not main_fig]
        if not (sentences or sec_figs or any(_records_frame(t).shape[0] for t, _, _ in tables)):
            continue
        parts.append(f'<h2 id="{sid}">{e(stitle)}</h2>')
        if intro:
            parts.append(f'<p class="note">{e(intro)}</p>')
        for fg in sec_figs:
            parts.append(_figure_html(fg))
        if sentences:
            parts.append(f"<details><summary>All findings ({len(sentences)})</summary>")
            parts += [f'<p class="finding">{e(s)}</p>' for s in sentences]
            parts.append("</details>")
        for records, cols, label in tables:
            parts.append(f"<h3>{e(label)}</h3>")
            parts.append(f'<div class="scroll">{_html_table(records, cols)}</div>')
    parts.append('<h2 id="config">Config</h2>')
    parts.append(f"<pre>{e(yaml.safe_dump(config, sort_keys=False) if config else '(no config.yaml)')}</pre>")
    parts.append('<h2 id="provenance">Provenance</h2>')
    parts.append(f"<pre>{e(json.dumps(provenance, indent=2, default=str) if provenance else '(no provenance.json)')}</pre>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _render_md(summary: dict[str, Any], figs: list[dict[str, str]], config: dict, provenance: dict, title: str,
               run_dir: Path) -> str:  # fmt: skip
    out = [f"# {title}", "",
           f"{summary['n_units']} model pairs, {summary['n_rows']} results rows; layer selection: "
           f"{', '.join(summary['layer_selection'])}.", "", "## Summary", ""]  # fmt: skip
    out += [f"- {s}" for s in summary["headline"]] + [""]
    out += [f"- *{k}*: {v}" for k, v in summary["statistics"].items()] + [""]
    for sid, stitle, intro, sentences, tables in _sections(summary):
        sec_figs = [fg for fg in figs if fg["section"] == sid]
        if not (sentences or sec_figs or any(_records_frame(t).shape[0] for t, _, _ in tables)):
            continue
        out += [f"## {stitle}", ""] + ([intro, ""] if intro else [])
        for fg in sec_figs:
            rel = Path(fg["png"]).relative_to(run_dir).as_posix()
            out += [f"![{fg['title']}]({rel})", "", f"*{fg['caption']}*", ""]
        out += [f"- {s}" for s in sentences] + ([""] if sentences else [])
        for records, cols, label in tables:
            out += [f"### {label}", "", _md_table(records, cols)]
    out += ["## Config", "", "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip() if config else "", "```", ""]
    out += ["## Provenance", "", "```json", json.dumps(provenance, indent=2, default=str), "```", ""]
    return "\n".join(out)


def build_report(
    run_dir: str | Path,
    format: str = "html",  # noqa: A002 - the public name the CLI mirrors
    *,
    layers: str = "default",
    n_boot: int = stats.DEFAULT_N_BOOT,
    seed: int = stats.DEFAULT_SEED,
) -> Path:
    """Analyse a run folder and write its report.

    Writes ``RUN_DIR/report.html`` (``format="html"``, one self-contained file) or
    ``RUN_DIR/report.md``, ``RUN_DIR/summary.json`` (the numbers of :func:`summarize` plus the
    figure paths) and the figures (PNG + SVG) under ``RUN_DIR/figures/``.

    Returns
    -------
    pathlib.Path of the report file.
    """
    if format not in FORMATS:
        raise ValueError(f"report format must be one of {list(FORMATS)}, got {format!r}.")
    root = Path(run_dir)
    df, config, provenance = load_run(root)
    raw = clean_results(df)
    data = prepare(df, layers)
    summary = summarize(data, n_boot=n_boot, seed=seed)
    effects = pd.DataFrame(summary["overlap_effects"], columns=["overlap_kind", "measure", "probe_set", "probe_role"])
    figs = make_figures(raw, data, effects, root / "figures")
    summary["figures"] = [{**fg, "png": Path(fg["png"]).relative_to(root).as_posix()} for fg in figs]
    summary["run"] = {"run_dir": str(root), "provenance": provenance}
    (root / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False, default=str), encoding="utf-8")
    name = config.get("name") if isinstance(config, dict) else None
    title = f"reprsim report: {name}" if name else f"reprsim report: {root.name}"
    if format == "html":
        path = root / "report.html"
        path.write_text(_render_html(summary, figs, config, provenance, title), encoding="utf-8")
    else:
        path = root / "report.md"
        path.write_text(_render_md(summary, figs, config, provenance, title, root), encoding="utf-8")
    return path
