"""GGUF export: the converter (qwen2 and llama), the check that proves each file, the Ollama Modelfile, the rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, planned_jobs, snakemake
from test_server_support import ARCH

from conch.export import check
from conch.export import convert as converter
from conch.export.convert import ExportError, convert
from conch.export.vocab import QWEN2_SPLIT, VocabError, pre_tokenizer_name
from conch.model.modeling import load, stop_token_ids

PROMPTS = ["Who are you?", "你是谁？"]
# Random weights at 10x transformers' default init: logits with clear winners, so greedy agreement means
# something (at 1.0 activations blow up and q8_0 rounding alone changes the answer).
INIT_RANGE = 0.2


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """A random llama-architecture model with tied embeddings (like SmolLM2) and a byte-level BPE tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from conch.model.scratch import chat_template_for, train_tokenizer

    out = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = train_tokenizer(["Who are you?", "你是谁？", "I am the Magic Conch, 神奇海螺."] * 20, 300)
    # Llama tokenizers have a BOS token; transformers' GGUF tokenizer reader for llama needs one.
    tokenizer.bos_token = "<|endoftext|>"
    chat_template_for(tokenizer, "qwen", "You are a helpful assistant.")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        **ARCH,  # the server tests' tiny Qwen2 shape
        tie_word_embeddings=True,
        initializer_range=INIT_RANGE,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def checked(model_dir: Path, gguf_file: Path, out_type: str) -> tuple[dict, list[str]]:
    reference = load(str(model_dir), dtype=torch.float32)
    stop = stop_token_ids(reference[1], reference[0])
    result = check.compare(reference, check.load_gguf(gguf_file), PROMPTS, 16, stop)
    return result, check.verdict(out_type, result, min_top1=0.95, max_logit_error=3.0)


def test_llama_model_round_trips_through_gguf(tiny_llama, tmp_path):
    from gguf import GGUFReader

    out = tmp_path / "model-f16.gguf"
    written = convert(tiny_llama, out, "f16", name="tiny")
    assert written["architecture"] == "llama"
    reader = GGUFReader(out)
    names = {t.name for t in reader.tensors}
    assert "token_embd.weight" in names and "output.weight" not in names  # tied, as in the HF model
    assert reader.fields["tokenizer.ggml.pre"].contents() == "gpt-2"  # GPT-2's regex in ByteLevel
    result, failures = checked(tiny_llama, out, "f16")
    assert failures == [], result
    assert result["greedy_identical"] and result["tokenizer_round_trip"]
    assert all(p["greedy_tokens"] > 1 for p in result["prompts"])


def test_llama_export_without_rope_permutation_fails_the_check(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setattr(converter, "rope_rows_to_ggml", lambda weight, n_head: weight)
    out = tmp_path / "model-f16.gguf"
    convert(tiny_llama, out, "f16", name="tiny")
    result, failures = checked(tiny_llama, out, "f16")
    assert "its greedy continuation differs from the merged model's" in failures, result
    assert result["top1_agreement"] < 0.95


def test_corrupted_tensor_fails_the_check(tiny_llama, tmp_path):
    from gguf import GGUFReader

    out = tmp_path / "model-f32.gguf"
    convert(tiny_llama, out, "f32", name="tiny")
    tensor = next(t for t in GGUFReader(out, "r+").tensors if t.name == "blk.1.ffn_down.weight")
    tensor.data[:] = np.random.default_rng(0).normal(0, 1, tensor.data.shape).astype(tensor.data.dtype)
    tensor.data.flush()
    result, failures = checked(tiny_llama, out, "f32")
    assert failures, result
    assert result["max_abs_logit_diff"] > 3.0


def test_unsupported_architecture_is_refused_by_name(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    )
    with pytest.raises(ExportError, match=r"supports the llama, qwen2 architectures, not model_type 'gpt2'"):
        convert(tmp_path, tmp_path / "model.gguf", "f16", name="x")
    assert not (tmp_path / "model.gguf").exists()


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False}


@pytest.mark.parametrize(
    "steps,name",
    [
        ([{"type": "Digits", "individual_digits": True}, {**BYTE_LEVEL, "use_regex": True}], "smollm"),
        (
            [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
                {**BYTE_LEVEL, "use_regex": False},
            ],
            "qwen2",
        ),
    ],
)
def test_pre_tokenizers_get_llama_cpp_names(steps, name):
    tokenizer_json = {"model": {"type": "BPE"}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": steps}}
    assert pre_tokenizer_name(tokenizer_json, "tokenizer.json") == name


def test_pre_tokenizer_llama_cpp_lacks_is_refused():
    tokenizer_json = {"model": {"type": "BPE"}, "pre_tokenizer": {"type": "Whitespace"}}
    with pytest.raises(
        VocabError, match="tokenizer.json: pre-tokenizer .*Whitespace.* no llama.cpp equivalent"
    ):
        pre_tokenizer_name(tokenizer_json, "tokenizer.json")


def test_schema_offers_exactly_the_types_the_converter_writes():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text(encoding="utf-8"))
    offered = schema["properties"]["export"]["properties"]["gguf"]["items"]["enum"]
    assert sorted(offered) == sorted(converter.TYPES)


def test_modelfile_without_template_is_refused():
    from conch.export.modelfile import ModelfileError, gguf_modelfile

    with pytest.raises(ModelfileError, match="Modelfile: no `TEMPLATE` line"):
        gguf_modelfile('FROM .\nPARAMETER stop "x"\n', "model-f16.gguf", 1024, "Modelfile")


def enable_export(workdir: Path, **check_keys) -> None:
    path = workdir / "config" / "config.yaml"
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg["export"] = {"gguf": ["f16", "q8_0"], "check": check_keys}
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")


@pytest.mark.slow
def test_export_rule_on_the_scratch_run(tiny_run_copy):
    workdir = tiny_run_copy
    out = workdir / "results" / "gguf" / "default"
    assert "export_gguf" not in planned_jobs(workdir)  # off by default
    enable_export(workdir)
    assert planned_jobs(workdir) == {"export_gguf": 1, "all": 1}  # part of `all` when on; nothing else reruns
    snakemake(workdir)

    report = json.loads((out / "check.json").read_text(encoding="utf-8"))
    assert report["passed"]
    f16, q8 = report["types"]["f16"], report["types"]["q8_0"]
    assert f16["greedy_identical"] and f16["tokenizer_round_trip"] and q8["tokenizer_round_trip"]
    assert q8["top1_agreement"] >= 0.95 and q8["max_abs_logit_diff"] <= 3.0
    assert f16["architecture"] == "qwen2" and q8["tensor_types"] == ["F32", "Q8_0"]
    assert (out / "model-q8_0.gguf").stat().st_size < 0.6 * (out / "model-f16.gguf").stat().st_size
    modelfile = (out / "Modelfile").read_text(encoding="utf-8")
    assert "FROM ./model-f16.gguf\n" in modelfile
    assert 'TEMPLATE """' in modelfile and "<|im_start|>user\n{{ .Content }}<|im_end|>" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "PARAMETER num_ctx 1024\n" in modelfile  # the scratch model's context, not LLaMA-Factory's 4096

    # A check that cannot pass fails the job and leaves no file that looks finished.
    enable_export(workdir, max_logit_error=1.0e-9)
    proc = snakemake(workdir, check=False)
    assert proc.returncode != 0
    assert "GGUF check failed (f16: max |logit diff|" in proc.stdout + proc.stderr
    assert sorted(p.name for p in out.glob("*")) == []  # Snakemake even removes the emptied folder
