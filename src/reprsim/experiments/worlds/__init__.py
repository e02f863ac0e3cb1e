"""The data worlds of the unit pipeline, one module each; a unit's world comes from its data source.

:data:`WORLDS` maps a world name to the class implementing
:class:`~reprsim.experiments.worlds.base.DataWorld` (imported on first use) and the data sources it
reads; ``ARRAYS`` stands for every source of :data:`reprsim.data.registry.SOURCES` with an array
loader (labelled images), the corpus sources (``text``, ``chat``) are named.
"""

from __future__ import annotations

import importlib
from functools import cache

from reprsim.experiments.worlds.base import DataWorld, ProbeSet, Trained, TrainingPair

__all__ = ["ARRAYS", "WORLDS", "DataWorld", "ProbeSet", "Trained", "TrainingPair", "get_world", "world_name_of"]

#: the sources of a world that reads every array data set
ARRAYS = "arrays"

#: world name -> ("module:Class", the data sources it reads)
WORLDS: dict[str, tuple[str, tuple[str, ...] | str]] = {
    "image": ("reprsim.experiments.worlds.image:ImageWorld", ARRAYS),
    "text": ("reprsim.experiments.worlds.text:TextWorld", ("text",)),
    "chat": ("reprsim.experiments.worlds.chat:ChatDialogueWorld", ("chat",)),
}


@cache
def get_world(name: str) -> DataWorld:
    """The (stateless, shared) instance of world ``name``; ValueError naming the worlds for an unknown one."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; registered worlds: {sorted(WORLDS)}")
    module, cls = WORLDS[name][0].split(":")
    return getattr(importlib.import_module(module), cls)()


def world_name_of(source_name: str) -> str:
    """The world that reads data source ``source_name``; ValueError naming the sources for an unknown one."""
    from reprsim.data.registry import SOURCES

    if source_name not in SOURCES:
        raise ValueError(f"unknown data source {source_name!r}; choose from {sorted(SOURCES)}")
    for name, (_, sources) in WORLDS.items():
        if source_name in sources if sources != ARRAYS else SOURCES[source_name].loader is not None:
            return name
    raise ValueError(f"data source {source_name!r} is read by no world; registered worlds: {sorted(WORLDS)}")
