"""The package's import graph, read from the source: no cycles, dependencies flow one way.

Every ``import``/``from ... import`` in every module of ``fusi_nmf`` counts, including
the ones inside functions (a lazy import is still a dependency). Nodes are the
package's top-level modules and sub-packages (``fusi_nmf.plotting.volumes`` counts as
``plotting``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fusi_nmf"

# Layers, bottom to top; a module may import from its own layer or any layer below.
LAYERS: list[tuple[str, set[str]]] = [
    ("private helpers", {"__init__", "_atomic", "_util", "_paths", "_progress", "_xr", "_values"}),
    ("data", {"io", "_provenance", "simulate", "datasets", "_osf"}),
    ("preprocessing", {"timing", "registration", "signal", "qc"}),
    ("decomposition", {"decomposition"}),
    ("evaluation", {"metrics", "selection"}),
    ("pipeline", {"pipeline"}),
    ("presentation", {"plotting", "report", "book", "sweep", "cli", "__main__", "_kernels"}),
]
LAYER_OF = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}


def _node(path: Path) -> str:
    """Graph node of a source file: its top-level module or sub-package under fusi_nmf."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _package_parts(path: Path) -> list[str]:
    """The package a file belongs to, as parts (for resolving relative imports).

    ``fusi_nmf/x.py`` and ``fusi_nmf/__init__.py`` both belong to ``fusi_nmf``.
    """
    return list(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])


def _targets(path: Path, tree: ast.AST) -> list[tuple[str, int]]:
    """(fusi_nmf node, line) for every import of the package in ``tree``."""
    found: list[tuple[str, int]] = []

    def add(dotted: str, line: int) -> None:
        parts = dotted.split(".")
        if parts[0] == "fusi_nmf":
            found.append((parts[1] if len(parts) > 1 else "__init__", line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_parts(path)
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module == "fusi_nmf":
                # ``from fusi_nmf import qc`` imports the module qc; ``__version__`` the package
                for alias in node.names:
                    is_module = (PACKAGE / f"{alias.name}.py").exists() or (
                        PACKAGE / alias.name
                    ).is_dir()
                    add(f"fusi_nmf.{alias.name}" if is_module else module, node.lineno)
            else:
                add(module, node.lineno)
    return found


def import_graph() -> dict[str, dict[str, list[str]]]:
    """``{module: {imported module: ["file:line", ...]}}`` over the package, self-edges dropped."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        src = _node(path)
        edges = graph.setdefault(src, {})
        tree = ast.parse(path.read_text(), filename=str(path))
        for dst, line in _targets(path, tree):
            if dst != src:
                edges.setdefault(dst, []).append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    return graph


def find_cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _describe(graph: dict[str, dict[str, list[str]]], component: list[str]) -> str:
    members = set(component)
    edges = [
        f"{a} -> {b} ({', '.join(where)})"
        for a in component
        for b, where in sorted(graph[a].items())
        if b in members
    ]
    return "; ".join(edges)


# ---------------------------------------------------------------------------- the checks


def test_graph_reader_sees_function_level_and_relative_imports():
    # the reader must not miss the imports that hide the graph: inside functions,
    # relative, ``from fusi_nmf import module``
    source = (
        "import fusi_nmf.io\n"
        "def f():\n"
        "    from fusi_nmf import qc, __version__\n"
        "    from .signal import clean\n"
        "    from . import metrics\n"
    )
    path = PACKAGE / "example.py"
    found = {name for name, _ in _targets(path, ast.parse(source))}
    assert found == {"io", "qc", "__init__", "signal", "metrics"}
    assert find_cycles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}) == [
        ["a", "b", "c"]
    ]
    assert find_cycles({"a": {"b": []}, "b": {}}) == []


def test_no_import_cycles():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in fusi_nmf: " + " | ".join(
        _describe(graph, c) for c in cycles
    )


def test_every_module_has_a_layer():
    unknown = sorted(set(import_graph()) - set(LAYER_OF))
    assert not unknown, (
        f"modules {unknown} are in no layer; add each to LAYERS in tests/test_architecture.py "
        "(and to the module map in DEVELOPING.md)"
    )


@pytest.mark.parametrize("layer", range(len(LAYERS)), ids=[name for name, _ in LAYERS])
def test_dependencies_point_down(layer):
    graph = import_graph()
    upward = [
        f"{src} ({LAYERS[layer][0]}) -> {dst} ({LAYERS[LAYER_OF[dst]][0]}) at {', '.join(where)}"
        for src, edges in sorted(graph.items())
        if LAYER_OF.get(src) == layer
        for dst, where in sorted(edges.items())
        if LAYER_OF.get(dst, -1) > layer
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)
