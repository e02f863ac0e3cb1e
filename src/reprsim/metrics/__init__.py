"""Representational similarity measures.

``compute(name, X, Y, **params)`` / ``compute_all(X, Y, names=None, **params)`` on feature matrices
of shape (n_samples, n_features) (numpy or torch); ``MEASURES`` is the registry and
``PAPER_MEASURES`` the paper's eight. ``prepare`` is the paper's feature preparation,
``permutation_test`` / ``bootstrap_ci`` give significance and confidence intervals,
``compare_layers`` a layer × layer table, ``SimilarityEngine`` the one layer-table engine
(every measure on every layer pair, each layer's work done once; the sweep and ``compare_models``
use it), ``StreamingCKA`` linear CKA over batches of rows.
``calibrate`` / ``calibrate_layers`` give calibrated scores against a permutation null (the layer
aggregate with its own null), ``behavioural`` compares output distributions (agreement, κ, error
consistency, CAPA, JS), ``paired_difference`` tests value₁ − value₂ on shared inputs, and
``describe`` returns the measure cards (invariances, kind, range, symmetry).

Numerics: every measure is invariant to multiplying X or Y by a positive constant (``rbf_cka``
with a numeric ``sigma`` once σ is scaled too), so inputs whose squares would over- or underflow
the compute dtype are rescaled by an exact power of two first (values unchanged); numerical
failures (``LinAlgError``, overflow, a NaN result) become ValueError naming the measure.
"""

from reprsim.metrics.behavioural import BEHAVIOURAL, behavioural
from reprsim.metrics.calibrate import calibrate, calibrate_layers
from reprsim.metrics.cards import describe
from reprsim.metrics.engine import SimilarityEngine
from reprsim.metrics.knn import nearest_neighbors
from reprsim.metrics.paired import paired_difference
from reprsim.metrics.prepare import PrepareInfo, PrepareWarning, prepare
from reprsim.metrics.registry import MEASURES, PAPER_MEASURES, Measure, compute, compute_all
from reprsim.metrics.stats import bootstrap_ci, compare_layers, permutation_test
from reprsim.metrics.streaming import StreamingCKA

__all__ = [
    "BEHAVIOURAL",
    "MEASURES",
    "PAPER_MEASURES",
    "Measure",
    "PrepareInfo",
    "PrepareWarning",
    "SimilarityEngine",
    "StreamingCKA",
    "behavioural",
    "bootstrap_ci",
    "calibrate",
    "calibrate_layers",
    "compare_layers",
    "compute",
    "compute_all",
    "describe",
    "nearest_neighbors",
    "paired_difference",
    "permutation_test",
    "prepare",
]
