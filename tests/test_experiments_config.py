"""Config schema, grid expansion and seeds of the experiment runner."""

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from reprsim.errors import ConfigError
from reprsim.experiments.config import dump_config, parse_config
from reprsim.experiments.overrides import load_config
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
        (0, 0.2),
        (0, 1),
        (0.5, 0.2),
        (0.5, 1),
        (1, 0.2),
        (1, 1),
    ]


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
        (lambda d: d["overlap"]["designs"][0].update(fractions=["0.5"]), "fraction '0.5' must be a number"),
        (lambda d: d["overlap"]["designs"][1].update(fractions=[True]), "fraction True must be a number"),
        (lambda d: d["overlap"].update(designs=[{"kind": "attribute", "levels": [0, "1"]}]), "fraction '1'"),
    ],
)
def test_bad_configs_name_the_key(mutate, fragment):
    data = quick()
    mutate(data)
    with pytest.raises(ConfigError, match=None) as info:
        parse_config(data)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d["models"][0].update(name="transformer9000"), "transformer9000"),
        (lambda d: d["train"].update(epochs="many"), "train: TrainConfig.epochs must be a positive int"),
        (lambda d: d.update(consequences=["jailbreak_transfer"]), "jailbreak_transfer does not apply"),
    ],
)
def test_what_depends_on_the_kind_is_found_by_the_preflight(mutate, fragment):
    # the schema cannot know which models and recipes a source's kind takes: the preflight checks them
    from reprsim.experiments.preflight import preflight_problems

    data = quick()
    mutate(data)
    config = parse_config(data)
    problems = preflight_problems(config, expand(config)[:1])
    assert any(fragment in p for p in problems), problems


def test_fractions_are_strict_numbers_but_integers_are_fractions():
    data = quick()
    data["overlap"]["designs"][0]["fractions"] = [0, 1]
    assert parse_config(data).overlap.designs[0].fractions == [0.0, 1.0]


def test_dump_round_trips():
    config = parse_config(quick())
    assert parse_config(yaml.safe_load(dump_config(config))) == config


def test_consequence_shorthands():
    data = quick()
    data["consequences"] = ["attack_transfer"]
    assert parse_config(data).consequence("attack_transfer").eps_data == pytest.approx(1 / 255)


def _billion_laughs(levels: int = 9) -> str:
    lines = [
        "name: lol",
        "sources:",
        "  - name: digits",
        "    options:",
        "      a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]",
    ]
    for i in range(1, levels + 1):
        lines.append(f"      a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_config_fails_fast_with_one_line(tmp_path, capsys):
    import time

    from reprsim.cli import main as cli_main

    path = tmp_path / "lol.yaml"
    path.write_text(_billion_laughs())
    assert path.stat().st_size < 1300  # 10**10 values once expanded
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="expands .* to more than 100,000 values"):
        load_config(path)
    assert time.perf_counter() - started < 1
    assert cli_main(["config", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err


def test_yaml_limits_on_size_recursion_and_the_normal_use_of_anchors(tmp_path, monkeypatch):
    from reprsim.experiments import yaml_load
    from reprsim.experiments.yaml_load import MAX_CONFIG_BYTES, load_yaml_text

    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=f"larger than the {MAX_CONFIG_BYTES // 1024} KiB"):
        load_config(big)
    with pytest.raises(ConfigError, match="refers to a node that contains it"):
        load_yaml_text("a: &x [1, *x]")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_yaml_text("[" * 3000 + "]" * 3000)
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_yaml_text("a: [1,", "c.yaml")
    assert "\n" not in str(info.value)
    # anchors a config really uses (shared options) still work, up to the documented size
    assert load_yaml_text("a: &o {n: 1}\nb: *o\n") == {"a": {"n": 1}, "b": {"n": 1}}
    monkeypatch.setattr(yaml_load, "MAX_EXPANDED_NODES", 1000)  # the bound is exact: the list plus its items
    assert len(load_yaml_text("[" + ", ".join(["x"] * 999) + "]")) == 999
    with pytest.raises(ConfigError, match="more than 1,000 values"):
        load_yaml_text("[" + ", ".join(["x"] * 1000) + "]")
    monkeypatch.undo()
    text = (CONFIGS / "quick.yaml").read_text()
    shared = "    options: &opts {per_class: 100, seed: 0}\n    test_options: *opts\n"
    assert text.count("    options: {per_class: 100, seed: 0}\n") == 1
    (tmp_path / "anchored.yaml").write_text(text.replace("    options: {per_class: 100, seed: 0}\n", shared))
    source = load_config(tmp_path / "anchored.yaml").sources[0]
    assert source.options == source.test_options == {"per_class": 100, "seed": 0}


@pytest.mark.parametrize(
    "key, value", [("seeds", ["0"]), ("probe_size", "300"), ("probe_size", True), ("execution", {"workers": "2"})]
)
def test_numbers_written_as_strings_or_booleans_are_refused_not_coerced(key, value):
    data = yaml.safe_load((CONFIGS / "quick.yaml").read_text()) | {key: value}
    with pytest.raises(ConfigError, match=key):
        parse_config(data)
    attack = {"attack_transfer": {"eps_data": "0.1"}}
    with pytest.raises(ConfigError, match="eps_data"):
        parse_config(yaml.safe_load((CONFIGS / "quick.yaml").read_text()) | {"consequences": [attack]})
