"""GGUF base models (an Ollama blob, a llama.cpp or GGUF-my-repo file) dequantized once into a HF directory.

transformers' GGUF loader does the dequantization; every later stage then loads an ordinary float32
Hugging Face directory, as for `local` and `hf` bases. Two things are checked or repaired on the way:

- an architecture transformers cannot load from GGUF stops the job with its name, before any tensor is read;
- transformers 5.6 builds the tokenizer of a BPE ("gpt2") GGUF with end-of-sequence set to the *beginning*
  token (its converter reads `bos_token_id` for both). The GGUF's own ids are written back, so generation
  and the answer loss end turns on the model's real end-of-turn token (`<|im_end|>` for SmolLM2).
"""

from __future__ import annotations

import json
from pathlib import Path

from conch.errors import ConfigError
from conch.model.hub import cached_sha256

# GGUF metadata key -> tokenizer attribute, for the special tokens the GGUF names by id.
SPECIAL_TOKEN_KEYS = {
    "tokenizer.ggml.bos_token_id": "bos_token",
    "tokenizer.ggml.eos_token_id": "eos_token",
    "tokenizer.ggml.padding_token_id": "pad_token",
    "tokenizer.ggml.unknown_token_id": "unk_token",
}


def read_metadata(path: str | Path) -> dict:
    """Architecture, quantization and tokenizer facts of a GGUF file (metadata only: no tensor is read)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError) as err:
        raise ConfigError(f"base_model.path {str(path)!r}: not a readable GGUF file ({err})") from None

    def field(key, default=None):
        return reader.fields[key].contents() if key in reader.fields else default

    tokens = field("tokenizer.ggml.tokens", [])
    special = {}
    for key, attribute in SPECIAL_TOKEN_KEYS.items():
        token_id = field(key)
        if token_id is not None and 0 <= int(token_id) < len(tokens):
            special[attribute] = {"id": int(token_id), "token": tokens[int(token_id)]}
    types = sorted({t.tensor_type.name for t in reader.tensors})
    return {
        "architecture": field("general.architecture"),
        "name": field("general.name"),
        "license": field("general.license"),
        "tensor_types": types,
        "tensors": len(reader.tensors),
        "chat_template": field("tokenizer.chat_template"),
        "add_bos_token": field("tokenizer.ggml.add_bos_token"),
        "special_tokens": special,
    }


def check_architecture(path: str | Path, architecture: str) -> None:
    """Refuse, naming it, an architecture transformers' GGUF loader does not know (metadata only)."""
    import transformers
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES, load_gguf_checkpoint

    try:
        load_gguf_checkpoint(str(path), return_tensors=False)
    except ValueError as err:
        if "not supported" not in str(err):
            raise
        known = ", ".join(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))
        raise ConfigError(
            f"base_model.path {str(path)!r}: GGUF architecture {architecture!r} cannot be loaded by "
            f"transformers {transformers.__version__} (it loads: {known}); convert the model to a Hugging Face "
            "directory and use base_model.source: local"
        ) from None


def repair_special_tokens(tokenizer, special: dict) -> list[str]:
    """Set bos/eos/pad/unk to the tokens the GGUF names; return what changed, for the manifest."""
    changed = []
    for attribute, wanted in special.items():
        if getattr(tokenizer, attribute) != wanted["token"]:
            changed.append(f"{attribute}: {getattr(tokenizer, attribute)!r} -> {wanted['token']!r}")
            setattr(tokenizer, attribute, wanted["token"])
    return changed


def dequantize(
    gguf_path: str | Path, out_dir: str | Path, *, template: str, default_system: str | None
) -> dict:
    """Write a float32 HF model directory (weights, config, tokenizer, chat template) for `gguf_path`.

    The chat template is the one the GGUF carries; a GGUF without one gets LLaMA-Factory's `template`, so
    the base model is prompted the way the fine-tuned one will be. Returns the manifest's facts.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from conch.jobs.progress import Progress

    hf_logging.disable_progress_bar()
    gguf_path = Path(gguf_path).resolve()
    progress = Progress(f"dequantize_gguf {gguf_path.name}", total=3, unit="stage")
    meta = read_metadata(gguf_path)
    check_architecture(gguf_path, meta["architecture"])
    folder, name = str(gguf_path.parent), gguf_path.name
    progress.update(0, note="tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    progress.update(1, note=f"dequantizing {len(meta['tensor_types'])} tensor type(s)")
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    progress.update(2, note="saving")
    repaired = repair_special_tokens(tokenizer, meta["special_tokens"])
    if meta["chat_template"]:
        chat_template = "gguf"
    else:
        from conch.model.scratch import chat_template_for

        chat_template_for(tokenizer, template, default_system)
        chat_template = f"llamafactory:{template}"
    for attribute in ("bos_token", "eos_token", "pad_token"):
        token_id = getattr(tokenizer, f"{attribute}_id")
        if token_id is not None:
            setattr(model.config, f"{attribute}_id", token_id)
            setattr(model.generation_config, f"{attribute}_id", token_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    progress.close(note="done")
    return {
        "gguf": str(gguf_path),
        "sha256": cached_sha256(gguf_path),
        "architecture": meta["architecture"],
        "gguf_name": meta["name"],
        "license": meta["license"],
        "quantization": meta["tensor_types"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": "float32",
        "chat_template": chat_template,
        "tokenizer_repairs": repaired,
        "transformers": transformers.__version__,
    }


def describe(manifest: dict) -> str:
    return json.dumps(
        {k: manifest[k] for k in ("architecture", "quantization", "parameters", "chat_template")}
    )
