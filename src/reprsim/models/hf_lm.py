"""Local Hugging Face causal LMs: checking a model folder, loading it and its tokenizer (never from the hub)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "base_identity",
    "load_causal_lm",
    "load_tokenizer",
    "model_dir_problems",
    "module_names",
    "quiet_transformers",
    "resolve_dtype",
    "skeleton",
]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _weight_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)


def model_dir_problems(path: str | Path, where: str = "models.hf") -> list[str]:
    """Why ``path`` is not a usable local causal-LM folder (one line each), or ``[]``.

    Checks: a ``config.json`` naming a causal-LM architecture, weight files, and a tokenizer that
    loads from the same folder.
    """
    from reprsim.models.adapters import detect_hf_task

    from reprsim.models.hf_spec import hf_path_problem

    problem = hf_path_problem(str(path))
    if problem:
        return [f"{where}: {problem.removeprefix('hf: ')}"]
    path = Path(path).expanduser()
    if not (path / "config.json").is_file():
        return [
            f"{where}: {path} is not a Hugging Face model folder (no config.json); point it at the folder that "
            "holds config.json, the weights and the tokenizer (what save_pretrained writes)"
        ]
    try:
        task = detect_hf_task(path)
    except ValueError as exc:
        return [f"{where}: {exc}"]
    problems = []
    if task != "causal-lm":
        arch = json.loads((path / "config.json").read_text()).get("architectures")
        problems.append(
            f"{where}: {path} holds a {arch or task} model, not a causal LM (…ForCausalLM); the llm kind "
            "fine-tunes causal language models"
        )
    if not _weight_files(path):
        problems.append(
            f"{where}: {path} has a config.json but no weight files (*.safetensors, *.bin); copy the "
            "weights into the folder"
        )
    try:
        load_tokenizer(str(path))
    except Exception as exc:  # any loader error: report it in one line
        problems.append(
            f"{where}: the tokenizer in {path} does not load ({type(exc).__name__}: {exc}); the folder "
            "needs tokenizer.json (or the tokenizer's own files) beside the model"
        )
    return problems


@lru_cache(maxsize=8)
def load_tokenizer(path: str) -> Any:
    """The ``transformers`` tokenizer saved in ``path`` (local files only)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The weights' dtype: ``auto`` = float32 on CPU, bfloat16 on a CUDA device that supports it (else float16)."""
    if dtype != "auto":
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_causal_lm(path: str | Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The causal LM saved in ``path`` (``AutoModelForCausalLM``, local files only) in ``dtype``, on CPU, in train mode."""
    from transformers import AutoModelForCausalLM

    from reprsim.models.adapters import check_no_custom_code, refused_pickles

    check_no_custom_code(path)
    with quiet_transformers(), refused_pickles(path):
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, local_files_only=True, trust_remote_code=False
        )
    return model.train()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars, info logs or deprecation warnings from transformers / peft inside the block."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message=".*deprecated.*")
            warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def skeleton(path: str | Path) -> nn.Module:
    """The model of ``path`` built from its config on the meta device (no weights read): for module checks."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def module_names(model: nn.Module) -> list[str]:
    """The distinct last names of ``model``'s linear-like modules (what LoRA ``target_modules`` can name)."""
    out = set()
    for name, module in model.named_modules():
        if not name:
            continue
        kind = type(module).__name__
        if isinstance(module, (nn.Linear, nn.Embedding)) or kind in ("Conv1D", "Linear8bitLt", "Linear4bit"):
            out.add(name.rsplit(".", 1)[-1])
    return sorted(out)


def base_identity(path: str | Path) -> dict[str, Any]:
    """What identifies the weights of ``path`` for cache keys: its resolved path, a hash of ``config.json`` and
    each weight file's name, size and modification time (a changed file retrains; a copied folder too)."""
    path = Path(path).expanduser().resolve()
    config = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()[:16]
    files = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in _weight_files(path)]
    return {"path": str(path), "config": config, "weights": files}
