"""KEY=VALUE config overrides: OmegaConf dot-list values, schema-checked keys, strict validation behind."""

from pathlib import Path

import pytest
import yaml

from reprsim.cli import build_parser
from reprsim.cli import main as cli_main
from reprsim.errors import ConfigError
from reprsim.experiments.config import dump_config, parse_config
from reprsim.experiments.overrides import load_config
from reprsim.experiments.overrides import apply_overrides

QUICK = Path(__file__).resolve().parent.parent / "configs" / "quick.yaml"


def test_the_documented_overrides_change_exactly_their_keys():
    base = load_config(QUICK)
    config = load_config(
        QUICK,
        overrides=[
            "seeds=[0,1,2]",
            "train.epochs=5",
            "overlap.designs.0.fractions=[0,0.5,1]",
            "measures.names=[cka,cknna]",
        ],
    )
    assert config.seeds == [0, 1, 2]
    assert config.train == {**base.train, "epochs": 5}
    assert config.overlap.designs[0].fractions == [0.0, 0.5, 1.0]
    assert config.overlap.designs[1] == base.overlap.designs[1]
    assert config.measures.names == ["cka", "cknna"] and config.measures.params == {"k": 5}
    # everything else is untouched
    same = {
        k
        for k in ("name", "sources", "probes", "probe_size", "models", "layers", "consequences", "execution")
        if getattr(config, k) == getattr(base, k)
    }
    assert len(same) == 8


def test_defaults_and_shorthands_can_be_overridden_and_later_overrides_win():
    # quick.yaml writes neither execution.threads_per_unit nor consequences[0].steps; its consequence is a shorthand
    config = load_config(
        QUICK,
        overrides=[
            "execution.threads_per_unit=2",
            "consequences.0.steps=7",
            "train.lr=1e-3",
            "train.lr=0.01",
            "measures.prepare.clip_quantile=null",
            "sources.0.options.per_class=20",
            "overlap.designs.0.fractions.1=0.5",
        ],
    )
    assert config.execution.threads_per_unit == 2
    assert config.consequence("attack_transfer").steps == 7 and config.consequence("attack_transfer").n == 100
    assert config.train["lr"] == 0.01  # YAML 1.1 reads 1e-3 as a string; OmegaConf's value parser reads a float
    assert config.measures.prepare.clip_quantile is None
    assert config.sources[0].options == {"per_class": 20, "seed": 0}
    assert config.overlap.designs[0].fractions == [0.0, 0.5]


def test_python_entry_takes_a_mapping_or_a_config():
    data = yaml.safe_load(QUICK.read_text())
    a = apply_overrides(data, ["seeds=[4]"])
    b = apply_overrides(parse_config(data), ["seeds=[4]"])
    assert a == b and a.seeds == [4]
    assert apply_overrides(data, []) == parse_config(data)
    with pytest.raises(TypeError, match="list"):
        apply_overrides(data, "seeds=[4]")


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.epochs=abc", "train: TrainConfig.epochs must be a positive int, got 'abc'"),
        ("train.epochz=3", "did you mean 'epochs'"),
        ("overlap.designs.7.fractions=[0]", "overlap.designs has 2 item(s) (indices 0..1); there is no item 7"),
        ("overlap.designs.0.fractions=[0,1.5]", "fraction 1.5 is outside [0, 1]"),
        ("overlap.designs.0.fractions=['0.5']", "must be a number such as 0.5"),
        ("execution.workerz=2", "unknown key 'workerz' in execution; did you mean execution.workers?"),
        ("overlap.designs.0.fractionz=[0]", "did you mean overlap.designs.0.fractions?"),
        ("epochs=3", "unknown key 'epochs' in the config"),
        ("seeds.x=1", "seeds is a list; address an item by its index"),
        ("name.first=x", "name is a str value and has no key 'first'"),
        ("seeds=[0,", "the value is not valid YAML"),
        ("probe_size=many", "probe_size: Input should be a valid integer"),
        ("=3", "the key before '=' must be a dotted path"),
    ],
)
def test_bad_overrides_are_one_line_exit_2_and_start_nothing(tmp_path, capsys, override, fragment):
    out = tmp_path / "run"
    assert cli_main(["run", str(QUICK), "--out", str(out), "--quiet", override]) == 2
    err = capsys.readouterr().err
    assert fragment in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    with pytest.raises(ConfigError, match=None):
        load_config(QUICK, overrides=[override])
    assert cli_main(["config", "validate", str(QUICK), override]) == 2


def test_config_show_prints_the_resolved_config(capsys):
    assert cli_main(["config", "show", str(QUICK), "seeds=[0,1,2]", "train.epochs=5"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["seeds"] == [0, 1, 2] and shown["train"]["epochs"] == 5
    assert shown == yaml.safe_load(dump_config(load_config(QUICK, overrides=["seeds=[0,1,2]", "train.epochs=5"])))
    assert cli_main(["config", "validate", str(QUICK), "seeds=[0,1,2]"]) == 0
    assert "(12 units)" in capsys.readouterr().out  # 2 data + 2 task fractions × 3 seeds


def test_overrides_may_stand_before_or_after_options_and_keep_their_order():
    args = build_parser().parse_args(
        ["run", "c.yaml", "seeds=[0]", "--out", "d", "train.epochs=2", "--quiet", "seeds=[1]"]
    )
    assert args.overrides == ["seeds=[0]", "train.epochs=2", "seeds=[1]"] and args.quiet and str(args.out) == "d"
    assert build_parser().parse_args(["run", "c.yaml", "--out", "d"]).overrides in (None, [])
    with pytest.raises(SystemExit):  # an unknown option is still an error, not an override
        build_parser().parse_args(["run", "c.yaml", "--out", "d", "--epochs=3"])


def test_dry_run_lists_the_overridden_grid(tmp_path, capsys):
    assert cli_main(["run", str(QUICK), "--out", str(tmp_path / "run"), "--dry-run", "seeds=[0,1]"]) == 0
    assert "8 units: 8 pending" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()
