"""The ``llm`` kind: two LoRA fine-tunes of one local Hugging Face causal LM on overlapping data (PAPER.md §2F).

A model entry names a local model folder, ``models: [{hf: /path/to/Llama-3.2-1B-Instruct,
dtype: bfloat16, lora: {r: 32, alpha: 64, dropout: 0.05}}]`` (tokenizer from the same folder;
``lora: false`` = full fine-tuning), or ``hf: demo``, the offline CPU demo base
(:mod:`reprsim.llm.demo`). Model options (``options:``): ``demo`` (the demo base's
:class:`~reprsim.llm.spec.DemoRecipe`) and ``gradient_checkpointing`` (bool).

* ``text`` source: the paper's Llama design on text corpora (:mod:`reprsim.experiments.text_pairs`,
  tokenised with the model's tokenizer): chunk-level data overlap on the first domain, corpus-level
  task overlap (3 of the domains per model); probes: validation windows of the training domain and
  the others (data), ``common`` / ``ood_one`` / ``ood_all`` plus the fixed-composition
  ``common_fixed`` / ``ood_one_fixed`` (task). ``train`` is a :class:`reprsim.train.TrainConfig`
  (token windows of ``block_size``); per-model columns: held-out loss, perplexity, accuracy.
* ``chat`` source: the chat world (:mod:`reprsim.chat`) with an HF base (the demo's, trained
  two-phase and safety-tuned): A and B are LoRA fine-tunes on their split; ``train`` is a
  :class:`reprsim.chat.training.ChatRecipe`; columns as the ``chat`` kind's.

Both models are trained through :func:`reprsim.train.train` (checkpoints, resume, mixed precision on
CUDA); the model cache keeps only the adapter (:class:`~reprsim.llm.finetune.FineTunedLM`).
Features: the last hidden state after the final norm (``penultimate``) or a block's output
(``blocks.<i>``), mean-pooled over the real tokens. Consequence: ``jailbreak_transfer``
(:mod:`reprsim.llm.jailbreak`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from reprsim.errors import ReprsimError
from reprsim.experiments.kinds.base import Kind, Probe, Trained, train_config

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig, ModelSpec
    from reprsim.experiments.grid import Unit
    from reprsim.experiments.text_pairs import TextPair

_MODEL_OPTIONS = ("demo", "gradient_checkpointing")
_CHAT_EVAL_KEYS = ("refusal_rate", "benign_accuracy", "benign_refusal_rate", "forbidden_content_rate", "benign_partial")
EVAL_SEED = 0


@dataclass
class Base:
    """The base model of a pair: its folder, what identifies it, and its tokenizer."""

    path: Path
    identity: Any
    tokenizer: Any
    demo: dict[str, Any] | None = None  # the demo base's build record


@dataclass
class LLMPair:
    """A unit's base model and its split: ``text`` (a TextPair) or ``chat`` (world, recipe, split)."""

    base: Base | None
    text: TextPair | None = None
    world: Any = None
    recipe: Any = None
    split: Any = None

    @property
    def realised_data_fraction(self) -> float:
        return float((self.text.split if self.text is not None else self.split).realised_data_fraction)

    @property
    def realised_task_fraction(self) -> float:
        return float((self.text.split if self.text is not None else self.split).realised_task_fraction)


def _is_chat(unit: Unit) -> bool:
    return unit.source.name == "chat"


def _chat_recipe(train: dict[str, Any]):
    from reprsim.chat.training import ChatRecipe

    return ChatRecipe.from_dict(dict(train))


def _demo_recipe(model: ModelSpec):
    from reprsim.llm.spec import DemoRecipe

    return DemoRecipe.from_dict(model.options.get("demo"))


def _fraction(unit: Unit) -> float:
    return unit.data_fraction if unit.overlap_kind == "data" else unit.task_fraction


def _tokenizer_of(path: str) -> Any:
    from reprsim.llm.hf import load_tokenizer  # cached per folder

    return load_tokenizer(path)


class LLMKind(Kind):
    name = "llm"
    overlap_kinds = ("data", "task")
    model_kinds = ("hf_causal_lm",)
    consequences = ("jailbreak_transfer",)
    feature_pool = "mean"
    feature_batch_size = 64

    def recipe(self, unit: Unit) -> Any:
        """The chat world's recipe for chat units, the training loop's config for text units."""
        return _chat_recipe(unit.train) if _is_chat(unit) else train_config(unit.train)

    # ---- base model -----------------------------------------------------------------------
    def _base(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None, world: Any = None) -> Base:
        """The unit's base: the configured folder, or the demo base (built in ``cache_dir`` on first use)."""
        from reprsim.devices import resolve_device
        from reprsim.llm import demo
        from reprsim.llm.hf import base_identity
        from reprsim.llm.spec import is_demo

        hf = unit.model.hf
        if not is_demo(hf):
            path = Path(hf).expanduser()
            return Base(path, base_identity(path), _tokenizer_of(str(path)))
        if cache_dir is None:
            raise ReprsimError("hf: demo needs a cache folder to build the demo base in")
        recipe, device = _demo_recipe(unit.model), resolve_device(config.execution.device)
        if world is not None:
            folder = demo.chat_base(world, recipe, _chat_recipe(unit.train), cache_dir, device)
        else:
            from reprsim.experiments.text_pairs import text_options

            folder = demo.text_base(text_options(unit.source), recipe, cache_dir, device)
        return Base(folder, {"demo": folder.name}, _tokenizer_of(str(folder)), demo.base_info(folder))

    # ---- data -----------------------------------------------------------------------------
    def pair(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None) -> LLMPair:
        if _is_chat(unit):
            from reprsim.chat import ChatWorld
            from reprsim.chat.split import make_chat_split

            world = ChatWorld(**unit.source.options)
            recipe = _chat_recipe(unit.train)
            split = make_chat_split(world, unit.overlap_kind, _fraction(unit), unit.seeds()["split"],
                                    n_train_per_family=recipe.n_train_per_family,
                                    n_heldout_per_family=recipe.n_heldout_per_family, mode=unit.mode)  # fmt: skip
            base = self._base(config, unit, cache_dir, world) if cache_dir is not None else None
            return LLMPair(base, world=world, recipe=recipe, split=split)
        from reprsim.data.corpora import PretrainedTokenizer
        from reprsim.experiments.text_pairs import make_text_pair, text_options

        base = self._base(config, unit, cache_dir)
        tokenizer = PretrainedTokenizer(base.tokenizer, json.dumps(base.identity, sort_keys=True))
        text = make_text_pair(unit, text_options(unit.source), train_config(unit.train).block_size, tokenizer)
        return LLMPair(base, text=text)

    def probes(self, config: ExperimentConfig, unit: Unit, pair: LLMPair) -> list[Probe]:
        if pair.text is None:
            from reprsim.chat.probes import PROBE_ROLES, probe_sets

            sets = probe_sets(pair.world, pair.split, n=config.probe_size, seed=unit.seeds()["probe"])
            return [Probe(name, PROBE_ROLES[name], tokens) for name, tokens in sets.items()]
        from reprsim.experiments.text_pairs import text_probes

        fixed = pair.text.opts.fixed_probes is not False
        block = train_config(unit.train).block_size
        return [Probe(name, role, torch.from_numpy(windows), n_domains)
                for name, role, n_domains, windows in text_probes(unit, pair.text, pair.text.opts, config.probe_size,
                                                                  block, unit.seeds()["probe"], fixed=fixed)]  # fmt: skip

    # ---- models ---------------------------------------------------------------------------
    def build(self, config: ExperimentConfig, unit: Unit, pair: LLMPair, side: str) -> nn.Module:
        """The base loaded from its folder with a fresh adapter (seed stream ``init_<side>``)."""
        from reprsim.devices import resolve_device
        from reprsim.llm.finetune import apply_lora
        from reprsim.llm.hf import load_causal_lm, resolve_dtype
        from reprsim.llm.spec import lora_options

        if pair.base is None:
            raise ReprsimError("the llm kind needs a cache folder for the chat world's demo base")
        dtype = resolve_dtype(unit.model.dtype, resolve_device(config.execution.device))
        model = load_causal_lm(pair.base.path, dtype)
        if unit.model.options.get("gradient_checkpointing"):
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        seed = unit.seeds()[f"init_{side}"] if side in ("a", "b") else 0
        return apply_lora(model, lora_options(unit.model.lora), seed)

    def weights_key(self, config: ExperimentConfig, unit: Unit, pair: LLMPair, side: str) -> dict[str, Any]:
        from reprsim.llm.spec import lora_options

        seeds = unit.seeds()
        key: dict[str, Any] = {"base": pair.base.identity, "model": unit.model.model_dump(mode="json"),
                               "lora": lora_options(unit.model.lora).to_dict(), "train": unit.train,
                               "init": seeds[f"init_{side}"], "order": seeds[f"order_{side}"]}  # fmt: skip
        digest = hashlib.sha256()
        if pair.text is not None:
            for doc in pair.text.train[side]:
                digest.update(len(doc).to_bytes(8, "little"))
                digest.update(np.ascontiguousarray(doc, dtype=np.int64).tobytes())
            opts = pair.text.opts
            key["validation"] = [[opts.corpus(d).identity() for d in pair.text.domains[side]], opts.max_bytes,
                                 opts.val_fraction]  # fmt: skip
        else:
            requests = pair.split.requests_a if side == "a" else pair.split.requests_b
            for r in requests:
                digest.update(f"{r.family}|{' '.join(r.words)};".encode())
            key["world"] = pair.world.config()
        key["data"] = digest.hexdigest()
        return key

    def fit(self, config: ExperimentConfig, unit: Unit, pair: LLMPair, side: str, model: nn.Module,
            checkpoint_dir: Path, device: torch.device, progress: bool) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
        """Fine-tune on the side's data (seed stream ``order_<side>``); info: held-out scores of the model's own
        domains (text) or families (chat), and ``seconds``."""
        seed = unit.seeds()[f"order_{side}"]
        if pair.text is None:
            from reprsim.chat.training import evaluate_chat_model, finetune

            requests = pair.split.requests_a if side == "a" else pair.split.requests_b
            finetune(model, pair.world, requests, pair.recipe, seed=seed, checkpoint_dir=checkpoint_dir,
                     device=device, progress=progress)  # fmt: skip
            families = set(pair.split.families_a if side == "a" else pair.split.families_b)
            pool = [r for r in pair.split.heldout_pool if r.family in families]
            return model, evaluate_chat_model(model, pair.world, pool)
        from reprsim.experiments.kinds.text import heldout_scores
        from reprsim.experiments.text_pairs import sample_windows, validation_tokens
        from reprsim.train import train

        cfg = train_config(unit.train)
        text = pair.text
        validation = validation_tokens(text.opts, text.domains[side], text.tokenizer)
        eval_set = ([np.asarray(v, dtype=np.int64) for v in validation if len(v) > cfg.block_size]
                    if cfg.early_stopping_patience is not None else None)  # fmt: skip
        result = train(model, [np.asarray(d, dtype=np.int64) for d in text.train[side]], cfg, seed,
                       eval_dataset=eval_set or None, checkpoint_dir=checkpoint_dir, progress=progress,
                       device=device)  # fmt: skip
        windows = sample_windows(validation, cfg.eval_batches * cfg.batch_size, cfg.block_size + 1, EVAL_SEED)
        info = heldout_scores(result.model, windows, cfg.eval_batch_size) | {"seconds": float(result.seconds)}
        return result.model, info

    # ---- read-out -------------------------------------------------------------------------
    def features(self, config: ExperimentConfig, model: nn.Module, probe: Probe) -> dict[str, np.ndarray]:
        from reprsim.llm.finetune import hidden_features

        return hidden_features(model, probe.inputs, list(config.layers), attention_mask=probe.extra.get("attention_mask"),
                               batch_size=self.feature_batch_size)  # fmt: skip

    def pair_columns(self, pair: LLMPair, a: Trained, b: Trained) -> dict[str, Any]:
        if pair.text is None:
            columns: dict[str, Any] = {}
            for side, trained in (("a", a), ("b", b)):
                columns |= {f"{key}_{side}": trained.info[key] for key in _CHAT_EVAL_KEYS}
                columns[f"acc_{side}"] = trained.info["benign_accuracy"]
            heldout = (pair.base.demo or {}).get("heldout") if pair.base is not None else None
            if heldout:
                columns |= {"base_refusal_rate": heldout["refusal_rate"],
                            "base_benign_accuracy": heldout["benign_accuracy"]}  # fmt: skip
            return columns
        return {"acc_a": a.info["acc"], "acc_b": b.info["acc"],
                "val_loss_a": a.info["val_loss"], "val_loss_b": b.info["val_loss"],
                "perplexity_a": a.info["perplexity"], "perplexity_b": b.info["perplexity"],
                "domains_a": ",".join(pair.text.domains["a"]), "domains_b": ",".join(pair.text.domains["b"])}  # fmt: skip

    # ---- consequences ---------------------------------------------------------------------
    def consequence(self, spec: Any, config: ExperimentConfig, unit: Unit, pair: LLMPair, a: Trained, b: Trained,
                    seed: int) -> dict[str, Any]:  # fmt: skip
        from reprsim.llm.jailbreak import chat_world_behaviours, jailbreak_transfer, stage_options

        opts = stage_options(spec.params, chat_world=pair.text is None)
        if pair.text is None:
            behaviours = chat_world_behaviours(pair.world, pair.split, opts)
            return jailbreak_transfer(a.model, b.model, pair.base.tokenizer, behaviours, opts, seed=seed,
                                      world=pair.world)  # fmt: skip
        from reprsim.llm.jailbreak import load_behaviours

        return jailbreak_transfer(a.model, b.model, pair.base.tokenizer, load_behaviours(opts.behaviours), opts,
                                  seed=seed)  # fmt: skip

    # ---- preflight ------------------------------------------------------------------------
    def check(self, config: ExperimentConfig, units: list[Unit]) -> list[str]:
        """Model folders, tokenizers, LoRA targets, layers, options, data and splits, jailbreak inputs: before training."""
        problems: list[str] = []
        if config.probes:
            problems.append("probes: the llm kind probes the validation text of its listed domains (or the chat "
                            "world's prompts); add out-of-distribution domains to sources[].options.domains instead")
        chat_units = [u for u in units if _is_chat(u)]
        text_units = [u for u in units if not _is_chat(u)]
        try:
            cfg = _chat_recipe(config.train) if chat_units else train_config(config.train)
        except (TypeError, ValueError) as exc:
            return problems + [f"train: {exc}"]
        if chat_units and text_units:
            problems.append("sources: one config cannot hold both the chat world and text sources for the llm kind "
                            "(their train sections differ); write one config per source")
            return problems
        models = {json.dumps(u.model.model_dump(mode="json"), sort_keys=True): u for u in units}
        tokenizers: dict[str, Any] = {}
        for unit in models.values():
            problems += self._model_problems(config, unit, tokenizers)
        if problems:
            return list(dict.fromkeys(problems))
        if text_units:
            problems += self._text_problems(config, text_units, cfg, tokenizers)
        else:
            problems += self._chat_problems(config, chat_units, cfg)
        spec = config.consequence("jailbreak_transfer")
        if spec is not None:
            from reprsim.llm.jailbreak import stage_problems

            for unit in models.values():
                problems += stage_problems(spec.params, tokenizers.get(unit.model.hf), chat_world=bool(chat_units),
                                           model_name=unit.model.name)  # fmt: skip
        return list(dict.fromkeys(problems))

    def _model_problems(self, config: ExperimentConfig, unit: Unit, tokenizers: dict[str, Any]) -> list[str]:
        from reprsim.llm.hf import model_dir_problems, module_names, skeleton
        from reprsim.llm.spec import is_demo, lora_options

        spec, where = unit.model, f"models.{unit.model.name}"
        unknown = sorted(set(spec.options) - set(_MODEL_OPTIONS))
        if unknown:
            return [f"{where}.options: unknown option(s) {unknown}; the llm kind takes {list(_MODEL_OPTIONS)} "
                    "(LoRA options go under lora:, the weights' dtype under dtype:)"]
        try:
            lora = lora_options(spec.lora)
        except (TypeError, ValueError) as exc:
            return [f"{where}: {exc}"]
        if is_demo(spec.hf):
            try:
                recipe = _demo_recipe(spec)
            except (TypeError, ValueError) as exc:
                return [f"{where}: {exc}"]
            from reprsim.llm.demo import _llama

            with torch.device("meta"):
                model = _llama(recipe, 300, 2 * recipe.block_size, {}, 0)
            if _is_chat(unit):
                from reprsim.chat import ChatWorld
                from reprsim.llm.demo import chat_tokenizer

                try:
                    tokenizers[spec.hf] = chat_tokenizer(ChatWorld(**unit.source.options))
                except (TypeError, ValueError) as exc:
                    return [f"sources.chat.options: {exc}"]
            else:
                from reprsim.experiments.text_pairs import text_options
                from reprsim.llm.demo import text_tokenizer

                try:
                    tokenizers[spec.hf] = text_tokenizer(text_options(unit.source), recipe)
                except (ValueError, ReprsimError) as exc:
                    return [f"sources.text: {exc}"]
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
                problems.append(f"{where}.lora.target_modules: {missing} are not modules of this model; its linear "
                                f"modules are {names}")
        problems += _layer_problems(model, config.layers, where)
        return problems

    def _text_problems(self, config: ExperimentConfig, units: list[Unit], cfg: Any, tokenizers: dict[str, Any]) -> list[str]:
        from reprsim.data.corpora import PretrainedTokenizer, corpus_problem
        from reprsim.experiments.kinds.text import unit_text_options
        from reprsim.experiments.text_pairs import make_text_pair

        problems: list[str] = []
        checked: set[tuple[str, str]] = set()
        for unit in units:
            opts = unit_text_options(unit, problems)
            if opts is None:
                continue
            if not opts.byte_level:
                problems.append("sources.text.options.tokenizer: the llm kind tokenises with its model's tokenizer; "
                                "remove the tokenizer option (it is for the text kind's models trained from scratch)")
                continue
            max_pos = _max_positions(unit)
            if max_pos is not None and cfg.block_size > max_pos:
                problems.append(f"train.block_size={cfg.block_size} is longer than the model's {max_pos} positions; "
                                "lower block_size")
            tokenizer = PretrainedTokenizer(tokenizers[unit.model.hf], str(unit.model.hf))
            for name in opts.domains:
                if (unit.model.hf, name) in checked:
                    continue
                checked.add((unit.model.hf, name))
                problem = corpus_problem(opts.corpus(name), opts.max_bytes, opts.val_fraction, tokenizer, cfg.block_size)
                if problem:
                    problems.append(problem)
            try:
                make_text_pair(unit, opts, cfg.block_size, tokenizer)
            except (ValueError, ReprsimError) as exc:
                problems.append(f"unit {unit.unit_id}: {exc}")
        return problems

    def _chat_problems(self, config: ExperimentConfig, units: list[Unit], recipe: Any) -> list[str]:
        from reprsim.experiments.kinds.chat import dialogue_length_problems
        from reprsim.llm.spec import is_demo

        problems: list[str] = []
        if not recipe.shared_base:
            problems.append("train.shared_base: false trains chat models from scratch, but the llm kind always "
                            "fine-tunes its base model; remove shared_base (or use the chat kind with a zoo model)")
        for unit in units:
            if not is_demo(unit.model.hf):
                problems.append(f"models.{unit.model.name}: the chat world needs its own vocabulary; use hf: demo "
                                "(the world's safety-tuned Llama base) — a real chat model takes a text source "
                                "with a behaviours file")
                continue
            try:
                pair = self.pair(config, unit, cache_dir=None)
            except (TypeError, ValueError) as exc:
                problems.append(f"unit {unit.unit_id}: {exc}")
                continue
            problems += dialogue_length_problems(recipe, pair.world)
        return problems


def _max_positions(unit: Unit) -> int | None:
    from reprsim.llm.spec import is_demo

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
