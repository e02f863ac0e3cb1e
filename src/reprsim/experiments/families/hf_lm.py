"""The ``hf_lm`` family: two LoRA fine-tunes of one local Hugging Face causal LM (PAPER.md §2F).

A model entry names a local model folder, ``models: [{hf: /path/to/Llama-3.2-1B-Instruct,
dtype: bfloat16, lora: {r: 32, alpha: 64, dropout: 0.05}}]`` (tokenizer from the same folder;
``lora: false`` = full fine-tuning), or ``hf: demo``, the offline CPU demo base
(:mod:`reprsim.experiments.families.hf_demo_base`; on the chat world trained two-phase and safety-tuned, on the text world
pre-trained on the listed domains). Model options (``options:``): ``demo`` (the demo base's
:class:`~reprsim.models.hf_spec.DemoRecipe`) and ``gradient_checkpointing`` (bool).

Both models are trained by the world (:meth:`train_language_model`, through :func:`reprsim.train.train`:
checkpoints, resume, mixed precision on CUDA); the model cache keeps only the adapter
(:class:`~reprsim.models.lora.FineTunedLM`). Features: the last hidden state after the final
norm (``penultimate``) or a block's output (``blocks.<i>``), mean-pooled over the real tokens.
Jailbreak transfer: :mod:`reprsim.attacks.jailbreak_transfer` (by default sampled answers) in the
base tokenizer's prompt format, on the chat world's behaviours or a behaviours file (text world).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from reprsim.errors import ReprsimError
from reprsim.experiments.families.base import LanguageModelFamily

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig, ModelSpec
    from reprsim.experiments.grid import Unit
    from reprsim.experiments.worlds.base import (
        DataWorld,
        ProbeSet,
        TrainingPair,
    )

_MODEL_OPTIONS = ("demo", "gradient_checkpointing")


@dataclass
class Base:
    """The base model of a pair: its folder, what identifies it, and its tokenizer."""

    path: Path
    identity: Any
    tokenizer: Any
    demo: dict[str, Any] | None = None  # the demo base's build record


def _demo_recipe(model: ModelSpec):
    from reprsim.models.hf_spec import DemoRecipe

    return DemoRecipe.from_dict(model.options.get("demo"))


def _tokenizer_of(path: str) -> Any:
    from reprsim.models.hf_lm import load_tokenizer  # cached per folder

    return load_tokenizer(path)


class HFCausalLM(LanguageModelFamily):
    name = "hf_lm"
    model_kinds = ("hf_causal_lm",)
    kinds = {"text": "llm", "chat": "llm"}
    consequences = ("jailbreak_transfer",)
    #: the jailbreak stage's prompt format for its models: the base's tokenizer and chat template
    #: (:class:`~reprsim.attacks.jailbreak_prompts.PromptFormat`; sampled answers by default)
    prompt_format = "tokenizer"
    #: the default of the text world's ``fixed_probes`` option for this family (the paper's Llama design)
    fixed_text_probes = True
    feature_pool = "mean"
    feature_batch_size = 64

    # ---- what both models start from ------------------------------------------------------
    def _base(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None, chat_world: Any = None) -> Base:
        """The unit's base: the configured folder, or the demo base (built in ``cache_dir`` on first use)."""
        from reprsim.devices import resolve_device
        from reprsim.experiments.families import hf_demo_base as demo
        from reprsim.models.hf_lm import base_identity
        from reprsim.models.hf_spec import is_demo

        hf = unit.model.hf
        if not is_demo(hf):
            path = Path(hf).expanduser()
            return Base(path, base_identity(path), _tokenizer_of(str(path)))
        if cache_dir is None:
            raise ReprsimError("hf: demo needs a cache folder to build the demo base in")
        recipe, device = _demo_recipe(unit.model), resolve_device(config.execution.device)
        if chat_world is not None:
            from reprsim.chat.training import ChatRecipe

            folder = demo.chat_base(chat_world, recipe, ChatRecipe.from_dict(dict(unit.train)), cache_dir, device)
        else:
            from reprsim.data.token_windows import text_options

            folder = demo.text_base(text_options(unit.source), recipe, cache_dir, device)
        return Base(folder, {"demo": folder.name}, _tokenizer_of(str(folder)), demo.base_info(folder))

    def text_start(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None, opts: Any) -> tuple[Any, Base]:
        """(the base's tokenizer, the base)."""
        from reprsim.data.corpora import PretrainedTokenizer

        base = self._base(config, unit, cache_dir)
        return PretrainedTokenizer(base.tokenizer, json.dumps(base.identity, sort_keys=True)), base

    def chat_start(self, config: ExperimentConfig, unit: Unit, cache_dir: Path, pair: Any, world: DataWorld) -> Base:
        """The demo base of the chat world (its vocabulary, trained two-phase and safety-tuned)."""
        return self._base(config, unit, cache_dir, pair.world)

    def base_scores(self, start: Base | None) -> dict[str, Any] | None:
        return (start.demo or {}).get("heldout") if start is not None else None

    # ---- models ---------------------------------------------------------------------------
    def build(self, config: ExperimentConfig, unit: Unit, pair: TrainingPair, side: str) -> nn.Module:
        """The base loaded from its folder with a fresh adapter (seed stream ``init_<side>``)."""
        from reprsim.devices import resolve_device
        from reprsim.models.lora import apply_lora
        from reprsim.models.hf_lm import load_causal_lm, resolve_dtype
        from reprsim.models.hf_spec import lora_options

        if pair.start is None:
            raise ReprsimError("the hf_lm family needs a cache folder for the chat world's demo base")
        dtype = resolve_dtype(unit.model.dtype, resolve_device(config.execution.device))
        model = load_causal_lm(pair.start.path, dtype)
        if unit.model.options.get("gradient_checkpointing"):
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        seed = unit.seeds()[f"init_{side}"] if side in ("a", "b") else 0
        return apply_lora(model, lora_options(unit.model.lora), seed)

    def weights_key(
        self, config: ExperimentConfig, unit: Unit, pair: TrainingPair, side: str, world: DataWorld
    ) -> dict[str, Any]:
        from reprsim.models.hf_spec import lora_options

        seeds = unit.seeds()
        return {
            "base": pair.start.identity,
            "model": unit.model.model_dump(mode="json"),
            "lora": lora_options(unit.model.lora).to_dict(),
            "train": unit.train,
            "init": seeds[f"init_{side}"],
            "order": seeds[f"order_{side}"],
        } | world.finetune_key(pair, side)

    def features(
        self, config: ExperimentConfig, model: nn.Module, probe: ProbeSet, world: DataWorld
    ) -> dict[str, np.ndarray]:
        from reprsim.models.lora import hidden_features

        return hidden_features(
            model,
            probe.inputs,
            list(config.layers),
            attention_mask=probe.extra.get("attention_mask"),
            batch_size=self.feature_batch_size,
        )

    # ---- preflight ------------------------------------------------------------------------
    def check(self, config: ExperimentConfig, units: list[Unit], world: DataWorld) -> list[str]:
        """Model folders, tokenizers, LoRA targets, layers and options, and the jailbreak stage's inputs."""
        problems: list[str] = []
        if config.probes and world.name == "chat":
            problems.append("probes: the hf_lm family probes the chat world's prompts; remove the extra probe sets")
        models = {json.dumps(u.model.model_dump(mode="json"), sort_keys=True): u for u in units}
        tokenizers: dict[str, Any] = {}
        for unit in models.values():
            problems += self._model_problems(config, unit, world, tokenizers)
        spec = config.consequence("jailbreak_transfer")
        if spec is not None and not problems:
            from reprsim.attacks.jailbreak_problems import stage_problems

            for unit in models.values():
                problems += stage_problems(
                    spec.params,
                    tokenizers.get(unit.model.hf),
                    chat_world=world.name == "chat",
                    model_name=unit.model.name,
                )
        return problems

    def _demo_tokenizer(self, unit: Unit, world: DataWorld, recipe: Any) -> Any:
        """The demo base's tokenizer on ``world`` (the chat world's vocabulary, or one trained on the domains)."""
        if world.name == "chat":
            from reprsim.chat import ChatWorld
            from reprsim.experiments.families.hf_demo_base import chat_tokenizer

            return chat_tokenizer(ChatWorld(**unit.source.options))
        from reprsim.data.token_windows import text_options
        from reprsim.experiments.families.hf_demo_base import text_tokenizer

        return text_tokenizer(text_options(unit.source), recipe)

    def _model_problems(
        self, config: ExperimentConfig, unit: Unit, world: DataWorld, tokenizers: dict[str, Any]
    ) -> list[str]:
        from reprsim.models.hf_lm import model_dir_problems, module_names, skeleton
        from reprsim.models.hf_spec import is_demo, lora_options

        spec, where = unit.model, f"models.{unit.model.name}"
        unknown = sorted(set(spec.options) - set(_MODEL_OPTIONS))
        if unknown:
            return [
                f"{where}.options: unknown option(s) {unknown}; the hf_lm family takes {list(_MODEL_OPTIONS)} "
                "(LoRA options go under lora:, the weights' dtype under dtype:)"
            ]
        try:
            lora = lora_options(spec.lora)
        except (TypeError, ValueError) as exc:
            return [f"{where}: {exc}"]
        if is_demo(spec.hf):
            try:
                recipe = _demo_recipe(spec)
            except (TypeError, ValueError) as exc:
                return [f"{where}: {exc}"]
            from reprsim.experiments.families.hf_demo_base import _llama

            with torch.device("meta"):
                model = _llama(recipe, 300, 2 * recipe.block_size, {}, 0)
            try:
                tokenizers[spec.hf] = self._demo_tokenizer(unit, world, recipe)
            except (TypeError, ValueError, ReprsimError) as exc:
                return [f"sources.{world.name}" + (".options" if world.name == "chat" else "") + f": {exc}"]
        else:
            problems = model_dir_problems(spec.hf, f"{where}.hf")
            if problems:
                return problems
            tokenizers[spec.hf] = _tokenizer_of(str(Path(spec.hf).expanduser()))
            try:
                model = skeleton(Path(spec.hf).expanduser())
            except Exception as exc:  # a config transformers cannot build
                return [f"{where}.hf: cannot build the model of {spec.hf} ({type(exc).__name__}: {exc})"]
        problems = []
        if not lora.full:
            names = module_names(model)
            missing = [t for t in lora.target_modules if t not in names]
            if missing:
                problems.append(
                    f"{where}.lora.target_modules: {missing} are not modules of this model; its linear "
                    f"modules are {names}"
                )
        return problems + _layer_problems(model, config.layers, where)

    def text_tokenizer_check(self, config: ExperimentConfig, unit: Unit, opts: Any) -> tuple[bool, Any, list[str]]:
        """(usable, the model's tokenizer, problems) for the text world's checks: bytes-level options only,
        a block that fits the model's positions."""
        from reprsim.data.corpora import PretrainedTokenizer
        from reprsim.experiments.worlds.base import train_config
        from reprsim.models.hf_spec import is_demo

        if not opts.byte_level:
            return (
                False,
                None,
                [
                    "sources.text.options.tokenizer: the hf_lm family tokenises with its model's "
                    "tokenizer; remove the tokenizer option (it is for zoo models trained from scratch)"
                ],
            )
        problems = []
        block, max_pos = train_config(config.train).block_size, _max_positions(unit)
        if max_pos is not None and block > max_pos:
            problems.append(
                f"train.block_size={block} is longer than the model's {max_pos} positions; lower block_size"
            )
        try:
            if is_demo(unit.model.hf):
                from reprsim.experiments.families.hf_demo_base import text_tokenizer

                tokenizer = text_tokenizer(opts, _demo_recipe(unit.model))
            else:
                tokenizer = _tokenizer_of(str(Path(unit.model.hf).expanduser()))
        except Exception:  # noqa: BLE001 - a model folder or recipe that does not load: the family's check says why
            return False, None, problems
        return True, PretrainedTokenizer(tokenizer, str(unit.model.hf)), problems

    def domain_problem(self, opts: Any, name: str) -> str | None:
        return None

    def chat_recipe_problems(self, recipe: Any) -> list[str]:
        if recipe.shared_base:
            return []
        return [
            "train.shared_base: false trains chat models from scratch, but the hf_lm family always "
            "fine-tunes its base model; remove shared_base (or use a zoo language model)"
        ]

    def chat_unit_problems(self, unit: Unit) -> list[str]:
        from reprsim.models.hf_spec import is_demo

        if is_demo(unit.model.hf):
            return []
        return [
            f"models.{unit.model.name}: the chat world needs its own vocabulary; use hf: demo "
            "(the world's safety-tuned Llama base) — a real chat model takes a text source "
            "with a behaviours file"
        ]


def _max_positions(unit: Unit) -> int | None:
    from reprsim.models.hf_spec import is_demo

    if is_demo(unit.model.hf):
        return 2 * _demo_recipe(unit.model).block_size
    try:
        cfg = json.loads((Path(unit.model.hf).expanduser() / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    value = cfg.get("max_position_embeddings") or cfg.get("n_positions")
    return int(value) if isinstance(value, int) else None


def _layer_problems(model: nn.Module, layers: list[str], where: str) -> list[str]:
    from reprsim.models.adapters import _find_blocks

    backbone = getattr(model, model.base_model_prefix)
    n_blocks = _find_blocks(backbone)[1]
    available = ["penultimate"] + [f"blocks.{i}" for i in range(n_blocks)]
    missing = [layer for layer in layers if layer not in available]
    if missing:
        return [f"layers: {missing} are not layers of {where}; available: {available}"]
    return []
