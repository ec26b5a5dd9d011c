"""The batch's KV cache: one pre-allocated slot per running request, reused when it leaves.

Each attention layer has a key and a value buffer shaped (slots, kv heads, capacity, head dim). A request keeps
one slot for its whole life and its tokens sit at their positions 0, 1, 2... in it, so a step only writes the
new tokens' keys and values (no copy of the cache when someone joins or leaves, no padding to trim), and the
decoding rows, which occupy slots 0..n-1, are read as a view without gathering. The capacity grows (doubling,
up to the context length) when a request needs more; buffers are allocated on first use with the shapes the
layer produces, so layers may differ in heads and head sizes.
"""

from __future__ import annotations

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each (kv heads, tokens, head dim)


class SlotKVCache:
    def __init__(self, slots: int, max_capacity: int, capacity: int = 256):
        self.slots, self.max_capacity = slots, max_capacity
        self.capacity = min(capacity, max_capacity)
        self.keys: dict[int, torch.Tensor] = {}  # layer index -> (slots, kv heads, capacity, head dim)
        self.values: dict[int, torch.Tensor] = {}

    def layer(self, index: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's buffers, allocated on first use like `key`/`value` (1, kv heads, tokens, head dim)."""
        if index not in self.keys:
            self.keys[index] = key.new_zeros((self.slots, key.shape[1], self.capacity, key.shape[-1]))
            self.values[index] = value.new_zeros((self.slots, value.shape[1], self.capacity, value.shape[-1]))
        return self.keys[index], self.values[index]

    def reserve(self, length: int) -> None:
        """Make room for `length` tokens per slot."""
        if length <= self.capacity:
            return
        if length > self.max_capacity:
            raise ValueError(f"{length} tokens do not fit the context of {self.max_capacity}")
        capacity = self.capacity
        while capacity < length:
            capacity *= 2
        self.capacity = min(capacity, self.max_capacity)
        for buffers in (self.keys, self.values):
            for index, old in buffers.items():
                new = old.new_zeros((*old.shape[:2], self.capacity, old.shape[3]))
                new[:, :, : old.shape[2]] = old
                buffers[index] = new

    def move(self, source: int, target: int, length: int) -> None:
        """Copy a slot's first `length` tokens to another slot (compacting the batch when a row leaves)."""
        for buffers in (self.keys, self.values):
            for buffer in buffers.values():
                buffer[target, :, :length] = buffer[source, :, :length]

    def read(self, slot: int, length: int) -> KV:
        """A copy of the slot's first `length` tokens, per layer (for the prefix cache)."""
        return [
            (self.keys[i][slot, :, :length].clone(), self.values[i][slot, :, :length].clone())
            for i in sorted(self.keys)
        ]

    def write(self, slot: int, kv: KV) -> None:
        """Put remembered keys and values at the start of a slot."""
        length = kv[0][0].shape[1]
        self.reserve(length)
        for i, (keys, values) in enumerate(kv):  # layers are numbered 0..n-1
            layer_keys, layer_values = self.layer(i, keys[None], values[None])
            layer_keys[slot, :, :length] = keys
            layer_values[slot, :, :length] = values

    def clear(self) -> None:
        """Forget every buffer (after a failed step, whose state is unknown)."""
        self.keys.clear()
        self.values.clear()
