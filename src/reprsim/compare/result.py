"""What ``compare_models`` returns: the tidy table, layer × layer matrices, plots and a page."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reprsim.errors import ReprsimError

__all__ = ["Comparison", "TABLE_COLUMNS"]

#: The columns of :attr:`Comparison.table` (``p_value`` / ``ci_low`` / ``ci_high`` only when asked).
TABLE_COLUMNS = ("layer_a", "layer_b", "measure", "value", "p_value", "ci_low", "ci_high")


@dataclass
class Comparison:
    """Two models compared on one probe set.

    Attributes:
        table: tidy DataFrame, one row per (layer_a, layer_b, measure) with ``value``, plus
            ``p_value`` (with ``n_permutations``) and ``ci_low`` / ``ci_high`` (with ``n_boot``) and,
            when a GPU was named as ``device``, ``device`` (where the row was computed: a measure
            that fails on the GPU is computed on the CPU). Behavioural measures (:attr:`behavioural`) have
            one row each, on ``output`` × ``output``, with ``ci_low`` / ``ci_high`` for error consistency
            and CAPA (a bootstrap over inputs) and no ``p_value``.
        transfer: with ``attack=``: tidy DataFrame, one row per (direction, quantity)
            (``whitebox_asr`` = the source fooled by its own examples, the white-box baseline;
            ``transfer_asr`` = the victim fooled by them; ``transfer_asr_conditional``; the clean
            errors) with ``value``, ``ci_low``, ``ci_high``, ``n``; else None.
        transfer_summary: the same numbers as a flat dict (the sweep's column names), or None.
        layers_a, layers_b: the layers compared, in order.
        measures: the measures computed, in order.
        model_a, model_b: descriptions of the two models.
        inputs: description of the probe set; ``n_inputs`` its size.
        prepare: the feature preparation applied before measuring.
        features: ``{"a": {layer: (n, d)}, "b": {...}}`` raw (unprepared) float32 features.
        timings: wall-clock seconds per stage (``features_a``, ``features_b``, ``measures``, ...).
        cpu_timings: CPU seconds of this process (all threads) for the feature and measure stages.
        warnings: measures undefined for a pair and other notes.
    """

    table: pd.DataFrame
    layers_a: list[str]
    layers_b: list[str]
    measures: list[str]
    model_a: str = "A"
    model_b: str = "B"
    inputs: str = ""
    n_inputs: int = 0
    prepare: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    transfer: pd.DataFrame | None = None
    transfer_summary: dict[str, float] | None = None
    attack: str | None = None
    features: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    cpu_timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: the similarity engine that filled :attr:`table` (prepared features and their cached work),
    #: used by :meth:`best` and :meth:`difference`; None for a Comparison built by hand.
    engine: Any = field(default=None, repr=False, compare=False)

    @property
    def layer_measures(self) -> list[str]:
        """The measures of representations (every layer pair), in order: :attr:`measures` without
        the behavioural ones."""
        from reprsim.metrics.behavioural import BEHAVIOURAL

        return [m for m in self.measures if m not in BEHAVIOURAL]

    @property
    def behavioural(self) -> list[str]:
        """The behavioural measures computed (on the layer ``output`` only), in order."""
        return [m for m in self.measures if m not in self.layer_measures]

    def _layer_measure(self, name: str, what: str) -> None:
        if name in self.behavioural:
            raise ValueError(
                f"Comparison.{what}: {name!r} is a behavioural measure of the models' outputs (one value, "
                f"on the layer 'output'), not a layer measure; use one of {', '.join(self.layer_measures)}."
            )

    def _engine(self, what: str) -> Any:
        if self.engine is None:
            raise ReprsimError(
                f"Comparison.{what} needs the prepared features of the comparison; this Comparison "
                "has none (it was built by hand or loaded from a file). Rerun compare_models."
            )
        return self.engine

    def best(
        self, measure: str, agg: str = "max", n_permutations: int = 200, alpha: float = 0.05, seed: int = 0
    ) -> dict[str, Any]:
        """The best layer pair of ``measure`` (``agg="max"``; or the mean over pairs) with a calibrated
        score whose null accounts for the selection among all layer pairs: the same row permutation
        of every layer of B, then the aggregate (:func:`reprsim.metrics.calibrate_layers`).

        Returns the record of :func:`reprsim.metrics.calibrate.calibration_record` plus ``measure``,
        ``agg``, ``n_pairs`` and the best pair's ``layer_a`` / ``layer_b``."""
        from reprsim.metrics import calibrate_layers

        if measure not in self.measures:
            raise ValueError(f"measure {measure!r} was not computed; computed: {', '.join(self.measures)}.")
        self._layer_measure(measure, "best")
        eng = self._engine("best")
        return calibrate_layers(
            measure,
            eng.ta,
            eng.tb,
            agg=agg,
            n_permutations=n_permutations,
            alpha=alpha,
            seed=seed,
            **eng.resolved[measure],
        )

    def difference(
        self,
        other: "Comparison",
        measure: str | list[str] | None = None,
        n_boot: int = 1000,
        level: float = 0.95,
        seed: int = 0,
        ids: Any = None,
        other_ids: Any = None,
    ) -> pd.DataFrame:
        """value(self) − value(other) per (layer_a, layer_b, measure) present in both, with a paired
        bootstrap interval and p-value over the shared inputs (:func:`reprsim.metrics.paired_difference`;
        rows matched by ``ids`` / ``other_ids`` when given, else by position).

        Returns a DataFrame with ``layer_a``, ``layer_b``, ``measure``, ``value``, ``other_value``,
        ``difference``, ``ci_low``, ``ci_high``, ``p_value``, ``n``."""
        from reprsim.metrics.paired import paired_difference

        mine, theirs = self._engine("difference"), other._engine("difference")
        names = self.layer_measures if measure is None else [measure] if isinstance(measure, str) else list(measure)
        for name in names:
            self._layer_measure(name, "difference")
        rows = []
        for la in mine.ta:
            for lb in mine.tb:
                for name in names:
                    if name not in other.measures or la not in theirs.ta or lb not in theirs.tb:
                        continue
                    r = paired_difference(
                        name,
                        (mine.ta[la], mine.tb[lb]),
                        (theirs.ta[la], theirs.tb[lb]),
                        ids1=ids,
                        ids2=other_ids,
                        n_boot=n_boot,
                        level=level,
                        seed=seed,
                        **mine.resolved[name],
                    )
                    rows.append(
                        {
                            "layer_a": la,
                            "layer_b": lb,
                            "measure": name,
                            "value": r["value1"],
                            "other_value": r["value2"],
                            "difference": r["difference"],
                            "ci_low": r["ci_low"],
                            "ci_high": r["ci_high"],
                            "p_value": r["p_value"],
                            "n": r["n"],
                        }
                    )
        if not rows:
            raise ValueError(
                "the two comparisons share no (layer_a, layer_b, measure); compare the same layers and measures."
            )
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return (
            f"Comparison({self.model_a!r} vs {self.model_b!r}, {self.n_inputs} inputs, "
            f"{len(self.layers_a)}×{len(self.layers_b)} layers, {len(self.measures)} measures"
            + (", with attack transfer" if self.transfer is not None else "")
            + ")"
        )

    def matrix(self, measure: str, column: str = "value") -> pd.DataFrame:
        """The layer × layer table of one measure: rows = layers of A (index ``layer_a``), columns
        = layers of B (``layer_b``), shape (len(layers_a), len(layers_b)). ``column`` may also be
        ``p_value``, ``ci_low`` or ``ci_high`` when they were computed."""
        if measure not in self.measures:
            raise ValueError(f"measure {measure!r} was not computed; computed: {', '.join(self.measures)}.")
        if column not in self.table.columns or column in ("layer_a", "layer_b", "measure"):
            have = [c for c in self.table.columns if c not in ("layer_a", "layer_b", "measure")]
            raise ValueError(f"column {column!r} is not in the table; available: {', '.join(have)}.")
        sub = self.table[self.table["measure"] == measure]
        mat = sub.pivot(index="layer_a", columns="layer_b", values=column)
        return mat.reindex(index=self.layers_a, columns=self.layers_b).astype(float)

    def to_frame(self) -> pd.DataFrame:
        """:attr:`table` plus the attack-transfer numbers in the same columns (``layer_a`` =
        ``layer_b`` = ``"output"``, ``measure`` = e.g. ``transfer_asr_a_to_b``), as the CLI writes it."""
        frame = self.table.copy()
        if self.transfer is None or self.transfer.empty:
            return frame
        rows = []
        for r in self.transfer.itertuples(index=False):
            suffix = "a_to_b" if r.direction == "A→B" else "b_to_a"
            rows.append(
                {
                    "layer_a": "output",
                    "layer_b": "output",
                    "measure": f"{r.quantity}_{suffix}",
                    "value": r.value,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                }
            )
        extra = pd.DataFrame(rows)
        for col in frame.columns:
            if col not in extra.columns:
                extra[col] = np.nan
        for col in ("ci_low", "ci_high"):
            if col not in frame.columns:
                frame[col] = np.nan
        return pd.concat([frame, extra[frame.columns]], ignore_index=True)

    def records(self) -> list[dict[str, Any]]:
        """:meth:`to_frame` as JSON-ready records (NaN → None)."""
        out = []
        for rec in self.to_frame().to_dict(orient="records"):
            out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()})
        return out

    def plot(self, measure: str | list[str] | None = None, *, max_cols: int = 4) -> Any:
        """Layer × layer heatmaps (rows = layers of A, columns = layers of B), one panel per
        measure (default: every measure; a name or a list selects). Returns a matplotlib Figure.
        With a single layer pair, a bar chart of every measure instead."""
        from reprsim.compare.html import figure

        names = self.layer_measures if measure is None else [measure] if isinstance(measure, str) else list(measure)
        for name in names:
            if name not in self.measures:
                raise ValueError(f"measure {name!r} was not computed; computed: {', '.join(self.measures)}.")
            self._layer_measure(name, "plot")
        return figure(self, names, max_cols=max_cols)

    def to_markdown(self) -> str:
        """The comparison as Markdown: the models and inputs, the measure table (one row per layer
        pair, one column per measure) and, when computed, the behavioural rows with their intervals."""
        from reprsim.compare.html import behaviour_frame, markdown_table, wide_frame

        parts = [
            f"# {self.model_a} vs {self.model_b}",
            f"Inputs: {self.inputs} (n = {self.n_inputs}); preparation: {self.prepare}.",
            "## Measure table",
            markdown_table(wide_frame(self)),
        ]
        if self.behavioural:
            parts += ["## Behavioural similarity (layer 'output')", markdown_table(behaviour_frame(self))]
        return "\n\n".join(parts) + "\n"

    def to_html(self, path: str | Path) -> Path:
        """Write a self-contained page (figures embedded, no network needed): the models, inputs,
        layer heatmaps, the measure table and attack transfer. Returns the path written."""
        from reprsim.compare.html import render

        out = Path(path)
        if out.is_dir():
            raise ReprsimError(f"to_html: {out} is a folder; give a file name such as {out / 'comparison.html'}.")
        out.parent.mkdir(parents=True, exist_ok=True)
        from reprsim.storage import atomic_write_bytes

        atomic_write_bytes(out, render(self).encode("utf-8"))  # temp file + rename, never through a symlink
        return out

    def save(self, directory: str | Path, features: bool = False) -> dict[str, Path]:
        """Write ``comparison.html``, ``comparison.parquet`` and ``comparison.csv`` (the :meth:`to_frame`
        table) into ``directory``; with ``features=True`` also ``features_a.safetensors`` and
        ``features_b.safetensors`` (the raw features, layer order kept), which
        ``compare_features(dir/"features_a.safetensors", dir/"features_b.safetensors")`` reloads.
        Returns ``{kind: path}``."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        frame = self.to_frame()
        paths = {"html": self.to_html(root / "comparison.html"), "csv": root / "comparison.csv"}
        if features:
            from reprsim.compare.features_in import save_feature_set

            if not self.features:
                raise ReprsimError("save(features=True): this Comparison holds no features.")
            for side, label in (("a", self.model_a), ("b", self.model_b)):
                paths[f"features_{side}"] = save_feature_set(
                    self.features[side], root / f"features_{side}.safetensors", model=label, inputs=self.inputs
                )
        from reprsim.results import csv_text
        from reprsim.storage import atomic_write_bytes

        atomic_write_bytes(paths["csv"], csv_text(frame).encode())  # text cells like '=cmd' defused
        try:
            atomic_write_bytes(root / "comparison.parquet", frame.to_parquet(index=False))
            paths["parquet"] = root / "comparison.parquet"
        except ImportError:  # pragma: no cover - pyarrow is a dependency; keep the CSV regardless
            pass
        return paths
