"""The layout's rules, read from the source: packages import only packages below them (so there is no import
cycle between packages), the same inside `actors`, and no module grows past MAX_LINES.

Every import counts, at module top or inside a function (a lazy import is still an arrow). tests/ and bench/
sit above everything and are not checked for arrows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400

# Lowest first; a package may import only packages of a lower layer. configs/ (the schema: `build`, `check`,
# `check_types`, ConfigError) knows nothing of the rest, so every config class validates the same way;
# stream/ (frames in, bytes between processes) and compressor/ (the algorithm) know only configs/; scenes/
# plays through stream's URL registry; vlm/ wraps the compressor's state for the model; train/ and actors/
# both use the models, neither uses the other; frontends/ drive everything.
LAYERS: list[set[str]] = [
    {"configs"},
    {"stream", "compressor"},
    {"scenes", "vlm", "testkit"},
    {"train"},
    {"actors"},
    {"frontends"},
]
# Inside actors/: the shared vocabulary, then the data plane, then the control plane, then the client side.
ACTOR_LAYERS: list[set[str]] = [
    {"config", "errors", "status"},
    {"workers"},
    {"control"},
    {"client"},
]


def _layer_of(name: str, layers: list[set[str]]) -> int | None:
    return next((i for i, layer in enumerate(layers) if name in layer), None)


def _modules() -> list[Path]:
    packages = set().union(*LAYERS)
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py") if ".venv" not in p.parts)


def _imports(path: Path) -> set[str]:
    """Every absolute module name `path` imports (`from a.b import c` -> a.b; relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                names.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                names.add(node.module)
    return names


def _arrows(layers: list[set[str]], prefix: tuple[str, ...]) -> list[str]:
    """Imports from a module under `prefix` + one of `layers` to a same-or-higher layer there."""
    wrong = []
    depth = len(prefix)
    for path in _modules():
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[:depth] != prefix or len(parts) <= depth:
            continue
        source = _layer_of(parts[depth], layers)
        for name in _imports(path):
            target_parts = tuple(name.split("."))
            if target_parts[:depth] != prefix or len(target_parts) <= depth or target_parts[depth] == parts[depth]:
                continue
            target = _layer_of(target_parts[depth], layers)
            if source is not None and target is not None and target >= source:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    return wrong


def test_every_package_has_a_layer() -> None:
    """Given the repository's Python packages, then each one is placed in LAYERS (a new one must be)."""
    found = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert found <= set().union(*LAYERS), f"place these packages in LAYERS: {sorted(found - set().union(*LAYERS))}"
    actor_parts = {p.stem if p.is_file() else p.name for p in (ROOT / "actors").iterdir()
                   if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert actor_parts <= set().union(*ACTOR_LAYERS), sorted(actor_parts - set().union(*ACTOR_LAYERS))


def test_packages_import_only_lower_layers() -> None:
    """Given every module of every package, then none imports a package of its own layer or above (so stream/
    imports no scenes, actors/ no frontends, and no two packages import each other)."""
    assert _arrows(LAYERS, ()) == []


def test_actors_import_only_lower_sublayers() -> None:
    """Given actors/, then workers know no controller, the controller no client, the vocabulary nothing."""
    assert _arrows(ACTOR_LAYERS, ("actors",)) == []


def test_the_cli_and_the_demo_do_not_import_each_other_at_module_top() -> None:
    """The CLI starts the demo (a lazy import in its command); the demo takes its printing from
    frontends.display, never from the CLI."""
    assert not any(name.startswith("frontends.cli") for name in _imports(ROOT / "frontends" / "demo.py"))


@pytest.mark.parametrize("folder", ["stream", "compressor", "configs", "scenes", "vlm", "testkit", "train",
                                    "actors", "frontends", "bench", "tests"])
def test_no_module_is_over_the_line_limit(folder: str) -> None:
    """Given every module, then none is over MAX_LINES lines (split a concept out instead)."""
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
