"""Attention for a packed step: every row's new tokens in one sequence, keys and values in the slot cache.

A step runs the model once on the new tokens of every running request, side by side in a batch of one (decoding
rows one token each, then the prompt chunks being prefilled), so the linear layers see all of them in one
matrix product. transformers calls `attention` (registered as the "conch" attention implementation) in every
layer with the step's `StepLayout`; it writes the new keys and values to each request's slot and attends each
token to its own request's keys only:
- decoding rows in one call over slots 0..n-1, masked to each row's length;
- each prompt chunk on its own, causally, over its slot's earlier tokens and itself.
Grouped-query heads are folded into the query axis (a query head group shares one key head), so keys and
values are never repeated per head. Per layer, a sliding window (`sliding_window`, Mistral, Qwen2, Gemma 2/3),
logit soft-capping (`softcap`, Gemma 2) and attention sinks (`s_aux`, gpt-oss) are honoured. Called without a
layout (offline `generate` on the same model object), it is the model's own attention implementation, whose
masks transformers keeps building.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from conch.engine.kv_cache import SlotKVCache

PREFIX = "conch_"  # the implementation is registered as conch_<the model's own>, e.g. conch_sdpa


@dataclass
class Chunk:
    """One request's prompt tokens prefilled in this step."""

    slot: int
    start: int  # index of its first token in the packed step
    length: int
    past: int  # tokens of this request already in its slot


@dataclass
class StepLayout:
    cache: SlotKVCache
    slots: torch.Tensor  # (tokens,) the slot of every token of the step
    positions: torch.Tensor  # (tokens,) its position in its request
    decoding: int  # the first `decoding` tokens are decoding rows, in slots 0..decoding-1
    chunks: list[Chunk]
    layers_attended: int = 0  # how many layers called `attention` with this layout (checked at start-up)
    _masks: dict = field(default_factory=dict)

    def decode_mask(self, window: int | None) -> torch.Tensor:
        """(rows, 1, 1, keys): what each decoding row sees, its own tokens up to itself (within the window)."""
        if ("decode", window) not in self._masks:
            positions = self.positions[: self.decoding, None]
            keys = torch.arange(int(positions.max()) + 1, device=positions.device)
            allowed = keys <= positions
            if window is not None:
                allowed &= keys > positions - window
            self._masks["decode", window] = allowed[:, None, None, :]
        return self._masks["decode", window]

    def chunk_mask(self, index: int, window: int | None, groups: int) -> torch.Tensor:
        """(groups * chunk length, keys): causal over the slot's earlier tokens and the chunk itself."""
        if ("chunk", index, window) not in self._masks:
            chunk = self.chunks[index]
            queries = torch.arange(chunk.past, chunk.past + chunk.length, device=self.positions.device)[
                :, None
            ]
            keys = torch.arange(chunk.past + chunk.length, device=self.positions.device)
            allowed = keys <= queries
            if window is not None:
                allowed &= keys > queries - window
            self._masks["chunk", index, window] = allowed.repeat(groups, 1)
        return self._masks["chunk", index, window]


def _attend(q, k, v, mask, scale: float, softcap: float | None, sinks: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T * scale) v over the allowed keys; sinks (one logit per query row) take probability mass
    without contributing a value."""
    if softcap is None and sinks is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    scores = (q @ k.transpose(-1, -2)) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    scores = scores.masked_fill(~mask, float("-inf"))
    if sinks is None:
        return torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype) @ v
    scores = torch.cat([scores, sinks.expand(*scores.shape[:-1], 1).to(scores.dtype)], dim=-1)
    return torch.softmax(scores, dim=-1, dtype=torch.float32)[..., :-1].to(v.dtype) @ v


def _own_attention(module):
    """The attention function the model came with."""
    own = module.config._attn_implementation.removeprefix(PREFIX)
    if own == "eager":  # not registered: each model's module defines its own
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[own]


def attention(module, query, key, value, attention_mask, conch_step: StepLayout | None = None, **kwargs):
    if conch_step is None:
        return _own_attention(module)(module, query, key, value, attention_mask, **kwargs)
    scaling, sliding_window = kwargs.get("scaling"), kwargs.get("sliding_window")
    softcap, s_aux = kwargs.get("softcap"), kwargs.get("s_aux")
    step = conch_step
    step.layers_attended += 1
    keys, values = step.cache.layer(module.layer_idx, key, value)
    # (1, heads, tokens, dim) -> (tokens, heads, dim): token-major, as the projections produced them.
    query, key, value = (t[0].transpose(0, 1) for t in (query, key, value))
    keys[step.slots, :, step.positions] = key
    values[step.slots, :, step.positions] = value
    tokens, heads, dim = query.shape
    kv_heads = keys.shape[1]
    groups = heads // kv_heads
    scale = scaling if scaling is not None else dim**-0.5
    sinks = None if s_aux is None else s_aux.reshape(kv_heads, groups, 1)
    out = query.new_empty((tokens, heads, values.shape[-1]))
    n = step.decoding
    if n:
        mask = step.decode_mask(sliding_window)
        length = mask.shape[-1]
        q = query[:n].reshape(n, kv_heads, groups, dim)
        out[:n] = _attend(
            q, keys[:n, :, :length], values[:n, :, :length], mask, scale, softcap, sinks
        ).reshape(n, heads, -1)
    for index, chunk in enumerate(step.chunks):
        length, end = chunk.past + chunk.length, chunk.start + chunk.length
        # (chunk, heads, dim) -> (kv heads, groups * chunk, dim): each key head with its group's queries.
        q = query[chunk.start : end].transpose(0, 1).reshape(kv_heads, groups * chunk.length, dim)
        attended = _attend(
            q,
            keys[chunk.slot, :, :length],
            values[chunk.slot, :, :length],
            step.chunk_mask(index, sliding_window, groups),
            scale,
            softcap,
            None if sinks is None else sinks.repeat_interleave(chunk.length, dim=1),
        )
        out[chunk.start : end] = attended.reshape(heads, chunk.length, -1).transpose(0, 1)
    return out[None], None


def use_conch_attention(model) -> None:
    """Switch a transformers model (not a peft wrapper) to conch's attention."""
    own = model.config._attn_implementation
    if own.startswith(PREFIX):
        return
    name = PREFIX + own
    if name not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(name, attention)
        # Without a layout, the model's own attention gets the masks transformers builds for it.
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[own])
    model.set_attn_implementation(name)
