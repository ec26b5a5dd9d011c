"""Modules use each other's public names only: a `_name` is private to the module that defines it, so no other
module (in conch/, workflow_scripts/ or bench/) imports it. Renaming a private helper then cannot break
another module at run time, which only a slow test would notice."""

from __future__ import annotations

import ast

from conftest import REPO


def private_imports(path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(REPO)}:{node.lineno} imports {alias.name} from {node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("conch")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]


def test_no_module_imports_another_modules_private_names():
    files = [f for d in ("conch", "workflow_scripts", "bench") for f in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 50
    found = [line for f in files for line in private_imports(f)]
    assert not found, "\n".join(found)
