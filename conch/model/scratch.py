"""Build a small Qwen2-architecture model offline: a tokenizer trained on the data and a seeded random init.

This is the default base model because neither this machine nor CI can download weights. It is a real
Hugging Face model directory (config.json, model.safetensors, tokenizer.json, tokenizer_config.json), so every
later stage (LLaMA-Factory training and export, evaluation, serving) runs the same code as for a hub model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

# Qwen2's own special tokens, so LLaMA-Factory's `qwen` template finds what it expects.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def iter_texts(records: Iterable[dict], template: str | None = None) -> Iterable[str]:
    """Every piece of text a record contributes to the tokenizer's training corpus; with `template`, a tool
    record's tool list as that template writes it into the system prompt (hundreds of tokens otherwise)."""
    for record in records:
        if record.get("system"):
            yield record["system"]
        if record.get("tools") and template:
            from conch.llamafactory.trained_format import tool_prompt

            yield tool_prompt(template, record["tools"])
        for message in record["messages"]:
            yield message["content"]


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE (like Qwen2's), so any UTF-8 text, Chinese included, encodes without unknown tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=32768,
    )


def chat_template_for(tokenizer, template: str, default_system: str | None = None) -> str:
    """The Jinja chat template LLaMA-Factory itself derives for `template`, so training, eval and serving agree."""
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    tokenizer.chat_template = None
    get_template_and_fix_tokenizer(tokenizer, DataArguments(template=template, default_system=default_system))
    if not tokenizer.chat_template:
        raise ValueError(f"LLaMA-Factory template {template!r} has no Jinja form; pick another template")
    return tokenizer.chat_template


def build_model(tokenizer, arch: dict, seed: int):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=arch["hidden_size"],
        intermediate_size=arch["intermediate_size"],
        num_hidden_layers=arch["num_hidden_layers"],
        num_attention_heads=arch["num_attention_heads"],
        num_key_value_heads=arch["num_key_value_heads"],
        max_position_embeddings=arch["max_position_embeddings"],
        # Untied embeddings: LoRA's `additional_target: embed_tokens` then trains the input side only,
        # and the merge stays exact.
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config)


def build_scratch_model(
    records: list[dict],
    out_dir: str | Path,
    *,
    arch: dict,
    vocab_size: int,
    seed: int,
    template: str,
    default_system: str | None = None,
) -> dict:
    """Write a complete model directory to `out_dir`; return a summary for the manifest."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(iter_texts(records, template), vocab_size)
    chat_template_for(tokenizer, template, default_system)
    model = build_model(tokenizer, arch, seed)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # Generation defaults travel with the model, so `generate` stops at the template's end-of-turn token.
    (out / "generation_config.json").write_text(
        json.dumps({"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}, indent=1)
    )
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "seed": seed,
        "template": template,
        "torch": torch.__version__,
    }
