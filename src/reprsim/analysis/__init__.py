"""Analysis of a run: effects of overlap on similarity, consequences, measure agreement, report.

Every function takes the tidy results table of ``reprsim run`` (see :func:`load_run`) and is pure.
"""

from reprsim.analysis.agreement import measure_agreement, significance_summary
from reprsim.analysis.consequences import consequence_links
from reprsim.analysis.effects import combined_effects, fraction_means, overlap_effects
from reprsim.analysis.load import clean_results, load_run, prepare, select_layers
from reprsim.analysis.summary import summarize

__all__ = [
    "load_run",
    "clean_results",
    "select_layers",
    "prepare",
    "overlap_effects",
    "fraction_means",
    "combined_effects",
    "consequence_links",
    "measure_agreement",
    "significance_summary",
    "summarize",
    "build_report",
]


def __getattr__(name: str):  # the report imports matplotlib: load it only when asked for
    if name == "build_report":
        from reprsim.analysis.report import build_report

        return build_report
    raise AttributeError(f"module 'reprsim.analysis' has no attribute {name!r}")
