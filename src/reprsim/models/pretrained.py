"""Start a sweep's classifier from pretrained weights: a local Hugging Face image model, or a zoo
model with a checkpoint.

* :func:`hf_image_classifier` loads a ``save_pretrained`` folder (an image classifier such as
  ``microsoft/resnet-50``, or a bare vision encoder such as ``google/vit-base-patch16-224-in21k``)
  with a new, seeded classification head of the task's size, wrapped so that it takes the sweep's
  images: pixels in [0, 1], resized to the model's resolution, grey repeated to RGB.
* :func:`start_from_checkpoint` loads a checkpoint into a freshly built zoo model, except its head
  (the last linear layer), which keeps its seeded initialisation: a new task gets a new head.
* :func:`read_state_dict` reads a weights file without running code (``.safetensors``, or
  ``torch.load(weights_only=True)``); :func:`weights_fingerprint` hashes what a model entry
  starts from, so that the model cache notices changed weights.

Nothing is downloaded: every path is local.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reprsim.errors import ReprsimError

__all__ = ["hf_image_classifier", "read_state_dict", "start_from_checkpoint", "weights_fingerprint"]

_STATE_KEYS = ("state_dict", "model_state_dict", "model")
_WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


# ---- weights files --------------------------------------------------------------------------
def read_state_dict(
    path: str | Path, *, what: str = "weights"
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """``(state dict, reprsim metadata or None)`` of a weights file.

    ``.safetensors`` (plain, or a checkpoint written by ``reprsim.train``, whose resumable form
    prefixes the model's tensors with ``model.``), or a ``torch.save`` file holding a state dict
    or a dict with a ``state_dict`` / ``model_state_dict`` / ``model`` entry, read with
    ``weights_only=True`` so that no code runs. A ``module.`` prefix (``DataParallel``) is removed.

    Raises:
        ReprsimError: the file is missing, unreadable or holds no state dict.
    """
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise ReprsimError(f"{what}: file {path} not found.")
    meta = None
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), framework="pt") as f:
                raw = f.metadata() or {}
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ReprsimError(f"{what}: cannot read the safetensors file {path}: {exc}") from exc
        meta = json.loads(raw["reprsim"]) if "reprsim" in raw else None
        if any(k.startswith(("optim.", "rng.")) for k in state):  # a resumable last.safetensors
            state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpicklable under weights_only, or corrupt
            raise ReprsimError(
                f"{what}: cannot read {path} as a state dict with torch.load(weights_only=True) "
                f"({str(exc).splitlines()[0]}); save model.state_dict(), or use .safetensors."
            ) from exc
        if isinstance(obj, dict):
            for key in _STATE_KEYS:
                if isinstance(obj.get(key), dict):
                    obj = obj[key]
                    break
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise ReprsimError(f"{what}: {path} does not hold a state dict (name → tensor); save model.state_dict().")
        state = obj
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, meta


def state_mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str | None:
    """What keeps ``state`` from loading strictly into a model whose state dict is ``own``, or None."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]  # model order
    parts = []
    if missing:
        parts.append(f"missing {missing[:5]}" + (" …" if len(missing) > 5 else ""))
    if unexpected:
        parts.append(f"unexpected {unexpected[:5]}" + (" …" if len(unexpected) > 5 else ""))
    if wrong:
        k = wrong[0]
        parts.append(
            f"shape of {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else "")
        )
    return "; ".join(parts) or None


def head_of(model: nn.Module) -> str:
    """The path of ``model``'s classification head: its last ``nn.Linear``."""
    from reprsim.models.adapters import _last_linear

    head = _last_linear(model)
    if head is None:
        raise ReprsimError(f"{type(model).__name__} has no linear layer to serve as its classification head.")
    return head


def start_from_checkpoint(model: nn.Module, path: str | Path, *, what: str = "checkpoint") -> nn.Module:
    """Load ``path`` into ``model`` except the head (its last linear layer), which is left as built.

    Every other tensor must be in the file with the model's shape (the head's may have any shape:
    the checkpoint may come from a task with another number of classes).

    Raises:
        ReprsimError: the file cannot be read or does not fit the architecture (what is missing,
            unexpected or of another shape is listed).
    """
    state, _ = read_state_dict(path, what=what)
    head = head_of(model) + "."
    own = model.state_dict()
    body = {k: v for k, v in state.items() if not k.startswith(head)}
    problem = state_mismatch({k: v for k, v in own.items() if not k.startswith(head)}, body)
    if problem:
        raise ReprsimError(
            f"{what}: the weights in {path} do not fit {type(model).__name__} (head "
            f"{head[:-1]!r} excluded): {problem}; check the model's options (widths, depth)."
        )
    model.load_state_dict(body, strict=False)
    return model


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_fingerprint(path: str | Path) -> str:
    """A content hash of a weights file, or of a Hugging Face folder's config and weight files."""
    path = Path(str(path)).expanduser()
    files = (
        [path]
        if path.is_file()
        else sorted(
            f
            for f in path.iterdir()
            if f.name == "config.json"
            or f.name in _WEIGHT_FILES
            or (f.suffix in (".safetensors", ".bin") and f.name.startswith(("model-", "pytorch_model-")))
        )
    )
    digest = hashlib.sha256()
    for f in files:
        stat = f.stat()
        digest.update(f.name.encode() + _file_digest(str(f), stat.st_size, stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]


# ---- Hugging Face image models --------------------------------------------------------------
@contextmanager
def _quiet_transformers():
    """Silence transformers' "newly initialized weights" report (the new head is intended) and its
    weight-loading progress bar (a sweep loads the folder once per model and shows its own progress)."""
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def hf_image_classifier(
    path: str | Path, num_labels: int, *, seed: int, input_size: int | None = None, in_channels: int | None = None
) -> nn.Module:
    """A local Hugging Face image model with a new head of ``num_labels`` classes, for training.

    Args:
        path: a ``save_pretrained`` folder of an image classifier or a vision encoder.
        num_labels: classes of the task (the head is always new, initialised from ``seed``).
        seed: the head's initialisation seed (the rest of the weights are the folder's).
        input_size: the side the model takes; images of another size are resized to it. Default:
            the model config's ``image_size`` when it has one (ViTs), else none (conv nets take any).
        in_channels: the sweep's image channels; a grey image is repeated to RGB for an RGB model.

    Returns: a :class:`~reprsim.models.adapters.HFVisionModel` in train mode on CPU.

    Raises:
        ReprsimError: the folder holds no image model, or its type has no image-classification head.
    """
    import transformers

    from reprsim.models.adapters import HFVisionModel, _preprocessor_normalization, detect_hf_task, refused_pickles

    directory = Path(str(path)).expanduser()
    try:
        task = detect_hf_task(directory)
    except ValueError as exc:
        raise ReprsimError(str(exc)) from exc
    if task not in ("image-classification", "image-base"):
        raise ReprsimError(
            f"hf: {path} holds a {task} model, not an image model; the image kind fine-tunes image "
            "classifiers and vision encoders (e.g. a saved ResNetForImageClassification or ViTModel)."
        )
    with torch.random.fork_rng(devices=[]), _quiet_transformers(), refused_pickles(directory):
        torch.manual_seed(seed)
        try:
            hf = transformers.AutoModelForImageClassification.from_pretrained(
                str(directory),
                num_labels=num_labels,
                ignore_mismatched_sizes=True,
                local_files_only=True,
                trust_remote_code=False,
            )
        except ValueError as exc:  # a model type without an image-classification class
            raise ReprsimError(f"hf: {path}: transformers has no image-classification model for it ({exc}).") from exc
        # The head is new even when the saved one has num_labels outputs: it belongs to another task.
        hf.get_submodule(head_of(hf)).reset_parameters()
    native = getattr(hf.config, "image_size", None)
    side = input_size or (native if isinstance(native, int) else None)
    channels = getattr(hf.config, "num_channels", None)
    if in_channels is not None and channels is not None and in_channels not in (channels, 1):
        raise ReprsimError(f"hf: {path} takes {channels}-channel images, the data has {in_channels} channels.")
    model = HFVisionModel(
        hf,
        task="image-classification",
        normalization=_preprocessor_normalization(directory),
        resize_to=None if side is None else (side, side),
        grey_to_rgb=channels == 3,
    )
    return model.train()
