"""Linking consequence to cause: transfer success against similarity and against overlap."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprsim.analysis import stats
from reprsim.analysis.effects import ensure_prepared
from reprsim.analysis.load import consequence_columns

__all__ = ["consequence_links", "LINK_COLUMNS"]

LINK_COLUMNS = [
    "consequence", "overlap_kind", "predictor", "probe_set", "n", "spearman", "spearman_low", "spearman_high",
    "pearson", "pearson_low", "pearson_high", "slope", "slope_low", "slope_high", "intercept", "ci_unit",
]  # fmt: skip


def _link(consequence: str, kind: str, predictor: str, probe: str, x: np.ndarray, y: np.ndarray, seeds: np.ndarray,
          n_boot: int, seed: int) -> dict[str, Any]:  # fmt: skip
    rho = stats.correlation_ci(x, y, seeds, method="spearman", n_boot=n_boot, seed=seed)
    r = stats.correlation_ci(x, y, seeds, method="pearson", n_boot=n_boot, seed=seed)
    fit = stats.linear_fit(x, y)
    return {
        "consequence": consequence,
        "overlap_kind": kind,
        "predictor": predictor,
        "probe_set": probe,
        "n": int(x.size),
        "spearman": rho["estimate"],
        "spearman_low": rho["low"],
        "spearman_high": rho["high"],
        "pearson": r["estimate"],
        "pearson_low": r["low"],
        "pearson_high": r["high"],
        "slope": fit.slope,
        "slope_low": fit.slope_low,
        "slope_high": fit.slope_high,
        "intercept": fit.intercept,
        "ci_unit": rho["ci_unit"],
    }


def consequence_links(
    df: pd.DataFrame, *, layers: str = "default", n_boot: int = stats.DEFAULT_N_BOOT, seed: int = stats.DEFAULT_SEED
) -> pd.DataFrame:
    """Correlate every consequence column with each similarity measure and with the overlap fraction.

    One observation is one model pair (unit). For ``predictor == "overlap"`` x is the unit's overlap
    fraction (per overlap kind; ``probe_set`` is empty); otherwise x is the named measure on the named
    probe set, per overlap kind and pooled over kinds (``overlap_kind == "all"``). Consequences are
    the columns of :data:`reprsim.analysis.load.CONSEQUENCE_COLUMNS` present in the table, each
    direction (``_ba`` = B→A) separately; control columns (white-box success, clean error) are
    included so a reader can see they do not move, except columns that are constant in the run.

    Returns
    -------
    DataFrame with columns :data:`LINK_COLUMNS`: Spearman and Pearson with percentile bootstrap
    intervals over seeds, and the OLS slope (consequence per unit of x) with its 95% t interval.
    Empty (with those columns) when the table has no consequence columns.
    """
    data = ensure_prepared(df, layers)
    cols = consequence_columns(data)
    rows: list[dict[str, Any]] = []
    for c in cols:
        sub = data[np.isfinite(pd.to_numeric(data[c], errors="coerce"))]
        if sub.empty or sub[c].nunique() < 2:  # a constant column (e.g. a control at 0) has no trend
            continue
        units = sub.drop_duplicates("unit_id")
        for kind, u in units.groupby("overlap_kind", sort=False):
            u = u[np.isfinite(u["x"])]
            if len(u) >= 3:
                rows.append(_link(c, kind, "overlap", "", u["x"].to_numpy(float), u[c].to_numpy(float),
                                  u["seed"].to_numpy(), n_boot, seed))  # fmt: skip
        for (measure, probe), g in sub.groupby(["measure", "probe_set"], sort=True):
            groups = [("all", g)] + list(g.groupby("overlap_kind", sort=False)) if g["overlap_kind"].nunique() > 1 else list(
                g.groupby("overlap_kind", sort=False)
            )
            for kind, gk in groups:
                if len(gk) < 3:
                    continue
                rows.append(_link(c, kind, measure, probe, gk["value"].to_numpy(float), gk[c].to_numpy(float).copy(),
                                  gk["seed"].to_numpy(), n_boot, seed))  # fmt: skip
    return pd.DataFrame(rows, columns=LINK_COLUMNS)
