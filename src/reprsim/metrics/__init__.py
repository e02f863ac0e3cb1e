"""Representational similarity measures.

``compute(name, X, Y, **params)`` / ``compute_all(X, Y, names=None, **params)`` on feature matrices
of shape (n_samples, n_features) (numpy or torch); ``MEASURES`` is the registry and
``PAPER_MEASURES`` the paper's eight. ``prepare`` is the paper's feature preparation,
``permutation_test`` / ``bootstrap_ci`` give significance and confidence intervals,
``compare_layers`` a layer × layer table, ``StreamingCKA`` linear CKA over batches of rows.

Numerics: every measure is invariant to multiplying X or Y by a positive constant (``rbf_cka``
with a numeric ``sigma`` once σ is scaled too), so inputs whose squares would over- or underflow
the compute dtype are rescaled by an exact power of two first (values unchanged); numerical
failures (``LinAlgError``, overflow, a NaN result) become ValueError naming the measure.
"""

from reprsim.metrics.knn import nearest_neighbors
from reprsim.metrics.prepare import PrepareInfo, PrepareWarning, prepare
from reprsim.metrics.registry import MEASURES, PAPER_MEASURES, Measure, compute, compute_all
from reprsim.metrics.stats import bootstrap_ci, compare_layers, permutation_test
from reprsim.metrics.streaming import StreamingCKA

__all__ = [
    "MEASURES",
    "PAPER_MEASURES",
    "Measure",
    "PrepareInfo",
    "PrepareWarning",
    "StreamingCKA",
    "bootstrap_ci",
    "compare_layers",
    "compute",
    "compute_all",
    "nearest_neighbors",
    "permutation_test",
    "prepare",
]
