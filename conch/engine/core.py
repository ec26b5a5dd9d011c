"""Continuous batching: one thread runs every live request of a model through shared forward passes.

Each step is one forward pass over every running request: a token for each one that is generating, the next
chunk of each prompt being prefilled (conch.engine.scheduler decides). Requests join at the next step, leave as
soon as they finish or their client goes away, and each keeps its own sampling parameters and stop conditions.
Callers only enqueue requests and receive results through the `post` callback each request carries, so
generation never blocks them.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time

import torch

from conch.engine.detokenizer import Detokenizer
from conch.engine.grammar import Grammars
from conch.engine.prefix_cache import PrefixCache, template_head
from conch.engine.request import Completion, Post, Request
from conch.engine.runner import make_runner
from conch.engine.sampling import SamplingParams, sample
from conch.engine.scheduler import Scheduler
from conch.model.modeling import stop_token_ids

log = logging.getLogger("conch.engine")


ENGINE_EVENTS = (
    "prompt_tokens",
    "completion_tokens",
    "steps",
    "step_seconds",
    "prefill_passes",
    "prefill_tokens",
    "decode_passes",
    "decode_rows",
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
        max_prefill_tokens: int = 512,
        context_length: int | None = None,
        prefix_cache: bool = True,
    ):
        self.name, self.model, self.tokenizer = name, model, tokenizer
        self.context_length = context_length or int(getattr(model.config, "max_position_embeddings", 2048))
        self.stop_ids = frozenset(stop_token_ids(tokenizer, model))
        self.runner = make_runner(model, max_batch_size, self.context_length)
        # Remembered keys and values are the slot cache's: a model served unbatched has none.
        self.prefixes = PrefixCache() if prefix_cache and self.runner.batched else None
        self.scheduler = Scheduler(max_batch_size, max_prefill_tokens)
        # Every key exists from the start: /metrics shows zeros, and reading never races a dict resize.
        self.counters = collections.Counter(dict.fromkeys(ENGINE_EVENTS, 0))
        self._count_lock = threading.Lock()
        self.grammars: Grammars | None = None  # made for the first request with a JSON schema
        self._thread = threading.Thread(target=self._run, name=f"conch-engine-{name}", daemon=True)

    @torch.inference_mode()
    def start(self) -> Engine:
        """Warm up (the first forward passes are slow: allocation, kernel choice), then serve."""
        ids = self.tokenizer("Hello", add_special_tokens=False)["input_ids"] or [0]
        self.runner.step([], [(0, ids, 0, True)])
        self.runner.step([(ids[0], len(ids))], [])
        if self.prefixes is not None and (head := template_head(self.tokenizer)):
            self.runner.step([], [(0, head, 0, False)])
            self.prefixes.remember(head, self.runner.read(0, len(head)), pinned=True)
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
        submitted: float | None = None,
    ) -> Request:
        """Add a request; `post` receives its pieces of text and its Completion (from the engine thread).
        `submitted`: when the caller submitted it, on time.monotonic()'s clock (default: now)."""
        seed = params.seed if params.seed is not None else random.getrandbits(63)
        generator = None if params.greedy else torch.Generator().manual_seed(seed)
        text = Detokenizer(self.tokenizer, params.stop, incremental=stream)
        req = Request(request_id, prompt_ids, params, max_tokens, stream, text, post, generator)
        req.submitted = time.monotonic() if submitted is None else submitted
        if params.logprobs is not None:
            req.logprobs = []
        if params.json_schema is not None and not self._constrain(req):
            return req
        self.scheduler.add(req)
        return req

    def _constrain(self, req: Request) -> bool:
        """Give the request its grammar matcher (compiling takes milliseconds, on the caller's thread)."""
        try:
            if self.grammars is None:
                vocab = self.model.config.get_text_config().vocab_size
                self.grammars = Grammars(self.tokenizer, vocab, self.stop_ids)
            req.grammar = self.grammars.matcher(req.params.json_schema)
        except Exception as exc:  # the server checks schemas first; this is what it could not foresee
            self._finish(req, "error", f"the JSON schema cannot constrain decoding: {exc}")
            return False
        return True

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
        prefixes = self.prefixes
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
        req.finished = Completion(
            req.text.text,
            reason,
            len(req.prompt_ids),
            req.generated,
            error,
            req.token_ids,
            _timings(req),
            logprobs=req.logprobs,
        )
        # Counted here, not per HTTP response: cancelled requests and internal callers (RAG) count too.
        self._count(
            **{f"finished_{reason}": 1}, prompt_tokens=len(req.prompt_ids), completion_tokens=req.generated
        )
        items = ([req.piece(tail)] if tail and req.stream else []) + [req.finished]
        req.post([(req, item) for item in items])

    @torch.inference_mode()  # the KV cache is an inference tensor: only written to in inference mode
    def _run(self) -> None:
        scheduler = self.scheduler
        while not scheduler.stopping:
            admitted = scheduler.admit()
            try:
                for req in admitted:
                    self._reuse_prefix(req)
                if scheduler.running:
                    self._step()
            except Exception as exc:  # a bad step must not take the server down: fail its requests, go on
                log.exception("engine %s: step failed", self.name)
                for req in scheduler.running:
                    self._finish(req, "error", f"{type(exc).__name__}: {exc}")
                scheduler.running = []
                self.runner.clear()
        for req in scheduler.drain():
            self._finish(req, "cancelled")

    def _reuse_prefix(self, req: Request) -> None:
        """Start a newcomer from the keys and values of its longest remembered prefix."""
        hit = self.prefixes.lookup(req.prompt_ids) if self.prefixes else None
        if hit:
            self.runner.write(req.slot, hit[1])
            req.past = len(hit[0])

    def _step(self) -> None:
        started = time.perf_counter()
        decoding, chunks = self.scheduler.plan()
        logits = self.runner.step(
            [(req.last, req.past) for req in decoding],
            [
                (
                    req.slot,
                    req.prompt_ids[req.past : req.past + n],
                    req.past,
                    req.past + n == len(req.prompt_ids),
                )
                for req, n in chunks
            ],
        )
        for req in decoding:
            req.past += 1
        sampled = list(decoding)
        for req, n in chunks:
            req.past += n
            if req.prefilled:
                sampled.append(req)
                self._remember_prefixes(req)
        if sampled:
            self._take(logits, sampled)
        done = set()
        for req in self.scheduler.running:
            if req.cancelled:
                self._finish(req, "cancelled")
            if req.finished is not None:
                done.add(req)
        if done:
            for source, target, length in self.scheduler.release(done):
                self.runner.move(source, target, length)
        self._count(
            steps=1,
            step_seconds=time.perf_counter() - started,
            decode_passes=int(bool(decoding)),
            decode_rows=len(decoding),
            prefill_passes=int(bool(chunks)),
            prefill_tokens=sum(n for _, n in chunks),
        )

    def _remember_prefixes(self, req: Request) -> None:
        if self.prefixes:
            for keep in self.prefixes.wanted(req.prompt_ids):
                self.prefixes.remember(req.prompt_ids[:keep], self.runner.read(req.slot, keep))

    def _take(self, logits: torch.Tensor, reqs: list[Request]) -> None:
        """Sample each request's next token (row i of `logits` is reqs[i]'s) and apply its stop conditions."""
        tokens, logprobs = sample(logits, reqs, self.grammars)
        now, deliveries = time.monotonic(), []
        for req, token, logprob in zip(reqs, tokens, logprobs, strict=True):
            if req.finished is not None or req.cancelled:
                continue
            req.token_ids.append(token)
            req.token_times.append(now)
            req.last = token
            if token in self.stop_ids:
                self._finish(req, "stop")
                continue
            if logprob is not None:
                req.logprobs.append(logprob)
            stopped = req.text.add(token)
            if stopped:
                self._finish(req, "stop")
            elif (
                req.generated >= req.max_tokens or len(req.prompt_ids) + req.generated >= self.context_length
            ):
                self._finish(req, "length")
            elif req.stream and (piece := req.text.pending()):
                deliveries.append((req, req.piece(piece)))
        by_sink = collections.defaultdict(list)  # one hand-over per destination and step
        for req, piece in deliveries:
            by_sink[req.post].append((req, piece))
        for post, items in by_sink.items():
            post(items)


def _timings(req: Request) -> dict:
    times = req.token_times
    timings = {"inter_token_seconds": [b - a for a, b in zip(times, times[1:], strict=False)]}
    if req.admitted is not None:
        timings["queue_seconds"] = req.admitted - req.submitted
    if times:
        timings["first_token_seconds"] = times[0] - req.submitted
    return timings
