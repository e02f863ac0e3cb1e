"""The kinds of the unit pipeline, one module each; a unit's kind comes from its data source.

:data:`KINDS` maps a kind name to the class implementing :class:`~reprsim.experiments.kinds.base.Kind`
(imported on first use, so a kind's optional dependencies load only when a sweep needs it).
:data:`reprsim.data.registry.SOURCES` says which kinds each data source serves (``Source.kinds``,
the first one the default); when a source serves several (Fashion-MNIST trains classifiers and
diffusion models), the unit's model picks the one whose :attr:`~Kind.model_kinds` include it.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from reprsim.experiments.kinds.base import Kind

__all__ = ["KINDS", "get_kind", "kind_name_of", "kind_of"]

#: kind name -> "module:Class"
KINDS: dict[str, str] = {
    "image": "reprsim.experiments.kinds.image:ImageKind",
    "text": "reprsim.experiments.kinds.text:TextKind",
    "chat": "reprsim.experiments.kinds.chat:ChatKind",
    "diffusion": "reprsim.experiments.kinds.diffusion:DiffusionKind",
    "llm": "reprsim.experiments.kinds.llm:LLMKind",
}


@cache
def get_kind(name: str) -> Kind:
    """The (stateless, shared) instance of kind ``name``; ValueError naming the kinds for an unknown one."""
    if name not in KINDS:
        raise ValueError(f"unknown kind {name!r}; registered kinds: {sorted(KINDS)}")
    module, cls = KINDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def model_kind_of(model) -> str:  # noqa: ANN001 - a config ModelSpec
    """The kind of model a config entry names (a zoo model's registry kind, e.g. ``image`` or ``lm``;
    for a local Hugging Face folder, ``hf: /path``, ``hf_image`` when its config.json describes an
    image model, else ``hf_causal_lm``: a folder that is missing is reported by the kind's preflight)."""
    from reprsim.models.zoo import model_kind

    hf = getattr(model, "hf", None)
    if hf is not None:
        from reprsim.models.adapters import detect_hf_task

        from reprsim.errors import ConfigError

        try:
            return "hf_image" if detect_hf_task(Path(hf).expanduser()).startswith("image") else "hf_causal_lm"
        except ConfigError:  # a folder that needs its own code (auto_map): refused, whatever its kind
            raise
        except ValueError:  # no config.json (or the demo base): not an image model
            return "hf_causal_lm"
    return model_kind(model.name)


def kind_name_of(source_name: str, model=None) -> str:  # noqa: ANN001 - a config ModelSpec or None
    """The kind that trains ``model`` on data source ``source_name``.

    The source's default kind when ``model`` is None or no other kind of the source takes it;
    ValueError naming the sources for an unknown source.
    """
    from reprsim.data.registry import SOURCES

    if source_name not in SOURCES:
        raise ValueError(f"unknown data source {source_name!r}; choose from {sorted(SOURCES)}")
    kinds = SOURCES[source_name].kinds
    if model is not None and len(kinds) > 1:
        try:
            wanted = model_kind_of(model)
        except ValueError:  # an unknown model: the preflight reports it against the default kind
            return kinds[0]
        for name in kinds:
            if wanted in get_kind(name).model_kinds:
                return name
    return kinds[0]


def kind_of(unit) -> Kind:  # noqa: ANN001 - a grid Unit
    """The kind of a sweep unit: from its source, and its model where the source serves several kinds."""
    return get_kind(kind_name_of(unit.source.name, unit.model))
