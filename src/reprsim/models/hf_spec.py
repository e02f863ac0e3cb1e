"""What a config's Hugging Face model entry means (light: no torch or transformers import).

``models: [{hf: /path/to/Llama-3.2-1B-Instruct, dtype: bfloat16, lora: {r: 32}}]`` names a local
``save_pretrained`` folder (model and tokenizer). ``hf: demo`` names the offline CPU demo base
that reprsim builds itself (:mod:`reprsim.experiments.families.hf_demo_base`; a folder literally called ``demo`` is written
``./demo``). Nothing is ever downloaded.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEMO", "DemoRecipe", "LoraOptions", "hf_path_problem", "hf_short_name", "is_demo", "lora_options"]

#: the ``hf:`` value of the built-in demo base
DEMO = "demo"
#: the paper's LoRA target modules (Llama names; PAPER.md §2F)
PAPER_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def is_demo(hf: str | None) -> bool:
    """Whether ``hf`` names the built-in demo base."""
    return hf == DEMO


def hf_short_name(hf: str) -> str:
    """A short model name for unit ids: the folder's name (``demo`` for the demo base)."""
    if is_demo(hf):
        return DEMO
    name = Path(str(hf).rstrip("/")).expanduser().name
    return name or str(hf)


def hf_path_problem(hf: str) -> str | None:
    """Why ``hf`` cannot be a model entry (a missing path), or None. Whether it holds a model is the preflight's job."""
    if is_demo(hf):
        return None
    path = Path(hf).expanduser()
    if not path.exists():
        return (
            f"hf: {hf} does not exist; give the local folder of a Hugging Face model (the one holding "
            f"config.json and the weights, e.g. saved with save_pretrained), or hf: {DEMO} for the offline demo "
            "language model"
        )
    if not path.is_dir():
        return f"hf: {hf} is a file; give the folder that holds config.json and the weights"
    return None


@dataclass(frozen=True)
class LoraOptions:
    """LoRA fine-tuning options (the paper's defaults: r 32, α 64, dropout 0.05 on q,k,v,o,gate,up,down).

    ``full=True`` (config ``lora: false``) fine-tunes every weight instead.
    """

    r: int = 32
    alpha: float = 64.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = PAPER_TARGETS
    bias: str = "none"
    full: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        return out


_LORA_KEYS = ("r", "alpha", "dropout", "target_modules", "bias")


def lora_options(value: dict[str, Any] | bool | None) -> LoraOptions:
    """Parse a model entry's ``lora`` (None/true: defaults; false: full fine-tuning); ValueError naming the fix."""
    if value is None or value is True:
        return LoraOptions()
    if value is False:
        return LoraOptions(full=True)
    if not isinstance(value, dict):
        raise ValueError(f"lora must be a mapping of LoRA options, true or false, got {value!r}")
    unknown = [k for k in value if k not in _LORA_KEYS]
    if unknown:
        hints = [
            f"{k!r}" + (f" (did you mean {c[0]!r}?)" if (c := difflib.get_close_matches(k, _LORA_KEYS, 1)) else "")
            for k in unknown
        ]
        raise ValueError(f"lora: unknown option(s) {', '.join(hints)}; valid: {list(_LORA_KEYS)}")
    opts = LoraOptions(**{k: tuple(v) if k == "target_modules" else v for k, v in value.items()})
    if isinstance(opts.r, bool) or not isinstance(opts.r, int) or opts.r < 1:
        raise ValueError(f"lora.r must be an int >= 1, got {opts.r!r}")
    if not isinstance(opts.alpha, (int, float)) or opts.alpha <= 0:
        raise ValueError(f"lora.alpha must be > 0, got {opts.alpha!r}")
    if not isinstance(opts.dropout, (int, float)) or not 0 <= opts.dropout < 1:
        raise ValueError(f"lora.dropout must lie in [0, 1), got {opts.dropout!r}")
    if not opts.target_modules or not all(isinstance(t, str) and t for t in opts.target_modules):
        raise ValueError(
            f"lora.target_modules must be a non-empty list of module names, got {value.get('target_modules')!r}"
        )
    if opts.bias not in ("none", "all", "lora_only"):
        raise ValueError(f"lora.bias must be none, all or lora_only, got {opts.bias!r}")
    return opts


@dataclass(frozen=True)
class DemoRecipe:
    """The offline demo base: a small Llama (``LlamaConfig``) pre-trained briefly on the source's text.

    Text source: a byte-level BPE of ``vocab_size`` trained on the training parts of the listed
    domains, then ``steps`` AdamW steps on windows of ``block_size`` tokens of all of them. Chat
    source: the world's word vocabulary, trained two-phase (pre-training, safety tuning) on the
    base pool with the config's chat recipe. Set in ``models[].options.demo``.
    """

    vocab_size: int = 1024
    hidden_size: int = 128
    n_layers: int = 4
    n_heads: int = 4
    intermediate_size: int = 344
    block_size: int = 128
    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0

    @classmethod
    def from_dict(cls, value: dict[str, Any] | None) -> DemoRecipe:
        value = dict(value or {})
        names = list(cls.__dataclass_fields__)
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"models[].options.demo: unknown key(s) {unknown}; valid: {names}")
        out = cls(**value)
        for name in names:
            v = getattr(out, name)
            if name == "lr":
                if not isinstance(v, (int, float)) or v <= 0:
                    raise ValueError(f"models[].options.demo.lr must be > 0, got {v!r}")
            elif isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "seed" else 1):
                raise ValueError(f"models[].options.demo.{name} must be a positive int, got {v!r}")
        if out.hidden_size % out.n_heads:
            raise ValueError(
                f"models[].options.demo: hidden_size {out.hidden_size} must be divisible by n_heads {out.n_heads}"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
