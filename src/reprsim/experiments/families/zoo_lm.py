"""The ``zoo_lm`` family: zoo language models (``gpt``, ``gpt_nano``, ...) trained by reprsim itself.

On the text world: byte-level GPTs trained from scratch (the paper's nanoGPT design), with bytes or,
with ``options.tokenizer: {type: bpe, vocab_size: N}``, a byte-level BPE trained offline on the
training parts of the listed domains, or with ``{type: hf, path: DIR}`` a local ``transformers``
tokenizer folder (the paper used GPT-2's BPE). On the chat world: the world's chat models, by
default two fine-tunes of one shared safety-tuned base (``train.shared_base``). The model is built
with the world's ``vocab_size`` and ``block_size=train.block_size``; representations are the
configured layers (default ``penultimate`` = the final LayerNorm), mean-pooled over the window.
Training is the world's (:meth:`train_language_model`); jailbreak transfer on the chat world is its
one stage (:mod:`reprsim.attacks.jailbreak_transfer`) in the world's prompt format (by default greedy, exact judge).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from reprsim.errors import ReprsimError
from reprsim.experiments.families.base import LanguageModelFamily, layer_problems

if TYPE_CHECKING:
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.grid import Unit
    from reprsim.experiments.worlds.base import (
        DataWorld,
        ProbeSet,
        Trained,
        TrainingPair,
    )


class ZooLM(LanguageModelFamily):
    name = "zoo_lm"
    model_kinds = ("lm",)
    kinds = {"text": "text", "chat": "chat"}
    consequences = ("jailbreak_transfer",)
    #: the jailbreak stage's prompt format for its models: the chat world's own tokens
    #: (:class:`~reprsim.attacks.jailbreak_prompts.WorldFormat`; greedy answers, the exact judge by default)
    prompt_format = "world"
    #: the default of the text world's ``fixed_probes`` option for this family
    fixed_text_probes = False
    feature_pool = "mean"

    # ---- what both models start from ------------------------------------------------------
    def text_start(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None, opts: Any) -> tuple[Any, None]:
        """(the source's tokenizer: None for bytes, or the trained BPE / tokenizer folder; no base)."""
        from reprsim.data.token_windows import source_tokenizer

        return (None if opts.byte_level else source_tokenizer(opts)), None

    def chat_start(
        self, config: ExperimentConfig, unit: Unit, cache_dir: Path, pair: Any, world: DataWorld
    ) -> Trained | None:
        """The chat world's shared base (trained once, cached) with ``shared_base``, else None (from scratch)."""
        if not pair.shared_base:
            return None
        return world.shared_base(
            config,
            unit,
            pair,
            cache_dir,
            lambda: self._new(unit, pair.vocab_size, pair.block_size, pair.recipe.base_seed),
        )

    def base_scores(self, start: Trained | None) -> dict[str, Any] | None:
        return None if start is None else start.info

    # ---- models ---------------------------------------------------------------------------
    def _new(self, unit: Unit, vocab_size: int, block_size: int, seed: int | None) -> nn.Module:
        from reprsim import models

        return models.build(
            unit.model.name, vocab_size=vocab_size, block_size=block_size, seed=seed, **unit.model.options
        )

    def build(self, config: ExperimentConfig, unit: Unit, pair: TrainingPair, side: str) -> nn.Module:
        """A fresh model (seed stream ``init_<side>``), or a copy of the shared base."""
        model = self._new(unit, pair.vocab_size, pair.block_size, unit.seeds()[f"init_{side}"])
        if pair.shared_base:
            if pair.start is None:
                raise ReprsimError("the chat world needs a cache folder to train its shared base model")
            model.load_state_dict(pair.start.model.state_dict())
        return model

    def weights_key(
        self, config: ExperimentConfig, unit: Unit, pair: TrainingPair, side: str, world: DataWorld
    ) -> dict[str, Any]:
        return {"model": unit.model.model_dump(mode="json"), "order": unit.seeds()[f"order_{side}"]} | (
            world.scratch_key(unit, pair, side)
        )

    def features(
        self, config: ExperimentConfig, model: nn.Module, probe: ProbeSet, world: DataWorld
    ) -> dict[str, np.ndarray]:
        from reprsim.features import extract

        return extract(
            model,
            probe.inputs,
            layers=config.layers,
            pool=self.feature_pool,
            batch_size=world.feature_batch_size(config) or self.feature_batch_size,
        )

    # ---- preflight ------------------------------------------------------------------------
    def check(self, config: ExperimentConfig, units: list[Unit], world: DataWorld) -> list[str]:
        """Each model entry leaves vocab_size / block_size to the world, builds and has the layers."""
        problems: list[str] = []
        one_per_model = {json.dumps(u.model.model_dump(mode="json"), sort_keys=True): u for u in units}
        for unit in one_per_model.values():
            name = unit.model.name
            clash = sorted({"vocab_size", "block_size"} & set(unit.model.options))
            if clash:
                problems.append(
                    f"models.{name}: options {clash} are set by the {world.name} source "
                    "(its vocabulary, train.block_size); remove them"
                )
                continue
            try:
                vocab, block = world.lm_shape(unit)
            except (TypeError, ValueError, ReprsimError):
                continue  # bad source options or recipe: the world's checks say why
            try:
                model = self._new(unit, vocab, block, None)
            except (TypeError, ValueError) as exc:
                problems.append(
                    f"models.{name}: {exc} (the {world.name} source needs a language model, e.g. gpt or gpt_nano)"
                )
                continue
            problems += layer_problems(model, config.layers, name)
        return problems

    def text_tokenizer_check(self, config: ExperimentConfig, unit: Unit, opts: Any) -> tuple[bool, Any, list[str]]:
        """(usable, the source's tokenizer, problems) for the text world's checks."""
        from reprsim.data.token_windows import source_tokenizer

        try:
            return True, (None if opts.byte_level else source_tokenizer(opts)), []
        except (ValueError, ReprsimError) as exc:
            return False, None, [f"sources.text.options.tokenizer: {exc}"]

    def domain_problem(self, opts: Any, name: str) -> str | None:
        """A built-in domain that is not installed (the text world's checks)."""
        from reprsim.data.text import list_domains
        from reprsim.data.token_windows import domain_tokens

        if opts.corpus(name).path is not None:
            return None
        try:
            domain_tokens(name, opts.max_bytes, opts.val_fraction)
        except ReprsimError as exc:
            return f"text domain {name!r} is not installed ({exc}); installed: {list_domains(available_only=True)}"
        return None

    def chat_recipe_problems(self, recipe: Any) -> list[str]:
        return []

    def chat_unit_problems(self, unit: Unit) -> list[str]:
        return []
