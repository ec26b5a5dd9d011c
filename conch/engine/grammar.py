"""Structured outputs: decoding constrained to a JSON schema, per request, inside the shared batch (xgrammar).

A constrained request carries a `GrammarMatcher`, which knows after each token which tokens may come next. Each
step fills one bitmask row per constrained request and masks only those rows of the logits, so constrained and
unconstrained requests share forward passes. Once the schema's value is complete only the end-of-turn tokens are
allowed, so an answer that ends with `stop` always parses and validates; one cut short by `max_tokens` ends with
`length`.

JSON is generated compactly (`{"a": 1, "b": [2]}`, no free whitespace): a model unsure of itself otherwise tends
to emit whitespace until the token budget runs out, which vLLM's `disable_any_whitespace` exists for.
"""

from __future__ import annotations

import json

import torch
import xgrammar as xgr

# `response_format: {"type": "json_object"}`: any JSON object.
JSON_OBJECT = '{"type": "object"}'


def check_schema(schema: dict) -> str:
    """The schema as the engine takes it (JSON text); ValueError saying why if it cannot constrain decoding."""
    text = json.dumps(schema)
    try:
        xgr.Grammar.from_json_schema(text, any_whitespace=False)
    except Exception as exc:  # xgrammar raises RuntimeError with the converter's message
        why = str(exc).split(": ", 1)[-1].strip()
        raise ValueError(f"this JSON schema cannot constrain decoding: {why}") from None
    return text


class Grammars:
    """One model's grammar compiler (compiled schemas are cached) and the per-step bitmask."""

    def __init__(self, tokenizer, vocab_size: int, stop_ids):
        self.vocab_size = vocab_size
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(stop_ids)
        )
        self.compiler = xgr.GrammarCompiler(info)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)

    def matcher(self, schema: str) -> xgr.GrammarMatcher:
        return xgr.GrammarMatcher(self.compiler.compile_json_schema(schema, any_whitespace=False))

    def mask(self, logits: torch.Tensor, matchers: dict[int, xgr.GrammarMatcher]) -> None:
        """Forbid, in row i of `logits`, every token matchers[i] does not allow next."""
        if self._bitmask.shape[0] < logits.shape[0]:
            self._bitmask = xgr.allocate_token_bitmask(logits.shape[0], self.vocab_size)
        for row, matcher in matchers.items():
            matcher.fill_next_token_bitmask(self._bitmask, row)
        xgr.apply_token_bitmask_inplace(
            logits, self._bitmask[: logits.shape[0]], vocab_size=self.vocab_size, indices=list(matchers)
        )
