"""The package reads as its architecture: subpackages in layers, imports in one direction, no cycles.

    config < io < data < models < quality < evaluation < training < registry < inference < jobs < serve < cli

A module may import its own subpackage and those to its left. `tasks/` (the DVC stages) and `flows/` (Prefect)
import the library; the library imports neither, nor a front-end (`serve/`, `cli/`) below it. Every import counts,
at the top of a module or inside a function: a function-local import of the project's own code hides the graph,
so each one says on its line why it is there (start-up time of a command, a cycle it breaks is not a reason).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYERS = [
    "config",
    "io",
    "data",
    "models",
    "quality",
    "evaluation",
    "training",
    "registry",
    "inference",
    "jobs",
    "serve",
    "cli",
]
PROJECT = ("tuneops", "tasks", "flows")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported project module, dotted
    path: Path
    line: int
    local: bool  # inside a function
    commented: bool  # a `#` comment on its line(s) or above its group of imports


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for top in PROJECT for p in sorted((ROOT / top).rglob("*.py"))}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` refers to: itself, or the module holding a `from module import name`."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def function_nodes(tree: ast.Module) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside |= {id(sub) for sub in ast.walk(node) if sub is not node}
    return inside


def said_why(tree: ast.Module, lines: list[str]) -> set[int]:
    """Imports with a reason: a comment on their own lines, or on the line above the group of imports they open."""
    explained: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        group: list[ast.stmt] = []
        for stmt in [*body, None] if isinstance(body, list) else []:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                group.append(stmt)
                continue
            if group and group[0].lineno >= 2 and lines[group[0].lineno - 2].strip().startswith("#"):
                explained |= {id(g) for g in group}
            group = []
    for node in ast.walk(tree):
        span = lines[node.lineno - 1 : node.end_lineno] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
        if any("#" in line for line in span):
            explained.add(id(node))
    return explained


def imports(modules: dict[str, Path]) -> Iterator[Import]:
    for source, path in modules.items():
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        local, explained = function_nodes(tree), said_why(tree, lines)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = resolve(name, modules) if name.split(".")[0] in PROJECT else None
                if target and target != source:
                    yield Import(source, target, path, node.lineno, id(node) in local, id(node) in explained)


ALL = list(imports(project_modules()))


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if parts[0] == "tuneops" and len(parts) > 1 and parts[1] in LAYERS else None


def where(imp: Import) -> str:
    return f"{imp.path.relative_to(ROOT)}:{imp.line}: {imp.source} imports {imp.target}"


def test_every_library_module_is_in_a_layer():
    stray = [m for m in project_modules() if m.startswith("tuneops.") and layer(m) is None]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"


def test_the_library_imports_neither_flows_nor_tasks():
    bad = [where(i) for i in ALL if i.source.startswith("tuneops") and i.target.split(".")[0] in ("flows", "tasks")]
    assert not bad, "\n".join(bad)


def test_imports_go_down_the_layers_only():
    bad = [
        where(i) + f" ({LAYERS[layer(i.target)]} is above {LAYERS[layer(i.source)]})"  # type: ignore[index]
        for i in ALL
        if layer(i.source) is not None and layer(i.target) is not None and layer(i.target) > layer(i.source)
    ]
    assert not bad, "\n".join(bad)


def test_stages_and_flows_use_no_front_end():
    front_ends = ("tuneops.cli", "tuneops.serve")
    bad = [where(i) for i in ALL if i.source.split(".")[0] in ("tasks", "flows") and i.target.startswith(front_ends)]
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    graph: dict[str, set[str]] = {}
    for i in ALL:
        graph.setdefault(i.source, set()).add(i.target)
    cycles = [sorted(c) for c in strongly_connected(graph) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_a_function_local_import_of_project_code_says_why():
    bad = sorted({where(i) for i in ALL if i.local and not i.commented})
    assert not bad, "a function-local import needs a comment saying why (e.g. `# start-up: torch`):\n" + "\n".join(bad)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            found.append(component)

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize(
    ("graph", "cyclic"),
    [({"a": {"b"}, "b": {"a"}}, True), ({"a": {"b"}, "b": {"c"}}, False), ({"a": {"a"}}, False)],
)
def test_the_cycle_finder_finds_cycles(graph, cyclic):
    assert any(len(c) > 1 for c in strongly_connected(graph)) is cyclic
