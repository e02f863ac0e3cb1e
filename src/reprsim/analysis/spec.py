"""The ``analysis`` section of a config: the declared primary family of tests.

It lives with the analysis (not with the experiment schema) so that the analysis never imports the
experiment package: :mod:`reprsim.experiments.config` embeds :class:`AnalysisSpec`, and
:class:`reprsim.analysis.cells.PrimaryFamily` reads a run's ``config.yaml`` with it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AnalysisSpec", "PRIMARY_MEASURES", "PRIMARY_PROBE_SETS", "PrimarySpec"]

#: The pre-registered primary measures: linear CKA (global, the paper's main measure) and CKNNA
#: (local). Mutual kNN is exploratory: across cells it moves with CKNNA almost exactly (r ≈ 0.998
#: in the main job), so counting both would count one finding twice.
PRIMARY_MEASURES: tuple[str, ...] = ("cka", "cknna")
#: ``fixed``: the probe sets whose composition does not change with the fraction (the whole test
#: set, the fixed-composition class subsets, other sources); the class subsets whose composition
#: varies with the fraction are exploratory.
PRIMARY_PROBE_SETS = "fixed"


class PrimarySpec(BaseModel):
    """The declared primary family: these measures × these probe sets (in every source, model and
    design, at the headline layer pair). Their p-values are Holm-adjusted together; every other
    cell is exploratory, with its unadjusted p-value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    measures: list[str] = Field(default_factory=lambda: list(PRIMARY_MEASURES), min_length=1)
    probe_sets: list[str] | Literal["fixed", "all"] = Field(
        PRIMARY_PROBE_SETS, description="probe-set names, 'fixed' (fixed-composition sets) or 'all'"
    )
    calibrated: bool = Field(
        False,
        description="also test the calibrated scores of these measures (their own "
        "Holm family); default: calibrated effects are exploratory",
    )
    behavioural: list[str] = Field(
        default_factory=list,
        description="behavioural measures (layer 'output') tested "
        "as a Holm family of their own, e.g. [error_consistency]; default: exploratory",
    )


class AnalysisSpec(BaseModel):
    """How the report tests the claims (read by :mod:`reprsim.analysis`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    primary: PrimarySpec = Field(default_factory=PrimarySpec)
