"""What a script reaches by importing: the conch source files it runs and the other packages it needs.

Read from the source with `ast`, never by importing it, so the rules can ask at parse time for free
(rules/common.smk makes the files every rule's code inputs) and tests/test_envs.py can check each conda
env against the packages. What counts as reaching a conch module:

- every import statement, at module level or inside a function (a lazy import runs too), absolute or
  relative, with the `__init__.py` of each package on the way (Python runs those first);
- `from conch.pkg import name`: `conch/pkg/name.py` too when `name` is a module of that package;
- a string that names a conch module, as in `[sys.executable, "-m", "conch.server"]` or
  `importlib.import_module("conch.x")`: the module, and a package's `__main__.py`, which `-m` runs.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "conch"
_MODULE_NAME = re.compile(rf"{PACKAGE}(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class Reach:
    files: tuple[Path, ...]  # conch source files, sorted
    packages: frozenset[str]  # top-level names of every other module imported (stdlib included)


def reach(script: str | Path, root: str | Path) -> Reach:
    """Everything `script` reaches, following the conch package that lives in `root`."""
    root = Path(root).resolve()
    todo, seen, packages = [Path(script).resolve()], set(), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        modules, others = _imports(path, root)
        packages |= others
        todo += [f for name in modules for f in _files(name, root)]
    return Reach(tuple(sorted(seen - {Path(script).resolve()})), frozenset(packages))


@functools.cache
def _imports(path: Path, root: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(conch module names, other top-level module names) one file names; a missing name is dropped later."""
    conch, others = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, path, root)
            names = [module, *(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _MODULE_NAME.fullmatch(node.value) and _files(node.value, root, must_exist=True):
                conch |= {node.value, f"{node.value}.__main__"}
            continue
        else:
            continue
        for name in names:
            (conch if name.split(".")[0] == PACKAGE else others).add(name)
    return frozenset(conch), frozenset(n.split(".")[0] for n in others)


def _absolute(node: ast.ImportFrom, path: Path, root: Path) -> str:
    if not node.level:
        return node.module or ""
    package = path.parent.relative_to(root).parts
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _files(name: str, root: Path, must_exist: bool = False) -> list[Path]:
    """The files Python runs to import `name`: each package's __init__.py down to the module itself."""
    found, parts = [], name.split(".")
    for depth in range(1, len(parts) + 1):
        target = root.joinpath(*parts[:depth])
        for candidate in (target / "__init__.py", target.with_suffix(".py")):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            # `from conch.x import name`: `name` is an attribute, not a module; so is an unknown string.
            return [] if must_exist else found
    return found
