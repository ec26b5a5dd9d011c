"""One forward pass of the model over a step: decoding rows and prompt chunks, packed side by side.

The model is transformers' own, switched to conch's attention (conch.engine.attention), which keeps keys and
values in the slot cache; no transformers cache object is involved. Only the rows that need a next token get
logits computed.

That covers every model whose layers are all attention (sliding windows, soft-capping and sinks included). A
model with other layers (recurrent, convolutional: Mamba hybrids, LFM2, Qwen3-Next...) keeps state the slot
cache knows nothing of; `make_runner` finds out at start-up by checking the packed path against a plain forward
pass, and serves such a model with `UnbatchedRunner` instead.
"""

from __future__ import annotations

import logging

import torch

from conch.engine.attention import Chunk, StepLayout, use_conch_attention
from conch.engine.kv_cache import KV, SlotKVCache
from conch.engine.linear import use_onednn_linears

log = logging.getLogger("conch.engine")

Decode = list[tuple[int, int]]  # (token, position) of the decoding rows, in slots 0, 1, ...
Chunks = list[tuple[int, list[int], int, bool]]  # (slot, prompt tokens, tokens before them, wants logits)


class ModelRunner:
    batched = True

    def __init__(self, model, slots: int, context_length: int):
        self.model = model
        self.device = model.device  # transformers looks it up through the parameters on every access
        use_conch_attention(model.get_base_model() if hasattr(model, "get_base_model") else model)  # peft
        self.cache = SlotKVCache(slots, context_length)

    @torch.inference_mode()
    def step(self, decode: Decode, chunks: Chunks) -> torch.Tensor:
        """Run one step; returns float32 logits (rows, vocab) for every decoding row, then for every chunk that
        wants them (the last chunk of a prompt), in order."""
        ids = [token for token, _ in decode]
        slots = list(range(len(decode)))
        positions = [position for _, position in decode]
        layout, keep = [], list(range(len(decode)))
        for slot, tokens, past, wants_logits in chunks:
            layout.append(Chunk(slot, len(ids), len(tokens), past))
            ids += tokens
            slots += [slot] * len(tokens)
            positions += range(past, past + len(tokens))
            if wants_logits:
                keep.append(len(ids) - 1)
        self.cache.reserve(max(positions) + 1)
        positions = torch.tensor(positions, device=self.device)
        step = StepLayout(self.cache, torch.tensor(slots, device=self.device), positions, len(decode), layout)
        self.last_layout = step
        out = self.model(
            input_ids=torch.tensor([ids], device=self.device),
            position_ids=positions[None],
            use_cache=False,
            logits_to_keep=torch.tensor(keep, dtype=torch.long, device=self.device),
            conch_step=step,
        )
        return out.logits[0].float()

    def read(self, slot: int, length: int) -> KV:
        return self.cache.read(slot, length)

    def write(self, slot: int, kv: KV) -> None:
        self.cache.write(slot, kv)

    def move(self, source: int, target: int, length: int) -> None:
        self.cache.move(source, target, length)

    def clear(self) -> None:
        self.cache.clear()


class UnbatchedRunner:
    """One forward pass per request, each with the cache transformers itself makes for the model."""

    batched = False

    def __init__(self, model):
        self.model = model
        self.device = model.device
        self.caches: dict[int, object] = {}  # slot -> the request's transformers cache

    @torch.inference_mode()
    def step(self, decode: Decode, chunks: Chunks) -> torch.Tensor:
        rows = [self._forward(slot, [token]) for slot, (token, _) in enumerate(decode)]
        for slot, tokens, past, wants_logits in chunks:
            if past == 0:
                self.caches.pop(slot, None)
            logits = self._forward(slot, tokens)
            if wants_logits:
                rows.append(logits)
        return torch.stack(rows).float() if rows else torch.empty((0, 0))

    def _forward(self, slot: int, tokens: list[int]) -> torch.Tensor:
        out = self.model(
            input_ids=torch.tensor([tokens], device=self.device),
            past_key_values=self.caches.get(slot),
            use_cache=True,
            logits_to_keep=1,
        )
        self.caches[slot] = out.past_key_values
        return out.logits[0, -1]

    def move(self, source: int, target: int, length: int) -> None:
        self.caches[target] = self.caches.pop(source)

    def clear(self) -> None:
        self.caches.clear()


@torch.inference_mode()
def packed_path_is_exact(runner: ModelRunner, length: int = 24) -> bool:
    """Whether the packed step computes what a plain forward pass does, on this model:
    - every layer mixes tokens through conch's attention (a convolution or recurrence would not know the
      request boundaries in a packed step, nor keep state between steps);
    - a request's logits do not depend on another request run beside it;
    - a prompt run in two chunks, then decoded, gets the logits of one plain forward pass."""
    vocab = runner.model.config.get_text_config().vocab_size
    ids = [(7 * i + 3) % vocab for i in range(length)]
    other = [(11 * i + 5) % vocab for i in range(length)]
    layers = runner.model.config.get_text_config().num_hidden_layers
    # One token right after another request's tokens: whatever leaks across the boundary reaches it at once.
    beside = [runner.step([], [(0, first, 0, True), (1, ids[:1], 0, True)])[1] for first in (ids, other)]
    scale = float(beside[0].abs().max())
    # Rows batched together may round differently (an MoE layer groups tokens by expert), by ~1e-7.
    if runner.last_layout.layers_attended != layers or not torch.allclose(*beside, rtol=0, atol=1e-4 * scale):
        return False
    expected = runner.model(input_ids=torch.tensor([ids], device=runner.device)).logits[0].float()
    half = length // 2
    got = torch.cat(
        [
            runner.step([], [(0, ids[:half], 0, True)]),
            runner.step([], [(0, ids[half:-1], half, True)]),
            runner.step([(ids[-1], length - 1)], []),
        ]
    )
    want = expected[[half - 1, length - 2, length - 1]]
    return bool(torch.allclose(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max())))


def make_runner(model, slots: int, context_length: int) -> ModelRunner | UnbatchedRunner:
    """The runner for this model (which it then owns: its layers are switched to conch's attention and
    oneDNN linears)."""
    log.info("%d linear layers run through oneDNN", use_onednn_linears(model))
    runner = ModelRunner(model, max(slots, 2), context_length)
    if packed_path_is_exact(runner, min(24, context_length)):
        runner.clear()
        return runner
    log.warning(
        "%s has layers other than attention (or attention conch cannot pack): serving it one request per "
        "forward pass, with transformers' own cache",
        type(model).__name__,
    )
    return UnbatchedRunner(model)
