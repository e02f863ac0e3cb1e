"""Which similarity measures agree, and how many pairs are significant against a permutation null."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reprsim.analysis.cells import headline_layer_mask
from reprsim.analysis.effects import ensure_prepared
from reprsim.analysis.load import cell_axes

__all__ = ["measure_agreement", "significance_summary"]


def measure_agreement(df: pd.DataFrame, *, layers: str = "default", probe_set: str | None = None) -> pd.DataFrame:
    """Spearman rank correlation between measures across model pairs.

    One observation is one (unit, probe set) at the model's headline layer pair — or one unit when
    ``probe_set`` is given; each correlation uses the observations where both measures are present.

    Returns
    -------
    DataFrame of shape (n_measures, n_measures), index and columns the measure names (sorted),
    diagonal 1 (NaN for a measure that is constant across pairs). Empty when there is no measure.
    """
    data = ensure_prepared(df, layers)
    data = data[headline_layer_mask(data)]
    if probe_set is not None:
        if probe_set not in set(data["probe_set"]):
            raise ValueError(
                f"probe set {probe_set!r} not in the results; choose one of {sorted(set(data['probe_set']))}."
            )
        data = data[data["probe_set"] == probe_set]
    wide = data.pivot_table(index=["unit_id", "probe_set"], columns="measure", values="value", aggfunc="first")
    wide = wide.reindex(sorted(wide.columns), axis=1)
    wide.columns.name = None
    out = wide.corr(method="spearman", min_periods=3)
    out.index.name = "measure"
    return out


def significance_summary(df: pd.DataFrame, *, layers: str = "default", alpha: float = 0.05) -> pd.DataFrame:
    """Share of model pairs whose similarity beats a permutation null, where p-values were computed.

    Returns
    -------
    DataFrame with the cell axes (:func:`reprsim.analysis.load.cell_axes`), ``n_tested`` (rows with a
    finite ``p_value``), ``n_significant`` (p < ``alpha``), ``share_significant``, ``median_p``.
    Empty when the table has no ``p_value`` column or no finite p-value.
    """
    stats_cols = ["n_tested", "n_significant", "share_significant", "median_p"]
    if "p_value" not in df.columns:
        return pd.DataFrame(columns=stats_cols)
    data = ensure_prepared(df, layers)
    axes = cell_axes(data)
    cols = axes + stats_cols
    p = pd.to_numeric(data["p_value"], errors="coerce")
    data = data.assign(_p=p)[np.isfinite(p)]
    if data.empty:
        return pd.DataFrame(columns=cols)
    out = (
        data.groupby(axes, sort=True)
        .agg(n_tested=("_p", "size"), n_significant=("_p", lambda s: int((s < alpha).sum())), median_p=("_p", "median"))
        .reset_index()
    )
    out["share_significant"] = out["n_significant"] / out["n_tested"]
    return out[cols]
