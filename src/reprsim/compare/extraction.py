"""Layer names and feature extraction for ``compare_models``: each model is run once over the
probe set and every requested layer is read in that one pass.

Layer names: the public names of :func:`reprsim.models.layers` (zoo and wrapped models, e.g.
``layer3``, ``blocks.2``), ``penultimate`` (the input of the classification / LM head, or the
last hidden state of an encoder), ``output`` (the model's output), or any module path of the
model's ``named_modules()`` (``body``, ``encoder.layer.3``; ``":input"`` reads a module's input).
For a wrapped Hugging Face model, the paths of the Hugging Face model itself work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from reprsim.compare.inputs import Probe
from reprsim.compare.references import ModelRef
from reprsim.errors import ReprsimError

__all__ = [
    "OUTPUT",
    "available_layers",
    "expected_input",
    "model_features",
    "output_distributions",
    "resolve_layers",
    "tokenize",
]

#: The layer name of a model's output (the only one a TorchScript model offers).
OUTPUT = "output"
PENULTIMATE = "penultimate"


def _script_error(ref: ModelRef, which: str, name: str) -> ReprsimError:
    return ReprsimError(
        f"model {which} ({ref.label}) is TorchScript: PyTorch does not support forward hooks on loaded "
        f"ScriptModules, so only its output can be compared (layers='{OUTPUT}'), not layer {name!r}. To compare "
        "inner layers, pass the model as MODULE:CALLABLE (a factory that builds it in Python) with its weights "
        f"(weights_{which.lower()}=... / --weights-{which.lower()})."
    )


def _user_paths(module: nn.Module) -> list[str]:
    """Module paths as the user knows them (a wrapper's prefix removed)."""
    prefix = getattr(module, "module_prefix", "")
    paths = [n for n, _ in module.named_modules() if n]
    if prefix:
        paths = [n[len(prefix) :] for n in paths if n.startswith(prefix)]
    return paths


def _generic_layers(module: nn.Module) -> list[str]:
    """Top-level children (containers expanded one level) and ``penultimate`` when it exists."""
    names: list[str] = []
    for name, child in module.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 0:
            names.extend(f"{name}.{i}" for i in range(len(child)))
        else:
            names.append(name)
    if any(isinstance(m, nn.Linear) for m in module.modules()):
        names.append(PENULTIMATE)
    return names


def available_layers(ref: ModelRef, sample: Callable[[nn.Module], Any] | None = None) -> list[str]:
    """Every layer name of ``layers="all"`` for one model, in forward order where known.

    Zoo and wrapped models list their public names. Other modules list their top-level children
    (``nn.Sequential`` / ``nn.ModuleList`` expanded into their elements) plus ``penultimate``;
    with ``sample`` (a function running the model on a few inputs) only modules that are
    called and return a tensor are kept, in the order they run. TorchScript: ``["output"]``.
    """
    from reprsim.models import layers as public_layers

    module = ref.module
    if ref.scripted:
        return [OUTPUT]
    if getattr(module, "reprsim_layers", None):
        return public_layers(module)
    names = _generic_layers(module)
    if sample is None:
        return names
    modules = dict(module.named_modules())
    order: list[str] = []

    def hook_for(name: str) -> Any:
        def hook(_m: nn.Module, _args: Any, out: Any) -> None:
            if name not in order and (
                isinstance(out, Tensor)
                or getattr(out, "last_hidden_state", None) is not None
                or (isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor))
            ):
                order.append(name)

        return hook

    handles = [modules[n].register_forward_hook(hook_for(n)) for n in names if n in modules]
    try:
        sample(module)
    finally:
        for h in handles:
            h.remove()
    return order + ([PENULTIMATE] if PENULTIMATE in names else [])


def _resolve_one(ref: ModelRef, name: Any, which: str) -> str:
    """The name to hand to :func:`reprsim.features.extract` for the user's layer ``name``."""
    from reprsim.models import layers as public_layers
    from reprsim.models import resolve_layer

    if not isinstance(name, str) or not name:
        raise ReprsimError(f"model {which}: layer names must be non-empty strings; got {name!r}.")
    if ref.scripted:
        if name != OUTPUT:
            raise _script_error(ref, which, name)
        return OUTPUT
    module = ref.module
    if name == OUTPUT:
        return ""
    public = public_layers(module)
    if name in public or name == PENULTIMATE:
        try:
            resolve_layer(module, name)
        except ValueError as exc:
            raise ReprsimError(f"model {which} ({ref.label}): {exc}") from exc
        return name
    bare = name.removesuffix(":input")
    modules = dict(module.named_modules())
    if bare in modules:
        return name
    prefix = getattr(module, "module_prefix", "")
    if prefix and prefix + bare in modules:
        return prefix + name
    sample = [p for p in _user_paths(module)][:10]
    raise ReprsimError(
        f"model {which} ({ref.label}) has no layer {name!r}; available layers: {', '.join(public) or '(none named)'}, "
        f"'{OUTPUT}', or any module path of named_modules() such as {', '.join(sample)} (append ':input' to read a "
        "module's input)."
    )


def resolve_layers(
    ref: ModelRef, spec: Any, which: str, sample: Callable[[nn.Module], Any] | None = None
) -> dict[str, str]:
    """``{layer name as shown: name for extract}`` for one model's layer spec (a name, a list or "all")."""
    if spec == "all":
        names: Sequence[Any] = available_layers(ref, sample)
    elif isinstance(spec, str):
        names = [spec]
    elif isinstance(spec, (list, tuple)):
        names = list(spec)
    else:
        raise ReprsimError(f"layers must be a layer name, a list of names or 'all'; got {type(spec).__name__}.")
    if not names:
        raise ReprsimError(f"model {which}: the list of layers is empty.")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if list(names).count(n) > 1})
        raise ReprsimError(f"model {which}: layers {dup} are listed twice.")
    return {str(n): _resolve_one(ref, n, which) for n in names}


# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------
def _max_length(module: nn.Module) -> int | None:
    for obj in (getattr(module, "config", None), getattr(getattr(module, "hf", None), "config", None), module):
        for attr in ("max_position_embeddings", "n_positions", "block_size"):
            v = getattr(obj, attr, None)
            if isinstance(v, int) and v > 0:
                return v
    return None


def tokenize(texts: list[str], tokenizer: Any, module: nn.Module, which: str) -> dict[str, Tensor]:
    """Token ids (N, T) and attention mask (N, T), right-padded, truncated to the model's context.

    ``tokenizer``: a Hugging Face tokenizer, ``"bytes"`` (UTF-8 bytes, as reprsim's byte-level
    GPTs use) or a callable ``texts -> {"input_ids", "attention_mask"}``.
    """
    limit = _max_length(module)
    if tokenizer == "bytes":
        from reprsim.data.text import encode

        seqs = [encode(t)[:limit] if limit else encode(t) for t in texts]
        T = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), T, dtype=torch.long)
        mask = torch.zeros(len(seqs), T, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.from_numpy(s.astype(np.int64))
            mask[i, : len(s)] = 1
        return {"input_ids": ids, "attention_mask": mask}
    if hasattr(tokenizer, "pad_token") and hasattr(tokenizer, "padding_side"):
        if tokenizer.pad_token is None:
            if getattr(tokenizer, "eos_token", None) is None:
                raise ReprsimError(
                    f"model {which}: its tokenizer has neither a pad nor an eos token to pad a batch "
                    "with; set tokenizer.pad_token."
                )
            tokenizer.pad_token = tokenizer.eos_token  # padded positions are masked out anyway
        side = tokenizer.padding_side
        tokenizer.padding_side = "right"
        try:
            enc = tokenizer(texts, padding=True, truncation=limit is not None, max_length=limit, return_tensors="pt")
        finally:
            tokenizer.padding_side = side
        out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        return out
    if callable(tokenizer):
        enc = tokenizer(texts)
        if not isinstance(enc, dict) or "input_ids" not in enc:
            raise ReprsimError(
                f"model {which}: the tokenizer callable must return a dict with 'input_ids' (and 'attention_mask')."
            )
        return {k: torch.as_tensor(v) for k, v in enc.items()}
    raise ReprsimError(
        f"model {which}: tokenizer must be a Hugging Face tokenizer, 'bytes' or a callable; "
        f"got {type(tokenizer).__name__}."
    )


# ---------------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------------
def expected_input(module: nn.Module) -> str:
    """A short description of the inputs a model expects (best effort, for error messages)."""
    shape = getattr(module, "input_shape", None)
    if isinstance(shape, tuple) and shape:
        return "(N, " + ", ".join("any" if s is None else str(s) for s in shape) + ")"
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return f"images (N, {m.in_channels}, H, W)"
        if isinstance(m, nn.Embedding):
            return "token ids (N, T)"
        if isinstance(m, nn.Linear):
            return f"(N, {m.in_features}) vectors (or inputs that flatten to {m.in_features} values)"
    return "inputs its forward accepts"


def model_inputs(ref: ModelRef, probe: Probe, tokenizer: Any, which: str) -> Any:
    """What the model is fed: the probe's tensor, or for texts the tokenized mapping."""
    if probe.is_text:
        if ref.kind == "image":
            raise ReprsimError(f"model {which} ({ref.label}) is an image model but the inputs are texts.")
        tok = ref.tokenizer if ref.tokenizer is not None else tokenizer
        if tok is None:
            raise ReprsimError(
                f"model {which} ({ref.label}) has no tokenizer for the texts: pass tokenizer= (a Hugging "
                "Face tokenizer, or 'bytes' for reprsim's byte-level GPTs), or token ids as inputs."
            )
        return tokenize(probe.texts, tok, ref.module, which)  # type: ignore[arg-type]
    data = probe.data
    if ref.kind == "text" and data is not None and data.is_floating_point():
        raise ReprsimError(
            f"model {which} ({ref.label}) is a text model: pass texts or integer token ids (N, T); got "
            f"float inputs of shape {tuple(data.shape)}."
        )
    return data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _batch(inputs: Tensor, start: int, batch_size: int) -> Tensor:
    """Rows ``start .. start + batch_size`` as the model takes them: uint8 images (n, C, H, W) scaled
    to [0, 1] floats, float64 cast to float32, anything else (token ids) as it is."""
    xb = inputs[start : start + batch_size]
    if xb.dtype == torch.uint8 and xb.dim() == 4:
        return xb.float() / 255.0
    return xb.float() if xb.dtype == torch.float64 else xb


def _output_features(
    module: nn.Module, inputs: Any, batch_size: int, pool: Any, device: str | torch.device | None
) -> np.ndarray:
    """The pooled output of a model that takes no hooks (TorchScript), shape (N, d)."""
    from reprsim.features import pool_features

    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module.to(dev).eval()
    mask = None
    if isinstance(inputs, dict):
        mask = inputs.get("attention_mask")
        inputs = inputs["input_ids"]
    rows = []
    try:
        with torch.no_grad():
            for start in range(0, inputs.shape[0], batch_size):
                out = module(_batch(inputs, start, batch_size).to(dev))
                if not isinstance(out, Tensor):
                    out = out[0] if isinstance(out, (tuple, list)) else out
                mb = None if mask is None else mask[start : start + batch_size].to(dev)
                rows.append(pool_features(out, pool, mb).float().cpu().numpy())
    finally:
        module.to("cpu")
    return np.concatenate(rows)


def _logits(out: Any) -> Tensor:
    """The logits tensor of a model's output (a tensor, a Hugging Face output with ``.logits``, or a
    tuple whose first item is the tensor)."""
    if isinstance(out, Tensor):
        return out
    if getattr(out, "logits", None) is not None:
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise ReprsimError(
        f"the model's output is a {type(out).__name__}, not logits; behavioural measures need a "
        "classifier's (N, C) or a language model's (N, T, V) logits."
    )


def output_distributions(
    ref: ModelRef, inputs: Any, *, which: str, batch_size: int = 256, device: str | torch.device | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's output distributions on the inputs, for behavioural measures.

    A classifier ((N, C) logits): the softmax, shape (N, C), and no labels. A language model on
    token ids ((N, T, V) logits): the next-token distribution at every position that has a real
    next token (attention mask), all positions of all windows flattened in order, shape (M, V),
    with the next tokens (M,) as labels. Returns ``(probs float64, labels or None)``.
    """
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ids = inputs["input_ids"] if isinstance(inputs, dict) else inputs
    mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
    probs, nexts = [], []
    was = ref.module.training
    ref.module.to(dev).eval()
    try:
        with torch.no_grad():
            for start in range(0, ids.shape[0], batch_size):
                xb = _batch(ids, start, batch_size)
                z = _logits(ref.module(xb.to(dev))).float().cpu()
                if z.dim() == 2:
                    probs.append(torch.softmax(z.double(), dim=1).numpy())
                    continue
                if z.dim() != 3 or xb.dim() != 2 or xb.is_floating_point():
                    raise ReprsimError(
                        f"model {which} ({ref.label}) gives outputs of shape {tuple(z.shape)}; behavioural "
                        "measures need (N, C) class logits or (N, T, V) next-token logits on token ids."
                    )
                real = (
                    torch.ones_like(xb, dtype=torch.bool) if mask is None else mask[start : start + batch_size].bool()
                )
                keep = real[:, 1:] & real[:, :-1]  # position t predicts token t + 1, both real
                probs.append(torch.softmax(z[:, :-1][keep].double(), dim=-1).numpy())
                nexts.append(xb[:, 1:][keep].numpy().astype(np.int64))
    except ReprsimError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ReprsimError(
            f"model {which} ({ref.label}) cannot take the inputs for its output distributions: "
            f"{_first_line(exc)} (it expects {expected_input(ref.module)})."
        ) from exc
    finally:
        ref.module.to("cpu").train(was)
    return np.concatenate(probs), (np.concatenate(nexts) if nexts else None)


def model_features(
    ref: ModelRef,
    inputs: Any,
    names: dict[str, str],
    *,
    which: str,
    batch_size: int = 256,
    pool: Any = "avg",
    device: str | torch.device | None = None,
    progress: bool | None = False,
) -> dict[str, np.ndarray]:
    """``{layer: float32 (N, d)}`` for every requested layer of one model, in one pass over the inputs.

    Raises:
        ReprsimError: the model cannot take the inputs (names the model and what it expects), or a
            layer gives non-finite features.
    """
    from reprsim.features import extract

    shape = tuple((inputs["input_ids"] if isinstance(inputs, dict) else inputs).shape)
    try:
        if ref.scripted:
            feats = {OUTPUT: _output_features(ref.module, inputs, batch_size, pool, device)}
        else:
            raw = extract(
                ref.module,
                inputs,
                layers=list(names.values()),
                batch_size=batch_size,
                pool=pool,
                device=device,
                progress=progress,
                desc=f"features of {which}",
            )
            feats = {shown: raw[name] for shown, name in names.items()}
    except ReprsimError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as exc:
        raise ReprsimError(
            f"model {which} ({ref.label}) cannot take the inputs of shape {shape}: {_first_line(exc)} "
            f"(it expects {expected_input(ref.module)})."
        ) from exc
    for layer, f in feats.items():
        if not np.isfinite(f).all():
            bad = int((~np.isfinite(f)).any(axis=1).sum())
            raise ReprsimError(
                f"model {which} layer {layer!r} gives NaN/inf features for {bad} of {f.shape[0]} inputs; "
                "check the model and its inputs."
            )
    return feats


def sampler(inputs: Any, n: int = 2, which: str = "A", label: str | None = None) -> Callable[[nn.Module], Any]:
    """A function running a model on the first ``n`` inputs: lists the layers that run, and checks
    early (on two inputs, before the long pass) that the model takes the inputs at all."""
    first = inputs["input_ids"] if isinstance(inputs, dict) else inputs
    shape = tuple(first.shape)

    def run(module: nn.Module) -> Any:
        was = module.training
        module.eval()
        try:
            with torch.no_grad():
                if isinstance(inputs, dict):
                    ids = inputs["input_ids"][:n]
                    try:
                        return module(ids, attention_mask=inputs["attention_mask"][:n])
                    except TypeError:
                        return module(ids)
                x = inputs[:n]
                if x.dtype == torch.uint8 and x.dim() == 4:
                    x = x.float() / 255.0
                elif x.dtype == torch.float64:
                    x = x.float()
                return module(x)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            named = f"model {which}" + (f" ({label})" if label else "")
            raise ReprsimError(
                f"{named} cannot take the inputs of shape {shape}: {_first_line(exc)} "
                f"(it expects {expected_input(module)})."
            ) from exc
        finally:
            module.train(was)

    return run
