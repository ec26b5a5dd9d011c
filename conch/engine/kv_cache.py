"""Rows of in-flight sequences sharing one left-padded KV cache, so one forward pass advances all of them.

Every row's cache has the same length; shorter rows are padded on the left and masked out, and each row keeps
its own position ids, so a row computes what it would compute alone (this is how `model.generate` batches
left-padded prompts too). New prompts are prefilled together and spliced in; finished rows are dropped and the
padding every remaining row shares is trimmed, so the cache never outgrows the longest live row by much.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from conch.engine.prefix_cache import PrefixCache


def _left_pad(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    if n == 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _rows_columns(cache: DynamicCache, row: int, columns: torch.Tensor) -> list:
    return [
        (layer.keys[row : row + 1, :, columns].clone(), layer.values[row : row + 1, :, columns].clone())
        for layer in cache.layers
    ]


class BatchKVCache:
    def __init__(self, model, pad_token_id: int, prefixes: PrefixCache | None = None):
        self.model = model
        self.pad_token_id = pad_token_id
        self.prefixes = prefixes
        self.device = model.device  # transformers looks it up through the parameters on every access
        # Only SDPA takes the boolean 4D mask built here; other attention kernels get the 2D mask.
        self._sdpa = getattr(model.config, "_attn_implementation", None) == "sdpa"
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # (rows, cache length): 1 = real token
        self.positions: torch.Tensor | None = None  # (rows,): position id of each row's next token

    def __len__(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    def clear(self) -> None:
        self.cache = self.mask = self.positions = None

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]]) -> torch.Tensor:
        """Run the prompts in one forward pass and append them as new rows; returns their next-token logits.

        Each prompt starts from its own longest remembered prefix. Rows read
        [padding][remembered prefix][padding][rest of the prompt]: the mask hides the padding and the position
        ids skip it, so each row computes what it would alone."""
        hits = [self.prefixes.lookup(p) if self.prefixes else None for p in prompts]
        done = [len(hit[0]) if hit else 0 for hit in hits]
        n, past = len(prompts), max(done)
        width = max(len(p) - d for p, d in zip(prompts, done, strict=True))
        ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, past + width), dtype=torch.long)
        position_ids = torch.zeros((n, width), dtype=torch.long)
        for row, (prompt, d) in enumerate(zip(prompts, done, strict=True)):
            rest = len(prompt) - d
            ids[row, width - rest :] = torch.tensor(prompt[d:], dtype=torch.long)
            position_ids[row, width - rest :] = torch.arange(d, len(prompt))
            mask[row, past - d : past] = 1
            mask[row, past + width - rest :] = 1
        mask = mask.to(self.device)
        cache = DynamicCache(config=self.model.config)
        if past:
            for layer in range(len(next(hit for hit in hits if hit)[1])):
                keys, values = self._stack_prefixes(hits, done, past, layer)
                cache.update(keys, values, layer)
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=self._attention_mask(mask, width),
            position_ids=position_ids.to(self.device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.past_key_values
        if not all(type(layer) is DynamicLayer for layer in cache.layers):
            raise NotImplementedError("conch's batcher needs a full-attention KV cache (no sliding windows)")
        if self.prefixes:
            for row, prompt in enumerate(prompts):
                columns = mask[row].nonzero().squeeze(-1)  # this row's real tokens, in order
                for keep in self.prefixes.wanted(prompt):
                    self.prefixes.remember(prompt[:keep], _rows_columns(cache, row, columns[:keep]))
        self._splice(cache, mask, torch.tensor([len(p) for p in prompts], device=self.device))
        return out.logits[:, -1].float()

    @staticmethod
    def _stack_prefixes(
        hits: list, done: list[int], past: int, layer: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer's remembered keys and values for every row, right-aligned to `past` columns."""
        sample_keys, sample_values = next(hit for hit in hits if hit)[1][layer]
        keys = sample_keys.new_zeros((len(hits), sample_keys.shape[1], past, sample_keys.shape[3]))
        values = sample_values.new_zeros((len(hits), sample_values.shape[1], past, sample_values.shape[3]))
        for row, (hit, d) in enumerate(zip(hits, done, strict=True)):
            if hit:
                keys[row, :, past - d :] = hit[1][layer][0][0]
                values[row, :, past - d :] = hit[1][layer][1][0]
        return keys, values

    @torch.inference_mode()
    def pin_prefix(self, ids: list[int]) -> None:
        """Compute and keep the KV of `ids` (e.g. the chat template's head) for every later prompt."""
        out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True, logits_to_keep=1)
        self.prefixes.remember(
            ids,
            _rows_columns(out.past_key_values, 0, torch.arange(len(ids), device=self.device)),
            pinned=True,
        )

    def _splice(self, cache: DynamicCache, mask: torch.Tensor, positions: torch.Tensor) -> None:
        if self.mask is None:
            self.cache, self.mask, self.positions = cache, mask, positions
            return
        old_len, new_len = self.mask.shape[1], mask.shape[1]
        width = max(old_len, new_len)
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat(
                [_left_pad(mine.keys, width - old_len, 2), _left_pad(theirs.keys, width - new_len, 2)]
            )
            mine.values = torch.cat(
                [_left_pad(mine.values, width - old_len, 2), _left_pad(theirs.values, width - new_len, 2)]
            )
        self.mask = torch.cat([_left_pad(self.mask, width - old_len, 1), _left_pad(mask, width - new_len, 1)])
        self.positions = torch.cat([self.positions, positions])

    @torch.inference_mode()
    def decode(self, tokens: list[int]) -> torch.Tensor:
        """Feed each row its latest token; returns next-token logits (rows, vocab)."""
        self.mask = F.pad(self.mask, (0, 1), value=1)
        out = self.model(
            input_ids=torch.tensor(tokens, device=self.device)[:, None],
            attention_mask=self._attention_mask(self.mask, 1),
            position_ids=self.positions[:, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.positions = self.positions + 1
        return out.logits[:, -1].float()

    def _attention_mask(self, mask: torch.Tensor, new: int) -> torch.Tensor:
        """The 4D mask SDPA takes, built directly: transformers would rebuild it from the 2D mask every pass
        (about 15% of a small model's decode step). Query i of the `new` tokens sees the unmasked columns up
        to its own; it always sees itself, so a padding query never has an empty row (NaN)."""
        if not self._sdpa:
            return mask
        total = mask.shape[1]
        keys = torch.arange(total, device=mask.device)
        own = torch.arange(total - new, total, device=mask.device)[:, None]
        allowed = mask.bool()[:, None, None, :] & (keys <= own)  # (rows, 1, new, total)
        return allowed | (keys == own)

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (in this order) and trim the left padding they all share."""
        if not rows:
            self.clear()
            return
        if rows == list(range(len(self))):
            return
        index = torch.tensor(rows, device=self.device)
        mask = self.mask[index]
        shared_pad = int((mask.cumsum(-1) == 0).sum(-1).min())
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, shared_pad:]
            layer.values = layer.values[index, :, shared_pad:]
        self.mask = mask[:, shared_pad:]
        self.positions = self.positions[index]
