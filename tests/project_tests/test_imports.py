"""The packages' import graph, imports inside functions included: no loop anywhere, and every import
points downwards (`search`'s wings in the order of `search/__init__.py`, `gainakt` at the bottom)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGES = ("gainakt", "spaces", "search")

# Lower rank first: a module may import its own rank's modules or lower ones, except where two
# wings share a rank (they stand side by side and import neither way).
RANKS: dict[str, int] = {
    "gainakt": 0,
    "spaces": 1,
    "search.schema": 2,
    "search.spec": 3,
    "search.store": 4,
    "search.analysis": 5,
    "search.run": 6,
    "search.repair": 7,
    "search.report": 7,
    "search.cli": 8,
    "search": 8,  # the package's own __init__
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports, wherever in the file the import stands."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from pkg import sub` imports the submodule where there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    known = {module_name(p) for p in files}
    return {module_name(p): imported(p, known) for p in files}


def wing(module: str) -> str:
    return max((w for w in RANKS if module == w or module.startswith(w + ".")), key=len)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_is_read_whole(graph: dict[str, set[str]]) -> None:
    # a reader that missed relative or in-function imports would pass every check below
    assert "gainakt.model" in graph["gainakt.run_folder"]  # relative, at module level
    assert "search.run.sweep" in graph["search.cli"]  # absolute, inside a function
    assert "gainakt.train" in graph["search.run.trainable"]


def test_no_module_imports_itself_back(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


def test_loops_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_import_points_downwards(graph: dict[str, set[str]]) -> None:
    upward = []
    for module, targets in graph.items():
        for target in targets:
            here, there = wing(module), wing(target)
            if here == there:
                continue
            if RANKS[there] >= RANKS[here]:
                upward.append(f"{module} ({here}) imports {target} ({there})")
    assert upward == []


def test_every_module_has_a_wing(graph: dict[str, set[str]]) -> None:
    # a new folder under search/ gets a place in RANKS (and in search/__init__.py's list)
    assert [m for m in graph if m.count(".") > 1 and wing(m) == "search"] == []
