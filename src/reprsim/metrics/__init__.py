"""Representational similarity measures.

``compute(name, X, Y, **params)`` / ``compute_all(X, Y, names=None, **params)`` on feature matrices
of shape (n_samples, n_features) (numpy or torch); ``MEASURES`` is the registry and
``PAPER_MEASURES`` the paper's eight. ``prepare`` is the paper's feature preparation,
``permutation_test`` / ``bootstrap_ci`` give significance and confidence intervals,
``compare_layers`` a layer × layer table, ``StreamingCKA`` linear CKA over batches of rows.
"""

from reprsim.metrics.knn import nearest_neighbors
from reprsim.metrics.prepare import prepare
from reprsim.metrics.registry import MEASURES, PAPER_MEASURES, Measure, compute, compute_all
from reprsim.metrics.stats import bootstrap_ci, compare_layers, permutation_test
from reprsim.metrics.streaming import StreamingCKA

__all__ = [
    "MEASURES",
    "PAPER_MEASURES",
    "Measure",
    "StreamingCKA",
    "bootstrap_ci",
    "compare_layers",
    "compute",
    "compute_all",
    "nearest_neighbors",
    "permutation_test",
    "prepare",
]
