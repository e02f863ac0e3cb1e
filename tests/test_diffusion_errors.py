"""Bad input for the diffusion kind: each is refused before any training, with the fix."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("diffusers")

from reprsim.errors import ReprsimError
from reprsim.experiments import parse_config
from reprsim.experiments.composition import compose, composition_of
from reprsim.experiments.families import get_family
from reprsim.experiments.grid import expand
from reprsim.experiments.preflight import preflight_problems

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one intra-op thread (conftest)

BASE = {
    "name": "diffusion-bad",
    "sources": [
        {
            "name": "colorshapes",
            "label": "color",
            "test_options": {"n": 40},
            "options": {"n": 60, "seed": 0, "image_size": 12, "cache": False},
        }
    ],
    "probe_size": 20,
    "models": [{"name": "unet_tiny"}],
    "train": {"epochs": 1, "batch_size": 16},
    "overlap": {"designs": [{"kind": "data", "fractions": [0.0]}]},
    "seeds": [0],
    "measures": {"names": ["cka"], "params": {}},
}


def _problems(**changes) -> list[str]:
    config = parse_config({**BASE, **changes})
    return preflight_problems(config, expand(config))


def test_the_unit_model_picks_the_diffusion_kind_of_an_image_source():
    from reprsim.experiments.config import ModelSpec

    assert compose("colorshapes", ModelSpec(name="unet_tiny")).name == "diffusion"
    assert compose("colorshapes", ModelSpec(name="cnn")).name == "image"
    assert compose("fashion_mnist", ModelSpec(name="unet_small")).name == "diffusion"
    unet = compose("cifar10", ModelSpec(name="unet_paper"))
    assert (unet.name, unet.world.name, unet.family.name) == ("diffusion", "image", "unet")
    assert _problems() == []


def test_an_attack_stage_is_refused_naming_the_kind():
    problems = _problems(consequences=[{"attack_transfer": {"n": 10}}])
    assert any("attack_transfer does not apply to the diffusion kind" in p and "none" in p for p in problems), problems


def test_a_classifier_cannot_be_asked_for_a_diffusion_design_and_vice_versa():
    problems = _problems(overlap={"designs": [{"kind": "attribute", "levels": [0.0]}]})
    assert any("the diffusion kind" in p and "'attribute'" in p for p in problems), problems
    problems = _problems(sources=[{"name": "text"}])
    assert any("usable models" in p for p in problems), problems


def test_a_probe_source_of_another_shape_is_refused_with_the_fix():
    probe = {"name": "grey", "source": "noise", "options": {"n": 20, "shape": [1, 12, 12]}}
    problems = _problems(probes=[probe])
    assert any(
        p.startswith("probes.grey: images of shape (1, 12, 12) but the diffusion models take (3, 12, 12)")
        and "use a probe source of that shape" in p
        for p in problems
    ), problems
    assert _problems(probes=[dict(probe, options={"n": 20, "shape": [3, 12, 12]})]) == []
    # the stage itself refuses too, when called without the preflight
    config = parse_config({**BASE, "probes": [probe]})
    unit = expand(config)[0]
    kind = composition_of(unit)
    with pytest.raises(ReprsimError, match="probes.grey: images of shape"):
        kind.probes(config, unit, kind.pair(config, unit, cache_dir=None))


def test_missing_diffusers_is_reported_before_training_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)
    problems = _problems()
    assert len(problems) == 1 and "pip install 'reprsim[diffusion]'" in problems[0], problems
    assert get_family("unet").model_kinds == ("unet",)  # the family itself loads without diffusers


def test_an_unknown_layer_and_a_bad_ema_decay_are_reported():
    problems = _problems(layers=["conv9"], train={"epochs": 1, "ema_decay": 1.0})
    assert any("layers: ['conv9'] are not layers of model 'unet_tiny'" in p and "penultimate" in p for p in problems)
    assert any("ema_decay must be None or in (0, 1)" in p for p in problems), problems


# ---- the shipped configs ------------------------------------------------------------------------
def _fake_cifar10(folder):
    """A CIFAR-10 python folder with 250 training and 200 test images, every class present."""
    import pickle

    import numpy as np

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        batch = {b"data": rng.integers(0, 256, (50, 3072), dtype=np.uint8), b"labels": [j % 10 for j in range(50)]}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"data": rng.integers(0, 256, (200, 3072), dtype=np.uint8), b"labels": [j % 10 for j in range(200)]}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    return folder


@pytest.mark.parametrize("name", ["ds", "task"])
def test_the_paper_configs_pass_the_preflight_on_a_cifar10_folder(tmp_path, name):
    from pathlib import Path

    from reprsim.experiments import load_config

    root = _fake_cifar10(tmp_path / "cifar-10-batches-py")
    path = Path(__file__).resolve().parent.parent / "configs" / "paper" / f"diffusion_cifar10_{name}.yaml"
    overrides = [f"sources=[{{name: cifar10, options: {{root: {root}}}}}]", "probe_size=100", "seeds=[0]"]
    config = load_config(path, overrides)
    assert config.models[0].name == "unet_paper" and config.train["ema_decay"] == 0.999
    assert preflight_problems(config, expand(config)) == []
    assert {u.overlap_kind for u in expand(config)} == {"data" if name == "ds" else "task"}
