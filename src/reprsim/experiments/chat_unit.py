"""The unit of a language-model sweep (source ``chat``): two chat models of the synthetic world.

Split (data overlap = shared dialogues, task overlap = shared request families) → two-phase
training of A and B (:func:`reprsim.chat.pipeline.train_pair`, cached) → mean-pooled hidden states
on probe prompts → measures → jailbreak transfer. The source's ``options`` are the
:class:`reprsim.chat.ChatWorld` arguments (e.g. ``{seed: 0, n_families: 24, n_forbidden: 8}``);
``train`` holds :class:`reprsim.chat.training.ChatTrainConfig` fields.
"""

from __future__ import annotations

from pathlib import Path

from reprsim.errors import ReprsimError
from reprsim.experiments.config import ExperimentConfig
from reprsim.experiments.grid import Unit
from reprsim.experiments.similarity import probe_rows

# probe prompt group -> probe role (see reprsim.chat.pipeline.probe_sets)
_ROLES = {"forbidden": "id", "benign": "common", "benign_one": "ood_one", "ood": "ood_all"}


def _world(unit: Unit):
    from reprsim.chat import ChatWorld

    return ChatWorld(**unit.source.options)


def _fraction(unit: Unit) -> float:
    return unit.data_fraction if unit.overlap_kind == "data" else unit.task_fraction


def chat_unit(config: ExperimentConfig, unit: Unit, cache_dir: Path, timings: dict, progress: bool) -> list[dict]:
    from reprsim.attacks.jailbreak import jailbreak_transfer_stage
    from reprsim.chat.pipeline import probe_sets, train_pair
    from reprsim.experiments.unit import timed_stage
    from reprsim.features import extract

    seeds = unit.seeds()
    world = _world(unit)
    with timed_stage(timings, "train_pair"):
        pair = train_pair(world, unit.overlap_kind, _fraction(unit), unit.seed, dict(unit.train),
                          workdir=cache_dir / "chat", progress=progress)  # fmt: skip
    with timed_stage(timings, "features"):
        probes = probe_sets(world, pair.split, n=config.probe_size, seed=seeds["probe"])
        feats = {
            (name, side): extract(model, tokens, layers=config.layers, pool="mean")
            for name, tokens in probes.items()
            for side, model in (("a", pair.model_a), ("b", pair.model_b))
        }
    with timed_stage(timings, "measures"):
        rows = [
            row
            for name, tokens in probes.items()
            for row in probe_rows(config.measures, name, _ROLES.get(name, "id"), len(tokens), feats[name, "a"],
                                  feats[name, "b"], config.layers, seeds["probe"])  # fmt: skip
        ]
    consequences = {}
    spec = config.consequence("jailbreak_transfer")
    if spec is not None:
        with timed_stage(timings, "jailbreak_transfer"):
            consequences = jailbreak_transfer_stage(pair.model_a, pair.model_b, world, pair.split,
                                                    seed=seeds["attack"], **spec.params)  # fmt: skip
    common = unit.describe() | {"status": "ok"} | pair.metrics
    return [common | row | consequences for row in rows]


def chat_preflight(config: ExperimentConfig, units: list[Unit]) -> None:
    """Check the world options, the training recipe and every split before training."""
    from reprsim.chat.split import make_chat_split
    from reprsim.chat.training import ChatTrainConfig

    try:
        train_cfg = ChatTrainConfig.from_dict(dict(config.train))
    except (TypeError, ValueError) as exc:
        raise ReprsimError(f"train: {exc}") from None
    for unit in units:
        try:
            make_chat_split(_world(unit), unit.overlap_kind, _fraction(unit), unit.seed,
                            n_train_per_family=train_cfg.n_train_per_family,
                            n_heldout_per_family=train_cfg.n_heldout_per_family)  # fmt: skip
        except (TypeError, ValueError) as exc:
            raise ReprsimError(f"unit {unit.unit_id}: {exc}") from None
