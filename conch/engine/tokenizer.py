"""The tokenizer the server encodes prompts with: the one `conch.model.modeling.load` would pick."""

from __future__ import annotations

from pathlib import Path


def load_tokenizer(path: str, adapter: str | None = None):
    """The model's tokenizer, or the adapter's own if LLaMA-Factory saved one there."""
    from transformers import AutoTokenizer

    has_own = adapter and (Path(adapter) / "tokenizer_config.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(adapter if has_own else path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of a rendered prompt: the fast tokenizer's own encoder when there is one (same ids, less
    per-call overhead than the transformers wrapper)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.encode(text, add_special_tokens=False).ids
    return tokenizer(text, add_special_tokens=False)["input_ids"]
