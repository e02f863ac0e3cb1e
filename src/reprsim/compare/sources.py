"""Models as researchers have them: PEFT adapter folders, models trained by a reprsim sweep, a
compute dtype and a resize for Hugging Face vision models.

* **PEFT adapter** — a folder written by ``PeftModel.save_pretrained`` (``adapter_config.json`` +
  ``adapter_model.safetensors``). Its base is the local folder named by the config's
  ``base_model_name_or_path`` or the ``base=`` given; the adapter is merged into the base
  (``merge_and_unload``), so the layer names are the base model's.
* **Sweep model** — ``"RUN_DIR:UNIT_ID:a"`` (or ``:b``): the unit's ``status.json`` names the two
  models' cache keys (``artifacts.model_a`` / ``model_b``); the model is rebuilt by the unit's kind
  from the run's ``config.yaml`` and its weights read from ``<cache>/models/<key>.rsv``
  (``cache_dir=``, default ``$REPRSIM_CACHE`` or ``~/.cache/reprsim``).
* **dtype** — ``"float32"``, ``"bfloat16"`` or ``"float16"``: the model's weights are cast, floating
  inputs are cast to it on the way in and floating outputs back to float32, so hooks, features
  and attacks see float32 (features are measured in float32).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from reprsim.compare.references import ModelRef, _kind_of
from reprsim.errors import ReprsimError

__all__ = [
    "DTYPES",
    "apply_dtype",
    "apply_input_size",
    "is_adapter",
    "is_sweep_ref",
    "load_adapter",
    "load_sweep_model",
    "resolve_dtype",
]

#: The compute dtypes a model may be run in.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SWEEP = re.compile(r"^(?P<run>.+):(?P<unit>[^:/\\]+):(?P<side>[ab])$")


# ---------------------------------------------------------------------------------------------
# dtype and input size
# ---------------------------------------------------------------------------------------------
def resolve_dtype(dtype: Any, device: str | torch.device | None) -> torch.dtype | None:
    """``None`` / a name of :data:`DTYPES` / a torch dtype → the torch dtype (None: leave as loaded).

    Raises:
        ValueError: an unknown name, or bfloat16 asked on a CUDA device without bfloat16 support.
    """
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        name = next((k for k, v in DTYPES.items() if v == dtype), None)
    else:
        name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}.")
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "bfloat16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"dtype='bfloat16': the GPU {torch.cuda.get_device_name(dev)} cannot run bfloat16; use "
            "dtype='float16' or 'float32'."
        )
    return DTYPES[name]


def _cast_in(dtype: torch.dtype) -> Any:
    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        cast = tuple(a.to(dtype) if isinstance(a, Tensor) and a.is_floating_point() else a for a in args)
        kw = {
            k: v.to(dtype) if isinstance(v, Tensor) and v.is_floating_point() and k != "attention_mask" else v
            for k, v in kwargs.items()
        }
        return cast, kw

    return hook


def _cast_out(_module: nn.Module, _args: Any, out: Any) -> Any:
    return out.float() if isinstance(out, Tensor) and out.is_floating_point() else None


def apply_dtype(ref: ModelRef, dtype: torch.dtype | None, which: str, owned: bool = True) -> None:
    """Run ``ref``'s model in ``dtype``: weights cast, inputs cast on the way in, outputs back to float32.
    ``owned=False`` (the caller's own module): a copy is cast, the caller's model is left as it was."""
    if dtype is None:
        return
    if ref.scripted:
        raise ReprsimError(
            f"model {which} ({ref.label}) is TorchScript; dtype= cannot be changed on it (save it in "
            "the dtype you want)."
        )
    if not owned:
        import copy

        ref.module = copy.deepcopy(ref.module)
    ref.module.to(dtype)
    if dtype != torch.float32:
        # registered first, so every later hook (feature extraction) already sees float32 outputs
        ref.module.register_forward_pre_hook(_cast_in(dtype), with_kwargs=True, prepend=True)
        ref.module.register_forward_hook(_cast_out, prepend=True)
        ref.label += f" [{str(dtype).removeprefix('torch.')}]"


def apply_input_size(ref: ModelRef, size: Any, which: str) -> None:
    """Resize every batch to ``size`` (an int or (H, W)) inside a Hugging Face vision model (grey
    images are repeated to RGB for an RGB model), as the sweep's ``input_size`` does."""
    if size is None:
        return
    from reprsim.models.adapters import HFVisionModel

    if not isinstance(ref.module, HFVisionModel):
        raise ReprsimError(
            f"input_size is for Hugging Face vision models; model {which} ({ref.label}) is a "
            f"{type(ref.module).__name__}. Resize the inputs themselves instead."
        )
    hw = (
        (size, size)
        if isinstance(size, int) and not isinstance(size, bool)
        else tuple(size)
        if isinstance(size, (list, tuple))
        else None
    )
    if hw is None or len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise ValueError(f"input_size must be a positive int or (height, width); got {size!r}.")
    ref.module.resize_to = (int(hw[0]), int(hw[1]))
    ref.module.grey_to_rgb = ref.module.input_shape[0] == 3
    ref.label += f" @ {hw[0]}x{hw[1]}"


# ---------------------------------------------------------------------------------------------
# PEFT adapters
# ---------------------------------------------------------------------------------------------
def is_adapter(path: Path) -> bool:
    """Whether ``path`` is a PEFT adapter folder (``adapter_config.json``)."""
    return path.is_dir() and (path / "adapter_config.json").is_file()


def load_adapter(path: Path, base: str | Path | None, which: str, dtype: torch.dtype | None = None) -> ModelRef:
    """The adapter's base model (a local Hugging Face folder) with the adapter merged in.

    Raises:
        ReprsimError: an unreadable config, a base that is not a local folder (pass ``base=``),
            peft missing, or an adapter that does not fit the base (which modules / shapes).
    """
    from reprsim.compare.references import load_model

    try:
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReprsimError(f"model {which}: cannot read {path / 'adapter_config.json'}: {exc}") from exc
    named = config.get("base_model_name_or_path")
    base_path = Path(str(base if base is not None else named or "")).expanduser()
    if base is None and not named:
        raise ReprsimError(
            f"model {which}: the adapter {path} names no base model; pass base=PATH (--base-"
            f"{which.lower()}) with the base model's local folder."
        )
    if not (base_path / "config.json").is_file():
        said = f"base={str(base)!r}" if base is not None else f"its adapter_config.json names {named!r}"
        raise ReprsimError(
            f"model {which}: the base of adapter {path} is not a local Hugging Face folder ({said}); "
            f"pass base=PATH (--base-{which.lower()}) with the folder the adapter was trained on."
        )
    try:
        from peft import PeftModel
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ReprsimError(f"model {which}: {path} is a PEFT adapter; install peft (pip install peft).") from exc
    ref = load_model(base_path, which=which, dtype=dtype)
    hf = getattr(ref.module, "hf", None)
    if hf is None:
        raise ReprsimError(f"model {which}: the base {base_path} is not a Hugging Face model.")
    try:
        merged = PeftModel.from_pretrained(hf, str(path)).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ReprsimError(
            f"model {which}: the adapter {path} does not fit its base {base_path}: "
            f"{str(exc).strip().splitlines()[0][:300]}"
        ) from exc
    ref.module.hf = merged
    ref.module.eval()
    ref.label = f"{ref.label} + adapter {path.name}"
    ref.source = str(path)
    return ref


# ---------------------------------------------------------------------------------------------
# models of a reprsim sweep
# ---------------------------------------------------------------------------------------------
def is_sweep_ref(text: str) -> bool:
    """Whether ``text`` reads ``RUN_DIR:UNIT_ID:a|b`` with a run folder (``config.yaml``) at RUN_DIR."""
    m = _SWEEP.match(text)
    return bool(m) and (Path(m["run"]).expanduser() / "config.yaml").is_file()


def load_sweep_model(text: str, which: str, cache_dir: str | Path | None = None) -> ModelRef:
    """Model ``a`` or ``b`` of one unit of a reprsim sweep, rebuilt and loaded from the model cache.

    Raises:
        ReprsimError: an unknown unit (some ids are listed), a unit without recorded models (not
            finished), or weights missing from the cache (pass ``cache_dir=``).
    """
    from reprsim import storage
    from reprsim.experiments.grid import expand
    from reprsim.experiments.composition import composition_of
    from reprsim.experiments.overrides import load_config
    from reprsim.experiments.runner import default_cache_dir

    m = _SWEEP.match(text)
    assert m is not None  # is_sweep_ref was checked
    run, unit_id, side = Path(m["run"]).expanduser(), m["unit"], m["side"]
    config = load_config(run / "config.yaml")
    units = {u.unit_id: u for u in expand(config)}
    if unit_id not in units:
        some = ", ".join(list(units)[:5])
        raise ReprsimError(
            f"model {which}: the run {run} has no unit {unit_id!r}; its units include {some} (see {run / 'units'})."
        )
    status_file = run / "units" / unit_id / "status.json"
    try:
        status = json.loads(status_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        status = {}
    key = (status.get("artifacts") or {}).get(f"model_{side}")
    if not key:
        raise ReprsimError(
            f"model {which}: unit {unit_id} of {run} records no trained model {side} "
            f"(status {status.get('status', 'missing')!r}); finish the sweep first (reprsim run)."
        )
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    unit = units[unit_id]
    kind = composition_of(unit)
    stored = storage.read_verified_state_dict(cache / "models" / f"{key}.rsv")
    if stored is None:
        raise ReprsimError(
            f"model {which}: the weights of {unit_id}:{side} ({key}) are not in the cache {cache}; pass "
            "the sweep's cache folder as cache_dir= (--cache-dir)."
        )
    pair = kind.pair(config, unit, cache)
    model = kind.build(config, unit, pair, side)
    try:
        model.load_state_dict(stored[0])
    except RuntimeError as exc:
        raise ReprsimError(
            f"model {which}: the cached weights {key} do not fit the model the run's config builds "
            f"for {unit_id}:{side}: {str(exc).splitlines()[0]}"
        ) from exc
    label = f"{unit.model.name} ({run.name}:{unit_id}:{side})"
    return ModelRef(model.eval(), label, _kind_of(model), None, False, text)
