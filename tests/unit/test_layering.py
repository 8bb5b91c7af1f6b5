"""The layers of the package, read from the imports of its source files.

The wire protocol imports nothing of the rest; the handlers never reach the
server, the admin tools or a driver; storage and the server never import a
driver; the SDK never imports the server or the storage; and no modules import
each other in a circle (imports made only for type checking count too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = (("runtara", "runtara"), ("drivers", "runtara.drivers"))


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def imports_of(name: str) -> set[str]:
    """The modules of the package that module ``name`` imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(kept + ([node.module] if node.module else []))
            for alias in node.names:
                module = f"{base}.{alias.name}"
                found.add(module if module in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


def _under(module: str, *packages: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


@pytest.mark.parametrize(
    ("layer", "allowed", "forbidden"),
    [
        ("runtara.protocol", ("runtara.protocol",), None),
        ("runtara.handlers", None, ("runtara.server", "runtara.admin", "runtara.drivers")),
        ("runtara.storage", None, ("runtara.drivers",)),
        ("runtara.server", None, ("runtara.drivers",)),
        ("runtara.sdk", None, ("runtara.server", "runtara.storage")),
    ],
)
def test_each_layer_imports_only_what_it_may(layer, allowed, forbidden):
    crossings = [
        f"{name} imports {module}"
        for name in MODULES
        if _under(name, layer)
        for module in sorted(imports_of(name))
        if (allowed is not None and not _under(module, *allowed))
        or (forbidden is not None and _under(module, *forbidden))
    ]
    assert crossings == []


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The sets of modules that import each other in a loop (Tarjan's algorithm)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(name: str) -> None:
        order[name] = low[name] = len(order)
        stack.append(name)
        for module in graph[name]:
            if module not in order:
                visit(module)
                low[name] = min(low[name], low[module])
            elif module in stack:
                low[name] = min(low[name], order[module])
        if low[name] == order[name]:
            members = stack[stack.index(name) :]
            del stack[stack.index(name) :]
            if len(members) > 1:
                found.append(sorted(members))

    for name in sorted(graph):
        if name not in order:
            visit(name)
    return found


KNOWN_CIRCLES = [["runtara.sdk.children", "runtara.sdk.instance"]]
"""Circles not yet opened (they may go; no new one may come)."""


def test_no_modules_import_each_other_in_a_circle():
    found = circles({name: imports_of(name) for name in MODULES})
    assert [circle for circle in found if circle not in KNOWN_CIRCLES] == []


def test_the_reading_finds_the_imports():
    assert {"runtara.storage.operations", "runtara.storage.transaction"} <= imports_of(
        "runtara.storage.base"
    )
    assert "runtara.protocol.codes" in imports_of("runtara.admin.remote")
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
