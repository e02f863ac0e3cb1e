"""The similarity stage of a unit: every measure on every requested layer pair of one probe set."""

from __future__ import annotations

import numpy as np

from reprsim import metrics
from reprsim.experiments.config import MeasureSpec
from reprsim.metrics.prepare import resolve_prepare
from reprsim.results import CALIBRATION_COLUMNS


def similarity_rows(spec: MeasureSpec, feats_a: dict[str, np.ndarray], feats_b: dict[str, np.ndarray],
                    layers: list[str], seed: int) -> list[dict]:  # fmt: skip
    """One row per (layer_a, layer_b, measure) with ``value``, ``p_value`` (NaN unless permutations > 0),
    with ``calibrate`` > 0 ``null_mean`` / ``tau`` / ``calibrated``, and ``prepare_note_a`` / ``prepare_note_b`` (None, or how the layer's preparation departed from
    the paper's: sparse-layer clipping, all-zero rows).

    Every requested layer pair is kept; choosing a "best" pair is left to the analysis. An empty
    probe set (e.g. no common classes at task overlap 0), or one not larger than k, gives NaN rows, so the table records it.
    """
    names = spec.resolved_names()
    (prepared_a, notes_a), (prepared_b, notes_b) = _prepared(spec, feats_a, layers), _prepared(spec, feats_b, layers)
    rows = []
    for layer_a in layers:
        for layer_b in layers:
            xa, xb = prepared_a.get(layer_a), prepared_b.get(layer_b)
            if xa is None or xb is None:
                values = {name: float("nan") for name in names}
            else:  # a measure undefined on these features is recorded as NaN (with a warning in the log)
                values = metrics.compute_all(xa, xb, names=names, on_error="nan", **_params_for(names, spec.params))
            calibrated = _calibrated(spec, names, xa, xb, seed)
            for name in names:
                p_value = float("nan")
                if spec.permutations and not np.isnan(values[name]):
                    p_value = metrics.permutation_test(name, xa, xb, n_permutations=spec.permutations, seed=seed,
                                                       **_params_for([name], spec.params))  # fmt: skip
                rows.append({"layer_a": layer_a, "layer_b": layer_b, "measure": name,
                             "value": float(values[name]), "p_value": p_value,
                             "prepare_note_a": notes_a.get(layer_a), "prepare_note_b": notes_b.get(layer_b)}  # fmt: skip
                            | calibrated.get(name, {}))
    return rows


def _calibrated(spec: MeasureSpec, names: list[str], xa: np.ndarray | None, xb: np.ndarray | None,
                seed: int) -> dict[str, dict[str, float]]:
    """With ``spec.calibrate`` = K > 0: ``{measure: {null_mean, tau, calibrated}}`` from
    :func:`reprsim.metrics.calibrate` (K permutations seeded by the unit's probe seed; NaN where the
    pair is missing or the measure undefined). Without: {} (rows as before)."""
    if not spec.calibrate:
        return {}
    if xa is None or xb is None:
        return {name: dict.fromkeys(CALIBRATION_COLUMNS, float("nan")) for name in names}
    recs = metrics.calibrate(names, xa, xb, n_permutations=spec.calibrate, seed=seed, on_error="nan",
                             **_params_for(names, spec.params))
    return {name: {col: recs[name][col] for col in CALIBRATION_COLUMNS} for name in names}


def probe_rows(spec: MeasureSpec, probe_set: str, probe_role: str, n_probe: int, feats_a: dict[str, np.ndarray],
               feats_b: dict[str, np.ndarray], layers: list[str], seed: int) -> list[dict]:  # fmt: skip
    """:func:`similarity_rows` of one probe set, each row tagged with ``probe_set``, ``probe_role``,
    ``n_probe`` and ``prepare`` (the preparation rule, e.g. ``"paper (clip 0.95 quantile + L2 rows)"``):
    the result-table columns every unit type writes."""
    _, rule = resolve_prepare(spec.prepare.model_dump())
    tags = {"probe_set": probe_set, "probe_role": probe_role, "n_probe": n_probe, "prepare": rule}
    return [tags | row for row in similarity_rows(spec, feats_a, feats_b, layers, seed)]


def _prepared(spec: MeasureSpec, feats: dict[str, np.ndarray],
              layers: list[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:  # fmt: skip
    """Each requested layer's features prepared once (layers missing or with ≤ max(k, 3) rows left
    out), and a note for each layer whose preparation departed from the paper's (sparse clipping,
    all-zero rows; :class:`reprsim.metrics.PrepareInfo`)."""
    min_rows = max(int(spec.params.get("k", 0)), 3)
    prepared, notes = {}, {}
    for layer in layers:
        if layer not in feats or len(feats[layer]) <= min_rows:
            continue
        prepared[layer], info = metrics.prepare(feats[layer], normalize=spec.prepare.normalize,
                                                clip_quantile=spec.prepare.clip_quantile, return_info=True)  # fmt: skip
        if info.affected:
            notes[layer] = info.describe()
    return prepared, notes


def _params_for(names: list[str], params: dict) -> dict:
    """The configured parameters that at least one of the selected measures takes."""
    accepted = {param for name in names for param in metrics.MEASURES[name].params}
    return {key: value for key, value in params.items() if key in accepted}
