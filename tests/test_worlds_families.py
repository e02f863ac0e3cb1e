"""A unit is a world (by data source) × a family (by model entry): the registries, the allowed pairs,
the kind names that prefix the cache keys, and what the image world gives its probe sets."""

from __future__ import annotations

import numpy as np
import pytest

from reprsim.data.registry import SOURCES
from reprsim.experiments import parse_config
from reprsim.experiments.composition import compose, composition_of
from reprsim.experiments.config import ModelSpec
from reprsim.experiments.families import FAMILIES, family_name_of, get_family
from reprsim.experiments.grid import expand
from reprsim.experiments.worlds import WORLDS, get_world, world_name_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_array_source_is_the_image_world_and_the_corpora_name_their_own():
    arrays = [name for name, source in SOURCES.items() if source.loader is not None]
    assert arrays and all(world_name_of(name) == "image" for name in arrays)
    assert world_name_of("text") == "text" and world_name_of("chat") == "chat"
    assert not hasattr(next(iter(SOURCES.values())), "kinds")  # the data layer names no experiment kind
    with pytest.raises(ValueError, match="unknown data source 'nope'"):
        world_name_of("nope")


@pytest.mark.parametrize(
    ("source", "model", "kind", "family"),
    [
        ("digits", {"name": "mlp"}, "image", "classifier"),
        ("fashion_mnist", {"name": "unet_tiny"}, "diffusion", "unet"),
        ("text", {"name": "gpt_nano"}, "text", "zoo_lm"),
        ("chat", {"name": "gpt"}, "chat", "zoo_lm"),
        ("text", {"hf": "demo"}, "llm", "hf_lm"),
        ("chat", {"hf": "demo"}, "llm", "hf_lm"),
    ],
)
def test_each_world_and_family_pair_keeps_the_kind_name_of_its_old_cache_keys(source, model, kind, family):
    pair = compose(source, ModelSpec(**model))
    assert (pair.name, pair.family.name, pair.world.name) == (kind, family, world_name_of(source))


def test_a_family_trains_only_on_the_worlds_it_lists():
    with pytest.raises(
        ValueError,
        match=r"'gpt' cannot be trained on source 'digits' \(the image world\): "
        r"the zoo_lm family trains on the worlds \['chat', 'text'\]",
    ):
        compose("digits", ModelSpec(name="gpt"))
    with pytest.raises(ValueError, match="the classifier family trains on the worlds \\['image'\\]"):
        compose("text", ModelSpec(name="mlp"))
    for name in FAMILIES:  # every listed world is registered, every family takes some model kind
        family = get_family(name)
        assert family.model_kinds and set(family.kinds) <= set(WORLDS), name
        assert family_name_of(ModelSpec(name="cnn")) == "classifier"


def test_the_stages_of_a_pair_are_the_worlds_that_its_family_runs():
    assert compose("digits", ModelSpec(name="mlp")).consequences == ("attack_transfer",)
    assert compose("digits", ModelSpec(name="unet_tiny")).consequences == ()
    assert compose("text", ModelSpec(name="gpt_nano")).consequences == ()  # no chat tokenizer: no behaviours
    assert compose("text", ModelSpec(hf="demo")).consequences == ("jailbreak_transfer",)
    assert compose("chat", ModelSpec(name="gpt")).consequences == ("jailbreak_transfer",)
    assert compose("digits", ModelSpec(name="unet_tiny")).overlap_kinds == ("data", "task")
    assert get_world("image").overlap_kinds == ("data", "task", "combined", "attribute", "factorial")


def test_image_probe_sets_carry_each_image_class_and_test_row():
    config = parse_config(
        {
            "name": "tiny",
            "sources": [{"name": "digits"}],
            "models": [{"name": "mlp", "options": {"hidden": [8]}}],
            "train": {"epochs": 1, "batch_size": 32},
            "probe_size": 50,
            "seeds": [0],
            "overlap": {"designs": [{"kind": "task", "fractions": [0.4]}]},
            "probes": [{"name": "noise", "source": "noise", "options": {"n": 30, "shape": [1, 8, 8]}}],
            "measures": {"names": ["cka"], "params": {}},
        }
    )
    unit = expand(config)[0]
    pair_of = composition_of(unit)
    pair = pair_of.pair(config, unit, None)
    probes = {p.name: p for p in pair_of.probes(config, unit, pair)}
    test_labels = pair.test.labels[pair.label]
    for name in ("common", "ood_one", "ood_all"):
        probe = probes[name]
        assert probe.rows is not None and len(probe.rows) == len(probe) <= 50
        np.testing.assert_array_equal(probe.inputs, pair.test.inputs[probe.rows])
        np.testing.assert_array_equal(probe.labels, test_labels[probe.rows])
        assert probe.n_classes == len(np.unique(probe.labels))
    shared = set(pair.split.a_classes) & set(pair.split.b_classes)  # common: classes both models were trained on
    assert set(probes["common"].labels) <= shared
    assert probes["noise"].labels is None and probes["noise"].rows is None  # no label space shared by the models
