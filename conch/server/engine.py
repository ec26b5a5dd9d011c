"""Continuous batching: one thread per model runs every live request through shared forward passes.

Requests join at the next step (their prompts prefilled together), leave as soon as they finish or their client
goes away, and each keeps its own sampling parameters and stop conditions. The event loop only enqueues
requests and reads results, so generation never blocks it.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import random
import threading
import time

import torch

from conch.modeling import stop_token_ids
from conch.server.batch import KVBatch
from conch.server.prefix import PrefixCache, template_head
from conch.server.request import Completion, Handle, Post, QueueFull, Request, post_to_loop
from conch.server.sampling import SamplingParams, sample
from conch.server.text import TextAssembler, encode

log = logging.getLogger("conch.server")


ENGINE_EVENTS = (
    "prompt_tokens",
    "completion_tokens",
    "prefill_passes",
    "prefill_tokens",
    "prefill_seconds",
    "decode_passes",
    "decode_rows",
    "decode_seconds",
    "finished_stop",
    "finished_length",
    "finished_cancelled",
    "finished_error",
)


class Engine:
    def __init__(
        self,
        name: str,
        model,
        tokenizer,
        max_batch_size: int = 16,
        max_queue: int = 64,
        max_prefill_tokens: int = 4096,
        context_length: int | None = None,
        prefix_cache: bool = True,
    ):
        self.name, self.model, self.tokenizer = name, model, tokenizer
        self.max_batch_size, self.max_queue = max_batch_size, max_queue
        self.max_prefill_tokens = max_prefill_tokens
        self.context_length = context_length or int(getattr(model.config, "max_position_embeddings", 2048))
        self.stop_ids = frozenset(stop_token_ids(tokenizer, model))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.batch = KVBatch(model, pad_id, PrefixCache() if prefix_cache else None)
        self.rows: list[Request] = []
        self.waiting: collections.deque[Request] = collections.deque()
        # Every key exists from the start: /metrics shows zeros, and reading never races a dict resize.
        self.counters = collections.Counter(dict.fromkeys(ENGINE_EVENTS, 0))
        self._ids = itertools.count()
        self._posts: dict[asyncio.AbstractEventLoop, Post] = {}
        # Held only for queue bookkeeping, never during model work: the event loop takes it on every request.
        self._cv = threading.Condition(threading.Lock())
        self._count_lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"conch-engine-{name}", daemon=True)

    def start(self) -> Engine:
        """Warm up (the first forward passes are slow: allocation, kernel choice), then serve."""
        ids = self.tokenizer("Hello", add_special_tokens=False)["input_ids"] or [0]
        self.batch.prefill([ids, ids[:1]])
        self.batch.decode([ids[0], ids[0]])
        self.batch.keep([0])
        self.batch.decode([ids[0]])
        self.batch.clear()
        if self.batch.prefixes is not None and (head := template_head(self.tokenizer)):
            self.batch.pin_prefix(head)
        self._thread.start()
        return self

    # ---- event-loop side -------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return encode(self.tokenizer, text)

    async def stats(self) -> dict:
        return {**self.snapshot(), "active": self.active, "queue_depth": self.queue_depth}

    alive = True  # an in-process engine lives as long as the server

    def submit(self, prompt_ids: list[int], params: SamplingParams, max_tokens: int, stream: bool) -> Handle:
        """On an event loop: enqueue, and get the handle its answer arrives through."""
        loop, handle = asyncio.get_running_loop(), Handle()
        if loop not in self._posts:  # one poster per loop, so a step hands everything over at once
            self._posts[loop] = lambda items: post_to_loop(loop, [(req.handle, item) for req, item in items])
        req = self.enqueue(prompt_ids, params, max_tokens, stream, self._posts[loop])
        req.handle = handle
        handle._cancel = lambda: self.cancel(req)
        return handle

    def enqueue(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        max_tokens: int,
        stream: bool,
        post: Post,
        request_id: int | None = None,
    ) -> Request:
        """From any thread: add a request; `post` receives its pieces and Completion (from the engine thread)."""
        seed = params.seed if params.seed is not None else random.getrandbits(63)
        generator = None if params.greedy else torch.Generator().manual_seed(seed)
        text = TextAssembler(self.tokenizer, params.stop, incremental=stream)
        rid = next(self._ids) if request_id is None else request_id
        req = Request(rid, prompt_ids, params, max_tokens, stream, text, post, generator)
        with self._cv:
            # Requests that will take a free slot at the next step are not queued behind anyone.
            queued = len(self.waiting) - (self.max_batch_size - len(self.rows))
            if queued >= self.max_queue:
                raise QueueFull(
                    f"model {self.name!r} has {queued} requests queued for its {self.max_batch_size} busy "
                    f"slots (limit {self.max_queue})"
                )
            self.waiting.append(req)
            self._cv.notify()
        return req

    def cancel(self, req: Request) -> None:
        """Free the request's slot: a queued one leaves the queue now, a running one at the next step."""
        if req.finished is not None:
            return
        req.cancelled = True
        with self._cv:
            queued = req in self.waiting
            if queued:
                self.waiting.remove(req)
        if queued:  # the engine thread never saw it: finishing it here races with nothing
            self._finish(req, "cancelled")

    def snapshot(self) -> dict[str, float]:
        with self._count_lock:
            events = dict(self.counters)
        prefixes = self.batch.prefixes
        events["prefix_hits"] = prefixes.hits if prefixes else 0
        events["prefix_hit_tokens"] = prefixes.hit_tokens if prefixes else 0
        return events

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    @property
    def active(self) -> int:
        return len(self.rows)

    def close(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    # ---- engine thread ---------------------------------------------------------------------------------
    def _count(self, **events) -> None:
        with self._count_lock:
            self.counters.update(events)

    def _finish(self, req: Request, reason: str, error: str | None = None) -> None:
        if req.finished is not None:
            return
        req.text.finish()
        tail = req.text.pending()
        req.finished = Completion(req.text.text, reason, len(req.prompt_ids), req.generated, error)
        # Counted here, not per HTTP response: cancelled requests and internal callers (RAG) count too.
        self._count(
            **{f"finished_{reason}": 1}, prompt_tokens=len(req.prompt_ids), completion_tokens=req.generated
        )
        items = ([tail] if tail and req.stream else []) + [req.finished]
        req.post([(req, item) for item in items])

    def _admit(self) -> list[Request]:
        with self._cv:
            while not self._stopping and not self.waiting and not self.rows:
                self._cv.wait()
            admitted, tokens = [], 0
            while self.waiting and len(self.rows) + len(admitted) < self.max_batch_size:
                nxt = self.waiting[0]
                if admitted and tokens + len(nxt.prompt_ids) > self.max_prefill_tokens:
                    break
                admitted.append(self.waiting.popleft())
                tokens += len(nxt.prompt_ids)
            return admitted

    def _run(self) -> None:
        while not self._stopping:
            admitted = self._admit()
            try:
                if admitted:
                    started = time.perf_counter()
                    logits = self.batch.prefill([r.prompt_ids for r in admitted])
                    self.rows += admitted
                    self._take(logits, admitted)
                    self._drop_done()
                    self._count(
                        prefill_passes=1,
                        prefill_tokens=sum(len(r.prompt_ids) for r in admitted),
                        prefill_seconds=time.perf_counter() - started,
                    )
                if self.rows:
                    started, rows = time.perf_counter(), len(self.rows)
                    logits = self.batch.decode([r.last for r in self.rows])
                    self._take(logits, self.rows)
                    self._drop_done()
                    self._count(
                        decode_passes=1, decode_rows=rows, decode_seconds=time.perf_counter() - started
                    )
            except Exception as exc:  # a bad step must not take the server down: fail its requests, go on
                log.exception("engine %s: step failed", self.name)
                for req in [*self.rows, *admitted]:
                    self._finish(req, "error", f"{type(exc).__name__}: {exc}")
                self.rows = []
                self.batch.clear()
        with self._cv:
            for req in [*self.rows, *self.waiting]:
                self._finish(req, "cancelled")

    def _take(self, logits: torch.Tensor, reqs: list[Request]) -> None:
        """Sample each request's next token (row i of `logits` is reqs[i]'s) and apply its stop conditions."""
        tokens = sample(logits, reqs)
        deliveries = []
        for req, token in zip(reqs, tokens, strict=True):
            if req.finished is not None or req.cancelled:
                continue
            req.generated += 1
            req.last = token
            if token in self.stop_ids:
                self._finish(req, "stop")
                continue
            stopped = req.text.add(token)
            if stopped:
                self._finish(req, "stop")
            elif (
                req.generated >= req.max_tokens or len(req.prompt_ids) + req.generated >= self.context_length
            ):
                self._finish(req, "length")
            elif req.stream and (piece := req.text.pending()):
                deliveries.append((req, piece))
        by_sink = collections.defaultdict(list)  # one hand-over per destination and step
        for req, piece in deliveries:
            by_sink[req.post].append((req, piece))
        for post, items in by_sink.items():
            post(items)

    def _drop_done(self) -> None:
        # No lock: only this thread changes `rows` (submit reads its length, an atomic read).
        for req in self.rows:
            if req.cancelled:
                self._finish(req, "cancelled")
        keep = [i for i, req in enumerate(self.rows) if req.finished is None]
        if len(keep) != len(self.rows):
            self.rows = [self.rows[i] for i in keep]
            self.batch.keep(keep)
