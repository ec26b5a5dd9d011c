"""A request as the engine sees it, and how the event loop reads its answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from conch.server.sampling import SamplingParams
from conch.server.text import TextAssembler

if TYPE_CHECKING:
    from conch.server.engine import Engine


class QueueFull(Exception):
    pass


@dataclass
class Completion:
    text: str
    finish_reason: str  # stop | length | cancelled | error
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


@dataclass(eq=False)
class Request:
    """One request in the engine; the event loop reads it through `pieces()` / `result()`."""

    id: int
    prompt_ids: list[int]
    params: SamplingParams
    max_tokens: int
    stream: bool
    text: TextAssembler
    loop: asyncio.AbstractEventLoop
    engine: Engine
    generator: torch.Generator | None = None
    generated: int = 0
    last: int = -1  # the latest token, fed back at the next step
    finished: Completion | None = None
    cancelled: bool = False
    _events: asyncio.Queue = field(default_factory=asyncio.Queue)

    async def pieces(self):
        """The answer's text as it is produced."""
        while True:
            item = await self._events.get()
            if isinstance(item, Completion):
                return
            yield item

    async def result(self) -> Completion:
        while not isinstance(item := await self._events.get(), Completion):
            pass
        return item

    def cancel(self) -> None:
        self.engine.cancel(self)
