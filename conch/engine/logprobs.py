"""Log-probabilities of the sampled tokens and their top alternatives, for requests that ask (`logprobs`).

They are the model's own distribution, before penalties, grammar masks and temperature (what vLLM reports by
default), so they say how likely the model found each token, whatever constrained the choice. An entry is
(token, logprob, ((alternative, logprob), ...)) with the `k` most likely alternatives, most likely first.
"""

from __future__ import annotations

import torch

Entry = tuple[int, float, tuple[tuple[int, float], ...]]


def log_softmax_rows(logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """The rows' log-probabilities (a copy: `logits` may be changed in place afterwards)."""
    return torch.log_softmax(logits[rows].float(), dim=-1)


def entry(logprobs: torch.Tensor, token: int, k: int) -> Entry:
    """One token's entry, from its row of log-probabilities."""
    top = ()
    if k:
        values, ids = logprobs.topk(k)
        top = tuple(zip(ids.tolist(), values.tolist(), strict=True))
    return token, float(logprobs[token]), top
