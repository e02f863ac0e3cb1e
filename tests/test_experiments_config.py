"""Config schema, grid expansion and seeds of the experiment runner."""

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from reprsim.errors import ConfigError
from reprsim.experiments.config import dump_config, load_config, parse_config
from reprsim.experiments.grid import SEED_COMPONENTS, expand

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def quick() -> dict:
    return yaml.safe_load((CONFIGS / "quick.yaml").read_text())


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_validates(path):
    config = load_config(path)
    assert len(expand(config)) >= 1


def test_grid_is_sources_models_designs_fractions_seeds():
    data = quick()
    data["seeds"] = [0, 1, 2]
    config = parse_config(data)
    units = expand(config)
    # data: 2 fractions, task: 2 fractions, 3 seeds
    assert len(units) == (2 + 2) * 3
    kinds = [u.overlap_kind for u in units]
    assert kinds.count("data") == 6 and kinds.count("task") == 6
    assert {u.task_fraction for u in units if u.overlap_kind == "data"} == {1.0}
    assert {u.data_fraction for u in units if u.overlap_kind == "task"} == {None}


def test_combined_grid_is_the_cartesian_product():
    data = quick()
    data["overlap"]["designs"] = [{"kind": "combined", "data_fractions": [0, 0.5, 1], "task_fractions": [0.2, 1]}]
    units = expand(parse_config(data))
    assert sorted({(u.data_fraction, u.task_fraction) for u in units}) == [
        (0, 0.2), (0, 1), (0.5, 0.2), (0.5, 1), (1, 0.2), (1, 1)]  # fmt: skip


def test_unit_ids_depend_on_training_content_only():
    config = parse_config(quick())
    other_measures = copy.deepcopy(quick())
    other_measures["measures"] = {"names": ["cka"], "params": {}}
    other_train = copy.deepcopy(quick())
    other_train["train"]["epochs"] += 1
    ids = [u.unit_id for u in expand(config)]
    assert ids == [u.unit_id for u in expand(parse_config(other_measures))]
    assert set(ids).isdisjoint(u.unit_id for u in expand(parse_config(other_train)))


def test_component_seeds_are_spawned_and_distinct():
    unit = expand(parse_config(quick()))[0]
    seeds = unit.seeds()
    assert list(seeds) == list(SEED_COMPONENTS)
    assert len(set(seeds.values())) == len(seeds)
    expected = np.random.SeedSequence(unit.seed).spawn(len(SEED_COMPONENTS))[0].generate_state(1)[0]
    assert seeds["split"] == int(expected)
    assert unit.seeds() == seeds  # deterministic


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d.update(epochz=3), "epochz: unknown key"),
        (lambda d: d["overlap"]["designs"][0].update(fractions=[0.0, 1.5]), "outside [0, 1]"),
        (lambda d: d["overlap"]["designs"][0].update(kind="diagonal"), "overlap.designs.0"),
        (lambda d: d.update(seeds=[1, 1]), "duplicates"),
        (lambda d: d.pop("sources"), "sources: required key is missing"),
        (lambda d: d["measures"].update(names=["ckaa"]), "unknown measure(s) ['ckaa']"),
        (lambda d: d["measures"].update(names=["cka"]), "measures.params: ['k'] is taken by none"),
        (lambda d: d["models"][0].update(name="transformer9000"), "unknown model 'transformer9000'"),
        (lambda d: d["train"].update(epochs="many"), "train"),
        (lambda d: d.update(consequences=["jailbreak_transfer"]), "jailbreak_transfer needs the 'chat' source"),
    ],
)
def test_bad_configs_name_the_key(mutate, fragment):
    data = quick()
    mutate(data)
    with pytest.raises(ConfigError, match=None) as info:
        parse_config(data)
    assert fragment in str(info.value)


def test_dump_round_trips():
    config = parse_config(quick())
    assert parse_config(yaml.safe_load(dump_config(config))) == config


def test_consequence_shorthands():
    data = quick()
    data["consequences"] = ["attack_transfer"]
    assert parse_config(data).consequence("attack_transfer").eps_data == pytest.approx(1 / 255)
