"""Shared fixtures: a tiny workflow run in a temp dir, reused by every test that needs its outputs."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# LLaMA-Factory's demo datasets, vendored unchanged with their licence (tests/data/llamafactory-demo/README.md).
DEMO = REPO / "tests" / "data" / "llamafactory-demo"
TINY_RUN_HF_TOKEN = "hf_conchTinyRunSecret_0123456789abcdef"


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))


def tiny_config() -> dict:
    """The default config shrunk until the whole DAG takes about a minute on 2 cores."""
    cfg = copy.deepcopy(default_config())
    cfg["base_model"]["scratch"].update(vocab_size=600, hidden_size=64, intermediate_size=128)
    cfg["train"].update(num_train_epochs=6, save_steps=30, logging_steps=2)
    cfg["eval"].update(max_samples=8, max_new_tokens=16)
    return cfg


def make_workdir(path: Path, cfg: dict) -> Path:
    """A deployed-workflow layout: config/config.yaml and the raw data the config names."""
    (path / "config").mkdir(parents=True, exist_ok=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    for raw in cfg["data"]["raw"]:
        src = REPO / raw
        if src.exists():
            (path / raw).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, path / raw)
    return path


def snakemake(
    workdir: Path,
    *args: str,
    env: dict | None = None,
    check: bool = True,
    timeout: int = 1200,
    repo: Path = REPO,
) -> subprocess.CompletedProcess:
    """Run the real workflow (this repo's Snakefile, or a copy's) in `workdir` with this interpreter's snakemake."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(repo / "Snakefile"),
        "-d",
        str(workdir),
        "--cores",
        "2",
        *args,
    ]
    full_env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **(env or {}),
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-6000:]}"
        )
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """{rule: count} of what a dry run would execute."""
    # --quiet=rules, not "--quiet rules": --quiet takes any number of values and would swallow a target
    out = snakemake(workdir, "-n", "--quiet=rules", *args).stdout
    jobs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run of the whole DAG on the tiny config; treat as read-only (copy it to change things)."""
    workdir = make_workdir(tmp_path_factory.mktemp("tiny_run"), tiny_config())
    # A token in the environment, as on a real machine; tests/test_secrets.py checks it reached no file.
    # Progress lines every second from the first (jobs this small are otherwise quiet); the captured
    # stderr is kept for tests/test_workflow.py.
    env = {"HF_TOKEN": TINY_RUN_HF_TOKEN, "CONCH_PROGRESS_INTERVAL": "1", "CONCH_PROGRESS_DELAY": "0"}
    proc = snakemake(workdir, env=env)
    (workdir / "snakemake.stderr").write_text(proc.stderr, encoding="utf-8")
    return workdir


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the finished run, timestamps kept, for tests that change inputs or config."""
    dest = tmp_path / "run"
    shutil.copytree(tiny_run, dest, symlinks=True)
    return dest


# ---- experiments: a 2x2 grid rigged so that one experiment clearly wins (tests/test_experiments.py) ----
GRID = {"learning_rate": [1.0e-5, 5.0e-3], "num_train_epochs": [1, 2]}
GRID_WINNER = "lr5e-3_ep2"  # most updates at the useful learning rate: the lowest test loss


def grid_config() -> dict:
    """The tiny config with only the grid's four experiments; other branches off to keep the run short."""
    cfg = tiny_config()
    cfg["experiments"] = {}
    cfg["grid"] = GRID
    cfg["selection"] = {"metric": "tuned.loss"}
    if "rag" in cfg:
        cfg["rag"]["enabled"] = False
    return cfg


@pytest.fixture(scope="session")
def grid_run(tiny_run, tmp_path_factory) -> Path:
    """The grid run on a copy of the tiny run, so data and base model are reused; treat as read-only."""
    workdir = tmp_path_factory.mktemp("grid_run") / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    make_workdir(workdir, grid_config())
    snakemake(workdir)
    return workdir


# ---- the Slurm tests run only when asked for: they install and start system services (ci/start-slurm.sh) ----
SLURM_OPT_IN = "CONCH_TEST_SLURM"
_SLURM_LEFT_OUT = pytest.StashKey[int]()


def pytest_collection_modifyitems(config, items):
    """Without CONCH_TEST_SLURM=1 the `slurm` tests are deselected (not skipped), and the summary says why."""
    if os.environ.get(SLURM_OPT_IN) == "1":
        return
    left_out = [item for item in items if item.get_closest_marker("slurm")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("slurm")]
    config.stash[_SLURM_LEFT_OUT] = len(left_out)


def pytest_terminal_summary(terminalreporter, config):
    if left_out := config.stash.get(_SLURM_LEFT_OUT, 0):
        terminalreporter.write_line(
            f"{left_out} Slurm test(s) not run: they need a single-node Slurm, which ci/start-slurm.sh installs "
            f"and starts as root (and the tests stop again); run them with `make test-slurm` "
            f"({SLURM_OPT_IN}=1), as CI does."
        )
