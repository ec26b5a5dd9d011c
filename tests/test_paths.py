"""Path traversal: no value that names a dataset, experiment, hub model or served model can become a path.

Names end up in paths (results/adapters/<experiment>/, results/data/<dataset>/, the hub cache) or select a
model on the server, so each is checked before use. Paths the user chooses on purpose (`data.raw`,
`base_model.path`, `rag.docs`) are theirs to choose and are not restricted.
"""

from __future__ import annotations

import copy
import re

import httpx
import pytest
from conftest import REPO, default_config, make_workdir, snakemake
from test_server_support import main_server, tiny_model

from conch.workflow.config import problems
from conch.workflow.experiments import all_experiments
from conch.workflow.plan import load_schema

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
NAME = re.compile(SCHEMA["properties"]["dataset"]["pattern"])
TRAVERSALS = [
    "../evil",
    "../../etc/passwd",
    "a/b",
    "/abs",
    "..",
    ".",
    ".hidden",
    "a\\b",
    "C:\\x",
    "",
    "a\x00b",
]


def with_values(**changes) -> dict:
    cfg = copy.deepcopy(default_config())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = cfg
        for key in parents:
            node = node[key]
        node[last] = value
    return cfg


@pytest.mark.parametrize("name", TRAVERSALS)
def test_experiment_and_dataset_names_are_refused(name):
    found = problems(with_values(experiments={name: {}}), SCHEMA)
    assert any(p.startswith("config key experiments: ") and "does not match" in p for p in found), found
    found = problems(with_values(dataset=name), SCHEMA)
    assert any(p.startswith("config key dataset: ") for p in found), found


@pytest.mark.parametrize("repo_id", ["org/..", "../x", "org/../../x", "org/.hidden", "/abs", "a/b/c", "o/"])
def test_hub_repo_ids_that_are_paths_are_refused(repo_id):
    cfg = with_values(base_model={"source": "hf", "repo_id": repo_id})
    assert any(p.startswith("config key base_model.repo_id: ") for p in problems(cfg, SCHEMA))


def test_real_hub_repo_ids_pass():
    for repo_id in ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "gpt2", "Qwen/Qwen2.5-0.5B-Instruct"):
        assert problems(with_values(base_model={"source": "hf", "repo_id": repo_id}), SCHEMA) == []


def test_the_served_experiment_must_be_one_of_them():
    found = problems(with_values(serve__experiment="../default"), SCHEMA)
    assert any(p.startswith("config key serve.experiment: '../default' is not an experiment") for p in found)


def test_grid_values_become_safe_names():
    """A grid point is named after its values; whatever the values, the name is a plain directory name."""
    values = ["../../etc/passwd", "/abs", "..", "a/b\\c", "~root", "\x00y"]
    names = all_experiments({"experiments": {}, "grid": {"default_system": values}})
    assert len(names) == len(values)
    assert all(NAME.fullmatch(name) and ".." not in name.split("-") for name in names), list(names)


def test_the_workflow_refuses_a_traversing_experiment_before_any_job(tmp_path):
    cfg = with_values(experiments={"../../escaped": {}})
    proc = snakemake(make_workdir(tmp_path / "work", cfg), check=False)
    assert proc.returncode != 0
    assert "config key experiments: '../../escaped' does not match" in proc.stdout + proc.stderr
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "work" / "results").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", [*TRAVERSALS[:7], "tiny/../tiny", "TINY_MODEL_DIR"])
def test_the_server_selects_configured_names_only(name):
    """Even the real directory of a served model is not a model name: only configured names select."""
    server = main_server()
    name = tiny_model() if name == "TINY_MODEL_DIR" else name
    body = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    r = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 404 and r.json()["error"]["param"] == "model", r.text
    completion = {"model": name, "prompt": "hi", "max_tokens": 2}
    r = httpx.post(f"{server.base_url}/v1/completions", json=completion, timeout=60)
    assert r.status_code == 404 and r.json()["error"]["param"] == "model", r.text
    r = httpx.get(f"{server.base_url}/generate", params={"prompt": "hi", "model": name}, timeout=60)
    assert r.status_code == 404, r.text
