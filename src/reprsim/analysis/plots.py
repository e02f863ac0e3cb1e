"""Figures of a run (matplotlib, Agg backend). Each function draws one figure from prepared rows of
one group (never pooling sources, models or overlap kinds), saves it as PNG and SVG and returns the
PNG path (``None`` when there is nothing to draw). Every figure with more than one series carries
its own legend; layouts are ``constrained`` so legends take exactly the room they need (no blank
bands). Colours are the Okabe–Ito palette (safe for colour-blind readers).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from reprsim.analysis.cells import group_keys
from reprsim.analysis.text import consequence_label, measure_label

__all__ = [
    "OKABE_ITO",
    "plot_accuracy",
    "plot_consequences",
    "plot_factorial",
    "plot_grid_heatmap",
    "plot_layer_heatmap",
    "plot_link",
    "plot_overlap",
    "slug",
]

#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
_SHORT_KIND = {
    "data": "data overlap",
    "task": "task overlap (classes)",
    "attribute": "task-only (attributes)",
    "combined": "combined (grid diagonal)",
    "factorial": "factorial (diagonal)",
}
_KIND_ORDER = {k: i for i, k in enumerate(_SHORT_KIND)}
_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "svg.fonttype": "none",
}


def slug(*parts: object) -> str:
    """A file-name-safe name from ``parts`` (``"overlap", "task", "mnist"`` → ``overlap-task-mnist``).

    Distinct ``parts`` never share a slug: when a part is not plain (letters, digits and '.' only,
    not a leading '.') or the name would pass 120 characters, the readable name is shortened and
    followed by ``-`` and 10 hex digits of the parts' SHA-256 (``m<1>`` and ``m 1`` differ).
    """
    kept = [str(p) for p in parts if p not in (None, "")]
    text = re.sub(r"[^A-Za-z0-9.]+", "-", "_".join(kept)).strip("-")
    plain = all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.]*", p) for p in kept)
    if plain and len(text) <= 120:
        return text
    digest = hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:10]
    return f"{text[:109].strip('-.')}-{digest}".lstrip("-.")


def _save(fig: plt.Figure, out_dir: Path, name: str) -> Path:
    from reprsim.safe_paths import safe_folder
    from reprsim.storage import atomic_write_bytes

    safe_folder(out_dir, "figures folder")
    png = out_dir / f"{name}.png"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, facecolor="white")
    atomic_write_bytes(png, buf.getbuffer())  # temp file + rename, never through a planted symlink
    fig.set_layout_engine("none")  # the layout is settled: do not compute it again for the SVG
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", facecolor="white")
    atomic_write_bytes(out_dir / f"{name}.svg", buf.getbuffer())
    plt.close(fig)
    return png


def _panels(n: int, *, width: float = 7.0, height: float = 2.5, max_cols: int = 3) -> tuple[plt.Figure, np.ndarray]:
    cols = min(n, max_cols)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows + 0.7), squeeze=False, layout="constrained")
    for ax in axes.ravel()[n:]:
        ax.remove()
    return fig, axes.ravel()[:n]


def _legend(fig: plt.Figure, axes: np.ndarray, title: str | None = None) -> None:
    """One legend for the figure, below the panels, from the labelled artists of every panel."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(
            handles, labels, loc="outside lower center", ncols=_legend_columns(fig, labels), frameon=False, title=title
        )


def _legend_columns(fig: plt.Figure, labels: list[str]) -> int:
    """As many legend columns as fit the figure's width (≈ 0.07 in per character at 8 pt + the handle)."""
    entry = 0.55 + 0.07 * max(len(lab) for lab in labels)
    return int(max(1, min(len(labels), 4, fig.get_figwidth() // entry)))


def plot_overlap(
    rows: pd.DataFrame, measures: list[str], probes: list[str], title: str, out_dir: Path, name: str
) -> Path | None:
    """Similarity vs overlap fraction for one group: a panel per measure, box plots over seeds per
    fraction with the probe sets side by side, and each probe set's fitted line (the mean per-seed
    slope through the pooled means)."""
    rows = rows[np.isfinite(rows["x"])]
    measures = [m for m in measures if m in set(rows["measure"])]
    if rows.empty or not measures:
        return None
    levels = np.sort(rows["x"].unique())
    step = float(np.min(np.diff(levels))) if levels.size > 1 else 1.0
    width = 0.8 * step / max(1, len(probes))
    with plt.rc_context(_RC):
        fig, axes = _panels(len(measures))
        for ax, measure in zip(axes, measures):
            sm = rows[rows["measure"] == measure]
            for j, probe in enumerate(probes):
                sp = sm[sm["probe_set"] == probe]
                if sp.empty:
                    continue
                colour = OKABE_ITO[j % len(OKABE_ITO)]
                offset = (j - (len(probes) - 1) / 2) * width
                xs = [lv for lv in levels if (sp["x"] == lv).any()]
                groups = [sp.loc[sp["x"] == lv, "value"].to_numpy() for lv in xs]
                ax.boxplot(
                    groups,
                    positions=np.array(xs) + offset,
                    widths=width * 0.85,
                    patch_artist=True,
                    manage_ticks=False,
                    boxprops={"facecolor": colour, "alpha": 0.5, "edgecolor": colour},
                    medianprops={"color": "black"},
                    whiskerprops={"color": colour},
                    capprops={"color": colour},
                    flierprops={"markeredgecolor": colour, "markersize": 3},
                )
                means = sp.groupby("x")["value"].mean()
                ax.plot(means.index + offset, means.to_numpy(), color=colour, lw=1.3, marker="o", ms=2.5, label=probe)
            ax.set_title(measure_label(measure))
            ax.set_xticks(levels, [f"{lv:g}" for lv in levels])
            ax.set_xlabel("overlap fraction")
            ax.grid(axis="y", alpha=0.3)
        axes[0].set_ylabel("similarity")
        _legend(fig, axes, "probe set (line: mean over seeds; box: spread over seeds)")
        fig.suptitle(title, fontsize=10)
        return _save(fig, out_dir, name)


def plot_factorial(
    rows: pd.DataFrame, measures: list[str], probe: str, title: str, out_dir: Path, name: str
) -> Path | None:
    """Interaction plot of the 2 × 2 factorial design: x = task (different / same attribute), one
    line per image condition (disjoint / shared), mean ± between-seed SD; a panel per measure.
    Parallel lines mean no interaction."""
    sub = rows[(rows["probe_set"] == probe) & rows["measure"].isin(measures)]
    if sub.empty:
        return None
    measures = [m for m in measures if m in set(sub["measure"])]
    with plt.rc_context(_RC):
        fig, axes = _panels(len(measures))
        for ax, measure in zip(axes, measures):
            sm = sub[sub["measure"] == measure]
            per_seed = sm.groupby(["data_fraction", "task_fraction", "seed"])["value"].mean().reset_index()
            for j, (d, label) in enumerate([(0.0, "images disjoint"), (1.0, "images shared")]):
                g = per_seed[np.isclose(per_seed["data_fraction"], d)].groupby("task_fraction")["value"]
                if g.ngroups == 0:
                    continue
                m, s = g.mean(), g.std().fillna(0)
                dodge = -0.03 if d == 0.0 else 0.03  # keep the two conditions' error bars apart
                ax.errorbar(
                    m.index + dodge,
                    m.to_numpy(),
                    yerr=s.to_numpy(),
                    marker="o",
                    ms=4,
                    capsize=3,
                    color=OKABE_ITO[j],
                    label=label,
                )
            ax.set_xticks([0, 1], ["different task", "same task"])
            ax.set_xlim(-0.3, 1.3)
            ax.set_title(measure_label(measure))
            ax.grid(axis="y", alpha=0.3)
        axes[0].set_ylabel(f"similarity ('{probe}')")
        _legend(fig, axes, "mean ± between-seed SD")
        fig.suptitle(title, fontsize=10)
        return _save(fig, out_dir, name)


def plot_grid_heatmap(
    rows: pd.DataFrame, measures: list[str], probe: str, title: str, out_dir: Path, name: str
) -> Path | None:
    """Mean similarity on a data × task grid (``combined`` kind), a panel per measure with its colour bar."""
    sub = rows[(rows["probe_set"] == probe) & rows["measure"].isin(measures)]
    if sub.empty:
        return None
    measures = [m for m in measures if m in set(sub["measure"])]
    with plt.rc_context(_RC):
        fig, axes = _panels(len(measures), height=2.6)
        for ax, measure in zip(axes, measures):
            table = (
                sub[sub["measure"] == measure]
                .pivot_table(index="task_fraction", columns="data_fraction", values="value", aggfunc="mean")
                .sort_index(ascending=False)
            )
            vals = table.to_numpy()
            im = ax.imshow(vals, cmap="viridis", aspect="auto")
            ax.set_xticks(range(table.shape[1]), [f"{v:g}" for v in table.columns])
            ax.set_yticks(range(table.shape[0]), [f"{v:g}" for v in table.index])
            ax.set_xlabel("data overlap")
            ax.set_ylabel("task overlap")
            ax.set_title(measure_label(measure))
            mid = np.nanmean(vals)
            for (i, j), v in np.ndenumerate(vals):
                if np.isfinite(v):
                    ax.text(
                        j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color="white" if v < mid else "black"
                    )
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="mean similarity")
        fig.suptitle(title, fontsize=10)
        return _save(fig, out_dir, name)


def plot_consequences(by_fraction: pd.DataFrame, kinds: list[str], title: str, out_dir: Path, name: str) -> Path | None:
    """White-box success, transfer success and P(victim fooled | source fooled) vs the overlap
    fraction, a panel per overlap kind of one (source, model); solid A→B, dashed B→A; mean ± SD."""
    series = ["whitebox_asr", "transfer_asr", "transfer_asr_given_source_fooled", "jailbreak_transfer_asr"]
    sub = by_fraction[by_fraction["consequence"].str.replace("_ba$", "", regex=True).isin(series)]
    kinds = sorted((k for k in kinds if k in set(sub["overlap_kind"])), key=lambda k: (_KIND_ORDER.get(k, 9), k))
    if sub.empty or not kinds:
        return None
    with plt.rc_context(_RC):
        fig, axes = _panels(len(kinds))
        for ax, kind in zip(axes, kinds):
            sk = sub[sub["overlap_kind"] == kind]
            for c, g in sk.groupby("consequence", sort=False):
                base = c.removesuffix("_ba")
                colour = OKABE_ITO[series.index(base) % len(OKABE_ITO)]
                ax.errorbar(
                    g["x"],
                    g["mean"],
                    yerr=g["sd"].fillna(0),
                    marker="o",
                    ms=3,
                    capsize=2,
                    color=colour,
                    ls="--" if c.endswith("_ba") else "-",
                    label=consequence_label(c),
                )
            ax.set_title(_SHORT_KIND.get(kind, kind))
            ax.set_xlabel("overlap fraction")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("success rate")
        _legend(fig, axes, "mean ± between-seed SD")
        fig.suptitle(title, fontsize=10)
        return _save(fig, out_dir, name)


def plot_link(units: pd.DataFrame, consequence: str, xlabel: str, title: str, out_dir: Path, name: str) -> Path | None:
    """Transfer success vs similarity for one similarity cell, points coloured by overlap fraction,
    with a least-squares line per fraction (descriptive: overlap drives both axes)."""
    sub = units[np.isfinite(pd.to_numeric(units[consequence], errors="coerce"))]
    if len(sub) < 3:
        return None
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(4.8, 3.4), layout="constrained")
        for j, (x, g) in enumerate(sub.groupby("x", sort=True)):
            colour = OKABE_ITO[j % len(OKABE_ITO)]
            ax.scatter(g["value"], g[consequence], s=16, color=colour, label=f"fraction {x:g}")
            if len(g) >= 3 and np.ptp(g["value"]) > 0:
                k, b = np.polyfit(g["value"].to_numpy(float), g[consequence].to_numpy(float), 1)
                xx = np.array([g["value"].min(), g["value"].max()])
                ax.plot(xx, k * xx + b, color=colour, lw=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(consequence_label(consequence))
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=7, loc="best")
        ax.set_title(title, fontsize=9)
        return _save(fig, out_dir, name)


def plot_layer_heatmap(raw: pd.DataFrame, unit_id: str, measure: str, probe_set: str, out_dir: Path) -> Path | None:
    """Layer × layer similarity matrix of one model pair, with its colour bar."""
    sub = raw[(raw["unit_id"] == unit_id) & (raw["measure"] == measure) & (raw["probe_set"] == probe_set)]
    if len(sub) < 2:
        return None
    table = sub.pivot_table(index="layer_a", columns="layer_b", values="value", aggfunc="mean")
    with plt.rc_context(_RC):
        side = 1.2 + 0.5 * max(table.shape)
        fig, ax = plt.subplots(figsize=(min(7.0, side + 1.8), min(6.0, side + 0.6)), layout="constrained")
        im = ax.imshow(table.to_numpy(), cmap="viridis", aspect="auto")
        ax.set_xticks(range(table.shape[1]), list(table.columns), rotation=45, ha="right")
        ax.set_yticks(range(table.shape[0]), list(table.index))
        ax.set_xlabel("layer of model B")
        ax.set_ylabel("layer of model A")
        for (i, j), v in np.ndenumerate(table.to_numpy()):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white")
        fig.colorbar(im, ax=ax, label=measure_label(measure))
        ax.set_title(f"{measure_label(measure)} per layer pair ('{probe_set}')", fontsize=9)
        return _save(fig, out_dir, "layers")


def plot_accuracy(acc: pd.DataFrame, out_dir: Path) -> Path | None:
    """Mean test accuracy of the two models vs overlap fraction, one line per (source, model, kind)."""
    if acc.empty:
        return None
    keys = group_keys(acc)
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
        for j, (key, g) in enumerate(acc.groupby(keys, sort=False)):
            label = " · ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
            ax.errorbar(
                g["x"],
                g["acc_mean"],
                yerr=g["acc_sd"].fillna(0),
                marker="o",
                ms=3,
                capsize=2,
                color=OKABE_ITO[j % len(OKABE_ITO)],
                label=label,
            )
        ax.set_xlabel("overlap fraction")
        ax.set_ylabel("test accuracy (mean of A and B)")
        ax.grid(alpha=0.3)
        labels = ax.get_legend_handles_labels()[1]
        fig.legend(
            loc="outside lower center",
            ncols=_legend_columns(fig, labels) if labels else 1,
            frameon=False,
            title="mean ± between-seed SD",
        )
        return _save(fig, out_dir, "accuracy")
