"""Continuous batching: one thread runs every live request of a model through shared forward passes.

Requests join at the next step (their prompts prefilled together), leave as soon as they finish or their client
goes away, and each keeps its own sampling parameters and stop conditions. Callers only enqueue requests and
receive results through the `post` callback each request carries, so generation never blocks them.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time

import torch

from conch.engine.detokenizer import Detokenizer
from conch.engine.kv_cache import BatchKVCache
from conch.engine.prefix_cache import PrefixCache, template_head
from conch.engine.request import Completion, Post, Request
from conch.engine.sampling import SamplingParams, sample
from conch.engine.scheduler import Scheduler
from conch.modeling import stop_token_ids

log = logging.getLogger("conch.engine")


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
        max_prefill_tokens: int = 4096,
        context_length: int | None = None,
        prefix_cache: bool = True,
    ):
        self.name, self.model, self.tokenizer = name, model, tokenizer
        self.context_length = context_length or int(getattr(model.config, "max_position_embeddings", 2048))
        self.stop_ids = frozenset(stop_token_ids(tokenizer, model))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.batch = BatchKVCache(model, pad_id, PrefixCache() if prefix_cache else None)
        self.scheduler = Scheduler(max_batch_size, max_prefill_tokens)
        # Every key exists from the start: /metrics shows zeros, and reading never races a dict resize.
        self.counters = collections.Counter(dict.fromkeys(ENGINE_EVENTS, 0))
        self._count_lock = threading.Lock()
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

    # ---- any thread -------------------------------------------------------------------------------------
    def enqueue(
        self,
        request_id: int,
        prompt_ids: list[int],
        params: SamplingParams,
        max_tokens: int,
        stream: bool,
        post: Post,
    ) -> Request:
        """Add a request; `post` receives its pieces of text and its Completion (from the engine thread)."""
        seed = params.seed if params.seed is not None else random.getrandbits(63)
        generator = None if params.greedy else torch.Generator().manual_seed(seed)
        text = Detokenizer(self.tokenizer, params.stop, incremental=stream)
        req = Request(request_id, prompt_ids, params, max_tokens, stream, text, post, generator)
        self.scheduler.add(req)
        return req

    def cancel(self, req: Request) -> None:
        """Free the request's slot: a queued one leaves the queue now, a running one at the next step."""
        if req.finished is not None:
            return
        req.cancelled = True
        if self.scheduler.unqueue(
            req
        ):  # the engine thread never saw it: finishing it here races with nothing
            self._finish(req, "cancelled")

    def snapshot(self) -> dict[str, float]:
        """Counters, plus the busy slots and the queue right now."""
        with self._count_lock:
            events = dict(self.counters)
        prefixes = self.batch.prefixes
        events["prefix_hits"] = prefixes.hits if prefixes else 0
        events["prefix_hit_tokens"] = prefixes.hit_tokens if prefixes else 0
        events["active"] = len(self.scheduler.running)
        events["queue_depth"] = len(self.scheduler.waiting)
        return events

    def close(self) -> None:
        self.scheduler.stop()
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

    def _run(self) -> None:
        scheduler = self.scheduler
        while not scheduler.stopping:
            admitted = scheduler.admit()
            try:
                if admitted:
                    started = time.perf_counter()
                    logits = self.batch.prefill([r.prompt_ids for r in admitted])
                    scheduler.running += admitted
                    self._take(logits, admitted)
                    self._drop_done()
                    self._count(
                        prefill_passes=1,
                        prefill_tokens=sum(len(r.prompt_ids) for r in admitted),
                        prefill_seconds=time.perf_counter() - started,
                    )
                if scheduler.running:
                    started, rows = time.perf_counter(), len(scheduler.running)
                    logits = self.batch.decode([r.last for r in scheduler.running])
                    self._take(logits, scheduler.running)
                    self._drop_done()
                    self._count(
                        decode_passes=1, decode_rows=rows, decode_seconds=time.perf_counter() - started
                    )
            except Exception as exc:  # a bad step must not take the server down: fail its requests, go on
                log.exception("engine %s: step failed", self.name)
                for req in [*scheduler.running, *admitted]:
                    self._finish(req, "error", f"{type(exc).__name__}: {exc}")
                scheduler.running = []
                self.batch.clear()
        for req in scheduler.drain():
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
        running = self.scheduler.running
        for req in running:
            if req.cancelled:
                self._finish(req, "cancelled")
        keep = [i for i, req in enumerate(running) if req.finished is None]
        if len(keep) != len(running):
            self.scheduler.running = [running[i] for i in keep]
            self.batch.keep(keep)
