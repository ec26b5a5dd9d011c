"""Conda envs stay in step with the pinned venv, and each holds what its rules' scripts import."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from conftest import REPO


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


LOCK = {
    canon(name): version
    for name, version in (
        line.split("==")
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
}
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def env_pins(path: Path) -> dict[str, str]:
    deps = yaml.safe_load(path.read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    return {canon(spec.split("==")[0]): spec.split("==")[1] for spec in pip}


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_equal_the_lock(env):
    for name, version in env_pins(env).items():
        assert name in LOCK, f"{env.name}: {name} is not in requirements.txt"
        assert LOCK[name] == version, f"{env.name}: {name}=={version} but requirements.txt has {LOCK[name]}"


def rule_scripts() -> list[tuple[str, Path, Path]]:
    """(rule, env file, script) for every rule that runs a script, read from the rule files."""
    found = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n\s*(?:rule|checkpoint) ", smk.read_text())[1:]:
            name = block.split(":")[0].strip()
            env = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            script = re.search(r'script:\s*\n\s*"([^"]+)"', block)
            if env and script:
                found.append(
                    (name, (smk.parent / env.group(1)).resolve(), (smk.parent / script.group(1)).resolve())
                )
    return found


def imported_modules(path: Path, seen: set[Path]) -> set[str]:
    """Top-level third-party modules a script imports, following imports of the conch package."""
    if path in seen or not path.exists():
        return set()
    seen.add(path)
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from conch import lf` names a submodule; `from conch.x import y` may too.
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "conch":
                target = REPO.joinpath(*name.split("."))
                for candidate in (target.with_suffix(".py"), target / "__init__.py"):
                    modules |= imported_modules(candidate, seen)
            else:
                modules.add(name.split(".")[0])
    return modules


@pytest.mark.parametrize("rule,env,script", rule_scripts(), ids=lambda v: v if isinstance(v, str) else "")
def test_env_has_every_module_its_rule_imports(rule, env, script):
    dists = packages_distributions()
    pins = env_pins(env)
    missing = []
    for module in sorted(imported_modules(script, set())):
        if module in sys.stdlib_module_names or module in ("snakemake", "__future__"):
            continue
        owners = {canon(d) for d in dists.get(module, [])}
        assert owners, f"{rule}: imports {module}, which no installed distribution provides"
        if not owners & set(pins):
            missing.append(f"{module} (from {'/'.join(sorted(owners))})")
    assert not missing, f"rule {rule}: {env.name} lacks {', '.join(missing)}"


def test_dockerfile_installs_the_lock():
    """The container alternative (--sdm apptainer, Kubernetes) holds exactly the pinned packages."""
    dockerfile = (REPO / "Dockerfile").read_text()
    instructions = [
        line.strip() for line in dockerfile.splitlines() if line.strip() and not line.startswith("#")
    ]
    base = next(line for line in instructions if line.startswith("FROM "))
    python = re.search(r"python:(\d+\.\d+)", base)
    envs_python = {
        next(
            d
            for d in yaml.safe_load(env.read_text())["dependencies"]
            if isinstance(d, str) and d.startswith("python=")
        )
        for env in ENV_FILES
    }
    assert python and envs_python == {f"python={python.group(1)}"}, f"{base} vs envs' {envs_python}"
    assert "COPY requirements.txt" in dockerfile and "pip install -r requirements.txt" in dockerfile
    # any package pinned on top of the lock must carry the lock's version
    for name, version in re.findall(r"([A-Za-z0-9_.-]+)==([^\s\"']+)", dockerfile):
        assert LOCK.get(canon(name)) == version, (
            f"Dockerfile pins {name}=={version}, the lock {LOCK.get(canon(name))}"
        )
    assert "pip install --no-deps" in dockerfile, "conch itself must not pull in unpinned dependencies"
