"""A design may name the models it trains (``overlap.designs[i].models``), as it names its sources."""

from __future__ import annotations

import pytest

from reprsim.errors import ConfigError
from reprsim.experiments.config import dump_config, parse_config
from reprsim.experiments.grid import expand

BASE = {
    "sources": [
        {"name": "fashion_mnist", "options": {"per_class": 20}},
        {"name": "colorshapes", "options": {"n": 200}},
    ],
    "models": [{"name": "mlp"}, {"name": "cnn"}],
    "seeds": [0, 1],
}


def _config(designs: list[dict]) -> dict:
    return {**BASE, "overlap": {"designs": designs}}


def test_a_design_trains_only_its_models_on_only_its_sources() -> None:
    config = parse_config(
        _config(
            [
                {"kind": "data", "fractions": [0.0, 1.0], "sources": ["fashion_mnist"], "models": ["mlp"]},
                {"kind": "task", "fractions": [0.0, 0.5, 1.0], "sources": ["colorshapes"], "models": ["cnn"]},
            ]
        )
    )
    units = expand(config)
    pairs = {(u.source.name, u.model.name, u.overlap_kind) for u in units}
    assert pairs == {("fashion_mnist", "mlp", "data"), ("colorshapes", "cnn", "task")}
    assert len(units) == 2 * 2 + 3 * 2  # fractions × seeds per design


def test_designs_without_models_dump_and_expand_as_before() -> None:
    config = parse_config(_config([{"kind": "data", "fractions": [0.0, 1.0]}]))
    assert "models:" not in dump_config(config).split("overlap:")[1]  # older run folders keep their config.yaml
    assert len(expand(config)) == 2 * 2 * 2 * 2  # sources × models × fractions × seeds


def test_an_unknown_model_name_in_a_design_is_a_preflight_problem(tmp_path) -> None:
    from reprsim.experiments.preflight import preflight

    config = parse_config(_config([{"kind": "data", "fractions": [0.0, 1.0], "models": ["resnet"]}]))
    with pytest.raises(ConfigError, match=r"overlap\.designs\.0\.models: \['resnet'\] are not models of this config"):
        preflight(config, expand(config), out_dir=tmp_path / "out", cache_dir=tmp_path / "cache")
