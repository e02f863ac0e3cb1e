"""The trained-model cache shared by every unit type: weights in safetensors, keyed by content."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from torch import nn

Fit = Callable[[nn.Module, Path], tuple[nn.Module, dict]]


def cached_model(model: nn.Module, key: str, cache_dir: Path, fit: Fit) -> tuple[nn.Module, dict]:
    """``model`` with the weights cached under ``key``, or trained by ``fit`` and then cached.

    ``fit(model, checkpoint_dir)`` trains the freshly built model (resuming from its checkpoints
    after an interruption) and returns ``(trained model, info)``; ``info`` (JSON-serialisable
    metrics) is stored beside the weights and returned on every later call. The model comes back
    in eval mode.
    """
    from safetensors.torch import load_file, save_file

    weights = Path(cache_dir) / "models" / f"{key}.safetensors"
    info_path = weights.with_suffix(".json")
    if weights.exists() and info_path.exists():
        model.load_state_dict(load_file(str(weights)))
        return model.eval(), json.loads(info_path.read_text())
    model, info = fit(model, Path(cache_dir) / "checkpoints" / key)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(".tmp")
    # clone: tied weights (e.g. a GPT's lm_head and embedding) share storage, which safetensors refuses
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(weights)
    info_tmp = info_path.with_suffix(".json.tmp")
    info_tmp.write_text(json.dumps(info))
    info_tmp.replace(info_path)
    return model.eval(), info
