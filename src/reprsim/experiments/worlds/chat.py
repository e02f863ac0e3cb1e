"""The ``chat`` world: the synthetic chat world (:mod:`reprsim.chat`), its split and jailbreak transfer.

Split (data overlap = shared dialogues, task overlap = shared request families,
:mod:`reprsim.chat.split`); models A and B trained through reprsim's one training loop
(:mod:`reprsim.chat.training`): by default (``shared_base: true``) as two fine-tunes of one
safety-tuned base model (the family's :meth:`chat_start`: a zoo LM trained here once per world,
model and base recipe and kept in the shared model cache, or the Hugging Face demo base), with
``shared_base: false`` each two-phase from scratch. Probe sets: the world's probe prompts
(:mod:`reprsim.chat.probes`). Per-pair columns: each model's held-out evaluation on its own
families and the base's. Consequence: ``jailbreak_transfer`` on the world's behaviours
(:mod:`reprsim.attacks.jailbreak_transfer`, in the family's prompt format).

The source's ``options`` are the :class:`reprsim.chat.ChatWorld` arguments (e.g. ``{seed: 0,
n_families: 24, n_forbidden: 8}``); ``train`` holds :class:`reprsim.chat.training.ChatRecipe` fields.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from reprsim.data.split_types import RealisedFractions
from reprsim.hashing import content_hash
from reprsim.experiments.worlds.base import DataWorld, ProbeSet, Trained

if TYPE_CHECKING:
    from reprsim.chat import ChatWorld
    from reprsim.chat.split import ChatSplit
    from reprsim.chat.training import ChatRecipe
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.families.base import ModelFamily
    from reprsim.experiments.grid import Unit

#: per-model evaluation keys (held-out requests of the model's families) that become columns
EVAL_KEYS = ("refusal_rate", "benign_accuracy", "benign_refusal_rate", "forbidden_content_rate", "benign_partial")


@dataclass
class ChatPair(RealisedFractions):
    """A unit's world, recipe and split, and what both models start from (the family's shared base, or None)."""

    world: ChatWorld
    recipe: ChatRecipe
    split: ChatSplit
    start: Any = None
    base_scores: dict[str, Any] | None = None  # the start's held-out evaluation, when it has one

    @property
    def vocab_size(self) -> int:
        return int(self.world.vocab_size)

    @property
    def block_size(self) -> int:
        return int(self.recipe.block_size)

    @property
    def shared_base(self) -> bool:
        """Whether both models start as copies of one base (``train.shared_base``)."""
        return bool(self.recipe.shared_base)

    def requests(self, side: str):
        return self.split.requests_a if side == "a" else self.split.requests_b

    def families(self, side: str) -> list[int]:
        return self.split.families_a if side == "a" else self.split.families_b


def dialogue_length_problems(recipe, world) -> list[str]:  # noqa: ANN001 - a ChatRecipe and a ChatWorld
    """The training block must hold the longest dialogue (prompt, answer and noise tokens)."""
    longest = world.max_prompt_len + world.response_len + recipe.noise_max_len
    if recipe.block_size >= longest:
        return []
    return [
        f"train.block_size={recipe.block_size} is shorter than the longest dialogue "
        f"({longest} tokens); use block_size >= {longest} plus the suffix length"
    ]


def _fraction(unit: Unit) -> float:
    return unit.data_fraction if unit.overlap_kind == "data" else unit.task_fraction


def _requests_digest(requests) -> str:  # noqa: ANN001 - a list of chat Requests
    digest = hashlib.sha256()
    for r in requests:
        digest.update(f"{r.family}|{' '.join(r.words)};".encode())
    return digest.hexdigest()


def evaluate(model: nn.Module, pair: ChatPair, families: list[int] | None) -> dict[str, float]:
    """The held-out evaluation of ``model`` on the requests of ``families`` (None: all)."""
    from reprsim.chat.training import evaluate_chat_model

    pool = pair.split.heldout_pool
    if families is not None:
        pool = [r for r in pool if r.family in set(families)]
    return evaluate_chat_model(model, pair.world, pool)


class ChatDialogueWorld(DataWorld):
    name = "chat"
    overlap_kinds = ("data", "task")
    consequences = ("jailbreak_transfer",)

    def recipe(self, unit: Unit) -> Any:
        from reprsim.chat.training import ChatRecipe

        return ChatRecipe.from_dict(dict(unit.train))

    def pair(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None, family: ModelFamily) -> ChatPair:
        """The world, the split (seed stream ``split``) and, with a cache, what the family's models start from."""
        from reprsim.chat import ChatWorld
        from reprsim.chat.split import make_chat_split

        world = ChatWorld(**unit.source.options)
        recipe = self.recipe(unit)
        split = make_chat_split(
            world,
            unit.overlap_kind,
            _fraction(unit),
            unit.seeds()["split"],
            n_train_per_family=recipe.n_train_per_family,
            n_heldout_per_family=recipe.n_heldout_per_family,
            mode=unit.mode,
        )
        pair = ChatPair(world, recipe, split)
        if cache_dir is not None:
            pair.start = family.chat_start(config, unit, cache_dir, pair, self)
            pair.base_scores = family.base_scores(pair.start)
        return pair

    def shared_base(
        self, config: ExperimentConfig, unit: Unit, pair: ChatPair, cache_dir: Path, new_model: Callable[[], nn.Module]
    ) -> Trained:
        """A base trained two-phase on the world's base pool once per (world, model, base recipe), then cached."""
        from reprsim.chat.training import base_pools, train_two_phase
        from reprsim.devices import resolve_device
        from reprsim.experiments.weights import cached_model

        recipe = pair.recipe
        pool, _ = base_pools(pair.world, recipe)
        device = resolve_device(config.execution.device)
        key = "chat-base-" + content_hash(
            {"world": pair.world.config(), "model": unit.model.model_dump(mode="json"), "recipe": recipe.base_fields()}
        )

        def fit(model, checkpoint_dir):
            history = train_two_phase(
                model, pair.world, pool, recipe, seed=recipe.base_seed, checkpoint_dir=checkpoint_dir, device=device
            )
            return model, evaluate(model, pair, None) | {"final_loss": (history["safety"] or [float("nan")])[-1]}

        model, info = cached_model(new_model(), key, cache_dir, fit)
        return Trained(model, info, key)

    def lm_shape(self, unit: Unit) -> tuple[int, int]:
        """(vocabulary size, block size) of a language model of the unit's world; TypeError / ValueError for bad options."""
        from reprsim.chat import ChatWorld

        return int(ChatWorld(**unit.source.options).vocab_size), int(self.recipe(unit).block_size)

    def probes(self, config: ExperimentConfig, unit: Unit, pair: ChatPair) -> list[ProbeSet]:
        from reprsim.chat.probes import PROBE_ROLES, probe_sets

        probes = probe_sets(pair.world, pair.split, n=config.probe_size, seed=unit.seeds()["probe"])
        return [ProbeSet(name, PROBE_ROLES[name], tokens) for name, tokens in probes.items()]

    def feature_batch_size(self, config: ExperimentConfig) -> int | None:
        return None  # the family's

    def train_language_model(
        self,
        config: ExperimentConfig,
        unit: Unit,
        pair: ChatPair,
        side: str,
        model: nn.Module,
        checkpoint_dir: Path,
        device: torch.device,
        progress: bool,
    ) -> tuple[nn.Module, dict]:
        """Fine-tune the base copy (or train two-phase from scratch) with seed stream ``order_<side>``;
        info: the held-out evaluation on the model's own families."""
        from reprsim.chat.training import finetune, train_two_phase

        train = finetune if pair.recipe.shared_base else train_two_phase
        train(
            model,
            pair.world,
            pair.requests(side),
            pair.recipe,
            seed=unit.seeds()[f"order_{side}"],
            checkpoint_dir=checkpoint_dir,
            device=device,
            progress=progress,
        )
        return model, evaluate(model, pair, pair.families(side))

    def scratch_key(self, unit: Unit, pair: ChatPair, side: str) -> dict[str, Any]:
        """The world's part of the weights key of a zoo LM (a copy of the shared base, or trained from scratch)."""
        start = {"base": pair.start.key} if pair.recipe.shared_base else {"init": unit.seeds()[f"init_{side}"]}
        return start | {
            "world": pair.world.config(),
            "recipe": pair.recipe.to_dict(),
            "requests": _requests_digest(pair.requests(side)),
        }

    def finetune_key(self, pair: ChatPair, side: str) -> dict[str, Any]:
        """The world's part of the weights key of a fine-tune of a pretrained base."""
        return {"world": pair.world.config(), "data": _requests_digest(pair.requests(side))}

    def columns(self, pair: ChatPair, a: Trained, b: Trained) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        for side, trained in (("a", a), ("b", b)):
            columns |= {f"{key}_{side}": trained.info[key] for key in EVAL_KEYS}
            columns[f"acc_{side}"] = trained.info["benign_accuracy"]
        if pair.base_scores:
            columns |= {
                "base_refusal_rate": pair.base_scores["refusal_rate"],
                "base_benign_accuracy": pair.base_scores["benign_accuracy"],
            }
        return columns

    def stages(self, family: ModelFamily) -> tuple[str, ...]:
        return self.consequences if getattr(family, "prompt_format", None) else ()

    def consequence(
        self,
        spec: Any,
        config: ExperimentConfig,
        unit: Unit,
        pair: ChatPair,
        a: Trained,
        b: Trained,
        seed: int,
        family: ModelFamily,
    ) -> dict[str, Any]:
        """Jailbreak transfer (:mod:`reprsim.attacks.jailbreak_transfer`) on the world's held-out forbidden
        requests, in the family's prompt format: the world's own tokens for zoo LMs (defaults: greedy
        answers of the world's answer length, the exact judge), the base's tokenizer for Hugging Face LMs
        (defaults: sampled answers)."""
        from reprsim.attacks.jailbreak_options import parse_options
        from reprsim.attacks.jailbreak_prompts import PromptFormat, WorldFormat, chat_world_behaviours
        from reprsim.attacks.jailbreak_transfer import jailbreak_transfer

        options = parse_options(spec.params, warn=False)
        if family.prompt_format == "world":
            opts = options.resolve("world", max_new_tokens=pair.world.response_len + 1)
            fmt = WorldFormat.from_options(pair.world, opts)
        else:
            opts = options.resolve("hf_world")
            fmt = PromptFormat.from_options(pair.start.tokenizer, opts, pair.world)
        behaviours = chat_world_behaviours(pair.world, pair.split, opts.target_len)
        return jailbreak_transfer(a.model, b.model, fmt, behaviours, opts, seed=seed)

    def check(self, config: ExperimentConfig, units: list[Unit], family: ModelFamily) -> list[str]:
        """The recipe, the jailbreak options of the zoo stage, the family's chat checks, every split and dialogue length."""
        from reprsim.chat.training import ChatRecipe

        try:
            recipe = ChatRecipe.from_dict(dict(config.train))
        except (TypeError, ValueError) as exc:
            return [f"train: {exc}"]
        problems: list[str] = []
        problems += family.chat_recipe_problems(recipe)
        for unit in units:
            unit_problems = family.chat_unit_problems(unit)
            if unit_problems:
                problems += unit_problems
                continue
            try:
                pair = self.pair(config, unit, None, family)
            except (TypeError, ValueError) as exc:
                problems.append(f"unit {unit.unit_id}: {exc}")
                continue
            problems += dialogue_length_problems(recipe, pair.world)
        return list(dict.fromkeys(problems))
