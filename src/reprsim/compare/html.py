"""Figures and the self-contained HTML page of a :class:`~reprsim.compare.result.Comparison`.

The page embeds its figure as a base64 PNG and its style inline: it opens offline, from any
folder, with nothing else beside it.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any, Protocol

import matplotlib

matplotlib.use("Agg")  # never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


class ComparisonView(Protocol):
    """What the figures and the page read of a :class:`reprsim.compare.result.Comparison` (a
    structural type, so that this module does not import the one that imports it)."""

    table: pd.DataFrame
    layers_a: list[str]
    layers_b: list[str]
    measures: list[str]
    layer_measures: list[str]
    behavioural: list[str]
    model_a: str
    model_b: str
    inputs: str
    n_inputs: int
    prepare: str
    params: dict[str, Any]
    transfer: pd.DataFrame | None
    attack: str | None
    timings: dict[str, float]
    warnings: list[str]

    def matrix(self, measure: str, column: str = "value") -> pd.DataFrame: ...


__all__ = ["ComparisonView", "behaviour_frame", "figure", "markdown_table", "render", "wide_frame"]


def _kind(name: str) -> str:
    from reprsim.metrics import MEASURES

    return MEASURES[name].kind if name in MEASURES else "similarity"


def figure(comp: ComparisonView, names: list[str], max_cols: int = 4) -> plt.Figure:
    """Heatmaps of the layer × layer matrices (one panel per measure), or a bar chart of every
    measure when only one layer pair was compared. Returns the Figure."""
    if len(comp.layers_a) == 1 and len(comp.layers_b) == 1:
        values = [float(comp.matrix(n).iloc[0, 0]) for n in names]
        fig, ax = plt.subplots(figsize=(7.0, 0.28 * len(names) + 1.2))
        y = np.arange(len(names))
        ax.barh(y, [0.0 if math.isnan(v) else v for v in values], color="#4c72b0")
        ax.set_yticks(y, [f"{n} (distance)" if _kind(n) == "distance" else n for n in names], fontsize=8)
        ax.invert_yaxis()
        for yi, v in zip(y, values):
            ax.text(v if not math.isnan(v) else 0.0, yi, f" {v:.3f}", va="center", fontsize=7)
        ax.set_title(f"{comp.layers_a[0]} (A) vs {comp.layers_b[0]} (B)", fontsize=9)
        ax.axvline(0.0, color="black", lw=0.5)
        fig.tight_layout()
        return fig
    cols = min(max_cols, len(names))
    rows = math.ceil(len(names) / cols)
    na, nb = len(comp.layers_a), len(comp.layers_b)
    cell = min(0.45, 3.2 / max(na, nb))
    w = max(2.6, nb * cell + 1.4)
    h = max(2.2, na * cell + 1.0)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    annotate = na * nb <= 64
    for ax, name in zip(axes.flat, names):
        mat = comp.matrix(name).to_numpy()
        cmap = "viridis_r" if _kind(name) == "distance" else "viridis"
        finite = mat[np.isfinite(mat)]
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        im = ax.imshow(mat, cmap=cmap, vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1e-9, aspect="auto")
        ax.set_title(name + (" (distance)" if _kind(name) == "distance" else ""), fontsize=9)
        ax.set_xticks(range(nb), comp.layers_b, rotation=60, ha="right", fontsize=6)
        ax.set_yticks(range(na), comp.layers_a, fontsize=6)
        ax.set_xlabel("B", fontsize=7)
        ax.set_ylabel("A", fontsize=7)
        if annotate:
            mid = (vmin + vmax) / 2
            for i in range(na):
                for j in range(nb):
                    v = mat[i, j]
                    ax.text(
                        j,
                        i,
                        "–" if math.isnan(v) else f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=5.5,
                        color="white" if (v < mid) != (cmap == "viridis_r") else "black",
                    )
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "–" if math.isnan(v) else f"{v:.4g}"
    return html.escape(str(v))


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown table (numbers to 4 significant digits, NaN as a dash; ``|`` escaped)."""

    def cell(v: Any) -> str:
        text = ("–" if math.isnan(v) else f"{v:.4g}") if isinstance(v, (float, np.floating)) else str(v)
        return text.replace("|", "\\|")

    head = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    return "\n".join(
        [head, rule] + ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    )


def behaviour_frame(comp: ComparisonView) -> pd.DataFrame:
    """The behavioural rows of a comparison: ``measure``, ``value`` and, when present, the interval."""
    t = comp.table
    rows = t[t["measure"].isin(comp.behavioural)]
    return rows[[c for c in ("measure", "value", "ci_low", "ci_high") if c in rows.columns]].reset_index(drop=True)


def wide_frame(comp: ComparisonView) -> pd.DataFrame:
    """One row per layer pair, one column per measure (value, with the interval or p-value when computed)."""
    t = comp.table

    def cell(r: Any) -> str:
        s = "–" if math.isnan(r.value) else f"{r.value:.4f}"
        if "ci_low" in t.columns and not math.isnan(r.ci_low):
            s += f" [{r.ci_low:.3f}, {r.ci_high:.3f}]"
        if "p_value" in t.columns and not math.isnan(r.p_value):
            s += f" (p={r.p_value:.3g})"
        return s

    shown = t.assign(cell=[cell(r) for r in t.itertuples(index=False)])
    wide = shown.pivot(index=["layer_a", "layer_b"], columns="measure", values="cell")
    order = pd.MultiIndex.from_tuples(
        [(a, b) for a in comp.layers_a for b in comp.layers_b], names=["layer_a", "layer_b"]
    )
    return wide.reindex(index=order, columns=comp.measures).reset_index()


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td:first-child,td:nth-child(2){text-align:left}dl{display:grid;grid-template-columns:max-content auto;
gap:.2em 1em}dt{font-weight:600}img{max-width:100%}.note{color:#666;font-size:.9em}.scroll{overflow-x:auto}
"""


def render(comp: ComparisonView) -> str:
    """The HTML page as a string (see the module docstring)."""
    esc = html.escape
    info = [
        ("Model A", comp.model_a),
        ("Model B", comp.model_b),
        ("Inputs", f"{comp.inputs} (n = {comp.n_inputs})"),
        ("Layers of A", ", ".join(comp.layers_a)),
        ("Layers of B", ", ".join(comp.layers_b)),
        ("Feature preparation", comp.prepare),
        ("Measures", ", ".join(comp.measures)),
    ]
    if comp.params:
        info.append(("Parameters", ", ".join(f"{k}={v}" for k, v in comp.params.items())))
    if comp.attack:
        info.append(("Attack", comp.attack))
    if comp.timings:
        info.append(("Time", ", ".join(f"{k} {v:.1f} s" for k, v in comp.timings.items())))
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>reprsim: {esc(comp.model_a)} vs "
        f"{esc(comp.model_b)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(comp.model_a)} vs {esc(comp.model_b)}</h1>",
        "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in info) + "</dl>",
    ]
    if comp.transfer is not None and not comp.transfer.empty:
        tr = comp.transfer
        parts.append(
            "<h2>Adversarial transfer</h2><p class='note'>Examples crafted on the source (white-box) and "
            "applied to the victim. <code>whitebox_asr</code>: the source fooled by its own examples (the "
            "baseline); <code>transfer_asr</code>: the victim fooled; <code>transfer_asr_conditional</code>: "
            "among inputs both classify correctly. 95% Wilson intervals.</p>"
        )
        parts.append(_table(tr))
    title = "Measures" if len(comp.layers_a) * len(comp.layers_b) == 1 else "Layer × layer heatmaps"
    parts.append(
        f"<h2>{title}</h2><p class='note'>Rows: layers of A; columns: layers of B. Distances (lower = more "
        "similar) use a reversed colour scale.</p>"
    )
    if comp.layer_measures:
        parts.append(
            f"<img alt='similarity heatmaps' src='data:image/png;base64,{_png(figure(comp, comp.layer_measures))}'>"
        )
    parts.append("<h2>Measure table</h2><div class='scroll'>" + _table(wide_frame(comp)) + "</div>")
    if comp.behavioural:
        parts.append(
            "<h2>Behavioural similarity</h2><p class='note'>How alike the two models' outputs are on the "
            "inputs (layer <code>output</code>): agreement and Cohen's κ of the predictions, error consistency "
            "and CAPA κp of their mistakes (percentile bootstrap interval over inputs), JS divergence of the "
            "output distributions (nats; lower = more alike).</p>"
        )
        parts.append(_table(behaviour_frame(comp)))
    if comp.warnings:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(w)}</li>" for w in comp.warnings[:200]) + "</ul>")
        if len(comp.warnings) > 200:
            parts.append(f"<p class='note'>… and {len(comp.warnings) - 200} more.</p>")
    parts.append("<p class='note'>Written by reprsim.compare_models.</p></body></html>")
    return "\n".join(parts)
