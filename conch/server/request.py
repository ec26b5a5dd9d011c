"""A request as the engine sees it (`Request`), and as the event loop sees it (`Handle`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from conch.server.sampling import SamplingParams
from conch.server.text import TextAssembler


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
    text: TextAssembler
    post: Post
    generator: torch.Generator | None = None
    generated: int = 0
    last: int = -1  # the latest token, fed back at the next step
    finished: Completion | None = None
    cancelled: bool = False
    handle: Handle | None = None  # in-process callers: where `post` delivers


class Handle:
    """The event loop's side of a request: its text as it is produced, its result, and cancelling it."""

    def __init__(self, cancel: Callable[[], None] | None = None):
        self._events: asyncio.Queue = asyncio.Queue()
        self._cancel = cancel
        self.finished: Completion | None = None

    def put(self, item) -> None:
        """On the event loop: a piece of text, or the Completion that ends the request."""
        if isinstance(item, Completion):
            self.finished = item
        self._events.put_nowait(item)

    async def pieces(self):
        while not isinstance(item := await self._events.get(), Completion):
            yield item

    async def result(self) -> Completion:
        while not isinstance(item := await self._events.get(), Completion):
            pass
        return item

    def cancel(self) -> None:
        if self.finished is None and self._cancel is not None:
            self._cancel()


def post_to_loop(loop: asyncio.AbstractEventLoop, items: list[tuple[Handle, object]]) -> None:
    """From another thread: hand items to their handles on `loop`."""

    def deliver() -> None:
        for handle, item in items:
            handle.put(item)

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting for these any more
        loop.call_soon_threadsafe(deliver)
