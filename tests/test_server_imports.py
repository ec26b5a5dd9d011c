"""The server sees the engine only through what `conch.engine` exports (its `__all__`), so the engine's modules
can be split, merged or renamed without touching the server."""

from __future__ import annotations

import ast

from conftest import REPO

SERVER = REPO / "conch" / "server"


def engine_submodule_imports(path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("conch.engine."):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("conch.engine.")]
    return found


def test_the_server_imports_the_engine_only_through_its_package():
    reaching = {p.name: mods for p in sorted(SERVER.glob("*.py")) if (mods := engine_submodule_imports(p))}
    assert not reaching, f"import these from conch.engine (add them to its __all__ if missing): {reaching}"


def test_the_engine_exports_what_it_names():
    import conch.engine

    assert all(hasattr(conch.engine, name) for name in conch.engine.__all__)
