"""A merged Hugging Face model directory -> one GGUF file (llama.cpp, Ollama, LM Studio).

Tensors are converted and written one at a time (the writer is told every tensor's size first), so memory
stays near the largest tensor rather than the model. Architectures are those conch tests end to end; any other
is refused by name, because a converter that guesses writes files that load and then answer nonsense.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np

from conch.errors import ConchError
from conch.export.vocab import add_vocab

Q = gguf.GGMLQuantizationType
ARCHITECTURES = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}
# Output type -> (GGML type of matrices, GGUF file type). Vectors (norms, biases) stay F32 in every type, as
# llama.cpp expects; Q8_0 needs rows in whole blocks of 32, and a matrix whose rows are not stays F16.
TYPES = {
    "f32": (Q.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (Q.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (Q.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}


class ExportError(ConchError):
    """The model cannot be converted faithfully: unsupported architecture, RoPE scaling or tensor."""


def read_config(model_dir: Path) -> dict:
    """config.json, refused with the reason when conch's converter cannot reproduce the model."""
    where = model_dir / "config.json"
    config = json.loads(where.read_text(encoding="utf-8"))
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ExportError(
            f"{where}: GGUF export supports the {', '.join(sorted(ARCHITECTURES))} architectures, "
            f"not model_type {model_type!r} ({', '.join(config.get('architectures') or [])})"
        )
    rope = rope_parameters(config)
    if rope.get("rope_type", "default") != "default":
        raise ExportError(
            f"{where}: RoPE scaling {rope['rope_type']!r} is not supported by conch's GGUF export"
        )
    if config.get("use_sliding_window"):
        raise ExportError(f"{where}: sliding-window attention is not supported by conch's GGUF export")
    return config


def rope_parameters(config: dict) -> dict:
    """transformers 5 writes `rope_parameters`; older configs `rope_theta` and `rope_scaling`."""
    if config.get("rope_parameters"):
        return config["rope_parameters"]
    return {**(config.get("rope_scaling") or {}), "rope_theta": config.get("rope_theta", 10000.0)}


def _head_dim(config: dict) -> int:
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def _add_hparams(writer: gguf.GGUFWriter, config: dict, file_type: int, name: str) -> None:
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config.get("num_key_value_heads", config["num_attention_heads"]))
    writer.add_rope_freq_base(rope_parameters(config)["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    if config["model_type"] == "llama":
        writer.add_rope_dimension_count(_head_dim(config))
    if config.get("head_dim"):
        writer.add_key_length(config["head_dim"])
        writer.add_value_length(config["head_dim"])
    writer.add_file_type(file_type)
    if file_type not in (gguf.LlamaFileType.ALL_F32, gguf.LlamaFileType.MOSTLY_F16):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _tensor_files(model_dir: Path) -> dict[str, Path]:
    """Tensor name -> safetensors file, sharded or not."""
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: model_dir / file for name, file in weight_map.items()}
    from safetensors import safe_open

    single = model_dir / "model.safetensors"
    if not single.exists():
        raise ExportError(
            f"{model_dir}: no model.safetensors(.index.json); GGUF export reads safetensors only"
        )
    with safe_open(single, framework="pt") as f:
        return dict.fromkeys(f.keys(), single)


def rope_rows_to_ggml(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder q/k projection rows from Hugging Face's rotate-half RoPE layout to GGML's interleaved one.

    HF's llama stores each head's rotated pairs as (first half, second half); llama.cpp's LLAMA arch rotates
    adjacent pairs. Qwen2 runs with llama.cpp's NEOX RoPE, which is rotate-half, so it is written as is.
    """
    head = weight.shape[0] // n_head
    return weight.reshape(n_head, 2, head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _plan(config: dict, files: dict[str, Path], matrix_type: Q) -> list[tuple[str, str, tuple, Q]]:
    """(HF name, GGUF name, shape, GGML type) of every tensor to write, in file order."""
    from safetensors import safe_open

    names = gguf.get_tensor_name_map(ARCHITECTURES[config["model_type"]], config["num_hidden_layers"])
    plan = []
    for hf_name, file in sorted(files.items()):
        if hf_name.endswith("rotary_emb.inv_freq"):  # recomputed from rope_theta
            continue
        if hf_name == "lm_head.weight" and config.get("tie_word_embeddings"):
            continue  # tied: llama.cpp reuses token_embd, as transformers does
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ExportError(f"{file}: tensor {hf_name} has no GGUF name for {config['model_type']}")
        with safe_open(file, framework="pt") as f:
            shape = tuple(f.get_slice(hf_name).get_shape())
        qtype = matrix_type if len(shape) > 1 else Q.F32
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        if shape[-1] % block:
            qtype = Q.F16
        plan.append((hf_name, gguf_name, shape, qtype))
    return plan


def _nbytes(shape: tuple, qtype: Q) -> int:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return int(np.prod(shape)) // block * size


def _tensor_data(config: dict, file: Path, hf_name: str, qtype: Q) -> np.ndarray:
    from safetensors import safe_open

    with safe_open(file, framework="pt") as f:
        data = f.get_tensor(hf_name).float().numpy()
    if config["model_type"] == "llama":
        if ".q_proj." in hf_name:
            data = rope_rows_to_ggml(data, config["num_attention_heads"])
        elif ".k_proj." in hf_name:
            data = rope_rows_to_ggml(data, config.get("num_key_value_heads", config["num_attention_heads"]))
    return gguf.quants.quantize(data, qtype)


def convert(model_dir: str | Path, out_path: str | Path, out_type: str, name: str) -> dict:
    """Write `model_dir` as a GGUF file of `out_type` (a key of TYPES); return a summary of what was written."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    config = read_config(model_dir)
    matrix_type, file_type = TYPES[out_type]
    generation = model_dir / "generation_config.json"
    eos = (
        json.loads(generation.read_text(encoding="utf-8")).get("eos_token_id")
        if generation.exists()
        else None
    )
    eos = eos[0] if isinstance(eos, list) else eos

    arch = gguf.MODEL_ARCH_NAMES[ARCHITECTURES[config["model_type"]]]
    writer = gguf.GGUFWriter(out_path, arch)
    _add_hparams(writer, config, file_type, name)
    add_vocab(writer, model_dir, config["vocab_size"], eos)
    files = _tensor_files(model_dir)
    plan = _plan(config, files, matrix_type)
    for _, gguf_name, shape, qtype in plan:
        if qtype in (Q.F32, Q.F16):
            dtype = np.float32 if qtype == Q.F32 else np.float16
            writer.add_tensor_info(gguf_name, shape, np.dtype(dtype), _nbytes(shape, qtype), raw_dtype=qtype)
        else:
            byte_shape = gguf.quant_shape_to_byte_shape(shape, qtype)
            writer.add_tensor_info(
                gguf_name, byte_shape, np.dtype(np.uint8), _nbytes(shape, qtype), raw_dtype=qtype
            )
    writer.write_header_to_file(out_path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for hf_name, _, _, qtype in plan:
        writer.write_tensor_data(_tensor_data(config, files[hf_name], hf_name, qtype))
    writer.close()
    types = sorted({qtype.name for *_, qtype in plan})
    return {"type": out_type, "architecture": arch, "tensors": len(plan), "tensor_types": types}
