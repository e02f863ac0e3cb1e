"""Loaders for data the user provides on disk (never downloaded): CIFAR-10/100 (python pickle
format, extracted or as the published .tar.gz), SVHN (the published .mat files), TinyImageNet (its
folder layout), any image folder, numpy arrays, a torch Dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reprsim.data._safe_pickle import load_numpy_pickle
from reprsim.data.dataset import Dataset, class_meta, to_nchw_float
from reprsim.errors import ReprsimError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp"}


def _need_root(root: Any, name: str, hint: str) -> Path:
    if root is None:
        raise ReprsimError(f"{name} is not shipped with reprsim: pass root=DIR pointing at {hint}")
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{name}: root {path} does not exist ({hint})")
    return path


def _decode_keys(obj: dict) -> dict:
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


#: the published CIFAR archives and the folders they extract to
CIFAR_LAYOUT = {
    10: {
        "archive": "cifar-10-python.tar.gz",
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
    },
    100: {
        "archive": "cifar-100-python.tar.gz",
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
    },
}


class _CifarFiles:
    """The CIFAR python-version files of one split, read from the extracted folder or straight from
    the published ``.tar.gz`` (nothing is extracted to disk)."""

    def __init__(self, root: Path, num_classes: int):
        layout = CIFAR_LAYOUT[num_classes]
        self.name, self.layout = f"cifar{num_classes}", layout
        if root.is_file():
            self.archive, self.folder = root, None
        elif (root / layout["folder"]).is_dir():
            self.archive, self.folder = None, root / layout["folder"]
        elif (root / layout["train"][0]).is_file() or (root / layout["test"][0]).is_file():
            self.archive, self.folder = None, root
        elif (root / layout["archive"]).is_file():
            self.archive, self.folder = root / layout["archive"], None
        else:
            raise FileNotFoundError(
                f"{self.name}: {root} holds neither the extracted {layout['folder']} folder nor the "
                f"{layout['archive']} archive: point root= at one of them (the CIFAR python version)"
            )
        self.location = self.archive or self.folder

    def read(self, names: list[str], optional: list[str] = ()) -> dict[str, dict]:
        """The unpickled (numpy-only) contents of ``names`` (required) and ``optional`` files."""
        wanted = [*names, *optional]
        raw: dict[str, bytes] = {}
        if self.folder is not None:
            for n in wanted:
                if (self.folder / n).is_file():
                    raw[n] = (self.folder / n).read_bytes()
        else:
            raw = self._read_archive(set(wanted))
        missing = [n for n in names if n not in raw]
        if missing:
            where = f"the archive {self.archive}" if self.archive else str(self.folder)
            raise FileNotFoundError(
                f"{self.name}: {where} has no {', '.join(missing)} (expected the CIFAR python "
                f"version: {self.layout['folder']}/{{{', '.join(self.layout['train'] + self.layout['test'])}}})"
            )
        return {n: _decode_keys(load_numpy_pickle(data, encoding="bytes")) for n, data in raw.items()}

    def _read_archive(self, wanted: set[str]) -> dict[str, bytes]:
        import tarfile

        out: dict[str, bytes] = {}
        try:
            with tarfile.open(self.archive, "r:*") as tar:
                for member in tar:
                    base = member.name.rstrip("/").rsplit("/", 1)[-1]
                    if member.isfile() and base in wanted and base not in out:
                        handle = tar.extractfile(member)
                        if handle is not None:
                            out[base] = handle.read()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ReprsimError(
                f"{self.name}: cannot read the archive {self.archive} ({exc}); it should be "
                f"{self.layout['archive']} as published (or point root= at the extracted folder)"
            ) from None
        return out


def load_cifar(split: str = "train", root: str | Path | None = None, num_classes: int = 10) -> Dataset:
    """CIFAR-10 or CIFAR-100, python version, from ``root``: the published archive
    (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``, read without extracting it), the
    extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``) or a folder holding either.

    Pickles are read with a numpy-only unpickler. Returns a Dataset of float32 (n, 3, 32, 32) in
    [0, 1]; CIFAR-100 has columns ``label`` (fine, 100) and ``coarse`` (20).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if num_classes not in CIFAR_LAYOUT:
        raise ValueError(f"num_classes must be 10 or 100 (CIFAR-10 / CIFAR-100), got {num_classes!r}")
    name = f"cifar{num_classes}"
    layout = CIFAR_LAYOUT[num_classes]
    files = _CifarFiles(
        _need_root(root, name, f"the {layout['archive']} archive or the extracted {layout['folder']} folder"),
        num_classes,
    )
    contents = files.read(layout[split], optional=[layout["meta"]])
    parts = [contents[f] for f in layout[split]]
    meta_p = contents.get(layout["meta"], {})
    names: dict[str, list[str]] = {}

    def decoded(values: Any) -> list[str]:
        return [v.decode() if isinstance(v, bytes) else str(v) for v in values]

    try:
        data = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts])
        if num_classes == 10:
            cols = {"label": np.concatenate([np.asarray(p["labels"], dtype=np.int64) for p in parts])}
            if meta_p.get("label_names"):
                names["label"] = decoded(meta_p["label_names"])
        else:
            cols = {
                "label": np.concatenate([np.asarray(p["fine_labels"], dtype=np.int64) for p in parts]),
                "coarse": np.concatenate([np.asarray(p["coarse_labels"], dtype=np.int64) for p in parts]),
            }
            for column, key in (("label", "fine_label_names"), ("coarse", "coarse_label_names")):
                if meta_p.get(key):
                    names[column] = decoded(meta_p[key])
    except KeyError as exc:
        raise ValueError(
            f"{files.location}: a CIFAR-{num_classes} batch has no {exc} entry; is this the CIFAR python version?"
        ) from None
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{files.location}: CIFAR data must be (n, 3072) bytes, got {data.shape}")
    inputs = data.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0)
    counts = {"label": num_classes, **({"coarse": 20} if num_classes == 100 else {})}
    meta = {
        "name": name,
        "split": split,
        "n": len(inputs),
        "source": str(files.location),
        "licence": "see https://www.cs.toronto.edu/~kriz/cifar.html (A. Krizhevsky)",
        **class_meta(cols, names, counts),
    }
    return Dataset(inputs, cols, meta)


SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def load_svhn(split: str = "train", root: str | Path | None = None) -> Dataset:
    """SVHN (Street View House Numbers, cropped digits) from the published ``train_32x32.mat`` /
    ``test_32x32.mat`` in ``root`` (or ``root`` pointing at the file), read with ``scipy.io.loadmat``.

    The files hold ``X`` of shape (32, 32, 3, N) uint8 and ``y`` of shape (N, 1) with labels 1–10,
    where 10 stands for the digit 0. Returns a Dataset of float32 (N, 3, 32, 32) in [0, 1] with
    column ``label`` = the digit (0–9, int64).
    """
    if split not in SVHN_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    base = _need_root(
        root,
        "svhn",
        f"a folder holding {SVHN_FILES['train']} and {SVHN_FILES['test']} "
        "(http://ufldl.stanford.edu/housenumbers/, format 2)",
    )
    path = base if base.is_file() else base / SVHN_FILES[split]
    if base.is_file() and base.name != SVHN_FILES[split] and base.name in SVHN_FILES.values():
        raise ValueError(
            f"svhn: root {base} is the file of the other split, not {SVHN_FILES[split]}: point root= at "
            "the folder holding both files"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"svhn: {base} has no {SVHN_FILES[split]} (the {split} split of SVHN format 2, "
            "cropped 32×32 digits): point root= at the folder holding it"
        )
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except (MatReadError, ValueError, TypeError, OSError, NotImplementedError) as exc:
        raise ValueError(
            f"svhn: cannot read {path} as a MATLAB file ({exc}); it should be {SVHN_FILES[split]} as published"
        ) from None
    if "X" not in mat or "y" not in mat:
        raise ValueError(
            f"svhn: {path} has no X and y arrays (found {sorted(k for k in mat if not k.startswith('__'))})"
        )
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise ValueError(
            f"svhn: {path} must hold X of shape (32, 32, 3, N) and y of shape (N, 1), "
            f"got X {x.shape} and y {np.asarray(mat['y']).shape}"
        )
    labels = y.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 10):
        raise ValueError(f"svhn: {path} has labels outside 1–10 (found {labels.min()}..{labels.max()})")
    labels[labels == 10] = 0  # the published files write the digit 0 as 10
    inputs = np.ascontiguousarray(x.transpose(3, 2, 0, 1), dtype=np.float32) / np.float32(255.0)
    cols = {"label": labels}
    meta = {
        "name": "svhn",
        "split": split,
        "n": len(inputs),
        "source": str(path),
        "licence": "SVHN, non-commercial use (Netzer et al. 2011)",
        **class_meta(cols, {"label": [str(d) for d in range(10)]}, {"label": 10}),
    }
    return Dataset(inputs, cols, meta)


def _read_image(path: Path, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow ships with matplotlib
        raise ReprsimError("reading image files needs Pillow: `pip install pillow`") from exc
    with Image.open(path) as im:
        im = im.convert(mode)
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _stack_images(paths: list[Path], image_size: int | tuple[int, int] | None, mode: str) -> np.ndarray:
    target = (image_size, image_size) if isinstance(image_size, int) else image_size
    size = target
    arrays = []
    for p in paths:
        arr = _read_image(p, target, mode)
        if size is None:
            size = arr.shape[:2]
        elif arr.shape[:2] != tuple(size):
            raise ValueError(
                f"{p} is {arr.shape[1]}×{arr.shape[0]} but earlier images are "
                f"{size[1]}×{size[0]}: pass image_size= to resize them all"
            )
        arrays.append(arr)
    return to_nchw_float(np.stack(arrays), channels_last=True)


def load_tinyimagenet(split: str = "train", root: str | Path | None = None, image_size: int | None = None) -> Dataset:
    """TinyImageNet-200 from its folder layout (``wnids.txt``, ``train/<wnid>/images/*``,
    ``val/images/*`` with ``val/val_annotations.txt``). ``split="test"`` reads the labelled val set.

    Returns a Dataset of float32 (n, 3, 64, 64) in [0, 1] and column ``label`` (wnids in file order).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = _need_root(root, "tinyimagenet", "the extracted tiny-imagenet-200 folder")
    if (root / "tiny-imagenet-200").is_dir():
        root = root / "tiny-imagenet-200"
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file():
        raise FileNotFoundError(f"no wnids.txt in {root}: point root= at the tiny-imagenet-200 folder")
    wnids = [w.strip() for w in wnids_file.read_text().split() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    paths, labels = [], []
    if split == "train":
        for w in wnids:
            folder = root / "train" / w / "images"
            files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            paths += files
            labels += [index[w]] * len(files)
    else:
        ann = root / "val" / "val_annotations.txt"
        if not ann.is_file():
            raise FileNotFoundError(f"missing {ann} (TinyImageNet val labels)")
        for line in ann.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) >= 2 and fields[1] in index:
                paths.append(root / "val" / "images" / fields[0])
                labels.append(index[fields[1]])
    if not paths:
        raise ValueError(f"no {split} images found under {root}")
    words = {}
    if (root / "words.txt").is_file():
        for line in (root / "words.txt").read_text().splitlines():
            w, _, text = line.partition("\t")
            words[w] = text
    cols = {"label": np.array(labels, dtype=np.int64)}
    meta = {
        "name": "tinyimagenet",
        "split": split,
        "n": len(paths),
        "source": str(root),
        "licence": "ImageNet terms of access (non-commercial research)",
        **class_meta(cols, {"label": [words.get(w, w) for w in wnids]}, {"label": len(wnids)}),
    }
    return Dataset(_stack_images(paths, image_size, "RGB"), cols, meta)


def load_image_folder(
    split: str = "train", root: str | Path | None = None, image_size: int | None = None, grey: bool = False
) -> Dataset:
    """Any folder with one sub-folder per class (``root/<class>/*.png``); if ``root/<split>`` exists
    it is used. Classes are the sorted sub-folder names.

    Returns a Dataset of float32 (n, C, H, W) in [0, 1] (C = 1 with ``grey=True``, else 3).
    """
    root = _need_root(root, "image_folder", "a folder with one sub-folder of images per class")
    base = root / split if (root / split).is_dir() else root
    classes = sorted(d.name for d in base.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{base} has no class sub-folders (expected {base}/<class>/<image files>)")
    paths, labels = [], []
    for i, c in enumerate(classes):
        files = sorted(p for p in (base / c).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [i] * len(files)
    if not paths:
        raise ValueError(f"no image files ({sorted(IMAGE_SUFFIXES)}) under {base}")
    cols = {"label": np.array(labels, dtype=np.int64)}
    meta = {
        "name": "image_folder",
        "split": split,
        "n": len(paths),
        "source": str(base),
        "licence": "user data",
        **class_meta(cols, {"label": classes}, {"label": len(classes)}),
    }
    return Dataset(_stack_images(paths, image_size, "L" if grey else "RGB"), cols, meta)


def load_numpy(
    split: str = "train",
    inputs: np.ndarray | None = None,
    labels: Any = None,
    path: str | Path | None = None,
    root: str | Path | None = None,
) -> Dataset:
    """Arrays given directly (``inputs=``, ``labels=`` array or dict of columns) or read from an
    ``.npz`` (``path=``; keys ``inputs``/``x`` and ``labels``/``y``; ``{split}_`` prefixed keys
    such as ``train_x`` win). Images (3-D/4-D) become float32 (n, C, H, W) in [0, 1]; 2-D inputs are
    kept as (n, d) float32 features.
    """
    src = "arrays"
    path = path or root
    if inputs is None:
        if path is None:
            raise ValueError("numpy source: pass inputs= and labels= arrays, or path= to an .npz file")
        with np.load(Path(path).expanduser(), allow_pickle=False) as z:

            def pick(*keys: str) -> np.ndarray:
                for k in [f"{split}_{key}" for key in keys] + list(keys):
                    if k in z:
                        return z[k]
                raise KeyError(f"{path} has none of the keys {keys} (found {list(z)})")

            inputs, labels = pick("inputs", "x", "images"), pick("labels", "y")
        src = str(path)
    arr = np.asarray(inputs)
    if labels is None:
        raise ValueError("numpy source: labels= is required (an int array of shape (n,) or a dict of columns)")
    cols = (
        {k: np.asarray(v).astype(np.int64) for k, v in labels.items()}
        if isinstance(labels, dict)
        else {"label": np.asarray(labels).astype(np.int64)}
    )
    if "label" not in cols:
        raise ValueError(f"label columns must include 'label', got {sorted(cols)}")
    if arr.ndim == 2:
        data = np.ascontiguousarray(arr, dtype=np.float32)
    else:
        data = to_nchw_float(arr)
    meta = {"name": "numpy", "split": split, "n": len(data), "source": src, "licence": "user data", **class_meta(cols)}
    return Dataset(data, cols, meta)


def load_torch(split: str = "train", dataset: Any = None, batch_size: int = 256) -> Dataset:
    """Materialise any ``torch.utils.data.Dataset`` yielding ``(image_tensor, int_label)`` pairs.

    Returns a Dataset with the stacked inputs (float32 images (n, C, H, W); they must lie in [0, 1])
    and column ``label``.
    """
    if dataset is None:
        raise ValueError("torch source: pass dataset=<a torch.utils.data.Dataset>")
    import torch
    from torch.utils.data import DataLoader

    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        xs.append(torch.as_tensor(x).detach().cpu().numpy())
        ys.append(torch.as_tensor(y).detach().cpu().numpy())
    if not xs:
        raise ValueError("torch source: the dataset is empty")
    arr = np.concatenate(xs)
    data = (
        to_nchw_float(arr, channels_last=False)
        if arr.ndim == 4
        else to_nchw_float(arr)
        if arr.ndim == 3
        else np.ascontiguousarray(arr, dtype=np.float32)
    )
    cols = {"label": np.concatenate(ys).astype(np.int64).reshape(-1)}
    meta = {
        "name": "torch",
        "split": split,
        "n": len(data),
        "source": type(dataset).__name__,
        "licence": "user data",
        **class_meta(cols),
    }
    return Dataset(data, cols, meta)
