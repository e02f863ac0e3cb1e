"""Package layering: lower layers never import the layers built on top of them.

Imports are read from the source with ``ast`` (including imports inside
functions), so the check does not depend on what happens to be imported at
test time.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
UPPER = ("reprsim.experiments", "reprsim.analysis", "reprsim.compare")
RULES = {
    "data": UPPER,
    "models": UPPER,
    "training": UPPER,
    "metrics": UPPER,
    "attacks": UPPER,
    "analysis": ("reprsim.experiments",),
}
# Known violations, each with its reason; remove an entry once it is fixed.
ALLOWED: set[tuple[str, str]] = set()


def _module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, src: Path = SRC) -> set[str]:
    """Absolute names imported by ``path``; ``from a import b`` yields ``a`` and ``a.b``."""
    module = _module_name(path, src)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layering_violations() -> list[tuple[str, str]]:
    found = set()
    for layer, forbidden in RULES.items():
        for path in sorted((SRC / "reprsim" / layer).rglob("*.py")):
            rel = path.relative_to(SRC).as_posix()
            for name in imported_names(path):
                for upper in forbidden:
                    if _within(name, upper) and (rel, upper) not in ALLOWED:
                        found.add((rel, upper))
    return sorted(found)


def test_lower_layers_do_not_import_upper_layers():
    assert layering_violations() == []


def test_allow_list_has_no_stale_entries():
    for rel, upper in ALLOWED:
        names = imported_names(SRC / rel)
        assert any(_within(name, upper) for name in names), f"{rel} no longer imports {upper}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..experiments import grid\n", "reprsim.experiments.grid"),
        ("from . import x\n", "reprsim.data.x"),
        ("def f():\n    import reprsim.compare.cli\n", "reprsim.compare.cli"),
    ],
)
def test_imported_names_resolves_relative_and_lazy_imports(tmp_path, source, expected):
    package = tmp_path / "reprsim" / "data"
    package.mkdir(parents=True)
    module = package / "probe.py"
    module.write_text(source)
    assert expected in imported_names(module, src=tmp_path)
