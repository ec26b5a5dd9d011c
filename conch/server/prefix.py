"""KV of recently seen prompt prefixes, so a prompt only pays for the tokens after them.

Chat prompts rendered with one template share a long head (the system prompt and role markers; in a
conversation, all earlier turns). When a prompt arrives, its longest common prefix with the previous prompt is
remembered, taken from the keys and values just computed; a later prompt that starts with a remembered prefix
is prefilled from there. A causal model's key/value at position i depends only on tokens up to i, so this is
exact up to float rounding (about 1e-7 in the logits).
"""

from __future__ import annotations

import collections

import torch


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    def __init__(self, max_entries: int = 8, min_tokens: int = 8, max_tokens: int = 4096):
        self.max_entries, self.min_tokens, self.max_tokens = max_entries, min_tokens, max_tokens
        # prefix token ids -> per layer (keys, values), each (1, kv heads, len, head dim); least recent first
        self.entries: collections.OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = (
            collections.OrderedDict()
        )
        self._previous: list[int] = []
        self.hits = self.hit_tokens = 0

    def lookup(self, ids: list[int]) -> tuple[tuple[int, ...], list] | None:
        """The longest remembered prefix of `ids` that leaves at least one token to run."""
        best = None
        for key in self.entries:
            if (
                len(key) < len(ids)
                and (best is None or len(key) > len(best))
                and tuple(ids[: len(key)]) == key
            ):
                best = key
        if best is None:
            return None
        self.entries.move_to_end(best)
        self.hits += 1
        self.hit_tokens += len(best)
        return best, self.entries[best]

    def candidate(self, ids: list[int]) -> int:
        """How many leading tokens of `ids` are worth remembering (shared with the previous prompt); 0 if none."""
        n = min(common_prefix_len(ids, self._previous), len(ids) - 1, self.max_tokens)
        self._previous = ids
        if n < self.min_tokens or tuple(ids[:n]) in self.entries:
            return 0
        return n

    def remember(self, ids: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.entries[tuple(ids)] = kv
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
