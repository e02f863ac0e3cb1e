"""Independent references shared by the compare tests: a small CNN, random images, features read
with plain forward hooks, and the paper's preparation rule written out in numpy."""

from __future__ import annotations

import numpy as np
import torch

import reprsim.models as M


def small_cnn(seed: int = 0, classes: int = 4):
    """A tiny zoo CNN on (3, 16, 16) images."""
    return M.build(
        "cnn", input_shape=(3, 16, 16), num_classes=classes, channels=(8, 16, 16), penultimate_width=16, seed=seed
    )


def random_images(n: int = 60, seed: int = 0) -> np.ndarray:
    """(n, 3, 16, 16) float32 images uniform in [0, 1)."""
    return np.random.default_rng(seed).random((n, 3, 16, 16), dtype=np.float32)


def hooked(model, x: np.ndarray, paths: list[str]) -> dict[str, np.ndarray]:
    """Outputs of the named modules, read with plain forward hooks (averaged over space)."""
    model.eval()
    got = {}
    modules = dict(model.named_modules())
    handles = [modules[p].register_forward_hook(lambda m, i, o, p=p: got.__setitem__(p, o)) for p in paths]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in handles:
        h.remove()
    return {p: (got[p].mean(dim=(2, 3)) if got[p].dim() == 4 else got[p]).numpy() for p in paths}


def paper_prepare(X) -> np.ndarray:
    """The paper's rule written out: clamp at |x| sorted[floor(0.95·numel)], then divide rows by their norm."""
    X = np.asarray(X, dtype=np.float64)
    flat = np.sort(np.abs(X).ravel())
    tau = flat[min(int(np.floor(0.95 * flat.size)), flat.size - 1)]
    C = np.clip(X, -tau, tau)
    return C / np.linalg.norm(C, axis=1, keepdims=True)
