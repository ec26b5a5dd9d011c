"""The merge check: a correct merge passes in float32 and bfloat16, a merge with one module left out fails."""

from __future__ import annotations

import json

import pytest
import torch
from test_server_support import tiny_adapter, tiny_model

from conch.model.modeling import load
from conch.training.merge_check import compare, prompt_logits, stored_dtype

PROMPTS = ["Who are you?", "你是谁？"]
RTOL = {"float32": 2.0e-5, "bfloat16": 2.0e-2}  # config/schema.yaml's merge.rtol defaults


@pytest.fixture(scope="module")
def unmerged():
    return prompt_logits(*load(tiny_model(), adapter=tiny_adapter(), dtype=torch.float32), PROMPTS)


def merged_model():
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model(), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, tiny_adapter()).merge_and_unload().eval()
    return model, AutoTokenizer.from_pretrained(tiny_model())


def test_defaults_match_the_schema():
    import yaml
    from conftest import REPO

    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text(encoding="utf-8"))
    default = schema["properties"]["merge"]["properties"]["rtol"]["default"]
    assert {k: default[k] for k in RTOL} == RTOL


def test_a_correct_merge_passes(unmerged):
    result = compare(prompt_logits(*merged_model(), PROMPTS), unmerged, atol=1e-4, rtol=RTOL["float32"])
    assert result["passed"], result
    assert result["greedy_agreement"] == 1.0 and result["max_abs_logit_diff"] < 1e-4


def test_a_bfloat16_export_passes_with_its_own_tolerance_only(unmerged):
    model, tokenizer = merged_model()
    rounded = model.to(torch.bfloat16).to(torch.float32)  # what a bf16 export stores, loaded back
    merged = prompt_logits(rounded, tokenizer, PROMPTS)
    assert compare(merged, unmerged, atol=1e-4, rtol=RTOL["bfloat16"])["passed"]
    assert not compare(merged, unmerged, atol=1e-4, rtol=RTOL["float32"])["passed"]


def test_a_module_left_out_of_the_merge_fails(unmerged):
    from transformers import AutoModelForCausalLM

    model, tokenizer = merged_model()
    base = AutoModelForCausalLM.from_pretrained(tiny_model(), dtype=torch.float32)
    # one tensor of the merged model as if the merge had skipped its LoRA delta
    name = "model.layers.1.mlp.down_proj.weight"
    model.get_parameter(name).data.copy_(base.get_parameter(name).data)
    result = compare(prompt_logits(model, tokenizer, PROMPTS), unmerged, atol=1e-4, rtol=RTOL["float32"])
    assert not result["passed"]
    assert result["max_abs_logit_diff"] > 10 * result["max_tolerance_used"]


def test_greedy_disagreement_alone_fails_the_check():
    reference = torch.tensor([[[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]]])
    swapped = torch.tensor([[[0.0, 5.0, 1.0], [1.4, 1.6, 0.0]]])
    # every logit within the tolerance (2), but the second position's clear winner (by 3) changed
    result = compare([swapped], [reference], atol=2.0, rtol=0.0)
    assert result["max_abs_logit_diff"] <= result["max_tolerance_used"]
    assert not result["passed"] and result["prompts"][0]["greedy_disagreements"] == 1
    # a near tie (top two within the tolerance) may flip without failing
    tie = torch.tensor([[[2.0, 2.001, 0.0]]])
    assert compare([tie[:, :, [1, 0, 2]]], [tie], atol=0.01, rtol=0.0)["passed"]


def test_stored_dtype_reads_the_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    assert stored_dtype(tmp_path) == "bfloat16"
    (tmp_path / "config.json").write_text(json.dumps({}))
    assert stored_dtype(tmp_path) == "float32"
