"""Adapters that give user models reprsim's layer names (and optional pixel normalisation).

* :class:`NamedLayers` wraps any ``torch.nn.Module``; the user names the layers to read.
* :class:`HFModel` (text: causal LMs, sequence classifiers, encoders) and
  :class:`HFVisionModel` (image classifiers and vision encoders) wrap a Hugging Face
  ``transformers`` model; :func:`load_hf_model` loads one from a local directory (never from the
  hub), :func:`detect_hf_task` says which kind a directory holds. ``transformers`` is an optional
  dependency (extra ``[hf]``); it is imported only when these are used.

Wrapped models behave like zoo models: ``reprsim.models.layers``, ``default_layer``,
``input_normalization``, ``reprsim.train.train`` and ``reprsim.features.extract`` all work.
Each wrapper records in ``module_prefix`` where the wrapped module sits (``"model."``, ``"hf."``),
so a path of the user's own ``named_modules()`` can be found inside the wrapper.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from reprsim.models.common import Normalize

__all__ = ["NamedLayers", "HFModel", "HFVisionModel", "detect_hf_task", "load_hf_model"]


def _check_path(module: nn.Module, path: str, what: str) -> None:
    modules = dict(module.named_modules())
    bare = path.removesuffix(":input")
    if bare not in modules:
        sample = [n for n in modules if n][:12]
        raise ValueError(
            f"{what}: {path!r} is not a sub-module of {type(module).__name__}; "
            f"paths look like {sample} (see model.named_modules()); append ':input' to read a module's input."
        )


def _last_linear(module: nn.Module) -> str | None:
    linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear) and n]
    return linears[-1] if linears else None


class NamedLayers(nn.Module):
    """Wrap any module so its representations can be read by name.

    Args:
        module: the user's model; ``forward`` arguments are passed through unchanged (after
            ``normalize`` on the first argument when ``normalization`` is given).
        layers: either a mapping ``{public_name: module_path}`` or a list of module paths
            (used as their own names). A path ending in ``":input"`` reads the module's input.
        default: the public name (or path) of the default representation. When omitted:
            ``"penultimate"`` if named, else the input of the last ``nn.Linear`` of ``module``.
            The default is always reachable as ``"penultimate"``.
        normalization: optional ``(mean, std)`` per channel, for a model that expects
            normalised images, so that the wrapper takes pixels in [0, 1].

    Returns from ``forward``: whatever ``module`` returns.
    """

    def __init__(
        self,
        module: nn.Module,
        layers: Mapping[str, str] | Sequence[str],
        default: str | None = None,
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"NamedLayers: module must be a torch.nn.Module, got {type(module).__name__}.")
        mapping = dict(layers) if isinstance(layers, Mapping) else {str(p): str(p) for p in layers}
        if not mapping:
            raise ValueError("NamedLayers: name at least one layer, e.g. layers={'penultimate': 'fc:input'}.")
        for name, path in mapping.items():
            _check_path(module, path, f"NamedLayers layer {name!r}")
        self.normalize: nn.Module = Normalize(*normalization) if normalization is not None else nn.Identity()
        self.model = module
        if default is None:
            if "penultimate" in mapping:
                default_path = mapping["penultimate"]
            else:
                last = _last_linear(module)
                if last is None:
                    raise ValueError("NamedLayers: module has no nn.Linear head; pass default=<layer name>.")
                default_path = f"{last}:input"
        else:
            default_path = mapping.get(default, default)
            _check_path(module, default_path, "NamedLayers default")
        mapping.setdefault("penultimate", default_path)
        if mapping["penultimate"] != default_path:
            raise ValueError("NamedLayers: 'penultimate' names a different layer than default; drop one of them.")
        self.reprsim_layers = {name: f"model.{path}" for name, path in mapping.items()}
        self.reprsim_default_layer = "penultimate"
        self.module_prefix = "model."

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """Return ``module(normalize(x), *args, **kwargs)``."""
        return self.model(self.normalize(x), *args, **kwargs)


_TASKS = ("causal-lm", "sequence-classification", "base")
_VISION_TASKS = ("image-classification", "image-base")


def _find_blocks(hf: nn.Module) -> tuple[str, int]:
    n_layers = getattr(getattr(hf, "config", None), "num_hidden_layers", None)
    best: tuple[str, int] | None = None
    for name, m in hf.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) > 0:
            if len(m) == n_layers:
                return name, len(m)
            if best is None or len(m) > best[1]:
                best = (name, len(m))
    if best is None:
        raise ValueError(f"HFModel: could not find the transformer blocks of {type(hf).__name__}.")
    return best


class HFModel(nn.Module):
    """A Hugging Face ``transformers`` model with reprsim's interface.

    ``forward(input_ids=None, *, inputs_embeds=None, attention_mask=None)`` returns a plain
    tensor: logits (B, T, vocab) for ``task="causal-lm"``, (B, num_labels) for
    ``"sequence-classification"``, or the last hidden state (B, T, D) for ``"base"``.
    Layers: ``embed`` (input embeddings), ``blocks.<i>`` (each transformer block), and
    ``penultimate`` (the input of the LM / classification head, i.e. the hidden states after
    the final norm; for ``"base"`` the last hidden state).
    """

    def __init__(self, hf_model: nn.Module, task: str = "causal-lm") -> None:
        super().__init__()
        if task not in _TASKS:
            raise ValueError(f"HFModel: task must be one of {_TASKS}, got {task!r}.")
        self.task = task
        self.hf = hf_model
        names = {id(m): n for n, m in hf_model.named_modules()}
        layers: dict[str, str] = {}
        emb = hf_model.get_input_embeddings()
        if emb is not None and id(emb) in names:
            layers["embed"] = f"hf.{names[id(emb)]}"
        block_path, n_blocks = _find_blocks(hf_model)
        layers.update({f"blocks.{i}": f"hf.{block_path}.{i}" for i in range(n_blocks)})
        if task == "causal-lm":
            head = hf_model.get_output_embeddings()
            if head is None or id(head) not in names:
                raise ValueError(
                    f"HFModel: {type(hf_model).__name__} has no output embedding (LM head); use task='base'."
                )
            layers["penultimate"] = f"hf.{names[id(head)]}:input"
        elif task == "sequence-classification":
            heads = [n for n in ("score", "classifier") if isinstance(getattr(hf_model, n, None), nn.Module)]
            head_name = heads[0] if heads else None
            if head_name is None:
                raise ValueError(
                    f"HFModel: cannot find the classification head ('score' or 'classifier') "
                    f"of {type(hf_model).__name__}."
                )
            layers["penultimate"] = f"hf.{head_name}:input"
        else:
            layers["penultimate"] = "hf"
        layers["logits"] = "hf"
        self.reprsim_layers = layers
        self.reprsim_default_layer = "penultimate"
        self.module_prefix = "hf."

    @property
    def config(self) -> Any:
        """The wrapped model's ``transformers`` config."""
        return self.hf.config

    def get_input_embeddings(self) -> nn.Module:
        """Return the token embedding module (weight shape (vocab_size, hidden_size))."""
        return self.hf.get_input_embeddings()

    def forward(
        self,
        input_ids: Tensor | None = None,
        *,
        inputs_embeds: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """Return logits (see the class docstring); pass exactly one of input_ids / inputs_embeds."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("HFModel.forward: pass exactly one of input_ids or inputs_embeds.")
        kwargs: dict[str, Any] = {"attention_mask": attention_mask, "return_dict": True}
        if input_ids is not None:
            kwargs["input_ids"] = input_ids.long()
        else:
            kwargs["inputs_embeds"] = inputs_embeds
        if self.task == "causal-lm":
            kwargs["use_cache"] = False
        out = self.hf(**kwargs)
        return out.last_hidden_state if self.task == "base" else out.logits


class HFVisionModel(nn.Module):
    """A Hugging Face vision model (image classifier or encoder) with reprsim's interface.

    ``forward(pixels)`` takes images (N, C, H, W) with values in [0, 1], applies the model's own
    input normalisation (``normalization``, e.g. from ``preprocessor_config.json``) and returns
    logits (N, num_labels) for ``task="image-classification"``, or the last hidden state for
    ``"image-base"`` ((N, T, D) for a ViT, (N, C, h, w) for a conv net).
    ``resize_to=(H, W)`` resizes every batch bilinearly to the model's resolution first and
    ``grey_to_rgb=True`` repeats a single channel three times (a sweep of Fashion-MNIST through an
    ImageNet model); both are part of ``forward``, so gradients (attacks) reach the original pixels.
    Layers: ``embed`` (patch / stem embeddings when the model names them), ``blocks.<i>`` (each
    transformer block or conv stage), ``penultimate`` (classifier: the input of the last linear
    layer, i.e. the pooled features the head reads; encoder: the last hidden state) and, for a
    classifier, ``logits``.
    """

    def __init__(
        self,
        hf_model: nn.Module,
        task: str = "image-classification",
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
        resize_to: tuple[int, int] | None = None,
        grey_to_rgb: bool = False,
    ) -> None:
        super().__init__()
        self.resize_to = None if resize_to is None else (int(resize_to[0]), int(resize_to[1]))
        self.grey_to_rgb = grey_to_rgb
        if task not in _VISION_TASKS:
            raise ValueError(f"HFVisionModel: task must be one of {_VISION_TASKS}, got {task!r}.")
        self.task = task
        self.normalize: nn.Module = Normalize(*normalization) if normalization is not None else nn.Identity()
        self.hf = hf_model
        config = getattr(hf_model, "config", None)
        channels = getattr(config, "num_channels", None)
        size = getattr(config, "image_size", None)
        if isinstance(size, (list, tuple)):
            size = tuple(int(v) for v in size[:2])
        elif isinstance(size, int):
            size = (size, size)
        #: what forward expects after the batch axis: (C, H, W), with None where any size works
        self.input_shape: tuple[int | None, ...] = (channels, *(size or (None, None)))
        layers: dict[str, str] = {}
        embed = next((n for n, _ in hf_model.named_modules() if n.split(".")[-1] in ("embeddings", "embedder")), None)
        if embed is not None:
            layers["embed"] = f"hf.{embed}"
        try:
            block_path, n_blocks = _find_blocks(hf_model)
            layers.update({f"blocks.{i}": f"hf.{block_path}.{i}" for i in range(n_blocks)})
        except ValueError:
            pass
        if task == "image-classification":
            head = _last_linear(hf_model)
            if head is None:
                raise ValueError(
                    f"HFVisionModel: {type(hf_model).__name__} has no linear classification head; "
                    "use task='image-base'."
                )
            layers["penultimate"] = f"hf.{head}:input"
            layers["logits"] = "hf"
        else:
            layers["penultimate"] = "hf"
        self.reprsim_layers = layers
        self.reprsim_default_layer = "penultimate"
        self.module_prefix = "hf."

    @property
    def config(self) -> Any:
        """The wrapped model's ``transformers`` config."""
        return self.hf.config

    def forward(self, pixels: Tensor) -> Tensor:
        """Return logits (N, num_labels) or the last hidden state (see the class docstring)."""
        if self.grey_to_rgb and pixels.dim() == 4 and pixels.shape[1] == 1 and self.input_shape[0] == 3:
            pixels = pixels.expand(-1, 3, -1, -1)
        if self.resize_to is not None and pixels.dim() == 4 and tuple(pixels.shape[2:]) != self.resize_to:
            pixels = F.interpolate(pixels, size=self.resize_to, mode="bilinear", align_corners=False)
        want = self.input_shape
        if pixels.dim() != 4 or any(w is not None and g != w for g, w in zip(pixels.shape[1:], want)):
            shape = "(N, " + ", ".join("any" if w is None else str(w) for w in want) + ")"
            raise ValueError(
                f"{type(self.hf).__name__} expects images {shape} with pixels in [0, 1], got "
                f"{tuple(pixels.shape)}; resize or convert the inputs (e.g. reprsim.data.match_shape)."
            )
        out = self.hf(pixel_values=self.normalize(pixels), return_dict=True)
        return out.logits if self.task == "image-classification" else out.last_hidden_state


def detect_hf_task(path: str | Path) -> str:
    """Which kind of model a ``save_pretrained`` directory holds, from its ``config.json``.

    Returns one of ``"causal-lm"``, ``"sequence-classification"``, ``"base"`` (text encoder),
    ``"image-classification"`` or ``"image-base"`` (vision encoder). Decided by the saved
    architecture name (``...ForCausalLM`` / ``...LMHeadModel``, ``...ForSequenceClassification``,
    ``...ForImageClassification``) and, for bare models, by whether the config describes images
    (``num_channels``).
    """
    file = Path(path) / "config.json"
    if not file.is_file():
        raise ValueError(f"{str(path)!r} is not a local Hugging Face model directory (no config.json).")
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ValueError(f"{file}: cannot read the model config ({type(exc).__name__}: {exc}).") from None
    if not isinstance(config, dict):
        raise ValueError(f"{file}: the model config is not a JSON object.")
    check_no_custom_code(path)
    arch = " ".join(config.get("architectures") or [])
    if "ForCausalLM" in arch or "LMHeadModel" in arch:
        return "causal-lm"
    if "ForSequenceClassification" in arch:
        return "sequence-classification"
    if "ForImageClassification" in arch:
        return "image-classification"
    return "image-base" if "num_channels" in config else "base"


_CONFIG_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")


def check_no_custom_code(path: str | Path) -> None:
    """Raise ConfigError when the Hugging Face folder ``path`` needs its own Python code.

    A config with ``auto_map`` names classes in the folder's ``configuration_*.py`` /
    ``modeling_*.py`` / ``tokenization_*.py``, which ``transformers`` would import (run) with
    ``trust_remote_code=True``. reprsim always loads with ``trust_remote_code=False`` and refuses such
    a folder before anything runs.
    """
    from reprsim.errors import ConfigError

    for name in _CONFIG_FILES:
        file = Path(path) / name
        try:
            cfg = json.loads(file.read_text()) if file.is_file() else None
        except (OSError, ValueError, RecursionError):
            continue  # unreadable configs are reported by the loader that needs them
        if isinstance(cfg, dict) and cfg.get("auto_map"):
            raise ConfigError(
                f"{path}: {name} has auto_map, so the model needs the folder's own Python code "
                f"({', '.join(sorted(map(str, cfg['auto_map'])))}); reprsim never runs code from a "
                "model folder (trust_remote_code=False): use a model type transformers ships"
            )


@contextlib.contextmanager
def refused_pickles(directory: str | Path) -> Iterator[None]:
    """Turn the error of a weights file holding more than plain tensors (a pickle with code, which
    ``torch.load(weights_only=True)`` refuses without running it) into one ReprsimError line."""
    import pickle

    from reprsim.errors import ReprsimError

    try:
        yield
    except pickle.UnpicklingError:
        raise ReprsimError(
            f"{directory}: a weights file (pytorch_model.bin or similar) holds a pickle with more than "
            "tensors; it was refused unread (loading it could run code). Save the model with "
            "safetensors (save_pretrained(..., safe_serialization=True))"
        ) from None


def _preprocessor_normalization(directory: Path) -> tuple[list[float], list[float]] | None:
    """(image_mean, image_std) from ``preprocessor_config.json`` when it normalises, else None."""
    file = directory / "preprocessor_config.json"
    if not file.is_file():
        return None
    cfg = json.loads(file.read_text())
    if not cfg.get("do_normalize", True) or "image_mean" not in cfg or "image_std" not in cfg:
        return None
    return list(cfg["image_mean"]), list(cfg["image_std"])


def load_hf_model(
    path: str | Path,
    task: str = "causal-lm",
    *,
    num_labels: int | None = None,
    **from_pretrained_kwargs: Any,
) -> HFModel | HFVisionModel:
    """Load a ``transformers`` model from a local directory (no hub access) and wrap it.

    Args:
        path: directory written by ``save_pretrained`` (``config.json`` + weights).
        task: "causal-lm" (AutoModelForCausalLM), "sequence-classification"
            (AutoModelForSequenceClassification, set ``num_labels``), "base" (AutoModel, a text
            encoder), "image-classification" (AutoModelForImageClassification), "image-base"
            (AutoModel, a vision encoder) or "auto" (:func:`detect_hf_task`). Image models take
            pixels in [0, 1] and normalise them with ``preprocessor_config.json``'s
            ``image_mean``/``image_std`` when the directory has one.
        num_labels: number of classes for a sequence-classification head.
        **from_pretrained_kwargs: passed to ``from_pretrained`` (e.g. ``dtype``).

    Returns: an :class:`HFModel` (text) or :class:`HFVisionModel` (images), in train mode on CPU.
    """
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_hf_model needs the optional dependency 'transformers': pip install 'reprsim[hf]'."
        ) from exc
    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise ValueError(
            f"load_hf_model: {str(path)!r} is not a local model directory with a config.json; reprsim never "
            "downloads weights. Save the model with model.save_pretrained(dir) and pass that dir."
        )
    check_no_custom_code(directory)
    if task == "auto":
        task = detect_hf_task(directory)
    if task not in _TASKS + _VISION_TASKS:
        raise ValueError(f"load_hf_model: task must be one of {_TASKS + _VISION_TASKS} or 'auto', got {task!r}.")
    auto = {
        "causal-lm": transformers.AutoModelForCausalLM,
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "base": transformers.AutoModel,
        "image-classification": transformers.AutoModelForImageClassification,
        "image-base": transformers.AutoModel,
    }[task]
    kwargs = dict(from_pretrained_kwargs)
    kwargs["local_files_only"] = True
    kwargs["trust_remote_code"] = False  # never run a model folder's own Python
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    with refused_pickles(directory):
        hf_model = auto.from_pretrained(str(directory), **kwargs)
    hf_model.train()
    if task in _VISION_TASKS:
        return HFVisionModel(hf_model, task=task, normalization=_preprocessor_normalization(directory))
    return HFModel(hf_model, task=task)
