"""Analysis of one or several runs: effects of overlap on similarity and its consequences, with the
seed as the unit of every interval, per cell of every grid axis (never pooled), and the report.

Every function takes the tidy results table of ``reprsim run`` (see :mod:`reprsim.results`) and is
pure; :func:`build_report` reads run folders and writes ``report.html``, ``report.md`` and
``summary.json``.
"""

from reprsim.analysis.agreement import measure_agreement, significance_summary
from reprsim.analysis.cells import PrimaryFamily
from reprsim.analysis.consequences import (
    consequence_by_fraction,
    consequence_effects,
    similarity_links,
)
from reprsim.analysis.effects import fraction_means, overlap_effects
from reprsim.analysis.factorial import combined_grid, factorial_effects
from reprsim.analysis.families import family_table
from reprsim.analysis.load import (
    clean_results,
    load_run,
    load_runs,
    prepare,
    select_layers,
)
from reprsim.analysis.secondary import behavioural_effects, calibrated_effects
from reprsim.analysis.summary import summarize

__all__ = [
    "PrimaryFamily",
    "behavioural_effects",
    "build_report",
    "calibrated_effects",
    "clean_results",
    "combined_grid",
    "consequence_by_fraction",
    "consequence_effects",
    "factorial_effects",
    "family_table",
    "fraction_means",
    "load_run",
    "load_runs",
    "measure_agreement",
    "overlap_effects",
    "prepare",
    "select_layers",
    "significance_summary",
    "similarity_links",
    "summarize",
]


def __getattr__(name: str):  # the report imports matplotlib: load it only when asked for
    if name == "build_report":
        from reprsim.analysis.report import build_report

        return build_report
    raise AttributeError(f"module 'reprsim.analysis' has no attribute {name!r}")
