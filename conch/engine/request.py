"""A request as the engine sees it, and the `Completion` it ends with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from conch.engine.detokenizer import Detokenizer
from conch.engine.sampling import SamplingParams


class QueueFull(Exception):
    pass


class EngineGone(Exception):
    pass


@dataclass
class Completion:
    text: str
    finish_reason: str  # stop | length | cancelled | error
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None
    token_ids: list[int] | None = None  # the generated tokens, end-of-turn included
    # queue_seconds, first_token_seconds (from submission, as far as they got) and inter_token_seconds
    timings: dict | None = None
    # With `logprobs`: an entry per generated token, end-of-turn excluded (conch.engine.logprobs)
    logprobs: list | None = None


# Called by the engine with (request, piece of text or Completion) pairs, from its own thread.
Post = Callable[[list[tuple["Request", object]]], None]


@dataclass(eq=False)
class Request:
    """One request inside the engine."""

    id: int
    prompt_ids: list[int]
    params: SamplingParams
    max_tokens: int
    stream: bool
    text: Detokenizer
    post: Post
    generator: torch.Generator | None = None
    grammar: object | None = None  # its xgrammar GrammarMatcher, when decoding is constrained
    token_ids: list[int] = field(default_factory=list)  # generated so far
    last: int = -1  # the latest token, fed back at the next step
    submitted: float = 0.0  # time.monotonic() when the server submitted it (the same clock in every process)
    admitted: float | None = None  # when it got a slot
    token_times: list[float] = field(default_factory=list)  # when each token was sampled
    slot: int = -1  # where its keys and values are, while it runs
    past: int = 0  # tokens whose keys and values are in its slot
    finished: Completion | None = None
    cancelled: bool = False
    logprobs: list | None = None  # entries so far, when asked for
    logprobs_sent: int = 0  # how many of them went out with streamed pieces

    def piece(self, text: str) -> str | tuple[str, list]:
        """A streamed piece of text, with the logprob entries of the tokens since the last piece if asked."""
        if self.logprobs is None:
            return text
        entries, self.logprobs_sent = self.logprobs[self.logprobs_sent :], len(self.logprobs)
        return text, entries

    @property
    def generated(self) -> int:
        return len(self.token_ids)

    @property
    def prefilled(self) -> bool:
        return self.past >= len(self.prompt_ids)
