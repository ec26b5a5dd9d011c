"""Base models: the scratch builder's chat template, and the hub fetch against a local HF cache (offline)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from conftest import REPO, make_workdir, planned_jobs, snakemake

from conch.model.scratch import build_scratch_model

RECORDS = [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    for q, a in [
        ("Who are you?", "I am the Magic Conch."),
        ("你是谁？", "我是神奇海螺。"),
        ("Should I?", "No."),
    ]
    * 4
]
ARCH = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=256,
)


def build_tiny_scratch(out):
    """The tiny scratch model these tests (and tests/test_gguf_base.py) use, in `out`."""
    build_scratch_model(
        RECORDS,
        out,
        arch=ARCH,
        vocab_size=300,
        seed=0,
        template="qwen",
        default_system="You are a helpful assistant.",
    )
    return out


@pytest.fixture(scope="module")
def scratch_dir(tmp_path_factory):
    return build_tiny_scratch(tmp_path_factory.mktemp("scratch"))


@pytest.mark.parametrize("system", ["", "Answer briefly."])
def test_chat_template_matches_llamafactory(scratch_dir, system):
    """What eval and the server render must be token for token what LLaMA-Factory trained on."""
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(scratch_dir)
    messages = [
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "I am the Magic Conch."},
        {"role": "user", "content": "你是谁？"},
        {"role": "assistant", "content": "我是神奇海螺。"},
    ]
    lf_tok = AutoTokenizer.from_pretrained(scratch_dir)
    template = get_template_and_fix_tokenizer(
        lf_tok, DataArguments(template="qwen", default_system="You are a helpful assistant.")
    )
    pairs = template.encode_multiturn(lf_tok, messages, system=system or None)
    lf_ids = [i for prompt, answer in pairs for i in prompt + answer]
    chat = ([{"role": "system", "content": system}] if system else []) + messages
    ours = tok.apply_chat_template(chat, tokenize=False)
    assert tok(ours, add_special_tokens=False)["input_ids"] == lf_ids


def test_scratch_model_is_seeded(tmp_path, scratch_dir):
    build_tiny_scratch(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == (scratch_dir / "model.safetensors").read_bytes()
    assert (tmp_path / "tokenizer.json").read_text() == (scratch_dir / "tokenizer.json").read_text()


def lay_out_hf_cache(hf_home, repo_id, model_dir, commit="0123456789abcdef0123456789abcdef01234567"):
    """The on-disk layout huggingface_hub uses: refs/<branch> -> commit, snapshots/<commit>/<files>."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    return commit


def assert_plans_the_spine(jobs: dict, base_model_rule: str) -> None:
    """Each step from raw data to the served model is planned exactly once (branches may add more rules)."""
    spine = (
        "prepare_dataset",
        "register_dataset",
        base_model_rule,
        "measure_token_lengths",
        "train_adapter",
        "merge_adapter",
        "evaluate",
        "serve",
        "all",
    )
    assert {rule: jobs.get(rule) for rule in spine} == dict.fromkeys(spine, 1), jobs


def test_deepseek_config_plans_the_whole_dag(tmp_path):
    cfg = yaml.safe_load((REPO / "config/deepseek-r1-distill-qwen-1.5b.yaml").read_text(encoding="utf-8"))
    jobs = planned_jobs(make_workdir(tmp_path, cfg))
    assert_plans_the_spine(jobs, "fetch_hf_model")
    assert "build_scratch_model" not in jobs
    out = snakemake(tmp_path, "-n", "-p", "results/adapters/default/adapter_model.safetensors").stdout
    assert "gpu=1" in out and "mem_mb=32000" in out


def test_fetch_hf_model_from_a_local_cache_offline(tmp_path, scratch_dir):
    repo_id = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    hf_home = tmp_path / "hf"
    commit = lay_out_hf_cache(hf_home, repo_id, scratch_dir)
    cfg = yaml.safe_load((REPO / "config/deepseek-r1-distill-qwen-1.5b.yaml").read_text(encoding="utf-8"))
    work = make_workdir(tmp_path / "work", cfg)
    token = "hf_TESTSECRET_never_in_results_1234"
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_TOKEN": token}
    snakemake(work, "results/base_model/hf/manifest.json", env=env)
    manifest = json.loads((work / "results/base_model/hf/manifest.json").read_text())
    assert manifest["source"] == "hf" and manifest["repo_id"] == repo_id and manifest["commit"] == commit
    assert (work / manifest["path"] / "config.json").exists()
    for path in [*(work / "results").rglob("*"), *(work / "logs").rglob("*")]:
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path


def test_fetch_of_a_model_missing_from_the_cache_says_so(tmp_path):
    cfg = yaml.safe_load((REPO / "config/deepseek-r1-distill-qwen-1.5b.yaml").read_text(encoding="utf-8"))
    cfg["base_model"]["repo_id"] = "nobody/not-cached"
    work = make_workdir(tmp_path / "work", cfg)
    env = {"HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    proc = snakemake(work, "results/base_model/hf/manifest.json", env=env, check=False)
    assert proc.returncode != 0
    log = (work / "logs/base_model/fetch_hf_model.log").read_text()
    assert "'nobody/not-cached'" in log and "not in the local cache" in log


def test_default_config_plans_the_whole_dag(tmp_path):
    from conftest import default_config

    jobs = planned_jobs(make_workdir(tmp_path, default_config()))
    assert_plans_the_spine(jobs, "build_scratch_model")
