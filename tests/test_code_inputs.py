"""Code inputs are computed from the scripts' imports (conch/workflow/imports.py, rules/common.smk): editing a conch
module reruns exactly the rules whose scripts reach it, directly or through other modules, and no other."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import REPO, default_config, make_workdir, snakemake

from conch.workflow.imports import reach

JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")


def dry_run(repo: Path, workdir: Path) -> dict[str, dict[str, str]]:
    """{rule: {"output": ..., "reason": ...}} of every job `snakemake -n` plans."""
    jobs, current = {}, None
    for line in snakemake(workdir, "-n", repo=repo).stdout.splitlines():
        if match := JOB.match(line):
            current = jobs.setdefault(match.group(1), {})
        elif current is not None and ": " in line and line.startswith("    "):
            key, value = line.strip().split(": ", 1)
            current[key] = value
    return jobs


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, float]:
    """(copy of the repository, a workdir whose every output is up to date, the outputs' mtime).

    The outputs are empty stand-ins written with one timestamp, newer than every source file, so a dry run
    plans nothing until a source changes. Directory outputs are the ones without a suffix; benchmark files are
    outputs too (compare_experiments reads the training jobs')."""
    root = tmp_path_factory.mktemp("code_inputs")
    repo = root / "repo"
    skip = shutil.ignore_patterns(
        ".*", "results", "logs", "benchmarks", "tests", "bench", "docs", "__pycache__"
    )
    shutil.copytree(REPO, repo, ignore=skip)  # copy2: the sources keep their timestamps
    workdir = make_workdir(root / "work", default_config())
    stamp = time.time() + 5
    for job in dry_run(repo, workdir).values():
        outputs = [*job.get("output", "").split(", "), job.get("benchmark", "")]
        for output in filter(None, outputs):
            path = workdir / output
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir() if not path.suffix else path.touch()
            os.utime(path, (stamp, stamp))
    assert dry_run(repo, workdir) == {}, "stand-in outputs must leave nothing to do"
    return repo, workdir, stamp


@pytest.mark.parametrize(
    ("module", "rules"),
    [
        # imported by the evaluate script itself
        ("conch/evaluation/scores.py", {"evaluate"}),
        # reached only through other modules (rag/index.py, rag/retrieve.py, the server's RAG routes)
        ("conch/rag/keyword.py", {"rag_index", "rag_eval", "serve"}),
        # LLaMA-Factory's driver: training and merging run it; evaluation and the server read its templates'
        # reasoning markers through it (conch/model/reasoning.py); nothing else
        ("conch/llamafactory/lf.py", {"train_adapter", "merge_adapter", "evaluate", "serve"}),
    ],
)
def test_editing_a_module_reruns_exactly_the_rules_that_reach_it(finished, module, rules):
    repo, workdir, stamp = finished
    source = repo / module
    original = source.read_bytes()
    try:
        source.write_bytes(original + b"\n# edited\n")
        os.utime(source, (stamp + 60, stamp + 60))
        jobs = dry_run(repo, workdir)
    finally:
        source.write_bytes(original)
        os.utime(source, (stamp - 60, stamp - 60))
    reached = {rule for rule, job in jobs.items() if str(source) in job.get("input", "").split(", ")}
    assert reached == rules, {rule: job["reason"] for rule, job in jobs.items()}
    # Snakemake names a job's own updated input only when nothing upstream of it reruns: the first jobs
    # that reach the module rerun for it, and every other job planned is downstream of those.
    for rule, job in jobs.items():
        if job["reason"].startswith("Updated input files"):
            assert rule in rules and job["reason"] == f"Updated input files: {source}", (rule, job)
        else:
            assert job["reason"].startswith("Input files updated by another job"), (rule, job)
    assert any(job["reason"].startswith("Updated input files") for job in jobs.values())


def test_closure_follows_lazy_relative_and_run_imports(tmp_path):
    """The walker on a tiny package: what each kind of reference adds, and what it leaves out."""
    files = {
        "conch/__init__.py": "",
        "conch/a.py": "def f():\n    from . import b\n",  # lazy and relative
        "conch/b.py": "import numpy\n",
        "conch/pkg/__init__.py": "",
        "conch/pkg/__main__.py": "from conch.pkg import tool\n",
        "conch/pkg/tool.py": "",
        "conch/unused.py": "",
        "script.py": 'from conch.a import f\nimport yaml\ncmd = ["python", "-m", "conch.pkg"]\n',
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = reach(tmp_path / "script.py", tmp_path)
    reached = {str(f.relative_to(tmp_path)) for f in found.files}
    assert reached == set(files) - {"conch/unused.py", "script.py"}
    assert {"numpy", "yaml"} <= found.packages and "conch" not in found.packages


def test_the_issue_cases_are_reached():
    """train_ppo's script reaches conch.llamafactory.lf and (through the preference data code) conch.data."""
    ppo = {str(f.relative_to(REPO)) for f in reach(REPO / "workflow_scripts/pref_ppo.py", REPO).files}
    assert {"conch/llamafactory/lf.py", "conch/data/pipeline.py", "conch/preference/ppo.py"} <= ppo
    serve = {str(f.relative_to(REPO)) for f in reach(REPO / "workflow_scripts/serve.py", REPO).files}
    assert {"conch/server/__main__.py", "conch/server/app.py"} <= serve  # run as `python -m conch.server`
