"""A user's fresh clone: the tests need nothing beside the repository, `make` refuses a Python too old before it
installs anything, what .gitignore ignores is not tracked, and the Slurm tests run only when asked for."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import DEMO, REPO, SLURM_OPT_IN


def test_no_test_reads_beside_the_repository():
    """The workplace folders beside the clone (shared, models) exist on the development machine and in CI
    only; the demo files are vendored."""
    outside = re.compile(r"""\.parents?\b[^\n]*["']shared["']|\.\./shared|/work/(shared|models)""")
    offenders = [
        f"{path.name}:{number}"
        for path in sorted((REPO / "tests").glob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if outside.search(line) and path.name != "test_fresh_clone.py"
    ]
    assert not offenders, offenders
    assert DEMO.is_relative_to(REPO / "tests" / "data")
    licence = (DEMO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0" in licence
    notice = (DEMO / "README.md").read_text(encoding="utf-8")
    assert "hiyouga/LLaMA-Factory" in notice
    assert all(f.name in notice for f in DEMO.glob("*.json")), "each vendored file is listed with its origin"


def test_nothing_gitignore_ignores_is_tracked():
    tracked_but_ignored = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--cached", "--ignored", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked_but_ignored == []


@pytest.fixture
def make_copy(tmp_path):
    """The Makefile with what its venv rule reads, in a folder of its own (so no venv exists there yet)."""
    for name in ("Makefile", "pyproject.toml", "requirements.txt"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def old_python(folder, version=(3, 10, 12)):
    """A real interpreter that reports an older version (sys.version_info) to whatever it runs."""
    site = folder / "old-python-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import sys\nsys.version_info = {(*version, 'final', 0)!r}\n")
    script = folder / "python3.10"
    script.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} "$@"\n')
    script.chmod(0o755)
    return script


def make(folder, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    return subprocess.run(
        ["make", "-C", str(folder), *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_make_refuses_an_old_python_before_installing_anything(make_copy):
    python = old_python(make_copy)
    for target in ("venv", "run", "test"):
        proc = make(make_copy, target, f"PYTHON={python}")
        assert proc.returncode != 0
        assert (
            f"conch needs Python >= 3.11 (pyproject.toml requires-python); {python} is Python 3.10.12"
            in proc.stderr
        )
        assert "make run PYTHON=python3.11" in proc.stderr
        assert not (make_copy / ".venv").exists() and "pip" not in proc.stdout


def test_make_refuses_a_venv_an_old_python_made(make_copy):
    (make_copy / ".venv" / "bin").mkdir(parents=True)
    os.symlink(old_python(make_copy), make_copy / ".venv" / "bin" / "python")
    proc = make(make_copy, "venv", f"PYTHON={sys.executable}")
    assert proc.returncode != 0 and "is Python 3.10.12" in proc.stderr
    assert ".venv was made with it: remove it (rm -rf .venv)" in proc.stderr
    assert not (make_copy / ".venv" / ".installed").exists()


def test_make_accepts_a_new_enough_python(make_copy):
    assert make(make_copy, "check-python", f"PYTHON={sys.executable}").returncode == 0


def collect_slurm_tests(opt_in: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != SLURM_OPT_IN} | ({SLURM_OPT_IN: "1"} if opt_in else {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests/test_slurm.py"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_the_slurm_tests_run_only_when_asked_for():
    """Without CONCH_TEST_SLURM=1 they are deselected, saying how to run them (nothing is installed or started);
    with it, `make test-slurm` and CI run them."""
    plain = collect_slurm_tests(opt_in=False)
    assert plain.returncode == 5, plain.stdout  # pytest's "no tests collected"
    assert re.search(r"\d+ Slurm test\(s\) not run", plain.stdout) and "make test-slurm" in plain.stdout
    assert "deselected" in plain.stdout and "test_slurm.py::" not in plain.stdout
    asked = collect_slurm_tests(opt_in=True)
    assert (
        asked.returncode == 0
        and "test_slurm.py::test_a_session_stops_the_slurm_daemons_it_started" in asked.stdout
    )
    assert (
        "test-slurm:" in (REPO / "Makefile").read_text()
        and f"{SLURM_OPT_IN}=1 make test" in (REPO / ".ci" / "run").read_text()
    )
