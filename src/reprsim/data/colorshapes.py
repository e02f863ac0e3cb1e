"""``colorshapes``: a generated multi-attribute image set in the spirit of ColorShapeDigit800k.

Each RGB image shows one of 8 coloured geometric shapes (10 colours) with a digit glyph (0–9) drawn
on it: 800 combined classes, attributes drawn independently, with position, size, colour and
background jitter. Generation is vectorised: anti-aliased shape and glyph masks are rendered once
per (attribute, size) on a padded canvas; a batch is composited with one gather per mask bank.
Images are quantised to bytes, so a cached copy is bit-identical to a fresh one.

Determinism: images are generated in chunks of ``CHUNK`` with a generator seeded by
``(seed, split, chunk index)``, so the first m images of a set of size n > m equal the set of size m.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from reprsim import storage
from reprsim.data.dataset import Dataset

VERSION = 1
CHUNK = 1024
SHAPES = ["circle", "square", "triangle", "diamond", "pentagon", "hexagon", "star", "cross"]
COLORS = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.75, 0.15),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.90, 0.10),
    "magenta": (0.90, 0.15, 0.85),
    "cyan": (0.10, 0.85, 0.90),
    "orange": (1.00, 0.55, 0.00),
    "purple": (0.50, 0.15, 0.70),
    "white": (0.95, 0.95, 0.95),
    "brown": (0.55, 0.30, 0.10),
}
COLOR_NAMES = list(COLORS)
DIGITS = [str(d) for d in range(10)]
SCALES = (0.28, 0.32, 0.36, 0.40)  # shape radius as a fraction of the image side
SUPERSAMPLE = 4
DEFAULT_N = {"train": 60_000, "test": 10_000}

# A 5×7 bitmap font for the digit glyphs ('#' = ink).
_FONT = {
    0: [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."],
    1: ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],
    2: [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],
    3: ["####.", "....#", "....#", ".###.", "....#", "....#", "####."],
    4: ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],
    5: ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."],
    6: ["..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."],
    7: ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],
    8: [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."],
    9: [".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."],
}


def _polygon(n_vertices: int, inner: float | None = None, rotation: float = -np.pi / 2) -> np.ndarray:
    """Vertices (k, 2) of a regular polygon (or a star when ``inner`` is given) of radius 1."""
    if inner is None:
        angles = rotation + 2 * np.pi * np.arange(n_vertices) / n_vertices
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    angles = rotation + np.pi * np.arange(2 * n_vertices) / n_vertices
    radius = np.where(np.arange(2 * n_vertices) % 2 == 0, 1.0, inner)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of points (u, v) (radius-1 units, v pointing down) inside ``shape``."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "cross":
        return ((np.abs(u) <= 0.36) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.36) & (np.abs(u) <= 1.0))
    from matplotlib.path import Path as MplPath

    verts = {
        "triangle": _polygon(3) * np.array([1.1, 1.1]) + np.array([0.0, 0.15]),
        "pentagon": _polygon(5),
        "hexagon": _polygon(6, rotation=0.0),
        "star": _polygon(5, inner=0.5),
    }[shape]
    pts = np.stack([u.ravel(), v.ravel()], axis=1)
    return MplPath(verts).contains_points(pts).reshape(u.shape)


@lru_cache(maxsize=8)
def _banks(size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Anti-aliased shape and glyph masks on a padded canvas.

    Returns (shape_bank (8·len(SCALES), P, P), glyph_bank (10·len(SCALES), P, P), jitter J) with
    P = size + 2J; an offset in [0, 2J] crops a size×size window, i.e. a translation of ±J pixels.
    """
    jitter = max(1, round(size * 3 / 28))
    pad = size + 2 * jitter
    ss = SUPERSAMPLE
    coords = (np.arange(pad * ss) + 0.5) / ss - pad / 2
    yy, xx = np.meshgrid(coords, coords, indexing="ij")

    def down(mask: np.ndarray) -> np.ndarray:
        return mask.reshape(pad, ss, pad, ss).mean(axis=(1, 3)).astype(np.float32)

    shape_bank, glyph_bank = [], []
    for shape in SHAPES:
        for scale in SCALES:
            radius = scale * size
            shape_bank.append(down(_inside(shape, xx / radius, yy / radius)))
    for digit in range(10):
        bitmap = np.array([[ch == "#" for ch in row] for row in _FONT[digit]])
        for scale in SCALES:
            height = 1.05 * scale * size
            cell = height / 7
            col = np.floor(xx / cell + 2.5).astype(int)
            row = np.floor(yy / cell + 3.5).astype(int)
            ok = (row >= 0) & (row < 7) & (col >= 0) & (col < 5)
            ink = np.zeros_like(ok)
            ink[ok] = bitmap[row[ok], col[ok]]
            glyph_bank.append(down(ink))
    return np.stack(shape_bank), np.stack(glyph_bank), jitter


def _ids(values: Sequence | None, names: list[str], what: str) -> np.ndarray:
    if values is None:
        return np.arange(len(names))
    out = []
    for v in values:
        key = str(v)
        if key in names:
            out.append(names.index(key))
        elif isinstance(v, (int, np.integer)) and 0 <= int(v) < len(names):
            out.append(int(v))
        else:
            raise ValueError(f"unknown {what} {v!r}; choose from {names}")
    if not out:
        raise ValueError(f"{what}s must name at least one of {names}")
    return np.array(sorted(set(out)), dtype=np.int64)


def generate(
    n: int,
    seed: int = 0,
    split: str = "train",
    image_size: int = 28,
    shapes: Sequence | None = None,
    digits: Sequence | None = None,
    colors: Sequence | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Generate ``n`` images without touching the disk cache.

    Returns
    -------
    images : uint8 array of shape (n, 3, image_size, image_size)
    attributes : dict with int64 arrays ``shape`` (0–7), ``digit`` (0–9), ``color`` (0–9), shape (n,)
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if int(image_size) < 12:
        raise ValueError(f"image_size must be >= 12 pixels for a readable glyph, got {image_size}")
    size = int(image_size)
    shape_bank, glyph_bank, jitter = _banks(size)
    allowed = (_ids(shapes, SHAPES, "shape"), _ids(digits, DIGITS, "digit"), _ids(colors, COLOR_NAMES, "color"))
    palette = np.array(list(COLORS.values()), dtype=np.float32)
    luminance = palette @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    glyph_rgb = np.where(luminance[:, None] > 0.5, 0.05, 0.95).astype(np.float32) * np.ones((1, 3), np.float32)
    n_scales = len(SCALES)
    ar = np.arange(size)
    images = np.empty((int(n), 3, size, size), dtype=np.uint8)
    attrs = {k: np.empty(int(n), dtype=np.int64) for k in ("shape", "digit", "color")}
    split_code = 0 if split == "train" else 1
    for chunk, start in enumerate(range(0, int(n), CHUNK)):
        rng = np.random.default_rng([int(seed), split_code, chunk, VERSION])
        m = CHUNK
        shape = allowed[0][rng.integers(0, len(allowed[0]), m)]
        digit = allowed[1][rng.integers(0, len(allowed[1]), m)]
        color = allowed[2][rng.integers(0, len(allowed[2]), m)]
        scale = rng.integers(0, n_scales, m)
        dy = rng.integers(0, 2 * jitter + 1, m)
        dx = rng.integers(0, 2 * jitter + 1, m)
        background = rng.uniform(0.0, 0.3, (m, 3)).astype(np.float32)
        fill = np.clip(palette[color] + rng.uniform(-0.06, 0.06, (m, 3)).astype(np.float32), 0, 1)
        stop = min(start + m, int(n))
        k = stop - start
        rows = dy[:k, None, None] + ar[None, :, None]
        cols = dx[:k, None, None] + ar[None, None, :]
        ms = shape_bank[(shape[:k] * n_scales + scale[:k])[:, None, None], rows, cols][:, None]
        mg = glyph_bank[(digit[:k] * n_scales + scale[:k])[:, None, None], rows, cols][:, None]
        bg = background[:k, :, None, None]
        img = bg + (fill[:k, :, None, None] - bg) * ms
        img += (glyph_rgb[color[:k]][:, :, None, None] - img) * mg
        np.multiply(img, 255.0, out=img)
        img += 0.5
        images[start:stop] = img.astype(np.uint8)
        attrs["shape"][start:stop] = shape[:k]
        attrs["digit"][start:stop] = digit[:k]
        attrs["color"][start:stop] = color[:k]
    return images, attrs


def label_columns(attrs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All label columns from the three attributes: each attribute, each pair and ``label`` (800).

    Combined ids follow the sorted order of (shape, digit, color) tuples, e.g.
    ``shape_digit = 10·shape + digit`` and ``label = 100·shape + 10·digit + color``.
    """
    s, d, c = attrs["shape"], attrs["digit"], attrs["color"]
    return {
        "label": s * 100 + d * 10 + c,
        "shape": s.copy(),
        "digit": d.copy(),
        "color": c.copy(),
        "shape_digit": s * 10 + d,
        "shape_color": s * 10 + c,
        "digit_color": d * 10 + c,
    }


def _class_names() -> dict[str, list[str]]:
    pairs = {
        "shape_digit": [f"{s}_{d}" for s in SHAPES for d in DIGITS],
        "shape_color": [f"{s}_{c}" for s in SHAPES for c in COLOR_NAMES],
        "digit_color": [f"{d}_{c}" for d in DIGITS for c in COLOR_NAMES],
    }
    full = [f"{s}_{d}_{c}" for s in SHAPES for d in DIGITS for c in COLOR_NAMES]
    return {"label": full, "shape": SHAPES, "digit": DIGITS, "color": COLOR_NAMES, **pairs}


CACHE_SUBDIR = "colorshapes"


def default_cache_dir() -> Path:
    """The folder generated images are cached in by default: ``<cache>/colorshapes``, where
    ``<cache>`` is the sweep's default cache — ``$REPRSIM_CACHE`` if set, else ``~/.cache/reprsim``.

    ``$REPRSIM_CACHE_DIR`` (the variable this module read before) is still honoured when
    ``$REPRSIM_CACHE`` is not set, with a DeprecationWarning.
    """
    if not os.environ.get("REPRSIM_CACHE") and os.environ.get("REPRSIM_CACHE_DIR"):
        warnings.warn(
            "REPRSIM_CACHE_DIR is deprecated; set REPRSIM_CACHE (the cache of the whole sweep) instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return Path(os.environ["REPRSIM_CACHE_DIR"]) / CACHE_SUBDIR
    return storage.default_cache_dir() / CACHE_SUBDIR


def _read_entry(path: Path) -> dict[str, np.ndarray] | None:
    arrays = storage.read_verified_arrays(path)
    if arrays is not None and not {"images", "shape", "digit", "color"} <= set(arrays):
        return None  # a foreign entry: regenerated and overwritten
    return arrays


def load_colorshapes(
    split: str = "train",
    n: int | None = None,
    seed: int = 0,
    image_size: int = 28,
    shapes: Sequence | None = None,
    digits: Sequence | None = None,
    colors: Sequence | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """The colorshapes source: generated (or read from the disk cache) and returned as a Dataset.

    ``shapes`` / ``digits`` / ``colors`` restrict the attribute values drawn (names or ids), e.g. to
    build an out-of-distribution probe set with unseen attribute values; label ids stay global.
    ``n`` defaults to 60,000 (train) / 10,000 (test).

    ``cache_dir`` is the reprsim cache folder — the sweep's ``--cache-dir`` — and images are kept in
    its ``colorshapes/`` subfolder; by default ``$REPRSIM_CACHE`` or ``~/.cache/reprsim`` (see
    :func:`default_cache_dir`). Entries are checksummed (:mod:`reprsim.storage`): a truncated or
    corrupt one is logged, moved aside and regenerated; concurrent processes generate a set once.
    ``cache=False`` neither reads nor writes the disk.

    Returns
    -------
    Dataset with inputs float32 (n, 3, image_size, image_size) in [0, 1] and label columns
    ``label`` (800 classes), ``shape`` (8), ``digit`` (10), ``color`` (10), ``shape_digit``,
    ``shape_color``, ``digit_color``.
    """
    n = DEFAULT_N.get(split, 10_000) if n is None else int(n)
    key_src = repr(
        (
            VERSION,
            split,
            int(seed),
            n,
            int(image_size),
            shapes and sorted(map(str, shapes)),
            digits and sorted(map(str, digits)),
            colors and sorted(map(str, colors)),
        )
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    folder = Path(cache_dir) / CACHE_SUBDIR if cache_dir is not None else default_cache_dir()
    # ".npz.rsv": npz bytes inside a checksummed reprsim.storage entry (not a plain .npz file)
    path = folder / f"colorshapes-{split}-{n}-{image_size}px-{key}.npz.rsv"

    def make() -> dict[str, np.ndarray]:
        images, attrs = generate(n, seed, split, image_size, shapes, digits, colors)
        return {"images": images, **attrs}

    if cache:
        arrays = storage.cached(path, make, read=_read_entry, write=storage.write_verified_arrays)
    else:
        arrays = make()
    images = arrays["images"]
    attrs = {k: arrays[k] for k in ("shape", "digit", "color")}
    cols = label_columns(attrs)
    names = _class_names()
    meta = {
        "name": "colorshapes",
        "split": split,
        "n": n,
        "seed": int(seed),
        "image_size": int(image_size),
        "num_classes": {k: len(v) for k, v in names.items()},
        "class_names": names,
        "source": f"generated by reprsim.data.colorshapes v{VERSION}",
        "licence": "MIT (generated)",
        "cache_path": str(path) if cache else None,
        "restricted": {"shapes": shapes, "digits": digits, "colors": colors},
    }
    return Dataset(images.astype(np.float32) / np.float32(255.0), cols, meta)
