"""The package's shape, checked: no import cycle among conch's modules, and no module name used twice.

A cycle makes the import order matter (one half sees the other half-initialised) and means the two modules
are really one; a function-level import that hides a cycle counts too. Two modules of one name
(`metrics.py` for evaluation scores and for Prometheus) make a reader open the wrong one."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "conch"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: the conch modules it imports}, every import statement counted, wherever it stands."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                    ).strip(".")
                # `from conch.x import y`: y is a module when conch/x/y.py exists, else a name in conch.x
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_import_graph_sees_imports():
    graph = import_graph()
    assert "conch.errors" in graph["conch.workflow.config"]
    assert "conch.llamafactory.lf" in graph["conch.workflow.config"]


def test_a_planted_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_conch_modules():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """{subpackage: the subpackages its modules import}: conch.workflow.plan -> conch.rag.paths is workflow -> rag."""
    top = {m: ".".join(m.split(".")[:2]) for m in graph}
    packages: dict[str, set[str]] = {p: set() for p in top.values()}
    for module, targets in graph.items():
        packages[top[module]] |= {top[t] for t in targets} - {top[module]}
    return packages


def test_no_import_cycle_among_conch_packages():
    """Subpackages form layers (docs/architecture.md): the plan on top, stages in the middle, jobs and errors
    at the bottom; no subpackage imports one that imports it back, even through others."""
    found = cycles(package_graph(import_graph()))
    assert not found, "package cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_two_modules_share_a_name():
    names = Counter(p.name for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not [n for n, count in names.items() if count > 1], sorted(n for n, c in names.items() if c > 1)


def test_the_package_root_holds_only_shared_modules():
    root_modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert root_modules == ["__init__.py", "errors.py"], root_modules
