"""GGUF and local bases: dequantized once into a HF directory, refused with a clear error when transformers cannot
load the architecture, and rebuilt (with everything after it) when the weights change.

The GGUF here is written from a tiny scratch Qwen2 model with the `gguf` package, so the test needs no download;
tests/test_real_model.py runs the real SmolLM2 GGUF through the whole workflow.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import make_workdir, planned_jobs, snakemake, tiny_config
from test_base_model import build_tiny_scratch


def write_gguf(model_dir, out_file, architecture="qwen2"):
    """A float32 GGUF of a scratch model: llama.cpp's tensor names, the BPE vocabulary and merges, and special
    token ids as GGUF stores them (bos <|endoftext|>, eos <|im_end|>)."""
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    c = model.config
    writer = gguf.GGUFWriter(str(out_file), architecture)
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_rope_freq_base(c.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    vocab = tok.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in tok.all_special_tokens else 1 for t in tokens])
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    writer.add_bos_token_id(vocab["<|endoftext|>"])
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_pad_token_id(vocab["<|endoftext|>"])
    writer.add_chat_template(tok.chat_template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, c.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), tensor.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_file


@pytest.fixture(scope="module")
def scratch_dir(tmp_path_factory):
    return build_tiny_scratch(tmp_path_factory.mktemp("scratch"))


@pytest.fixture(scope="module")
def gguf_file(scratch_dir, tmp_path_factory):
    return write_gguf(scratch_dir, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_dequantized_model_equals_the_original(scratch_dir, gguf_file, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from conch.model.dequantize import dequantize
    from conch.model.hub import file_sha256

    facts = dequantize(gguf_file, tmp_path / "model", template="qwen", default_system=None)
    assert facts["sha256"] == file_sha256(gguf_file) and facts["architecture"] == "qwen2"
    # transformers 5.6 reads the eos token from bos_token_id; the GGUF's own id is restored
    assert "eos_token: '<|endoftext|>' -> '<|im_end|>'" in facts["tokenizer_repairs"]
    original, tok = (
        AutoModelForCausalLM.from_pretrained(scratch_dir),
        AutoTokenizer.from_pretrained(scratch_dir),
    )
    model, deq_tok = (
        AutoModelForCausalLM.from_pretrained(tmp_path / "model"),
        AutoTokenizer.from_pretrained(tmp_path / "model"),
    )
    text = deq_tok.apply_chat_template(
        [{"role": "user", "content": "你是谁？"}], tokenize=False, add_generation_prompt=True
    )
    assert text == tok.apply_chat_template(
        [{"role": "user", "content": "你是谁？"}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert deq_tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"].tolist() == ids.tolist()
    assert torch.equal(model(ids).logits, original(ids).logits)
    assert deq_tok.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == deq_tok.eos_token_id


def test_an_architecture_transformers_cannot_load_is_named(tmp_path):
    import gguf

    from conch.errors import ConfigError
    from conch.model.dequantize import dequantize

    writer = gguf.GGUFWriter(str(tmp_path / "odd.gguf"), "rwkv7")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(
        ConfigError, match=r"GGUF architecture 'rwkv7' cannot be loaded by transformers .*llama"
    ):
        dequantize(tmp_path / "odd.gguf", tmp_path / "out", template="qwen", default_system=None)
    assert not (tmp_path / "out").exists()


def gguf_config(path: str) -> dict:
    cfg = tiny_config()
    cfg["base_model"] = {"source": "gguf", "path": path}
    return cfg


def replace_weights_with_older_timestamp(path) -> None:
    """New weights (the last float changed), copied with an old timestamp: only their hash can tell."""
    data = bytearray(path.read_bytes())
    data[-4:] = np.float32(0.5).tobytes()
    stamp = path.stat().st_mtime - 3600
    path.write_bytes(bytes(data))
    os.utime(path, (stamp, stamp))


@pytest.mark.slow
def test_gguf_base_is_dequantized_once_and_rebuilt_on_new_weights(gguf_file, tmp_path):
    from conch.model.hub import file_sha256

    work = make_workdir(tmp_path / "work", gguf_config("models/tiny.gguf"))
    (work / "models").mkdir()
    shutil.copy2(gguf_file, work / "models" / "tiny.gguf")
    snakemake(work, "results/base_model/gguf/manifest.json")
    manifest = json.loads((work / "results/base_model/gguf/manifest.json").read_text())
    assert manifest["source"] == "gguf" and manifest["path"] == "results/base_model/gguf/model"
    assert manifest["sha256"] == file_sha256(gguf_file) and manifest["architecture"] == "qwen2"
    assert "dequantize_gguf" not in planned_jobs(work, "results/base_model/gguf/manifest.json")

    replace_weights_with_older_timestamp(work / "models" / "tiny.gguf")
    jobs = planned_jobs(work, "results/data/magic_conch/token_lengths.json")
    assert jobs.get("dequantize_gguf") == 1 and jobs.get("measure_token_lengths") == 1, jobs


@pytest.mark.slow
def test_local_base_is_rebuilt_on_new_weights(scratch_dir, tmp_path):
    cfg = tiny_config()
    cfg["base_model"] = {"source": "local", "path": "models/scratch"}
    work = make_workdir(tmp_path / "work", cfg)
    shutil.copytree(scratch_dir, work / "models" / "scratch")
    snakemake(work, "results/base_model/local/manifest.json")
    manifest = json.loads((work / "results/base_model/local/manifest.json").read_text())
    assert set(manifest["weights_sha256"]) == {"model.safetensors"}
    assert planned_jobs(work, "results/base_model/local/manifest.json") == {}

    replace_weights_with_older_timestamp(work / "models" / "scratch" / "model.safetensors")
    assert planned_jobs(work, "results/base_model/local/manifest.json").get("use_local_model") == 1


def test_gguf_config_plans_the_whole_dag(gguf_file, tmp_path):
    from test_base_model import assert_plans_the_spine

    jobs = planned_jobs(make_workdir(tmp_path, gguf_config(str(gguf_file))))
    assert_plans_the_spine(jobs, "dequantize_gguf")


def test_smollm2_config_plans_the_whole_dag(tmp_path):
    from conftest import REPO
    from test_base_model import assert_plans_the_spine

    cfg = yaml.safe_load((REPO / "config/smollm2-135m.yaml").read_text(encoding="utf-8"))
    work = make_workdir(tmp_path, cfg)
    (work / cfg["base_model"]["path"]).parent.mkdir(parents=True)
    (work / cfg["base_model"]["path"]).write_bytes(b"GGUF placeholder: planning only")
    assert_plans_the_spine(planned_jobs(work), "dequantize_gguf")
