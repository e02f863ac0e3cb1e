"""A cell's probe composition (analysis/cells.py): fixed, or varying with the overlap fraction."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reprsim.analysis.cells import FIXED, VARIES, composition


def _cell(kind="data", role="id", x=(0.0, 0.0, 0.5, 0.5, 1.0), classes=(10, 10, 10, 10, 10)):
    return pd.DataFrame({"overlap_kind": kind, "probe_role": role, "x": list(x), "n_probe_classes": list(classes)})


def test_a_class_count_that_changes_with_the_fraction_varies():
    assert composition(_cell()) == FIXED
    assert composition(_cell(classes=(10, 10, 8, 8, 6))) == VARIES
    # each fraction's first known count decides: a later row of the same fraction does not
    assert composition(_cell(classes=(10, 7, 10, 7, 10))) == FIXED


def test_unknown_class_counts_are_ignored():
    assert composition(_cell(classes=(np.nan, 10, np.nan, 10, 10))) == FIXED
    assert composition(_cell(classes=(np.nan,) * 5)) == FIXED
    assert composition(_cell(classes=(np.nan, 4, 6, np.nan, np.nan))) == VARIES


def test_a_task_design_on_a_class_subset_probe_varies_whatever_the_counts():
    assert composition(_cell(kind="task", role="common")) == VARIES
    assert composition(_cell(kind="task", role="id")) == FIXED
    assert composition(_cell(kind="data", role="common")) == FIXED
