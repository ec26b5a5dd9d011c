"""The server's side of an engine process: start it, submit and cancel requests, hand results to the event loop.

In one process, the event loop (HTTP parsing, validation, chat templates, tokenizing, JSON) and the engine
thread take turns holding the interpreter lock, so serving work and model work add up instead of overlapping.
So the server process keeps the tokenizer and the HTTP side, and each model's engine runs in a process of its
own (conch.engine.process), talking over a pipe. If the engine process dies, its requests fail and `error`
says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import asdict

from conch.engine.messages import (
    CancelRequest,
    LoadFailed,
    StatsReply,
    StatsRequest,
    StepOutputs,
    Stop,
    SubmitRequest,
)
from conch.engine.process import EngineSpec, run_engine_process
from conch.engine.request import Completion, EngineGone, QueueFull
from conch.engine.tokenizer import encode, load_tokenizer

log = logging.getLogger("conch.engine")


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


class EngineClient:
    """One model's engine process, as the server sees it."""

    def __init__(self, spec: EngineSpec, on_finished: Callable[[Completion], None] | None = None):
        """`on_finished` sees every request's Completion, from the reader thread (metrics)."""
        self.name, self.max_batch_size, self.max_queue = spec.name, spec.max_batch_size, spec.max_queue
        self.tokenizer = load_tokenizer(spec.path, spec.adapter)
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked threads or CUDA state
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=run_engine_process,
            args=(child_end, asdict(spec)),
            name=f"conch-engine-{spec.name}",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        try:
            loaded = self._conn.recv()
        except EOFError as exc:
            raise RuntimeError(f"the engine process for {spec.name!r} exited while loading") from exc
        if isinstance(loaded, LoadFailed):
            self.close()
            raise RuntimeError(f"loading model {spec.name!r} failed: {loaded.error}")
        self.context_length = loaded.context_length
        self._ids = itertools.count()
        self._handles: dict[int, tuple[asyncio.AbstractEventLoop, Handle]] = {}
        self._stats_waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._send_lock = threading.Lock()
        self._on_finished = on_finished
        self.error: str | None = None
        threading.Thread(target=self._read, name=f"conch-engine-reader-{spec.name}", daemon=True).start()

    @property
    def alive(self) -> bool:
        return self.error is None

    def encode(self, text: str) -> list[int]:
        return encode(self.tokenizer, text)

    def _send(self, message) -> None:
        with self._send_lock:
            self._conn.send(message)

    def submit(self, prompt_ids: list[int], params, max_tokens: int, stream: bool) -> Handle:
        """On an event loop: send the request; its pieces and result arrive through the returned handle."""
        if self.error:
            raise EngineGone(self.error)
        # In flight beyond the batch's slots means waiting in the engine's queue.
        queued = len(self._handles) - self.max_batch_size
        if queued >= self.max_queue:
            raise QueueFull(
                f"model {self.name!r} has {queued} requests queued for its {self.max_batch_size} "
                f"busy slots (limit {self.max_queue})"
            )
        rid = next(self._ids)
        handle = Handle(cancel=lambda: self._cancel(rid))
        self._handles[rid] = (asyncio.get_running_loop(), handle)
        self._send(SubmitRequest(rid, prompt_ids, params, max_tokens, stream, time.monotonic()))
        return handle

    def _cancel(self, rid: int) -> None:
        if rid in self._handles and not self.error:
            with contextlib.suppress(OSError):
                self._send(CancelRequest(rid))

    async def stats(self) -> dict:
        """The engine's counters, slots and queue, asked of the engine process (empty if it does not answer)."""
        if self.error:
            return {}
        rid, loop = next(self._ids), asyncio.get_running_loop()
        future = loop.create_future()
        self._stats_waiting[rid] = (loop, future)
        try:
            self._send(StatsRequest(rid))
            return await asyncio.wait_for(future, timeout=5)
        except (TimeoutError, OSError):
            return {}
        finally:
            self._stats_waiting.pop(rid, None)

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            match message:
                case StepOutputs():
                    self._deliver(message.items)
                case StatsReply(id=rid) if waiting := self._stats_waiting.get(rid):
                    loop, future = waiting
                    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                        loop.call_soon_threadsafe(
                            lambda f=future, s=message.counters: f.done() or f.set_result(s)
                        )
        self.error = self.error or f"the engine process for model {self.name!r} exited"
        log.error("%s", self.error)
        for rid in list(self._handles):
            loop, handle = self._handles.pop(rid)
            post_to_loop(loop, [(handle, Completion("", "error", 0, 0, self.error))])

    def _deliver(self, items: list) -> None:
        """From the reader thread: each item to its request's handle, grouped by the loop that waits for it."""
        by_loop: dict = {}
        for rid, item in items:
            done = isinstance(item, Completion)
            entry = self._handles.pop(rid, None) if done else self._handles.get(rid)
            if entry is not None:
                by_loop.setdefault(entry[0], []).append((entry[1], item))
            if done and self._on_finished:
                self._on_finished(item)
        for loop, loop_items in by_loop.items():
            post_to_loop(loop, loop_items)

    def close(self) -> None:
        self.error = self.error or "the server is shutting down"
        with contextlib.suppress(OSError):
            self._send(Stop())
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
