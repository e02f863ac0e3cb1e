"""``KEY=VALUE`` overrides of a config, from the command line or from Python.

``reprsim run CONFIG seeds=[0,1,2] train.epochs=5 overlap.designs.0.fractions=[0,0.5,1]`` changes a
config without copying its file. Keys are dotted paths into the YAML (list items by index); values
are YAML (``5``, ``0.5``, ``[cka,cknna]``, ``{k: 5}``, ``null``). They are applied with OmegaConf's
dot-list, in order, and the result is validated exactly like a config file
(:func:`reprsim.experiments.config.parse_config`), so the config that runs — and that the run
folder records in ``config.yaml`` — is the resolved one.

Before anything is applied every key is checked against the config schema: an unknown key, a
list index that does not exist or a key below a plain value is one error line naming the closest
valid key. Mappings of free options (``sources.N.options``, ``measures.params``, ...) take any key;
the ``train`` section is checked against the training recipe of the sources' kind.

Python: ``load_config(path, overrides=[...])`` or :func:`apply_overrides` on a mapping or config.
"""

from __future__ import annotations

import argparse
import difflib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from reprsim.errors import ConfigError
from reprsim.experiments.config import ExperimentConfig, parse_config

__all__ = ["OverridesParser", "add_overrides_argument", "apply_overrides", "split_override"]

_OVERRIDE_HELP = (
    "config overrides: dotted keys with YAML values, e.g. seeds=[0,1,2] train.epochs=5 "
    "overlap.designs.0.fractions=[0,0.5,1] measures.names=[cka,cknna]"
)


# ---- parsing one override ---------------------------------------------------------------------
def split_override(override: str) -> tuple[str, list[str]]:
    """The key of ``"a.b.0=VALUE"`` and its path (``["a", "b", "0"]``); ConfigError when malformed."""
    from omegaconf._utils import split_key  # the key syntax OmegaConf itself applies

    if not isinstance(override, str) or "=" not in override:
        raise ConfigError(f"override {override!r}: write KEY=VALUE, e.g. train.epochs=5 or seeds=[0,1,2]")
    key = override.split("=", 1)[0].strip()
    parts = [p for p in split_key(key)] if key else []
    if not parts or any(p == "" for p in parts):
        raise ConfigError(
            f"override {override!r}: the key before '=' must be a dotted path such as "
            "train.epochs or overlap.designs.0.fractions"
        )
    return key, parts


# ---- the schema walk --------------------------------------------------------------------------
def _kind_literal(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind")
    if field is None:
        return None
    args = typing.get_args(field.annotation)
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


def _resolve(annotation: Any, node: Any) -> tuple[str, Any]:
    """What a schema position is, given the value found there: ``("models", [classes])``,
    ``("list", item annotation)``, ``("dict", value annotation)``, ``("any", None)`` or ``("leaf", type)``."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return "any", None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "models", [annotation]
    if origin in (list, tuple, Sequence):
        args = typing.get_args(annotation)
        return "list", (args[0] if args else Any)
    if origin is dict:
        args = typing.get_args(annotation)
        return "dict", (args[1] if len(args) == 2 else Any)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        resolved = [_resolve(m, node) for m in members]
        models = [cls for what, found in resolved if what == "models" for cls in found]
        lists = [found for what, found in resolved if what == "list"]
        dicts = [found for what, found in resolved if what in ("dict", "any")]
        if isinstance(node, list) and lists:
            return "list", lists[0]
        if isinstance(node, dict) or node is None:
            if models:
                return "models", models
            if dicts:
                return "dict", dicts[0]
        if lists and node is None:
            return "list", lists[0]
        return "leaf", annotation
    return "leaf", annotation


def _pick_models(models: list[type[BaseModel]], node: Any) -> list[type[BaseModel]]:
    """The member of a tagged union (overlap designs, consequences) that ``node``'s ``kind`` names."""
    if len(models) > 1 and isinstance(node, dict):
        chosen = [m for m in models if _kind_literal(m) == node.get("kind")]
        if chosen:
            return chosen
    return models


def _unknown_key(override: str, part: str, where: str, valid: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(part, list(valid), n=1, cutoff=0.5)
    hint = f"; did you mean {where + '.' if where else ''}{close[0]}?" if close else ""
    return ConfigError(
        f"override {override!r}: unknown key {part!r} in {where or 'the config'}{hint} (valid keys: {', '.join(valid)})"
    )


def check_key(override: str, parts: list[str], data: Any) -> None:
    """Raise :class:`ConfigError` unless ``parts`` is a path the config schema accepts at ``data``."""
    annotation: Any = ExperimentConfig
    node = data
    walked: list[str] = []
    for part in parts:
        where = ".".join(walked)
        what, found = _resolve(annotation, node)
        if what == "any":
            what = "list" if isinstance(node, list) else "dict"
            found = Any
        if what == "list":
            items = node if isinstance(node, list) else []
            try:
                index = int(part)
            except ValueError:
                raise ConfigError(
                    f"override {override!r}: {where} is a list; address an item by its index "
                    f"({where}.0) or set the whole list ({where}=[...])"
                ) from None
            if not 0 <= index < len(items):
                have = f"indices 0..{len(items) - 1}" if items else "no items"
                raise ConfigError(
                    f"override {override!r}: {where} has {len(items)} item(s) ({have}); there is "
                    f"no item {part}: set the whole list instead ({where}=[...])"
                )
            node, annotation = items[index], found
        elif what == "models":
            models = _pick_models(found, node)
            valid = list(dict.fromkeys(name for m in models for name in m.model_fields))
            if part not in valid:
                raise _unknown_key(override, part, where, valid)
            annotation = next(m.model_fields[part].annotation for m in models if part in m.model_fields)
            node = node.get(part) if isinstance(node, dict) else None
        elif what == "dict":  # free options: any key
            node = node.get(part) if isinstance(node, dict) else None
            annotation = found
        else:
            shown = f"a {type(node).__name__} value" if node is not None else "a plain value"
            raise ConfigError(
                f"override {override!r}: {where} is {shown} and has no key {part!r}; set it directly ({where}=VALUE)"
            )
        walked.append(part)


# ---- applying ---------------------------------------------------------------------------------
def _normalised(data: Any) -> tuple[Any, bool]:
    """``data`` with every default and shorthand written out when it is a valid config (so that
    ``execution.workers`` or ``consequences.0.n`` can be overridden although the file omits them)."""
    if not isinstance(data, dict):
        return data, False
    try:
        return ExperimentConfig.model_validate(data).model_dump(mode="json"), True
    except Exception:  # noqa: BLE001 - an invalid base is reported after the overrides are applied
        return data, False


def _check_train(config: ExperimentConfig, overrides: Sequence[str]) -> None:
    """Validate the ``train`` section with the recipe of the sources' kind (it is a free mapping in
    the schema); only called when an override touched it."""
    from reprsim.experiments.worlds import world_name_of

    try:
        kind = world_name_of(config.sources[0].name)
    except ValueError:
        return  # an unknown source is the preflight's to report
    if kind == "chat":
        from reprsim.chat.training import ChatRecipe as recipe
    else:
        from reprsim.train import TrainConfig as recipe
    try:
        recipe.from_dict(config.train)
    except (TypeError, ValueError) as exc:
        shown = ", ".join(repr(o) for o in overrides)
        raise ConfigError(f"override {shown}: train: {' '.join(str(exc).split())}") from None


def apply_overrides(data: dict[str, Any] | ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """Apply ``KEY=VALUE`` overrides to a config mapping (or a config) and validate the result.

    Parameters
    ----------
    data : the config as read from YAML (a mapping), or an :class:`ExperimentConfig`
    overrides : strings ``"dotted.key=YAML value"``, applied in order (a later one wins)

    Returns
    -------
    The validated :class:`ExperimentConfig`. Raises :class:`ConfigError` with one line for a
    malformed override, an unknown key (with the closest valid one), a missing list index, a value
    OmegaConf cannot parse, or a config the overrides make invalid.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(overrides, str):
        raise TypeError("overrides must be a list of 'KEY=VALUE' strings, not one string")
    if isinstance(data, ExperimentConfig):
        data = data.model_dump(mode="json")
    data, base_valid = _normalised(data)
    if not overrides:
        return parse_config(data)
    if not isinstance(data, dict):
        return parse_config(data)  # reports the malformed top level
    try:
        tree = OmegaConf.create(data)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"the config holds a value overrides cannot work on: {_one_line(exc)}") from None
    touched_train = []
    for override in overrides:
        _, parts = split_override(override)
        check_key(override, parts, OmegaConf.to_container(tree, resolve=False))
        try:
            tree.merge_with_dotlist([override])
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"override {override!r}: the value is not valid YAML ({_one_line(exc)}); "
                "quote it if it is text, e.g. name='my run'"
            ) from None
        except Exception as exc:  # noqa: BLE001 - OmegaConf raises many types
            raise ConfigError(f"override {override!r}: {_one_line(exc)}") from None
        if parts[0] == "train":
            touched_train.append(override)
    resolved = OmegaConf.to_container(tree, resolve=False)
    try:
        config = parse_config(resolved)
    except ConfigError as exc:
        if not base_valid:
            raise
        raise ConfigError(f"{exc} (after the override(s) {', '.join(overrides)})") from None
    if touched_train:
        _check_train(config, touched_train)
    return config


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    # OmegaConf appends "full_key: ..., object_type=..." context lines that only repeat the key
    return text.split(" full_key:")[0] or type(exc).__name__


# ---- the command line -------------------------------------------------------------------------
class OverridesParser(argparse.ArgumentParser):
    """An argument parser whose command takes ``KEY=VALUE`` overrides anywhere on the line.

    argparse assigns positionals in one block, so ``run CONFIG --out DIR seeds=[0,1]`` would leave
    the trailing override unrecognised; this parser moves such ``KEY=VALUE`` arguments (never an
    option: they do not start with ``-``) into ``overrides``, keeping their order.
    """

    def parse_known_args(self, args=None, namespace=None):  # argparse's signature
        namespace, extras = super().parse_known_args(args, namespace)
        rest = []
        for arg in extras:
            if isinstance(arg, str) and "=" in arg and not arg.startswith("-"):
                namespace.overrides = [*(namespace.overrides or []), arg]
            else:
                rest.append(arg)
        return namespace, rest


def add_overrides_argument(parser: argparse.ArgumentParser) -> None:
    """Add the ``KEY=VALUE ...`` positional to a command's parser (see :class:`OverridesParser`)."""
    parser.add_argument("overrides", nargs="*", default=None, metavar="KEY=VALUE", help=_OVERRIDE_HELP)
    parser.__class__ = OverridesParser


def load_config(path: str | Path, overrides: Sequence[str] | None = None) -> ExperimentConfig:
    """Read and validate a YAML config file, with optional ``KEY=VALUE`` overrides applied.

    The file is read within the size and alias-expansion limits of
    :mod:`reprsim.experiments.yaml_load`; ``overrides`` are dotted keys with YAML values
    (``["seeds=[0,1,2]", "train.epochs=5"]``, see :mod:`reprsim.experiments.overrides`).
    Returns the validated :class:`ExperimentConfig`; raises :class:`ConfigError` (one line).
    """
    from reprsim.experiments.yaml_load import load_yaml_file

    data = load_yaml_file(path)
    return apply_overrides(data, overrides) if overrides else parse_config(data)
