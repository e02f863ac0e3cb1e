"""Out-of-distribution probe sets: noise images, and for every source a list of other sources whose
images, reshaped to the source's input shape, probe a model outside its training distribution
(as the paper probes CIFAR models on MNIST/SVHN)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from reprsim.data.dataset import Dataset

# in-distribution source -> OOD probe sources (loaded via reprsim.data.load, reshaped with match_shape).
# colorshapes_digits0_4 = colorshapes restricted to unseen attribute values (see OOD_VARIANTS).
OOD_PROBES: dict[str, list[str]] = {
    "mnist": ["fashion_mnist", "colorshapes", "noise"],
    "fashion_mnist": ["mnist", "colorshapes", "noise"],
    "digits": ["mnist", "fashion_mnist", "noise"],
    "colorshapes": ["mnist", "fashion_mnist", "noise"],
    "cifar10": ["mnist", "colorshapes", "noise"],
    "cifar100": ["mnist", "colorshapes", "noise"],
    "tinyimagenet": ["mnist", "colorshapes", "noise"],
}
DEFAULT_PROBES = ["mnist", "colorshapes", "noise"]


def load_noise(
    split: str = "train", n: int = 1000, shape: Sequence[int] = (3, 28, 28), kind: str = "uniform", seed: int = 0
) -> Dataset:
    """Noise images: ``uniform`` in [0, 1] or ``gaussian`` (mean 0.5, sd 0.2, clipped to [0, 1]).

    Returns a Dataset of float32 (n, *shape) with a constant ``label`` column of zeros (one class).
    """
    if kind not in ("uniform", "gaussian"):
        raise ValueError(f"kind must be 'uniform' or 'gaussian', got {kind!r}")
    if int(n) < 1 or len(shape) != 3:
        raise ValueError(f"need n >= 1 and shape=(C, H, W); got n={n}, shape={tuple(shape)}")
    rng = np.random.default_rng([int(seed), 0 if split == "train" else 1])
    size = (int(n), *(int(s) for s in shape))
    if kind == "uniform":
        x = rng.random(size, dtype=np.float32)
    else:
        x = np.clip(rng.normal(0.5, 0.2, size), 0.0, 1.0).astype(np.float32)
    cols = {"label": np.zeros(int(n), dtype=np.int64)}
    meta = {
        "name": "noise",
        "split": split,
        "n": int(n),
        "kind": kind,
        "num_classes": {"label": 1},
        "class_names": {"label": [kind]},
        "source": "generated",
        "licence": "MIT (generated)",
    }
    return Dataset(x, cols, meta)
