"""The results-table contract: its columns, probe roles, the run-folder files and :func:`load_results`.

Every sweep unit (and :func:`reprsim.compare_models`) ends in the same tidy table, one row per
(unit, probe set, layer pair, measure). The runner writes it, the analysis reads it, and a
researcher can hand the analysis a table produced elsewhere as long as it has
:data:`CONTRACT_COLUMNS`. Nothing else in reprsim spells these names out again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from reprsim.errors import ReprsimError

__all__ = [
    "BEHAVIOUR_INTERVAL_COLUMNS",
    "BEST_LAYER",
    "CALIBRATION_COLUMNS",
    "CELL_AXES",
    "DESIGN_AXES",
    "CLASS_PROBE_ROLES",
    "CONFIG_FILE",
    "CONSEQUENCE_COLUMNS",
    "CONTRACT_COLUMNS",
    "PROBE_ROLES",
    "PROVENANCE_FILE",
    "REPORT_HTML",
    "REPORT_MD",
    "RESULTS_CSV",
    "RESULTS_PARQUET",
    "RESULT_COLUMNS",
    "SUMMARY_FILE",
    "SAMPLE_FILES",
    "UNITS_DIR",
    "UNIT_FILES",
    "assemble_units",
    "load_results",
    "order_columns",
    "unit_status",
]

#: The columns a table must have to be analysed (a table made elsewhere needs only these).
CONTRACT_COLUMNS: tuple[str, ...] = (
    "unit_id",
    "source",
    "model",
    "overlap_kind",
    "data_fraction",
    "task_fraction",
    "seed",
    "probe_set",
    "layer_a",
    "layer_b",
    "measure",
    "value",
)

#: The columns every sweep row carries, in display order; kinds add their own columns after these
#: (per-model metrics such as ``val_loss_a``, consequence columns such as ``transfer_asr``).
RESULT_COLUMNS: tuple[str, ...] = (
    "unit_id",
    "status",
    "source",
    "model",
    "overlap_kind",
    "data_fraction",
    "task_fraction",
    "realised_data_fraction",
    "realised_task_fraction",
    "seed",
    "probe_set",
    "probe_role",
    "n_probe",
    "n_probe_classes",
    "layer_a",
    "layer_b",
    "measure",
    "value",
    "p_value",
    "prepare",
    "acc_a",
    "acc_b",
)

#: Columns a sweep with ``measures.calibrate: K`` adds to every row (:func:`reprsim.metrics.calibrate`):
#: the permutation null's mean, its (1 − α) threshold τ and clamp((s − τ)/(max − τ), 0, 1). For a
#: distance measure they are of s = −value (the similarity orientation).
CALIBRATION_COLUMNS: tuple[str, ...] = ("null_mean", "tau", "calibrated")

#: Columns of the behavioural rows (``layer_a`` = ``layer_b`` = ``"output"``, measures of
#: :mod:`reprsim.metrics.behavioural`; :func:`reprsim.metrics.behaviour_rows.behaviour_rows`):
#: the percentile bootstrap interval of ``value`` over the probe inputs (error consistency and CAPA;
#: NaN for the other measures and rows) and the number of resamples behind it (0: none).
BEHAVIOUR_INTERVAL_COLUMNS: tuple[str, ...] = ("value_ci_low", "value_ci_high", "ci_n_boot")

#: ``layer_a`` = ``layer_b`` of the rows a sweep with ``measures.calibrate: K`` and several layer pairs
#: writes per (unit, probe set, measure): the maximum over layer pairs, with ``p_value`` and the
#: calibration columns from the null of that maximum (the same row permutation of every layer of B).
BEST_LAYER = "best"

#: The grid axes an effect is estimated within, besides the overlap fraction and the seed: the
#: analysis never pools rows across them. A new grid axis is added here (a table without one of
#: these columns is treated as having a single level of it).
CELL_AXES: tuple[str, ...] = ("source", "model", "overlap_kind", "probe_set", "layer_a", "layer_b", "measure")
#: Design options that are grid axes too, in tables that record them (older and foreign tables
#: lack them; such a table has one level of each): ``task_images`` (a class split's shared classes
#: on disjoint or shared images: pure task vs task + data overlap), ``align`` (the dose of the
#: alignment loss of model B) and ``init`` (independent or shared initial weights).
DESIGN_AXES: tuple[str, ...] = ("task_images", "align", "init")

#: What a probe set is, relative to the two models' training data.
#: ``id``: in-distribution for both; ``common``: classes (tasks, domains) both models trained on;
#: ``ood_one``: seen by exactly one model; ``ood_all``: of the source but seen by neither;
#: ``ood``: another source altogether. ``*_fixed`` sets hold their class composition fixed
#: across the fractions of a task-overlap sweep (the plain sets change with the fraction).
PROBE_ROLES: tuple[str, ...] = ("id", "common", "common_fixed", "ood_one", "ood_one_fixed", "ood_all", "ood")
#: Probe roles of a class (task) split, in the order the paper reports them.
CLASS_PROBE_ROLES: tuple[str, ...] = ("common", "ood_one", "ood_all")

#: Consequence columns the analysis relates to similarity, in display order. Each may come with
#: ``_low``/``_high`` interval columns and a ``_ba`` (victim → source) direction.
CONSEQUENCE_COLUMNS: tuple[str, ...] = (
    "transfer_asr",
    "transfer_asr_conditional",
    "transfer_asr_given_source_fooled",
    "whitebox_asr",
    "victim_clean_error",
    "jailbreak_transfer_asr",
    "jailbreak_whitebox_asr",
    "jailbreak_baseline_asr",
    "jailbreak_random_suffix_asr",
)

# ---- the run folder --------------------------------------------------------------------------
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
SUMMARY_FILE = "summary.json"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
UNITS_DIR = "units"
#: Files of ``units/<unit_id>/``: what the unit is, its rows, its status (written last), its log.
UNIT_FILES = {"record": "unit.json", "rows": "rows.parquet", "status": "status.json", "log": "log.txt"}
#: Sample grids a generative kind (diffusion) writes into ``units/<unit_id>/`` (the report shows them).
SAMPLE_FILES = {"a": "samples_a.png", "b": "samples_b.png", "rows": "samples.json"}


def order_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the :data:`RESULT_COLUMNS` it has first, in contract order, then the rest."""
    first = [c for c in RESULT_COLUMNS if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def unit_status(root: Path, unit_id: str) -> str:
    """``ok``, ``failed`` or ``pending`` (no status file yet) for one unit of a run folder."""
    path = Path(root) / UNITS_DIR / unit_id / UNIT_FILES["status"]
    if not path.is_file():
        return "pending"
    return json.loads(path.read_text()).get("status", "pending")


def assemble_units(root: str | Path, unit_ids: list[str] | None = None) -> pd.DataFrame:
    """The rows of every finished (``ok``) unit of a run folder, in the order of ``unit_ids``
    (default: sorted unit folders); an empty table with :data:`RESULT_COLUMNS` when none is."""
    root = Path(root)
    if unit_ids is None:
        unit_ids = sorted(p.name for p in (root / UNITS_DIR).glob("*") if p.is_dir())
    frames = [
        pd.read_parquet(root / UNITS_DIR / uid / UNIT_FILES["rows"])
        for uid in unit_ids
        if unit_status(root, uid) == "ok"
    ]
    if not frames:
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    return order_columns(pd.concat(frames, ignore_index=True))


def load_results(run_dir: str | Path) -> pd.DataFrame:
    """The results table of a run folder (one row per unit × probe set × layer pair × measure).

    Reads ``results.parquet``, else ``results.csv``, else assembles the finished units of
    ``units/`` (a run still in progress). Raises :class:`ReprsimError` for a folder with none.
    """
    root = Path(run_dir)
    if (root / RESULTS_PARQUET).is_file():
        return pd.read_parquet(root / RESULTS_PARQUET)
    if (root / RESULTS_CSV).is_file():
        return pd.read_csv(root / RESULTS_CSV)
    if (root / UNITS_DIR).is_dir():
        return assemble_units(root)
    raise ReprsimError(
        f"{root} holds no results table ({RESULTS_PARQUET}, {RESULTS_CSV} or {UNITS_DIR}/); "
        "run `reprsim run` first, or point at a folder with one of them"
    )


#: First characters that make a spreadsheet read a text cell as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text (no index) that a spreadsheet opens without running anything: a text
    cell starting with one of :data:`FORMULA_STARTS` is written with a leading ``'``. Numbers,
    negative ones included, stay numbers (only ``str`` cells are changed)."""

    def defuse(v: object) -> object:
        return "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v

    text_cols = [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]
    out = frame.copy() if text_cols else frame
    for c in text_cols:
        out[c] = out[c].map(defuse)
    return out.to_csv(index=False)
