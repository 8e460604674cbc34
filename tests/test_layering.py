"""The import direction of DESIGN.md, enforced: reference <- exporters <- conformance (library) <- CLI -> reports.

Built on grimp (the graph engine of import-linter): every import in the four packages, including the
ones inside functions, is an edge. ``reports`` may read only the NumPy-free record, diff and status
modules of ``conformance``; library modules never import the CLI or the renderers; and no two modules
import each other, directly or around a loop.
"""

from __future__ import annotations

import grimp
import pytest

PACKAGES = ("reference", "exporters", "conformance", "reports")
CLI = ("conformance.cli", "conformance.__main__", "conformance.commands", "conformance.pytest_plugin")
REPORTS_MAY_READ = ("conformance.records", "conformance.diffs", "conformance.status")
LAYER = {"reference": 0, "exporters": 1, "conformance": 2, "cli": 3}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _layer(module: str) -> str:
    if any(_within(module, c) for c in CLI):
        return "cli"
    return module.split(".", maxsplit=1)[0]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def _edges(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    return [(m, n) for m in sorted(graph.modules) for n in sorted(graph.find_modules_directly_imported_by(m))]


def test_imports_point_down_the_layers(graph: grimp.ImportGraph) -> None:
    wrong = []
    for importer, imported in _edges(graph):
        a, b = _layer(importer), _layer(imported)
        if a == "reports":
            ok = b == "reports" or any(_within(imported, m) for m in REPORTS_MAY_READ)
        elif b == "reports":
            ok = a == "cli"
        else:
            ok = LAYER[b] <= LAYER[a]
        if not ok:
            wrong.append(f"{importer} -> {imported}")
    assert wrong == []


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    """Tarjan's strongly connected components over module imports: each must be a single module."""
    edges: dict[str, list[str]] = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(root: str) -> None:  # iterative, so a deep graph cannot exhaust the stack
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_contract_catches_a_wrong_import(graph: grimp.ImportGraph) -> None:
    """The rule itself can fail: a library module importing the CLI is reported."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    graph.add_import(importer="conformance.lane", imported="conformance.commands.run")
    graph.add_import(importer="reports.console", imported="conformance.compare")
    wrong = [f"{a} -> {b}" for a, b in _edges(graph) if (a, b) in {
        ("conformance.lane", "conformance.commands.run"), ("reports.console", "conformance.compare")}]  # fmt: skip
    assert wrong == ["conformance.lane -> conformance.commands.run", "reports.console -> conformance.compare"]
    with pytest.raises(AssertionError):
        test_imports_point_down_the_layers(graph)
    graph.add_import(importer="conformance.commands.run", imported="conformance.lane")
    with pytest.raises(AssertionError):
        test_no_import_cycles(graph)
