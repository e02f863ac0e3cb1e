"""Bounded YAML reading for configs: a size limit on the file and on the document's expansion.

YAML aliases let a tiny document stand for a huge one (the "billion laughs" pattern: nine levels
of ten aliases each are 10⁹ values). PyYAML builds such a document cheaply, with shared objects,
but everything that walks it afterwards (validation, dumping, hashing) expands it and runs out of
memory. Configs are therefore refused before they are built when

* the file is larger than :data:`MAX_CONFIG_BYTES` (256 KiB; the largest shipped config has 2.5 KiB), or
* the document, with every alias expanded, has more than :data:`MAX_EXPANDED_NODES` (100,000)
  nodes — keys, values and list items each count as one node — or
* an alias refers to a node that contains it (a recursive document).

A shipped config has a few hundred nodes, so the limits only stop documents that are not configs.
The pure-Python parser is used (libyaml's crashes on deep nesting), and a document nested deeper
than Python's recursion limit is refused too; within these bounds any input is read or refused
within a few seconds (a billion-laughs document: milliseconds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reprsim.errors import ConfigError

MAX_CONFIG_BYTES = 256 << 10
MAX_EXPANDED_NODES = 100_000


class _BoundedSafeLoader(yaml.SafeLoader):
    """A ``SafeLoader`` that measures the composed node graph before constructing Python objects.

    The pure-Python loader on purpose: libyaml's composer (``CSafeLoader``) recurses in C and
    crashes the interpreter on a deeply nested document, where this one raises RecursionError.
    """

    source_name = "<config>"
    _composed = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # a document with more nodes than the limit is refused before it is composed in full
        self._composed += 1
        if self._composed > MAX_EXPANDED_NODES:
            raise ConfigError(
                f"{self.source_name}: the YAML document has more than {MAX_EXPANDED_NODES:,} values; "
                "a config is far smaller: is this the right file?"
            )
        return super().compose_node(parent, index)

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node, self.source_name)
        return self.construct_document(node)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, source: str) -> int:
    """The node count of ``root`` with aliases expanded; raises :class:`ConfigError` past the limit.

    Shared (aliased) nodes are measured once and counted at every use, so the walk is linear in the
    document's text even when its expansion is astronomically large.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(size[id(child)] for child in _children(node))
            if total > MAX_EXPANDED_NODES:
                raise ConfigError(
                    f"{source}: the YAML document expands (through its aliases '*name') to more than "
                    f"{MAX_EXPANDED_NODES:,} values; a config is far smaller: write the values out "
                    "instead of nesting aliases"
                )
            size[key] = total
            continue
        if key in size:
            continue
        if key in on_path:
            raise ConfigError(
                f"{source}: a YAML alias refers to a node that contains it (a recursive "
                "document); write the values out instead"
            )
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise ConfigError(
                    f"{source}: a YAML alias refers to a node that contains it (a recursive "
                    "document); write the values out instead"
                )
            if id(child) not in size:
                stack.append((child, False))
    return size[id(root)]


def load_yaml_text(text: str, source: str = "<config>") -> Any:
    """Parse one YAML document within the limits of this module.

    Returns the plain Python value (dicts, lists, scalars). Raises :class:`ConfigError` with one
    line naming ``source`` when the text is too large, expands too far or is not valid YAML.
    """
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{source} is larger than {MAX_CONFIG_BYTES // 1024} KiB; a config is a few KiB: is this the right file?"
        )
    loader = _BoundedSafeLoader(text)
    loader.source_name = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{source} is not valid YAML: {detail}") from None
    except RecursionError:
        raise ConfigError(f"{source}: the YAML document is nested too deeply to be a config") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file within the limits (size checked before the file is read)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path} is {size / 1024:.0f} KiB, larger than the {MAX_CONFIG_BYTES // 1024} KiB "
            "a config may have: is this the right file?"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text: is this the right file?") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return load_yaml_text(text, str(path))
