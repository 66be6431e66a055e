"""The import graph of `monitor/` has no cycle, read from the source.

Every `import` and `from ... import` counts, wherever it is: at the top, under `TYPE_CHECKING`,
inside a function. `from pkg import name` is an edge to the submodule `pkg.name` when there is
one, else to `pkg`; importing a submodule is not counted as importing its parent packages (an
`__init__.py` only re-exports from below, it is above everything).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "monitor"
ROOT = PACKAGE.name

Graph = dict[str, set[str]]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imported(node: ast.Import | ast.ImportFrom, name: str, package: bool, modules: set[str]) -> set[str]:
    """The modules of `modules` that one import statement of module `name` loads."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = name.split(".") if package else name.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                   for alias in node.names]
    found = set()
    for target in targets:
        while target and target not in modules:  # `import monitor.x.y as z`, `from pkg import attr`
            target = target.rpartition(".")[0]
        if target:
            found.add(target)
    return found


def import_graph() -> Graph:
    """Module -> the modules of this package it imports."""
    paths = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    modules = set(paths)
    graph: Graph = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[name] |= imported(node, name, is_package(path), modules)
        graph[name].discard(name)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (first module repeated at the end) per back edge met in a depth-first walk."""
    found: list[list[str]] = []
    done: set[str] = set()
    stack: list[str] = []

    def visit(name: str) -> None:
        stack.append(name)
        for target in sorted(graph[name]):
            if target in stack:
                found.append([*stack[stack.index(target):], target])
            elif target not in done:
                visit(target)
        stack.pop()
        done.add(name)

    for name in sorted(graph):
        if name not in done:
            visit(name)
    return found


def test_the_graph_reads_every_kind_of_import() -> None:
    graph = import_graph()
    assert "monitor.cli" in graph["monitor.__main__"]  # relative, module level
    assert "monitor.logs" in graph["monitor.cli"]  # `from . import logs`
    assert "monitor.app" in graph["monitor.cli"]  # inside a function


def test_no_import_cycle_in_the_package() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_only_the_entry_point_imports_the_cli() -> None:
    graph = import_graph()
    assert {name for name, targets in graph.items() if "monitor.cli" in targets} == {"monitor.__main__"}
