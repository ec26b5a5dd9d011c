"""Per-request sampling inside a shared batch: greedy rows take the argmax, the others sample with their own
temperature, top-p and seeded generator, so a request's draws do not depend on who else is in the batch.

Before the choice, each row gets only what its own request asked for: presence and frequency penalties (OpenAI's:
subtracted per generated occurrence), a repetition penalty (vLLM's and transformers': positive logits of tokens in
the prompt or the answer divided by it, negative ones multiplied), and a grammar mask (conch.engine.grammar).
Rows that ask for none of these cost nothing extra.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from conch.engine.logprobs import Entry, entry, log_softmax_rows


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logprobs: int | None = None  # None: none; k: the sampled token's and the k most likely alternatives'
    json_schema: str | None = None  # decoding constrained to this JSON schema (conch.engine.grammar)

    @property
    def greedy(self) -> bool:
        # Dividing by a vanishing temperature overflows; that limit is the argmax anyway.
        return self.temperature < 1e-5

    @property
    def penalized(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0)


def sample_row(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    # The generator lives on the CPU, so the draw does too (one row of logits: cheap).
    probs = torch.softmax(logits.float().cpu() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest set of most likely tokens whose mass reaches top_p (always at least one).
        outside = sorted_probs.cumsum(-1) - sorted_probs >= params.top_p
        outside[0] = False  # a top_p below float32's range rounds to 0, which would leave no token at all
        sorted_probs[outside] = 0.0
        return int(order[torch.multinomial(sorted_probs, 1, generator=generator)])
    return int(torch.multinomial(probs, 1, generator=generator))


def penalize(
    logits: torch.Tensor, params: SamplingParams, prompt_ids: list[int], output_ids: list[int]
) -> None:
    """Apply the request's penalties to its row of logits, in place."""
    if params.repetition_penalty != 1.0:
        seen = torch.tensor(prompt_ids + output_ids, dtype=torch.long, device=logits.device).unique()
        values = logits[seen]
        rp = params.repetition_penalty
        logits[seen] = torch.where(values > 0, values / rp, values * rp)
    if output_ids and (params.presence_penalty or params.frequency_penalty):
        ids, counts = torch.tensor(output_ids, dtype=torch.long, device=logits.device).unique(
            return_counts=True
        )
        logits[ids] -= params.frequency_penalty * counts.to(logits.dtype) + params.presence_penalty


@torch.inference_mode()
def sample(logits: torch.Tensor, requests, grammars=None) -> tuple[list[int], list[Entry | None]]:
    """Next token per row of `logits` (changed in place) for the matching request (with `.params`,
    `.generator`, `.prompt_ids`, `.token_ids` and `.grammar`), and its log-probability entry where asked for.
    `grammars`: the model's conch.engine.grammar.Grammars, needed once any request is constrained."""
    wanting = [row for row, req in enumerate(requests) if req.params.logprobs is not None]
    logprobs = log_softmax_rows(logits, wanting) if wanting else None
    for row, req in enumerate(requests):
        if req.params.penalized:
            penalize(logits[row], req.params, req.prompt_ids, req.token_ids)
    matchers = {
        row: req.grammar
        for row, req in enumerate(requests)
        if req.grammar is not None and not req.grammar.is_terminated()
    }
    if matchers:
        grammars.mask(logits, matchers)
    tokens = logits.argmax(-1).tolist()
    for row, req in enumerate(requests):
        if not req.params.greedy:
            tokens[row] = sample_row(logits[row], req.params, req.generator)
    for row, matcher in matchers.items():
        matcher.accept_token(tokens[row])
    entries: list[Entry | None] = [None] * len(requests)
    for i, row in enumerate(wanting):
        entries[row] = entry(logprobs[i], tokens[row], requests[row].params.logprobs)
    return tokens, entries
