"""Layer names of any model: the public names of zoo models, module paths otherwise, and hook targets.

Zoo models follow the layer-naming protocol of :mod:`reprsim.models.common`
(``reprsim_layers`` / ``reprsim_default_layer``); any other module is served by a generic fallback
(all module paths; the default layer is the input of the last ``nn.Linear``).
"""

from __future__ import annotations

from torch import nn

__all__ = ["PENULTIMATE", "default_layer", "layers", "resolve_layer"]

#: Public name of the representation the paper compares (the input of the classification head).
PENULTIMATE = "penultimate"


def _generic_default(model: nn.Module) -> str:
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n]
    if not linears:
        raise ValueError(
            f"{type(model).__name__} has no named layers and no nn.Linear head; wrap it with "
            "reprsim.models.adapters.NamedLayers(model, layers={...}, default=...) to name them."
        )
    return f"{linears[-1]}:input"


def layers(model: nn.Module) -> list[str]:
    """Return the layer names usable by :func:`reprsim.features.extract`, in forward order.

    Zoo and adapted models list their public names (always including ``"penultimate"``);
    other modules list every sub-module path.
    """
    named = getattr(model, "reprsim_layers", None)
    if named:
        return list(named)
    return [n for n, _ in model.named_modules() if n]


def default_layer(model: nn.Module) -> str:
    """Return the name of the default representation: the penultimate one (input of the head).

    For zoo models this is ``"penultimate"`` (for GPT it resolves to the ``ln_f`` output).
    """
    name = getattr(model, "reprsim_default_layer", None)
    return name if name is not None else _generic_default(model)


def resolve_layer(model: nn.Module, name: str) -> tuple[nn.Module, bool]:
    """Map a layer name to ``(module, capture_input)`` for a forward hook.

    ``name`` may be a public name from :func:`layers`, ``"penultimate"`` (alias of the default
    layer), or a raw path from ``model.named_modules()`` optionally ending in ``":input"``
    (capture the module's first input instead of its output).
    """
    if not isinstance(name, str):
        raise TypeError(f"layer names must be strings, got {type(name).__name__}.")
    path = name
    named = getattr(model, "reprsim_layers", None) or {}
    if name in named:
        path = named[name]
    elif name == PENULTIMATE and default_layer(model) != PENULTIMATE:
        return resolve_layer(model, default_layer(model))
    capture_input = path.endswith(":input")
    path = path.removesuffix(":input")
    modules = dict(model.named_modules())
    if path not in modules:
        raise ValueError(
            f"Unknown layer {name!r} for {type(model).__name__}; valid names: {layers(model)} "
            "(or any path in model.named_modules(), optionally with ':input')."
        )
    return modules[path], capture_input
