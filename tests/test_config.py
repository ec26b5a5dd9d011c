"""Config validation: every bad value is refused before any job runs, with the key named."""

from __future__ import annotations

import copy
import shutil

import pytest
import yaml
from conftest import REPO, default_config, make_workdir, planned_jobs, snakemake

from conch.workflow.config import problems
from conch.workflow.plan import load_schema

# As the workflow loads it: with the serve settings' part, which ServeSettings defines.
SCHEMA = load_schema(REPO / "config" / "schema.yaml")


def with_change(path: str, value):
    cfg = copy.deepcopy(default_config())
    *parents, last = path.split(".")
    node = cfg
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return cfg


def test_shipped_configs_are_valid():
    assert problems(default_config(), SCHEMA) == []
    real = yaml.safe_load((REPO / "config/deepseek-r1-distill-qwen-1.5b.yaml").read_text(encoding="utf-8"))
    assert problems(real, SCHEMA) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("train.lora_rank", 0, "config key train.lora_rank: 0 is less than the minimum of 1"),
        (
            "train.learning_rate",
            -1.0,
            "config key train.learning_rate: -1.0 is less than or equal to the minimum",
        ),
        (
            "train.num_train_epochs",
            "three",
            "config key train.num_train_epochs: 'three' is not of type 'number'",
        ),
        ("train.output_dir", "/tmp/x", "config key train.output_dir: set by the workflow"),
        (
            "data.val_fraction",
            1.5,
            "config key data.val_fraction: 1.5 is greater than or equal to the maximum",
        ),
        ("data.raw", [], "config key data.raw: [] should be non-empty"),
        ("data.seeed", 1, "config key data.seeed: unknown key; did you mean 'seed'?"),
        ("serve.port", 70000, "config key serve.port: 70000 is greater than the maximum of 65535"),
        ("template", "qwen25", "config key template: 'qwen25' is not a LLaMA-Factory template; did you mean"),
        ("base_model.source", "s3", "config key base_model.source: 's3' is not one of"),
        ("dataset", "../evil", "config key dataset: '../evil' does not match"),
        (
            "experiments.fast",
            {"lora_rank": 0},
            "config key experiments.fast.lora_rank: 0 is less than the minimum",
        ),
    ],
)
def test_bad_values_name_the_key(path, value, expected):
    found = problems(with_change(path, value), SCHEMA)
    assert any(expected in p for p in found), found


def test_hf_source_needs_a_repo_id():
    cfg = with_change("base_model.source", "hf")
    assert any("config key base_model: 'repo_id' is a required property" in p for p in problems(cfg, SCHEMA))


def test_workflow_refuses_a_bad_config_before_any_job(tmp_path):
    cfg = with_change("train.lora_rnk", 8)
    cfg["eval"]["max_new_tokenz"] = 8
    proc = snakemake(make_workdir(tmp_path, cfg), "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "2 problem(s) in config" in out
    assert (
        "config key train.lora_rnk: not a LLaMA-Factory training argument; did you mean 'lora_rank'?" in out
    )
    assert "config key eval.max_new_tokenz: unknown key; did you mean 'max_new_tokens'?" in out
    assert "Traceback" not in out
    assert not (tmp_path / "results").exists()


def test_every_kind_of_bad_value_is_refused_before_any_job(tmp_path):
    """A real (not dry) run with one problem of each kind: all named at once, nothing runs."""
    cfg = with_change("train.learning_rate", -1.0e-4)
    cfg["train"].update(lora_rank=0, num_train_epochs="three")
    cfg["template"] = "qwen3000"
    cfg["base_model"] = {"source": "hf"}
    cfg["data"]["max_chars"] = [8000]
    cfg["eval"]["max_new_tokenz"] = 8
    proc = snakemake(make_workdir(tmp_path, cfg), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    for expected in (
        "7 problem(s) in config",
        "config key train.learning_rate: -0.0001 is less than or equal to the minimum of 0",
        "config key train.lora_rank: 0 is less than the minimum of 1",
        "config key train.num_train_epochs: 'three' is not of type 'number'",
        "config key template: 'qwen3000' is not a LLaMA-Factory template; did you mean",
        "config key base_model: 'repo_id' is a required property",
        "config key data.max_chars: [8000] is not of type 'integer'",
        "config key eval.max_new_tokenz: unknown key; did you mean 'max_new_tokens'?",
    ):
        assert expected in out, expected
    assert not any((tmp_path / d).exists() for d in ("results", "logs", "benchmarks"))


EXAMPLES = sorted(
    p.name for p in (REPO / "config").glob("*.yaml") if p.name not in ("config.yaml", "schema.yaml")
)


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_config_plans(tmp_path, example):
    """Each shipped example, layered over the default as its header says, gives a DAG that ends in `all`."""
    workdir = make_workdir(tmp_path, default_config())
    shutil.copytree(REPO / "data" / "raw", workdir / "data" / "raw", dirs_exist_ok=True)
    base = (yaml.safe_load((REPO / "config" / example).read_text(encoding="utf-8")) or {}).get(
        "base_model", {}
    )
    if base.get("source") == "gguf":  # the file `make smollm2` fetches: a dry run needs it to exist only
        (workdir / base["path"]).parent.mkdir(parents=True, exist_ok=True)
        (workdir / base["path"]).write_bytes(b"GGUF")
    jobs = planned_jobs(workdir, "--configfile", str(REPO / "config" / example))
    # With several experiments the served one is chosen by the compare_experiments checkpoint, so `serve`
    # is planned only once it has run; until then select_served stands for it.
    assert jobs.get("all") == 1 and (jobs.get("serve") == 1 or jobs.get("select_served") == 1), jobs
