"""Conda envs stay in step with the pinned venv, and each holds what its rules' scripts import."""

from __future__ import annotations

import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from conch.workflow.imports import reach


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


@pytest.mark.parametrize("rule,env,script", rule_scripts(), ids=lambda v: v if isinstance(v, str) else "")
def test_env_has_every_module_its_rule_imports(rule, env, script):
    dists = packages_distributions()
    pins = env_pins(env)
    missing = []
    for module in sorted(reach(script, REPO).packages):
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
