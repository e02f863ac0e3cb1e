"""Effects beside the raw ones: overlap on calibrated scores, and overlap on behavioural similarity.

Both use the machinery of :func:`reprsim.analysis.effects.overlap_effects` unchanged (per-seed
OLS slopes, t intervals, cells never pooled across grid axes), on a derived table:

* **calibrated**: the rows of the headline measures (the declared primary measures) at each
  model's headline layer pair that carry a finite ``calibrated`` column (a sweep with
  ``measures.calibrate: K``), with ``value`` replaced by ``calibrated``. Calibrated scores are in
  the similarity orientation for every measure, so none of these cells is a distance.
* **behavioural**: the rows on the layer ``output`` whose measure is behavioural (agreement,
  Cohen's κ, error consistency, CAPA, JS divergence; :mod:`reprsim.metrics.behavioural`). JS
  divergence is the one whose lower value means more alike.

Each is its own Holm family when the analysis spec declares it
(``analysis.primary.calibrated`` / ``analysis.primary.behavioural``); otherwise every cell is
exploratory (unadjusted p), so neither ever changes the primary family of the raw effects.
A table without those columns or rows gives an empty frame (the report then omits the section).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprsim.analysis.cells import PrimaryFamily, headline_layer_mask
from reprsim.analysis.effects import _verdict_note, overlap_effects
from reprsim.results import CALIBRATION_COLUMNS

__all__ = ["BEHAVIOURAL_METHOD", "CALIBRATED_METHOD", "DIVERGENCES", "behavioural_effects", "calibrated_effects"]

CALIBRATED = CALIBRATION_COLUMNS[2]
#: Behavioural measures for which lower = more alike.
DIVERGENCES: tuple[str, ...] = ("js_divergence",)

CALIBRATED_METHOD = (
    "the overlap effect of the headline measures' calibrated scores (clamp((s − τ)/(max − τ), 0, 1), "
    "τ the (1 − α) quantile of a row-permutation null; Gröger et al. 2026), at each model's headline "
    "layer pair, by the same per-seed slopes; its own Holm family when analysis.primary.calibrated, "
    "else exploratory"
)
BEHAVIOURAL_METHOD = (
    "the overlap effect of behavioural similarity of the two models' outputs (layer 'output': "
    "agreement, Cohen's κ, error consistency, CAPA κp, JS divergence) by the same per-seed slopes; "
    "its own Holm family for the measures in analysis.primary.behavioural, else exploratory"
)


def _reoriented(out: pd.DataFrame, distance: pd.Series) -> pd.DataFrame:
    """``out`` with its ``distance`` flags replaced and the verdict notes that depend on them rewritten."""
    if out.empty:
        return out
    out = out.assign(distance=distance.to_numpy(bool))
    out["verdict_note"] = out.apply(_verdict_note, axis=1)
    return out


def calibrated_effects(data: pd.DataFrame, *, primary: PrimaryFamily, **options: Any) -> pd.DataFrame:
    """Overlap effects on ``calibrated`` of the primary measures (see the module docstring).

    ``data``: a prepared table (:func:`reprsim.analysis.load.prepare`) without behavioural rows;
    ``options``: ``n_boot``, ``n_perm``, ``seed`` of :func:`overlap_effects`. Returns its frame
    plus ``column`` = ``"calibrated"``; empty when no such row has a finite calibrated score.
    """
    if CALIBRATED not in data.columns or data.empty:
        return pd.DataFrame()
    cal = pd.to_numeric(data[CALIBRATED], errors="coerce")
    keep = np.isfinite(cal) & data["measure"].isin(primary.measures) & headline_layer_mask(data)
    if not keep.any():
        return pd.DataFrame()
    rows = data.loc[keep].assign(value=cal[keep].astype(float))
    out = overlap_effects(rows, primary=primary.secondary("calibrated"), **options)
    if out.empty:
        return out
    return _reoriented(out, pd.Series(False, index=out.index)).assign(column=CALIBRATED)


def behavioural_effects(rows: pd.DataFrame, *, primary: PrimaryFamily, **options: Any) -> pd.DataFrame:
    """Overlap effects on the behavioural rows (``rows``: prepared, layer ``output`` only; see the
    module docstring). Returns the frame of :func:`overlap_effects` plus ``column`` = ``"value"``;
    empty for no rows."""
    if rows.empty:
        return pd.DataFrame()
    out = overlap_effects(rows, primary=primary.secondary("behavioural"), **options)
    if out.empty:
        return out
    return _reoriented(out, out["measure"].isin(DIVERGENCES)).assign(column="value")
