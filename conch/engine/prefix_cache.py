"""KV of prompt prefixes seen before, so a prompt only pays for the tokens after them.

What is remembered:
- the chat template's head (system prompt and the user-turn marker), computed at start-up and never evicted:
  every chat request that keeps the default system prompt starts with it;
- each prompt (all but its last token): the next turn of that conversation starts with it;
- the common prefix of consecutive prompts (e.g. a shared custom system prompt or RAG instructions).
Entries are evicted least recently used first, to stay under a token budget.

A causal model's key/value at position i depends only on tokens up to i, so reusing them is exact up to float
rounding (about 1e-7 in the logits).
"""

from __future__ import annotations

import collections

import torch

from conch.model.modeling import render

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each (1, kv heads, tokens, head dim)


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    def __init__(self, max_tokens: int = 8192, min_tokens: int = 8):
        self.max_tokens, self.min_tokens = max_tokens, min_tokens
        self.pinned: dict[tuple[int, ...], KV] = {}
        self.entries: collections.OrderedDict[tuple[int, ...], KV] = collections.OrderedDict()  # LRU first
        self._tokens = 0
        self._lengths: collections.Counter[int] = collections.Counter()  # how many entries have each length
        self._previous: list[int] = []
        self.hits = self.hit_tokens = 0

    def lookup(self, ids: list[int]) -> tuple[tuple[int, ...], KV] | None:
        """The longest remembered prefix of `ids` that leaves at least one token to run."""
        for n in sorted((n for n in self._lengths if n < len(ids)), reverse=True):
            key = tuple(ids[:n])
            kv = self.pinned.get(key) or self.entries.get(key)
            if kv is not None:
                if key in self.entries:
                    self.entries.move_to_end(key)
                self.hits += 1
                self.hit_tokens += n
                return key, kv
        return None

    def wanted(self, ids: list[int]) -> list[int]:
        """Lengths of the prefixes of `ids` worth remembering once it has run."""
        shared = common_prefix_len(ids, self._previous)
        self._previous = ids
        lengths = {min(shared, len(ids) - 1), len(ids) - 1}
        return sorted(
            n for n in lengths if self.min_tokens <= n <= self.max_tokens and not self._known(ids[:n])
        )

    def _known(self, ids: list[int]) -> bool:
        key = tuple(ids)
        return key in self.pinned or key in self.entries

    def remember(self, ids: list[int], kv: KV, pinned: bool = False) -> None:
        key = tuple(ids)
        if self._known(ids):
            return
        self._lengths[len(key)] += 1
        if pinned:
            self.pinned[key] = kv
            return
        self.entries[key] = kv
        self._tokens += len(key)
        while self._tokens > self.max_tokens and self.entries:
            old, _ = self.entries.popitem(last=False)
            self._tokens -= len(old)
            self._lengths[len(old)] -= 1
            if not self._lengths[len(old)]:
                del self._lengths[len(old)]


def template_head(tokenizer) -> list[int]:
    """The tokens every default chat prompt starts with: system prompt and the user-turn marker."""
    try:
        a, b = ({"role": "user", "content": text} for text in ("a", "b"))
        first, second = (
            tokenizer(render(tokenizer, [m]), add_special_tokens=False)["input_ids"] for m in (a, b)
        )
    except Exception:  # a template that cannot render a bare user turn simply gets no head
        return []
    return first[: common_prefix_len(first, second)]
