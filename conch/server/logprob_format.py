"""The engine's log-probability entries (conch.engine.logprobs) in OpenAI's shapes: chat's `content` list of
{token, logprob, bytes, top_logprobs}, and completions' parallel `tokens`/`token_logprobs`/`top_logprobs`/
`text_offset` lists.

A token's text is its bytes decoded as UTF-8; a token holding only part of a character is shown as OpenAI
shows it, `bytes:\\xe6\\x88` (`bytes` has the exact bytes, so a client can join them). `text_offset` is where
each token starts in the tokens' text joined, in characters (the answer before conch strips the whitespace
around it). A log-probability of minus infinity (a token the model itself rules out) is reported as -9999.0, as
OpenAI does, since JSON has no infinity.
"""

from __future__ import annotations

import xgrammar as xgr

FLOOR = -9999.0


class TokenTexts:
    """Each token id's bytes, for one tokenizer."""

    def __init__(self, tokenizer):
        self._bytes = xgr.TokenizerInfo.from_huggingface(tokenizer).decoded_vocab

    def bytes(self, token: int) -> bytes:
        return self._bytes[token] if 0 <= token < len(self._bytes) else b""

    def text(self, token: int) -> str:
        raw = self.bytes(token)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def _lp(value: float) -> float:
    return max(value, FLOOR)


def chat_logprobs(entries: list, texts: TokenTexts) -> dict:
    def one(token: int, logprob: float) -> dict:
        return {"token": texts.text(token), "logprob": _lp(logprob), "bytes": list(texts.bytes(token))}

    return {
        "content": [
            {**one(token, logprob), "top_logprobs": [one(t, lp) for t, lp in top]}
            for token, logprob, top in entries
        ],
        "refusal": None,
    }


def completion_logprobs(entries: list, texts: TokenTexts, before: bytes = b"") -> tuple[dict, bytes]:
    """The completions shape, and the answer's bytes so far (`before`: those before these tokens)."""
    offsets = []
    for token, _, _ in entries:
        # Characters complete so far: a token ending inside a character has not reached it yet.
        offsets.append(len(before.decode("utf-8", errors="ignore")))
        before += texts.bytes(token)
    body = {
        "tokens": [texts.text(token) for token, _, _ in entries],
        "token_logprobs": [_lp(logprob) for _, logprob, _ in entries],
        "top_logprobs": [{texts.text(t): _lp(lp) for t, lp in top} for _, _, top in entries],
        "text_offset": offsets,
    }
    return body, before
