"""The tokenizer half of a GGUF file: byte-level BPE ("gpt2" in llama.cpp's terms) tokens, types, merges, ids.

llama.cpp does not run the Hugging Face pre-tokenizer; it picks one of its own built-in regex sets by the name
in `tokenizer.ggml.pre`. A wrong name still loads and then splits text differently from training, so the name
is derived from the pre-tokenizer tokenizer.json actually declares, and anything not in the table is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf

from conch.errors import ConchError

# The split regexes Qwen2 and Llama 3 tokenizers declare in tokenizer.json (as published with those models).
QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)

# Pre-tokenizer pipeline (as `_steps` describes it) -> llama.cpp's name for the same splitting.
PRE_TOKENIZERS = {
    ("byte_level+regex",): "gpt-2",  # GPT-2's regex inside ByteLevel: the scratch model's tokenizer
    ("digits", "byte_level+regex"): "smollm",  # SmolLM/SmolLM2 as published: digits one by one, then GPT-2's
    (f"split:{QWEN2_SPLIT}", "byte_level"): "qwen2",
    (f"split:{LLAMA3_SPLIT}", "byte_level"): "llama-bpe",
}


class VocabError(ConchError):
    """The tokenizer cannot be written so that llama.cpp splits text as the model was trained."""


def _steps(pre: dict | None) -> tuple[str, ...]:
    """A pre-tokenizer from tokenizer.json as a tuple of comparable steps; '?' marks what the table cannot hold."""
    if pre is None:
        return ()
    kind = pre.get("type")
    if kind == "Sequence":
        return tuple(step for p in pre["pretokenizers"] for step in _steps(p))
    if kind == "ByteLevel" and not pre.get("add_prefix_space", False):
        return ("byte_level+regex" if pre.get("use_regex", True) else "byte_level",)
    if kind == "Digits" and pre.get("individual_digits"):
        return ("digits",)
    if (
        kind == "Split"
        and "Regex" in pre.get("pattern", {})
        and pre.get("behavior") == "Isolated"
        and not pre.get("invert")
    ):
        return (f"split:{pre['pattern']['Regex']}",)
    return (f"?{json.dumps(pre, ensure_ascii=False)}",)


def pre_tokenizer_name(tokenizer_json: dict, where: str) -> str:
    if tokenizer_json.get("model", {}).get("type") != "BPE":
        raise VocabError(
            f"{where}: GGUF export supports byte-level BPE tokenizers only, not {tokenizer_json['model']}"
        )
    steps = _steps(tokenizer_json.get("pre_tokenizer"))
    if steps not in PRE_TOKENIZERS:
        raise VocabError(
            f"{where}: pre-tokenizer {steps} has no llama.cpp equivalent conch knows "
            f"(known: {', '.join(sorted(PRE_TOKENIZERS.values()))}); llama.cpp would split text differently"
        )
    return PRE_TOKENIZERS[steps]


def _adds_special(tokenizer) -> dict[str, bool]:
    """Whether encoding adds BOS/EOS, read from what the tokenizer does rather than from its config."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    starts = len(full) > len(plain) and full[0] == tokenizer.bos_token_id
    ends = len(full) > len(plain) and full[-1] == tokenizer.eos_token_id
    return {"bos": bool(starts), "eos": bool(ends)}


def add_vocab(writer: gguf.GGUFWriter, model_dir: Path, vocab_size: int, eos_token_id: int | None) -> None:
    """Tokens, token types, merges, special ids and the chat template of the tokenizer in `model_dir`."""
    from transformers import AutoTokenizer

    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.exists():
        raise VocabError(f"{tokenizer_file}: missing; GGUF export needs a fast (tokenizer.json) tokenizer")
    pre = pre_tokenizer_name(json.loads(tokenizer_file.read_text(encoding="utf-8")), str(tokenizer_file))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    if max(by_id) >= vocab_size:
        raise VocabError(
            f"{tokenizer_file}: token id {max(by_id)} is outside the model's vocab_size {vocab_size}"
        )
    special = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    added = set(tokenizer.added_tokens_decoder)
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:  # embedding rows past the tokenizer (padded vocabularies)
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        if i in special:
            types.append(gguf.TokenType.CONTROL)
        elif i in added:
            types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)

    # Merges, bos/eos/unk/pad ids and the Jinja chat template, read the way llama.cpp's own converter reads them.
    vocab = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=vocab_size)
    if eos_token_id is not None:  # the model's end of turn (generation_config), which stops generation
        vocab.special_token_ids["eos"] = eos_token_id
    vocab.add_special_token = _adds_special(tokenizer)
    vocab.add_to_gguf(writer, quiet=True)
