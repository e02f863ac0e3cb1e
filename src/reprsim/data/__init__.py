"""Data sources and controlled-overlap splits (the *cause* side of reprsim).

* :func:`load` / :func:`list_sources` — one registry of image sources (MNIST, Fashion-MNIST, digits,
  colorshapes, noise, and user-provided CIFAR / TinyImageNet / image folders / arrays / torch Datasets).
* :mod:`reprsim.data.splits` — data, task, combined, attribute, chunk and corpus overlap splits.
* :mod:`reprsim.data.text` — offline text domains and byte-level tokens.
* :func:`match_shape` — adapt a probe set to another model's input shape.
"""

from reprsim.data.dataset import Dataset, subsample
from reprsim.data.ood_sets import ood_probe_sets
from reprsim.data.registry import SOURCES, list_sources, load
from reprsim.data.split_types import Split
from reprsim.data.transforms import match_shape

__all__ = ["Dataset", "Split", "SOURCES", "list_sources", "load", "match_shape", "ood_probe_sets", "subsample"]
