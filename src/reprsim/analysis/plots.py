"""Figures of a run (matplotlib, Agg backend): each function draws one figure from the prepared
results table and saves it as PNG and SVG, returning the PNG path (or ``None`` when the table has
nothing to draw). Colours are the Okabe–Ito palette (safe for colour-blind readers); sizes and
fonts are chosen to stay readable at paper width (7 in).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from reprsim.analysis import stats  # noqa: E402
from reprsim.analysis.summary import consequence_label, kind_label, measure_label  # noqa: E402

__all__ = [
    "OKABE_ITO",
    "plot_overlap_boxes",
    "plot_grid_heatmap",
    "plot_transfer_scatter",
    "plot_layer_heatmap",
    "plot_accuracy",
]

#: Okabe & Ito (2008) colour-blind-safe palette (black omitted).
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
_RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
       "xtick.labelsize": 8, "ytick.labelsize": 8, "svg.fonttype": "none"}  # fmt: skip
_SHORT_KIND = {"data": "data", "task": "task (classes)", "attribute": "task-only (attribute)", "combined": "combined"}
_ROLE_ORDER = {"id": 0, "common": 1, "ood_one": 2, "ood_all": 3, "ood": 4}


def _save(fig: plt.Figure, out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}.png"
    fig.savefig(png, dpi=150, bbox_inches="tight", facecolor="white")
    fig.savefig(out_dir / f"{name}.svg", bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return png


def _panels(n: int, width: float = 7.0, height: float = 2.6, max_cols: int = 3) -> tuple[plt.Figure, np.ndarray]:
    cols = min(n, max_cols)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def _figure_legend(fig: plt.Figure, axes: np.ndarray, n_entries: int) -> None:
    """One legend for the whole figure, below the panels (keeps the panels' data visible)."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("fit"):
                handles.append(h)
                labels.append(lab)
    fig.tight_layout(rect=(0, 0.08 if n_entries else 0, 1, 0.92))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False)


def _probe_order(df: pd.DataFrame) -> list[str]:
    roles = df.drop_duplicates("probe_set").set_index("probe_set")["probe_role"]
    return sorted(roles.index, key=lambda p: (_ROLE_ORDER.get(roles[p], 9), str(p)))


def plot_overlap_boxes(data: pd.DataFrame, kind: str, out_dir: Path) -> Path | None:
    """The paper's main figure for one overlap kind: per measure a panel of box plots of the
    measure vs. overlap fraction, probe sets side by side in colour, with each probe set's OLS line."""
    sub = data[(data["overlap_kind"] == kind) & np.isfinite(data["x"])]
    if sub.empty:
        return None
    measures = sorted(sub["measure"].unique())
    probes = _probe_order(sub)
    levels = np.sort(sub["x"].unique())
    step = float(np.min(np.diff(levels))) if levels.size > 1 else 1.0
    with plt.rc_context(_RC):
        fig, axes = _panels(len(measures))
        for ax, measure in zip(axes, measures):
            sm = sub[sub["measure"] == measure]
            width = 0.8 * step / max(1, len(probes))
            for j, probe in enumerate(probes):
                sp = sm[sm["probe_set"] == probe]
                if sp.empty:
                    continue
                colour = OKABE_ITO[j % len(OKABE_ITO)]
                offset = (j - (len(probes) - 1) / 2) * width
                xs = [lv for lv in levels if (sp["x"] == lv).any()]
                groups = [sp.loc[sp["x"] == lv, "value"].to_numpy() for lv in xs]
                ax.boxplot(groups, positions=np.array(xs) + offset, widths=width * 0.85, patch_artist=True,
                           manage_ticks=False, boxprops={"facecolor": colour, "alpha": 0.55, "edgecolor": colour},
                           medianprops={"color": "black"}, whiskerprops={"color": colour},
                           capprops={"color": colour}, flierprops={"markeredgecolor": colour, "markersize": 3})  # fmt: skip
                fit = stats.linear_fit(sp["x"], sp["value"])
                if np.isfinite(fit.slope):
                    xx = np.array([min(xs), max(xs)])
                    ax.plot(xx + offset, fit.intercept + fit.slope * xx, color=colour, lw=1.2,
                            label=f"{probe} ({sp['probe_role'].iloc[0] or '?'})")  # fmt: skip
            ax.set_title(measure_label(measure))
            ax.set_xticks(levels)
            ax.set_xticklabels([f"{lv:g}" for lv in levels])
            ax.set_xlabel("overlap fraction")
            ax.set_ylabel("similarity")
            ax.grid(axis="y", alpha=0.3)
        _figure_legend(fig, axes, len(probes))
        fig.suptitle(f"Similarity vs. {kind_label(kind)}", fontsize=11)
        return _save(fig, out_dir, f"overlap_{kind}")


def plot_grid_heatmap(data: pd.DataFrame, probe_set: str, out_dir: Path) -> Path | None:
    """Mean similarity on the data × task grid (``combined`` kind), one panel per measure."""
    sub = data[(data["overlap_kind"] == "combined") & (data["probe_set"] == probe_set)]
    if sub.empty:
        return None
    measures = sorted(sub["measure"].unique())
    with plt.rc_context(_RC):
        fig, axes = _panels(len(measures), height=2.8)
        for ax, measure in zip(axes, measures):
            table = sub[sub["measure"] == measure].pivot_table(
                index="task_fraction", columns="data_fraction", values="value", aggfunc="mean"
            ).sort_index(ascending=False)
            im = ax.imshow(table.to_numpy(), cmap="viridis", aspect="auto")
            ax.set_xticks(range(table.shape[1]), [f"{v:g}" for v in table.columns])
            ax.set_yticks(range(table.shape[0]), [f"{v:g}" for v in table.index])
            ax.set_xlabel("data overlap")
            ax.set_ylabel("task overlap")
            ax.set_title(measure_label(measure))
            vals = table.to_numpy()
            mid = np.nanmean(vals)
            for (i, j), v in np.ndenumerate(vals):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7,
                            color="white" if v < mid else "black")  # fmt: skip
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        fig.suptitle(f"Mean similarity on the data × task grid (probe set '{probe_set}')", fontsize=11)
        fig.tight_layout()
        return _save(fig, out_dir, f"grid_{probe_set}")


def plot_transfer_scatter(data: pd.DataFrame, consequence: str, probe_set: str, out_dir: Path) -> Path | None:
    """Transfer success vs. similarity (one panel per measure), coloured by overlap kind, with the
    pooled OLS line and Spearman ρ in the legend."""
    if consequence not in data.columns:
        return None
    sub = data[(data["probe_set"] == probe_set) & np.isfinite(pd.to_numeric(data[consequence], errors="coerce"))]
    if sub.empty:
        return None
    measures = sorted(sub["measure"].unique())
    kinds = [k for k in ("data", "task", "attribute", "combined") if k in set(sub["overlap_kind"])]
    kinds += sorted(set(sub["overlap_kind"]) - set(kinds))
    with plt.rc_context(_RC):
        fig, axes = _panels(len(measures))
        for ax, measure in zip(axes, measures):
            sm = sub[sub["measure"] == measure]
            for j, kind in enumerate(kinds):
                sk = sm[sm["overlap_kind"] == kind]
                ax.scatter(sk["value"], sk[consequence], s=14, color=OKABE_ITO[j % 8], alpha=0.8,
                           label=_SHORT_KIND.get(kind, kind))  # fmt: skip
            x, y = sm["value"].to_numpy(float), sm[consequence].to_numpy(float)
            if x.size >= 3:
                fit = stats.linear_fit(x, y)
                rho = stats.correlation_ci(x, y, sm["seed"].to_numpy(), method="spearman", n_boot=500)
                if np.isfinite(fit.slope):
                    xx = np.linspace(x.min(), x.max(), 2)
                    ax.plot(xx, fit.intercept + fit.slope * xx, color="black", lw=1.2,
                            label=f"fit, ρ={rho['estimate']:.2f} [{rho['low']:.2f}, {rho['high']:.2f}]")  # fmt: skip
            ax.set_xlabel(f"{measure_label(measure)} ({probe_set})")
            ax.set_ylabel(consequence_label(consequence))
            ax.grid(alpha=0.3)
            fit_lines = [(h, lab) for h, lab in zip(*ax.get_legend_handles_labels()) if lab.startswith("fit")]
            if fit_lines:
                ax.legend(*zip(*fit_lines), loc="upper left", frameon=False)
        _figure_legend(fig, axes, len(kinds))
        fig.suptitle(f"{consequence_label(consequence)} vs. similarity", fontsize=11)
        return _save(fig, out_dir, f"scatter_{consequence}_{probe_set}")


def plot_layer_heatmap(raw: pd.DataFrame, unit_id: str, measure: str, probe_set: str, out_dir: Path) -> Path | None:
    """Layer × layer similarity matrix of one model pair (rows of the *unreduced* table)."""
    sub = raw[(raw["unit_id"] == unit_id) & (raw["measure"] == measure) & (raw["probe_set"] == probe_set)]
    if sub.empty or len(sub) < 2:
        return None
    table = sub.pivot_table(index="layer_a", columns="layer_b", values="value", aggfunc="mean")
    with plt.rc_context(_RC):
        side = 1.2 + 0.5 * max(table.shape)
        fig, ax = plt.subplots(figsize=(min(7.0, side + 1.5), min(6.0, side)))
        im = ax.imshow(table.to_numpy(), cmap="viridis", aspect="auto")
        ax.set_xticks(range(table.shape[1]), list(table.columns), rotation=45, ha="right")
        ax.set_yticks(range(table.shape[0]), list(table.index))
        ax.set_xlabel("layer of model B")
        ax.set_ylabel("layer of model A")
        for (i, j), v in np.ndenumerate(table.to_numpy()):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white")
        fig.colorbar(im, ax=ax, label=measure_label(measure))
        ax.set_title(f"{measure_label(measure)} per layer pair, unit {unit_id} ('{probe_set}')")
        fig.tight_layout()
        return _save(fig, out_dir, "layers")


def plot_accuracy(data: pd.DataFrame, out_dir: Path) -> Path | None:
    """Mean test accuracy of the two models vs. overlap fraction, one line per overlap kind (± std)."""
    if not {"acc_a", "acc_b"} <= set(data.columns):
        return None
    units = data.drop_duplicates("unit_id")
    units = units[np.isfinite(units["x"])]
    if units.empty:
        return None
    acc = units[["acc_a", "acc_b"]].apply(pd.to_numeric, errors="coerce").mean(axis=1)
    table = units.assign(acc=acc).groupby(["overlap_kind", "x"])["acc"].agg(["mean", "std"]).reset_index()
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(4.5, 3.0))
        for j, (kind, g) in enumerate(table.groupby("overlap_kind", sort=True)):
            ax.errorbar(g["x"], g["mean"], yerr=g["std"].fillna(0), marker="o", ms=4, capsize=3,
                        color=OKABE_ITO[j % 8], label=_SHORT_KIND.get(kind, kind))  # fmt: skip
        ax.set_xlabel("overlap fraction")
        ax.set_ylabel("accuracy (mean of A and B)")
        ax.set_title("Model accuracy vs. overlap")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
        fig.tight_layout()
        return _save(fig, out_dir, "accuracy")
