"""The model families of the unit pipeline, one module each; a unit's family comes from its model entry.

:data:`FAMILIES` maps a family name to the class implementing
:class:`~reprsim.experiments.families.base.ModelFamily` (imported on first use, so a family's
optional dependencies load only when a sweep needs it). :func:`model_kind_of` says what a model
entry is (a zoo model's registry kind, or ``hf_image`` / ``hf_causal_lm`` for a local Hugging Face
folder) and :func:`family_name_of` picks the family whose ``model_kinds`` include it.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from reprsim.experiments.families.base import ModelFamily

__all__ = ["FAMILIES", "ModelFamily", "family_name_of", "get_family", "model_kind_of"]

#: family name -> "module:Class"
FAMILIES: dict[str, str] = {
    "classifier": "reprsim.experiments.families.classifier:ZooClassifier",
    "hf_image": "reprsim.experiments.families.classifier:HFImageClassifier",
    "unet": "reprsim.experiments.families.unet:DiffusionUNet",
    "zoo_lm": "reprsim.experiments.families.zoo_lm:ZooLM",
    "hf_lm": "reprsim.experiments.families.hf_lm:HFCausalLM",
}


@cache
def get_family(name: str) -> ModelFamily:
    """The (stateless, shared) instance of family ``name``; ValueError naming the families for an unknown one."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; registered families: {sorted(FAMILIES)}")
    module, cls = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def model_kind_of(model) -> str:  # noqa: ANN001 - a config ModelSpec
    """The kind of model a config entry names (a zoo model's registry kind, e.g. ``image`` or ``lm``;
    for a local Hugging Face folder, ``hf: /path``, ``hf_image`` when its config.json describes an
    image model, else ``hf_causal_lm``: a folder that is missing is reported by the family's preflight).

    ValueError for a name the zoo does not know."""
    from reprsim.models.zoo import model_kind

    hf = getattr(model, "hf", None)
    if hf is not None:
        from reprsim.errors import ConfigError
        from reprsim.models.adapters import detect_hf_task

        try:
            return "hf_image" if detect_hf_task(Path(hf).expanduser()).startswith("image") else "hf_causal_lm"
        except ConfigError:  # a folder that needs its own code (auto_map): refused, whatever its kind
            raise
        except ValueError:  # no config.json (or the demo base): not an image model
            return "hf_causal_lm"
    return model_kind(model.name)


def family_name_of(model) -> str:  # noqa: ANN001 - a config ModelSpec
    """The family that trains model entry ``model``; ValueError for an unknown model or one no family takes."""
    wanted = model_kind_of(model)
    for name in FAMILIES:
        if wanted in get_family(name).model_kinds:
            return name
    raise ValueError(
        f"model {model.name!r} (a {wanted!r} model) is trained by no family; registered families: {sorted(FAMILIES)}"
    )
