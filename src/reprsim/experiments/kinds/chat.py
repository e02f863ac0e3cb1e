"""The ``chat`` kind: two chat language models of the synthetic world, and jailbreak transfer between them.

Split (data overlap = shared dialogues, task overlap = shared request families,
:mod:`reprsim.chat.split`) → A and B trained through reprsim's one training loop
(:mod:`reprsim.chat.training`): by default (``shared_base: true``) as two fine-tunes of one
safety-tuned base model, itself trained once per world, model and base recipe and kept in the
shared model cache; with ``shared_base: false`` each two-phase from scratch. Representations:
mean-pooled hidden states on probe prompts (:mod:`reprsim.chat.probes`). Consequence:
``jailbreak_transfer`` (:mod:`reprsim.chat.jailbreak`).

The source's ``options`` are the :class:`reprsim.chat.ChatWorld` arguments (e.g. ``{seed: 0,
n_families: 24, n_forbidden: 8}``); ``train`` holds :class:`reprsim.chat.training.ChatRecipe`
fields; the architecture is the config's zoo language model (``models: [{name: gpt, options:
{n_layer: 2, n_head: 4, n_embd: 64}}]``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from reprsim.data.split_types import RealisedFractions
from reprsim.errors import ReprsimError
from reprsim.experiments.grid import content_hash
from reprsim.experiments.kinds.base import Kind, Probe, Trained, layer_problems

if TYPE_CHECKING:
    from reprsim.chat import ChatWorld
    from reprsim.chat.split import ChatSplit
    from reprsim.chat.training import ChatRecipe
    from reprsim.experiments.config import ExperimentConfig
    from reprsim.experiments.grid import Unit

#: per-model evaluation keys (held-out requests of the model's families) that become columns
_EVAL_KEYS = ("refusal_rate", "benign_accuracy", "benign_refusal_rate", "forbidden_content_rate", "benign_partial")
_JAILBREAK_METHODS = ("random_search", "gcg")


def _jailbreak_param_problems(params: dict[str, Any], method: str) -> list[str]:
    """Names in ``params`` that neither the chat jailbreak stage nor its ``method`` takes (they used to
    fail as a TypeError after every model was trained), or that the stage sets itself."""
    import inspect

    from reprsim.attacks import jailbreak as attacks
    from reprsim.chat.jailbreak import jailbreak_transfer_stage

    fixed = {"model_a", "model_b", "world", "split", "seed", "model", "prompts", "allowed_tokens", "pad_id",
             "attack_options"}  # fmt: skip
    taken = set(inspect.signature(jailbreak_transfer_stage).parameters)
    taken |= set(inspect.signature(getattr(attacks, method)).parameters)
    taken -= fixed
    unknown = sorted(set(params) - taken)
    if not unknown:
        return []
    return [f"consequences.jailbreak_transfer: unknown option(s) {unknown} for method {method}; valid: {sorted(taken)}"]
_JAILBREAK_MODES = ("universal", "individual")


@dataclass
class ChatPair(RealisedFractions):
    """A unit's world, recipe and split, and (shared-base mode) the trained base model."""

    world: ChatWorld
    recipe: ChatRecipe
    split: ChatSplit
    base: Trained | None = None

    def requests(self, side: str):
        return self.split.requests_a if side == "a" else self.split.requests_b

    def families(self, side: str) -> list[int]:
        return self.split.families_a if side == "a" else self.split.families_b


def dialogue_length_problems(recipe, world) -> list[str]:  # noqa: ANN001 - a ChatRecipe and a ChatWorld
    """The training block must hold the longest dialogue (prompt, answer and noise tokens)."""
    longest = world.max_prompt_len + world.response_len + recipe.noise_max_len
    if recipe.block_size >= longest:
        return []
    return [f"train.block_size={recipe.block_size} is shorter than the longest dialogue "
            f"({longest} tokens); use block_size >= {longest} plus the suffix length"]


def _fraction(unit: Unit) -> float:
    return unit.data_fraction if unit.overlap_kind == "data" else unit.task_fraction


def _evaluate(model: nn.Module, pair: ChatPair, families: list[int] | None) -> dict[str, float]:
    from reprsim.chat.training import evaluate_chat_model

    pool = pair.split.heldout_pool
    if families is not None:
        pool = [r for r in pool if r.family in set(families)]
    return evaluate_chat_model(model, pair.world, pool)


def _requests_digest(requests) -> str:  # noqa: ANN001 - a list of chat Requests
    digest = hashlib.sha256()
    for r in requests:
        digest.update(f"{r.family}|{' '.join(r.words)};".encode())
    return digest.hexdigest()


class ChatKind(Kind):
    name = "chat"
    overlap_kinds = ("data", "task")
    model_kinds = ("lm",)
    consequences = ("jailbreak_transfer",)
    feature_pool = "mean"

    # ---- data -----------------------------------------------------------------------------
    def pair(self, config: ExperimentConfig, unit: Unit, cache_dir: Path | None) -> ChatPair:
        """The world, the split (seed stream ``split``) and, with a cache, the trained shared base."""
        from reprsim.chat import ChatWorld
        from reprsim.chat.split import make_chat_split

        world = ChatWorld(**unit.source.options)
        recipe = self.recipe(unit)
        split = make_chat_split(world, unit.overlap_kind, _fraction(unit), unit.seeds()["split"],
                                n_train_per_family=recipe.n_train_per_family,
                                n_heldout_per_family=recipe.n_heldout_per_family, mode=unit.mode)  # fmt: skip
        pair = ChatPair(world, recipe, split)
        if recipe.shared_base and cache_dir is not None:
            pair.base = self._base(config, unit, pair, cache_dir)
        return pair

    def recipe(self, unit: Unit) -> Any:
        from reprsim.chat.training import ChatRecipe

        return ChatRecipe.from_dict(dict(unit.train))

    def _base(self, config: ExperimentConfig, unit: Unit, pair: ChatPair, cache_dir: Path) -> Trained:
        """The shared base: trained two-phase on its own pool once per (world, model, base recipe), then cached."""
        from reprsim.chat.training import base_pools, train_two_phase
        from reprsim.devices import resolve_device
        from reprsim.experiments.weights import cached_model

        recipe = pair.recipe
        pool, _ = base_pools(pair.world, recipe)
        device = resolve_device(config.execution.device)
        key = "chat-base-" + content_hash({"world": pair.world.config(), "model": unit.model.model_dump(mode="json"),
                                           "recipe": recipe.base_fields()})  # fmt: skip

        def fit(model, checkpoint_dir):
            history = train_two_phase(model, pair.world, pool, recipe, seed=recipe.base_seed,
                                      checkpoint_dir=checkpoint_dir, device=device)  # fmt: skip
            return model, _evaluate(model, pair, None) | {"final_loss": (history["safety"] or [float("nan")])[-1]}

        model, info = cached_model(self._new_model(unit, pair, recipe.base_seed), key, cache_dir, fit)
        return Trained(model, info, key)

    def probes(self, config: ExperimentConfig, unit: Unit, pair: ChatPair) -> list[Probe]:
        from reprsim.chat.probes import PROBE_ROLES, probe_sets

        probes = probe_sets(pair.world, pair.split, n=config.probe_size, seed=unit.seeds()["probe"])
        return [Probe(name, PROBE_ROLES[name], tokens) for name, tokens in probes.items()]

    # ---- models ---------------------------------------------------------------------------
    def _new_model(self, unit: Unit, pair: ChatPair, seed: int | None) -> nn.Module:
        from reprsim import models

        return models.build(unit.model.name, vocab_size=pair.world.vocab_size, block_size=pair.recipe.block_size,
                            seed=seed, **unit.model.options)  # fmt: skip

    def build(self, config: ExperimentConfig, unit: Unit, pair: ChatPair, side: str) -> nn.Module:
        """From scratch: a fresh model (seed stream ``init_<side>``); shared base: a copy of the base."""
        model = self._new_model(unit, pair, unit.seeds()[f"init_{side}"])
        if pair.recipe.shared_base:
            if pair.base is None:
                raise ReprsimError("the chat kind needs a cache folder to train its shared base model")
            model.load_state_dict(pair.base.model.state_dict())
        return model

    def weights_key(self, config: ExperimentConfig, unit: Unit, pair: ChatPair, side: str) -> dict[str, Any]:
        seeds = unit.seeds()
        start = {"base": pair.base.key} if pair.recipe.shared_base else {"init": seeds[f"init_{side}"]}
        return start | {"world": pair.world.config(), "model": unit.model.model_dump(mode="json"),
                        "recipe": pair.recipe.to_dict(), "order": seeds[f"order_{side}"],
                        "requests": _requests_digest(pair.requests(side))}  # fmt: skip

    def fit(self, config: ExperimentConfig, unit: Unit, pair: ChatPair, side: str, model: nn.Module,
            checkpoint_dir: Path, device: torch.device, progress: bool) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
        """Fine-tune the base copy (or train two-phase from scratch) with seed stream ``order_<side>``;
        info: the held-out evaluation on the model's own families."""
        from reprsim.chat.training import finetune, train_two_phase

        seed = unit.seeds()[f"order_{side}"]
        train = finetune if pair.recipe.shared_base else train_two_phase
        train(model, pair.world, pair.requests(side), pair.recipe, seed=seed, checkpoint_dir=checkpoint_dir,
              device=device, progress=progress)  # fmt: skip
        return model, _evaluate(model, pair, pair.families(side))

    def pair_columns(self, pair: ChatPair, a: Trained, b: Trained) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        for side, trained in (("a", a), ("b", b)):
            columns |= {f"{key}_{side}": trained.info[key] for key in _EVAL_KEYS}
            columns[f"acc_{side}"] = trained.info["benign_accuracy"]
        if pair.base is not None:
            columns |= {"base_refusal_rate": pair.base.info["refusal_rate"],
                        "base_benign_accuracy": pair.base.info["benign_accuracy"]}  # fmt: skip
        return columns

    # ---- consequences ---------------------------------------------------------------------
    def consequence(self, spec: Any, config: ExperimentConfig, unit: Unit, pair: ChatPair, a: Trained, b: Trained,
                    seed: int) -> dict[str, Any]:  # fmt: skip
        from reprsim.chat.jailbreak import jailbreak_transfer_stage

        return jailbreak_transfer_stage(a.model, b.model, pair.world, pair.split, seed=seed, **spec.params)

    # ---- preflight ------------------------------------------------------------------------
    def check(self, config: ExperimentConfig, units: list[Unit]) -> list[str]:
        """The world options, the recipe, the jailbreak options, every split, the model and its layers."""
        from reprsim.chat.training import ChatRecipe

        problems: list[str] = []
        try:
            recipe = ChatRecipe.from_dict(dict(config.train))
        except (TypeError, ValueError) as exc:
            return [f"train: {exc}"]
        spec = next((c for c in config.consequences if c.kind == "jailbreak_transfer"), None)
        if spec is not None:
            method, mode = spec.params.get("method", "random_search"), spec.params.get("mode", "universal")
            if method not in _JAILBREAK_METHODS or mode not in _JAILBREAK_MODES:
                problems.append(f"consequences.jailbreak_transfer: method must be one of {list(_JAILBREAK_METHODS)} "
                                f"and mode one of {list(_JAILBREAK_MODES)}, got {method!r} and {mode!r}")  # fmt: skip
            else:
                problems += _jailbreak_param_problems(spec.params, method)
        checked_models: set[str] = set()
        for unit in units:
            try:
                pair = self.pair(config, unit, cache_dir=None)
            except (TypeError, ValueError) as exc:
                problems.append(f"unit {unit.unit_id}: {exc}")
                continue
            problems += dialogue_length_problems(recipe, pair.world)
            if unit.model.name in checked_models:
                continue
            checked_models.add(unit.model.name)
            clash = sorted({"vocab_size", "block_size"} & set(unit.model.options))
            if clash:
                problems.append(f"models.{unit.model.name}: options {clash} are set by the chat kind "
                                "(the world's vocabulary, train.block_size); remove them")  # fmt: skip
                continue
            try:
                model = self._new_model(unit, pair, None)
            except (TypeError, ValueError) as exc:
                problems.append(f"models.{unit.model.name}: {exc}")
                continue
            problems += layer_problems(model, config.layers, unit.model.name)
        return list(dict.fromkeys(problems))
