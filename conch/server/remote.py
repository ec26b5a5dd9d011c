"""Each model's engine in a process of its own.

In one process, the event loop (HTTP parsing, validation, chat templates, tokenizing, JSON) and the engine
thread take turns holding the interpreter lock, so serving work and model work add up instead of overlapping.
Here the server process keeps the tokenizer and the HTTP side; the engine process keeps the model. They talk
over a pipe: the server sends submit/cancel/stats messages, the engine sends back each step's pieces of text and
finished requests in one message. If the engine process dies, its requests fail and /health says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import signal
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from conch.server.request import Completion, EngineGone, Handle, QueueFull, post_to_loop
from conch.server.text import encode

log = logging.getLogger("conch.server")


@dataclass
class EngineSpec:
    name: str
    path: str
    adapter: str | None
    max_batch_size: int
    max_queue: int
    max_prefill_tokens: int
    context_length: int | None
    prefix_cache: bool
    threads: int | None


def load_tokenizer(path: str, adapter: str | None = None):
    """The tokenizer `conch.modeling.load` would pick (the adapter's own, if LLaMA-Factory saved one there)."""
    from transformers import AutoTokenizer

    has_own = adapter and (Path(adapter) / "tokenizer_config.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(adapter if has_own else path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _engine_process(conn, spec: dict) -> None:
    """The engine process: load the model, then serve the pipe until it closes or says stop."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Ctrl-C reaches the whole process group; the server shuts this process down itself (stop or pipe EOF).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    from conch.modeling import load
    from conch.server.engine import Engine

    spec = EngineSpec(**spec)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    try:
        model, tokenizer = load(spec.path, adapter=spec.adapter)
        # The server process enforces the queue limit; here every request it sends is accepted.
        engine = Engine(
            spec.name,
            model,
            tokenizer,
            spec.max_batch_size,
            1 << 30,
            spec.max_prefill_tokens,
            spec.context_length,
            spec.prefix_cache,
        ).start()
    except Exception as exc:
        log.exception("engine %s: loading failed", spec.name)
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    lock, requests = threading.Lock(), {}

    def send(message) -> None:
        with lock, contextlib.suppress(OSError):  # the server is gone: nobody to tell
            conn.send(message)

    def post(items) -> None:
        for req, item in items:
            if isinstance(item, Completion):
                requests.pop(req.id, None)
        send(("events", [(req.id, item) for req, item in items]))

    send(("ready", {"context_length": engine.context_length}))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message[0] == "submit":
            _, rid, ids, params, max_tokens, stream = message
            req = engine.enqueue(ids, params, max_tokens, stream, post, rid)
            if req.finished is None:
                requests[rid] = req
        elif message[0] == "cancel" and (req := requests.get(message[1])) is not None:
            engine.cancel(req)
        elif message[0] == "stats":
            send(
                (
                    "stats",
                    message[1],
                    {**engine.snapshot(), "active": engine.active, "queue_depth": engine.queue_depth},
                )
            )
        elif message[0] == "stop":
            break
    engine.close()


class ProcessEngine:
    """The server process's side of one engine process: the same interface as an in-process Engine."""

    def __init__(self, spec: EngineSpec):
        self.name, self.max_batch_size, self.max_queue = spec.name, spec.max_batch_size, spec.max_queue
        self.tokenizer = load_tokenizer(spec.path, spec.adapter)
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked threads or CUDA state
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=_engine_process,
            args=(child_end, asdict(spec)),
            name=f"conch-engine-{spec.name}",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        try:
            kind, info = self._conn.recv()
        except EOFError as exc:
            raise RuntimeError(f"the engine process for {spec.name!r} exited while loading") from exc
        if kind == "error":
            self.close()
            raise RuntimeError(f"loading model {spec.name!r} failed: {info}")
        self.context_length = info["context_length"]
        self._ids = itertools.count()
        self._handles: dict[int, tuple[asyncio.AbstractEventLoop, Handle]] = {}
        self._stats_waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._send_lock = threading.Lock()
        self.error: str | None = None
        threading.Thread(target=self._read, name=f"conch-engine-reader-{spec.name}", daemon=True).start()

    def encode(self, text: str) -> list[int]:
        return encode(self.tokenizer, text)

    def _send(self, message) -> None:
        with self._send_lock:
            self._conn.send(message)

    def submit(self, prompt_ids: list[int], params, max_tokens: int, stream: bool) -> Handle:
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
        self._send(("submit", rid, prompt_ids, params, max_tokens, stream))
        return handle

    def _cancel(self, rid: int) -> None:
        if rid in self._handles and not self.error:
            with contextlib.suppress(OSError):
                self._send(("cancel", rid))

    async def stats(self) -> dict:
        """The engine's counters, slots and queue, asked of the engine process (empty if it does not answer)."""
        if self.error:
            return {}
        rid, loop = next(self._ids), asyncio.get_running_loop()
        future = loop.create_future()
        self._stats_waiting[rid] = (loop, future)
        try:
            self._send(("stats", rid))
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
            if message[0] == "events":
                by_loop: dict = {}
                for rid, item in message[1]:
                    entry = (
                        self._handles.pop(rid, None)
                        if isinstance(item, Completion)
                        else self._handles.get(rid)
                    )
                    if entry is not None:
                        by_loop.setdefault(entry[0], []).append((entry[1], item))
                for loop, items in by_loop.items():
                    post_to_loop(loop, items)
            elif message[0] == "stats" and (waiting := self._stats_waiting.get(message[1])):
                loop, future = waiting
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(lambda f=future, s=message[2]: f.done() or f.set_result(s))
        self.error = self.error or f"the engine process for model {self.name!r} exited"
        log.error("%s", self.error)
        for rid in list(self._handles):
            loop, handle = self._handles.pop(rid)
            post_to_loop(loop, [(handle, Completion("", "error", 0, 0, self.error))])

    @property
    def alive(self) -> bool:
        return self.error is None

    def close(self) -> None:
        self.error = self.error or "the server is shutting down"
        with contextlib.suppress(OSError):
            self._send(("stop",))
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
