"""Per-request sampling inside a shared batch: greedy rows take the argmax, the others sample with their own
temperature, top-p and seeded generator, so a request's draws do not depend on who else is in the batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        # Dividing by a vanishing temperature overflows; that limit is the argmax anyway.
        return self.temperature < 1e-5


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


@torch.inference_mode()
def sample(logits: torch.Tensor, requests) -> list[int]:
    """Next token per row of `logits`, for the matching request (with `.params` and `.generator`)."""
    tokens = logits.argmax(-1).tolist()
    for row, req in enumerate(requests):
        if not req.params.greedy:
            tokens[row] = sample_row(logits[row], req.params, req.generator)
    return tokens
