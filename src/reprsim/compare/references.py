"""Turn a model reference into a ready ``nn.Module``: what ``compare_models`` accepts as a model.

A reference is one of

* a ``torch.nn.Module`` (a ``torch.jit.ScriptModule`` is accepted for its output only);
* a local Hugging Face directory written by ``save_pretrained`` (``config.json``): an image
  classifier, a vision or text encoder, a sequence classifier or a causal LM, wrapped by
  :mod:`reprsim.models.adapters` (its tokenizer is loaded from the same folder when it has one);
* a checkpoint written by ``reprsim.train`` (``model.safetensors`` / ``last.safetensors`` or the
  folder holding one): the zoo architecture is rebuilt from the checkpoint's metadata or, for the
  zoo's MLP, CNN and ResNet, from its tensor shapes, and verified against its fingerprint;
* a diffusers ``UNet2DModel`` folder (``save_pretrained``) or a zoo diffusion UNet: read with the
  diffusion sweep's x_t / t / null-label protocol (see :mod:`reprsim.compare.diffusion`);
* a TorchScript file (``torch.jit.save``): output only, since loaded ScriptModules take no hooks;
* ``MODULE:CALLABLE``: an importable factory returning an ``nn.Module`` (the uvicorn/gunicorn
  convention; the current folder is importable), with optional ``weights``: a ``.safetensors``
  file or a state dict loaded with ``torch.load(weights_only=True)``. This **imports that module
  and calls that callable**: it runs that code with your permissions, so name only code you
  trust. A callable (or an import) that raises — ``SystemExit`` from ``sys.exit`` included — or
  that returns something other than an ``nn.Module`` is one ReprsimError line; ``os.abort`` and
  ``os._exit`` end the process at once and cannot be caught (reprsim does not sandbox it);
* a PEFT adapter folder (``adapter_config.json``) or ``RUN_DIR:UNIT_ID:a|b``, a model a reprsim
  sweep trained (see :mod:`reprsim.compare.sources`).

Nothing is ever downloaded, no pickle is loaded with code execution, and Hugging Face folders
are loaded with ``trust_remote_code=False`` (a folder whose config has ``auto_map`` is refused).
"""

from __future__ import annotations

import importlib
import math
import os
import re
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reprsim.errors import ReprsimError
from reprsim.models.pretrained import read_state_dict, state_mismatch

__all__ = ["ModelRef", "load_model", "load_weights", "is_scripted"]

_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_SCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit", ".torchscript", ".zip")


@dataclass
class ModelRef:
    """A loaded model and what is known about it.

    Attributes:
        module: the model, in eval mode, on CPU.
        label: a short human description (shown in tables and the HTML page).
        kind: ``"image"`` (takes pixels), ``"text"`` (takes token ids) or ``"any"`` (unknown).
        tokenizer: a Hugging Face tokenizer loaded with the model, or None.
        scripted: True for TorchScript: only the output can be read.
        source: the reference as given (a path, ``MODULE:CALLABLE`` or the class name).
    """

    module: nn.Module
    label: str
    kind: str = "any"
    tokenizer: Any = None
    scripted: bool = False
    source: str = ""


def is_scripted(module: nn.Module) -> bool:
    """Whether ``module`` is a TorchScript module (forward hooks are not supported on it)."""
    return isinstance(module, torch.jit.ScriptModule)


def _kind_of(module: nn.Module) -> str:
    from reprsim.models.adapters import HFModel, HFVisionModel

    if isinstance(module, HFVisionModel):
        return "image"
    if isinstance(module, HFModel):
        return "text"
    return "any"


def _what_models_are() -> str:
    return (
        "a model is an nn.Module, a Hugging Face directory (config.json; a diffusers UNet2DModel folder too), "
        "a PEFT adapter folder "
        "(adapter_config.json), RUN_DIR:UNIT_ID:a|b (a model of a reprsim sweep), a checkpoint written by "
        "reprsim.train (.safetensors), a TorchScript file, or MODULE:CALLABLE (a factory)"
    )


def load_model(
    ref: Any,
    weights: str | Path | None = None,
    *,
    which: str = "A",
    dtype: torch.dtype | None = None,
    base: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> ModelRef:
    """Load one model reference (see the module docstring and :mod:`reprsim.compare.sources`: PEFT
    adapter folders and ``RUN_DIR:UNIT_ID:a|b`` models of a sweep).

    Args:
        ref: the reference.
        weights: optional weights for a factory or an ``nn.Module`` (``.safetensors``, or a state
            dict saved with ``torch.save``; reprsim checkpoints are accepted too).
        which: "A" or "B", used in error messages.
        dtype: a Hugging Face folder is loaded in this dtype (other models are cast by the caller).
        base: the base model folder of a PEFT adapter (default: the one its config names).
        cache_dir: the model cache of a sweep reference (default ``$REPRSIM_CACHE``).

    Returns: a :class:`ModelRef` with the module in eval mode.

    Raises:
        ReprsimError: the reference is not a model, cannot be imported or its weights do not fit.
    """
    if isinstance(ref, nn.Module):
        module = ref
        if weights is not None:
            if is_scripted(module):
                raise ReprsimError(
                    f"model {which}: weights= cannot be loaded into a TorchScript module; it carries its own weights."
                )
            load_weights(module, weights, which=which)
        scripted = is_scripted(module)
        label = type(module).__name__ + (" (TorchScript)" if scripted else "")
        from reprsim.compare.diffusion import wrap_module  # a bare diffusers UNet2DModel gets the UNet interface

        return wrap_module(ModelRef(module.eval(), label, _kind_of(module), None, scripted, type(module).__name__))
    if not isinstance(ref, (str, os.PathLike)):
        raise ReprsimError(f"model {which}: got a {type(ref).__name__}; {_what_models_are()}.")
    from reprsim.compare import sources

    text = str(ref)
    path = Path(text).expanduser()
    if sources.is_adapter(path) or sources.is_sweep_ref(text):
        if weights is not None:
            raise ReprsimError(f"model {which}: weights= is for MODULE:CALLABLE factories; {text} carries its own.")
        if sources.is_adapter(path):
            return sources.load_adapter(path, base, which, dtype)
        return sources.load_sweep_model(text, which, cache_dir)
    if base is not None:
        raise ReprsimError(
            f"model {which}: base= is for PEFT adapter folders (adapter_config.json); {text} is not one."
        )
    if path.exists():
        return _load_path(path, weights, which, dtype)
    if _FACTORY.match(text):
        return _load_factory(text, weights, which)
    raise ReprsimError(
        f"model {which}: {text!r} is neither an existing file or folder nor MODULE:CALLABLE; {_what_models_are()}."
    )


# ---------------------------------------------------------------------------------------------
# paths
# ---------------------------------------------------------------------------------------------
def _load_path(path: Path, weights: Any, which: str, dtype: torch.dtype | None = None) -> ModelRef:
    if path.is_dir():
        if (path / "config.json").is_file():
            if weights is not None:
                raise ReprsimError(
                    f"model {which}: weights= is for MODULE:CALLABLE factories; the Hugging Face "
                    f"folder {path} carries its own weights."
                )
            from reprsim.compare import diffusion

            if diffusion.is_diffusers_folder(path):
                return diffusion.load_diffusers(path, which)
            return _load_hf(path, which, dtype)
        for name in ("model.safetensors", "last.safetensors"):
            if (path / name).is_file():
                return _load_path(path / name, weights, which)
        raise ReprsimError(
            f"model {which}: the folder {path} is not a model (no config.json of a Hugging Face model "
            "and no model.safetensors / last.safetensors of a reprsim checkpoint)."
        )
    if weights is not None:
        raise ReprsimError(
            f"model {which}: weights= is for MODULE:CALLABLE factories; {path} is a model file with its own weights."
        )
    if path.suffix == ".safetensors":
        return _load_checkpoint(path, which)
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch deprecates jit; loading still works
                module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # a corrupt archive: one line
            raise ReprsimError(f"model {which}: cannot load the TorchScript file {path}: {exc}") from exc
        return ModelRef(module.eval(), f"TorchScript {path.name}", "any", None, True, str(path))
    if path.suffix in _SCRIPT_SUFFIXES or path.suffix == ".bin":
        raise ReprsimError(
            f"model {which}: {path} is not a TorchScript file; if it holds a state dict, pass the "
            f"architecture as MODULE:CALLABLE and this file as its weights (weights_{which.lower()}=..., "
            f"--weights-{which.lower()})."
        )
    raise ReprsimError(f"model {which}: {path} is not a model; {_what_models_are()}.")


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip holding ``<name>/code/`` and ``<name>/constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)


def _load_hf(path: Path, which: str, dtype: torch.dtype | None = None) -> ModelRef:
    try:
        import transformers  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ReprsimError(
            f"model {which}: {path} is a Hugging Face model; install the 'transformers' extra: "
            "pip install 'reprsim[hf]'."
        ) from exc
    from reprsim.models.adapters import detect_hf_task, load_hf_model

    task = detect_hf_task(path)
    try:
        module = load_hf_model(path, task=task, **({"dtype": dtype} if dtype is not None else {}))
    except (OSError, ValueError, KeyError) as exc:
        raise ReprsimError(
            f"model {which}: cannot load the Hugging Face model in {path} as {task}: {str(exc).splitlines()[0]}"
        ) from exc
    arch = type(module.hf).__name__
    tokenizer = _load_tokenizer(path) if task not in ("image-classification", "image-base") else None
    return ModelRef(module.eval(), f"{arch} ({path.name})", _kind_of(module), tokenizer, False, str(path))


def _load_tokenizer(path: Path) -> Any:
    """The tokenizer saved beside a text model, or None when the folder has none."""
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model")
    if not any((path / n).is_file() for n in names):
        return None
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ReprsimError(f"cannot load the tokenizer saved in {path}: {str(exc).splitlines()[0]}") from exc
    return tok


# ---------------------------------------------------------------------------------------------
# reprsim checkpoints
# ---------------------------------------------------------------------------------------------
def _load_checkpoint(path: Path, which: str) -> ModelRef:
    from reprsim.models import build
    from reprsim.training.checkpoint import model_fingerprint

    state, meta = read_state_dict(path, what=f"model {which}")
    if meta is None:
        raise ReprsimError(
            f"model {which}: {path} holds bare weights without an architecture; pass the architecture "
            f"as MODULE:CALLABLE and this file as its weights (weights_{which.lower()}=..., "
            f"--weights-{which.lower()})."
        )
    fingerprint = str(meta.get("fingerprint", ""))
    spec = meta.get("model")
    if isinstance(spec, dict) and "name" in spec:
        name, options = str(spec["name"]), dict(spec.get("options", {}))
    else:
        name, options = _infer_zoo(fingerprint.split(":")[0], state, path, which)
    try:
        module = build(name, **options)
    except (ValueError, TypeError) as exc:
        raise ReprsimError(f"model {which}: cannot rebuild the {name} of {path}: {exc}") from exc
    if fingerprint and model_fingerprint(module) != fingerprint:
        raise ReprsimError(
            f"model {which}: the architecture rebuilt for {path} ({name}) does not match the checkpoint's "
            f"fingerprint {fingerprint}; pass the architecture as MODULE:CALLABLE with this file as "
            "its weights."
        )
    _load_state(module, state, str(path), which)
    epochs = meta.get("epoch")
    label = f"{type(module).__name__} ({path.parent.name}/{path.name}" + (f", {epochs} epochs)" if epochs else ")")
    return ModelRef(module.eval(), label, "any", None, False, str(path))


def _infer_zoo(cls: str, state: dict[str, torch.Tensor], path: Path, which: str) -> tuple[str, dict[str, Any]]:
    """Zoo name and build options of a checkpoint whose metadata does not record them.

    The zoo's MLP, CNN and ResNet are determined by their tensor shapes (the result is verified
    against the checkpoint's fingerprint); ViT and GPT are not (their head counts do not show
    in the shapes), so they need a factory.
    """

    def shape(key: str) -> tuple[int, ...]:
        return tuple(state[key].shape)

    norm = "normalize.mean" in state
    channels = shape("normalize.mean")[0] if norm else None
    try:
        if cls == "ResNet":
            conv = shape("stem.0.weight")
            depth = {2: 18, 3: 34}.get(len({k.split(".")[1] for k in state if k.startswith("layer1.")}))
            if depth is None:
                raise KeyError("layer1")
            return "resnet", {
                "input_shape": (conv[1], 32, 32),
                "num_classes": shape("head.weight")[0],
                "depth": depth,
                "width": conv[0] / 64,
                "stem": "cifar" if conv[2] == 3 else "imagenet",
                "normalization": "default" if norm else None,
            }
        if cls == "CNN":
            blocks = sorted({int(k.split(".")[0][5:]) for k in state if re.match(r"block\d+\.", k)})
            convs = [[k for k in state if k.startswith(f"block{b}.") and state[k].dim() == 4] for b in blocks]
            c_out = [state[c[0]].shape[0] for c in convs]
            first = sorted(convs[0], key=lambda k: int(k.split(".")[1]))[0]
            side = 2 ** max(5, len(blocks))
            last_conv = max(int(k.split(".")[1]) for k in convs[0])
            bn_after = min(
                int(k.split(".")[1])
                for k in state
                if k.startswith("block1.") and k.endswith("running_mean") and int(k.split(".")[1]) > last_conv
            )
            return "cnn", {
                "input_shape": (state[first].shape[1], side, side),
                "num_classes": shape("head.weight")[0],
                "channels": tuple(c_out),
                "convs_per_block": len(convs[0]),
                "penultimate_width": shape("penultimate.0.weight")[0],
                "pool_before_norm": bn_after == last_conv + 2,  # conv, pool, BN, ReLU
                "normalization": "default" if norm else None,
            }
        if cls == "MLP":
            hidden = [
                shape(f"hidden.{i}.0.weight")[0]
                for i in range(len({k.split(".")[1] for k in state if k.startswith("hidden.")}))
            ]
            hidden.append(shape("penultimate.0.weight")[0])
            d_in = shape("hidden.0.0.weight")[1] if len(hidden) > 1 else shape("penultimate.0.weight")[1]
            if channels:
                s = math.isqrt(d_in // channels)
                input_shape: tuple[int, ...] = (
                    (channels, s, s) if s * s * channels == d_in else (channels, d_in // channels, 1)
                )
            else:
                input_shape = (d_in,)
            return "mlp", {
                "input_shape": input_shape,
                "num_classes": shape("head.weight")[0],
                "hidden": tuple(hidden),
                "normalization": "default" if norm else None,
            }
    except (KeyError, IndexError, ValueError) as exc:
        raise ReprsimError(
            f"model {which}: cannot work out the {cls} architecture of {path} from its tensors "
            f"({exc}); pass it as MODULE:CALLABLE with this file as its weights."
        ) from exc
    raise ReprsimError(
        f"model {which}: {path} is a reprsim checkpoint of a {cls or 'model'} whose architecture it does not "
        "record; pass the architecture as MODULE:CALLABLE (e.g. a function returning "
        "reprsim.models.build(...)) with this file as its weights."
    )


# ---------------------------------------------------------------------------------------------
# factories and weights
# ---------------------------------------------------------------------------------------------
def _load_factory(text: str, weights: Any, which: str) -> ModelRef:
    module_name, attr = text.split(":", 1)
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()  # a module written moments ago must be found
    try:
        mod = importlib.import_module(module_name)
    except ImportError as exc:
        raise ReprsimError(
            f"model {which}: cannot import {module_name!r} for {text!r} ({exc}); the current folder "
            f"({cwd}) is importable, check the spelling or PYTHONPATH."
        ) from exc
    except (Exception, SystemExit) as exc:  # the module's own code failed (or exited) while importing
        raise ReprsimError(f"model {which}: importing {module_name!r} for {text!r} failed: {_raised(exc)}") from None
    finally:
        if added:
            sys.path.remove(cwd)
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ReprsimError(f"model {which}: {module_name!r} has no attribute {attr!r} (from {text!r}).")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ReprsimError(f"model {which}: {text!r} is not callable; name a function or class returning an nn.Module.")
    try:
        model = obj()
    except (Exception, SystemExit) as exc:  # its own code: report it in one line, never exit silently
        raise ReprsimError(
            f"model {which}: {text}() failed: {_raised(exc)}; it must build and return an nn.Module"
        ) from None
    if not isinstance(model, nn.Module):
        raise ReprsimError(f"model {which}: {text}() returned a {type(model).__name__}, not a torch.nn.Module.")
    label = text
    if weights is not None:
        load_weights(model, weights, which=which)
        label = f"{text} + {Path(str(weights)).name}"
    return ModelRef(model.eval(), label, _kind_of(model), None, is_scripted(model), text)


def _raised(exc: BaseException) -> str:
    """One line for an exception raised by user code (``SystemExit`` says it tried to exit)."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) (raised SystemExit)"
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_weights(model: nn.Module, weights: str | Path, *, which: str = "A") -> None:
    """Load a weights file into ``model`` (strict: every key must match).

    ``.safetensors`` (plain, or a reprsim checkpoint, whose fingerprint is checked) or a file
    saved with ``torch.save`` holding a state dict (or a dict with a ``state_dict`` / ``model``
    entry); the latter is read with ``torch.load(weights_only=True)``, so no code runs. A
    ``module.`` prefix (``DataParallel``) is removed.
    """
    path = Path(str(weights)).expanduser()
    state, meta = read_state_dict(path, what=f"model {which}: weights")
    if meta and meta.get("fingerprint"):
        from reprsim.training.checkpoint import model_fingerprint

        if model_fingerprint(model) != meta["fingerprint"]:
            raise ReprsimError(
                f"model {which}: {path} was written for a different architecture "
                f"({meta['fingerprint']}) than the factory builds ({model_fingerprint(model)}); "
                "check the factory's options (widths, classes, depth)."
            )
    _load_state(model, state, str(path), which)


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], where: str, which: str) -> None:
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        raise ReprsimError(f"model {which}: the weights in {where} do not fit {type(model).__name__}: {problem}.")
    model.load_state_dict(state, strict=True)
