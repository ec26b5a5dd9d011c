"""A request as the engine sees it, and the `Completion` it ends with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
    generated: int = 0
    last: int = -1  # the latest token, fed back at the next step
    finished: Completion | None = None
    cancelled: bool = False
