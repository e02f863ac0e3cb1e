"""The similarity stage of a unit: every measure on every requested layer pair of one probe set."""

from __future__ import annotations

import warnings

import numpy as np

from reprsim import metrics
from reprsim.metrics.calibrate import calibrate_engine
from reprsim.metrics.engine import SimilarityEngine
from reprsim.experiments.config import MeasureSpec
from reprsim.metrics.prepare import resolve_prepare
from reprsim.results import BEST_LAYER, CALIBRATION_COLUMNS


def similarity_rows(
    spec: MeasureSpec, feats_a: dict[str, np.ndarray], feats_b: dict[str, np.ndarray], layers: list[str], seed: int
) -> list[dict]:
    """One row per (layer_a, layer_b, measure) with ``value``, ``p_value`` (NaN unless permutations > 0),
    with ``calibrate`` > 0 ``null_mean`` / ``tau`` / ``calibrated``, and ``prepare_note_a`` / ``prepare_note_b``
    (None, or how the layer's preparation departed from the paper's: sparse-layer clipping, all-zero rows).

    ``calibrate_names`` restricts the calibrated columns to some measures (NaN for the others). Every
    requested layer pair is kept. With ``calibrate`` = K > 0 and more than one layer pair, each calibrated
    measure also gets one row with ``layer_a = layer_b = "best"`` (after the layer-pair rows): ``value``
    is the maximum over the layer pairs in similarity orientation (−d for a distance, like the calibrated
    columns), and ``p_value``, ``null_mean``, ``tau``, ``calibrated`` are those of that maximum against its
    own null (Algorithm 2 of :func:`reprsim.metrics.calibrate_layers`: the same row permutation applied to
    every layer of B before taking the maximum, so the p-value accounts for the choice of the best pair).

    All pairs are filled by one :class:`reprsim.metrics.engine.SimilarityEngine` (each layer prepared
    once, its neighbour lists, covariances and ridge factorisations computed once; one permutation of
    B's rows serves every pair and measure), with the values of ``compute_all`` and
    ``permutation_test`` on each pair. An empty probe set (e.g. no common classes at task overlap 0), or
    one not larger than k, gives NaN rows, so the table records it.
    """
    names = spec.resolved_names()
    (prepared_a, notes_a), (prepared_b, notes_b) = _prepared(spec, feats_a, layers), _prepared(spec, feats_b, layers)
    engine = _engine(spec, names, prepared_a, prepared_b, layers)
    values = engine.compute() if engine else {}
    for msg in engine.warnings if engine else []:  # a measure undefined on a pair is recorded as NaN
        warnings.warn(msg, stacklevel=2)
    p_values = engine.permutation_pvalues(spec.permutations, seed) if engine and spec.permutations else {}
    best = "max" if spec.calibrate and len(layers) ** 2 > 1 else None
    calibrated = spec.calibrated_names() if spec.calibrate else []
    records = _calibrated(spec, engine, calibrated, prepared_a, prepared_b, layers, seed, best)
    nan = float("nan")
    rows = []
    for layer_a in layers:
        for layer_b in layers:
            for name in names:
                key = (layer_a, layer_b, name)
                row = {
                    "layer_a": layer_a,
                    "layer_b": layer_b,
                    "measure": name,
                    "value": float(values.get(key, nan)),
                    "p_value": float(p_values.get(key, nan)),
                    "prepare_note_a": notes_a.get(layer_a),
                    "prepare_note_b": notes_b.get(layer_b),
                }
                if spec.calibrate:
                    row |= {col: records[key][col] if key in records else nan for col in CALIBRATION_COLUMNS}
                rows.append(row)
    if best:
        rows += [
            {
                "layer_a": BEST_LAYER,
                "layer_b": BEST_LAYER,
                "measure": name,
                "value": _best(records, name, "value"),
                "p_value": _best(records, name, "p_value"),
                "prepare_note_a": None,
                "prepare_note_b": None,
            }
            | {col: _best(records, name, col) for col in CALIBRATION_COLUMNS}
            for name in calibrated
        ]
    return rows


def _calibrated(
    spec: MeasureSpec,
    engine: SimilarityEngine | None,
    names: list[str],
    prepared_a: dict,
    prepared_b: dict,
    layers: list[str],
    seed: int,
    best: str | None,
) -> dict:
    """Calibration records of ``names`` (``measures.calibrate_names``, default every measure), from the
    sweep's engine restricted to them (its layers' cached work is reused; the other measures' rows get
    NaN calibration columns)."""
    if engine is None or not names:
        return {}
    return calibrate_engine(engine.restricted(names), spec.calibrate, seed=seed, best=best)


def _best(records: dict, name: str, col: str) -> float:
    """A field of the best-pair record of ``name`` (NaN when no layer pair was computed)."""
    return float(records.get((BEST_LAYER, BEST_LAYER, name), {}).get(col, float("nan")))


def _engine(
    spec: MeasureSpec,
    names: list[str],
    prepared_a: dict[str, np.ndarray],
    prepared_b: dict[str, np.ndarray],
    layers: list[str],
) -> SimilarityEngine | None:
    """The engine over the requested layers prepared on both sides (None when there are none). rbf_cka
    is computed by the library's blocked pass (``share_rbf=False``), so values equal ``compute_all``'s."""
    la = [layer for layer in layers if layer in prepared_a]
    lb = [layer for layer in layers if layer in prepared_b]
    if not la or not lb:
        return None
    return SimilarityEngine(
        {layer: prepared_a[layer] for layer in la},
        {layer: prepared_b[layer] for layer in lb},
        names,
        _params_for(names, spec.params),
        progress=False,
        share_rbf=False,
    )


def probe_rows(
    spec: MeasureSpec,
    probe_set: str,
    probe_role: str,
    n_probe: int,
    feats_a: dict[str, np.ndarray],
    feats_b: dict[str, np.ndarray],
    layers: list[str],
    seed: int,
) -> list[dict]:
    """:func:`similarity_rows` of one probe set, each row tagged with ``probe_set``, ``probe_role``,
    ``n_probe`` and ``prepare`` (the preparation rule, e.g. ``"paper (clip 0.95 quantile + L2 rows)"``):
    the result-table columns every unit type writes."""
    _, rule = resolve_prepare(spec.prepare.model_dump())
    tags = {"probe_set": probe_set, "probe_role": probe_role, "n_probe": n_probe, "prepare": rule}
    return [tags | row for row in similarity_rows(spec, feats_a, feats_b, layers, seed)]


def _prepared(
    spec: MeasureSpec, feats: dict[str, np.ndarray], layers: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each requested layer's features prepared once (layers missing or with ≤ max(k, 3) rows left
    out), and a note for each layer whose preparation departed from the paper's (sparse clipping,
    all-zero rows; :class:`reprsim.metrics.PrepareInfo`)."""
    min_rows = max(int(spec.params.get("k", 0)), 3)
    prepared, notes = {}, {}
    for layer in layers:
        if layer not in feats or len(feats[layer]) <= min_rows:
            continue
        prepared[layer], info = metrics.prepare(
            feats[layer], normalize=spec.prepare.normalize, clip_quantile=spec.prepare.clip_quantile, return_info=True
        )
        if info.affected:
            notes[layer] = info.describe()
    return prepared, notes


def _params_for(names: list[str], params: dict) -> dict:
    """The configured parameters that at least one of the selected measures takes."""
    accepted = {param for name in names for param in metrics.MEASURES[name].params}
    return {key: value for key, value in params.items() if key in accepted}
